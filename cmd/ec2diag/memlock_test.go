package main

import (
	"bufio"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Trimming gives back the program pages resident now: on this kernel the
// test binary's own text and read-only data, most of which start-up and
// the tests before this one touched, drop to what runs after the trim;
// also while another process maps the same binary (as a second agent or
// a CLI run of ec2diag does), where MADV_PAGEOUT would skip every page.
func TestTrimGivesBackProgramPages(t *testing.T) {
	sib := exec.Command(os.Args[0], "-test.run=^TestTrimSibling$")
	sib.Env = append(os.Environ(), "EC2DIAG_TRIM_SIBLING=1")
	out, _ := sib.StdoutPipe()
	if err := sib.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sib.Process.Kill(); sib.Wait() }()
	if l, _ := bufio.NewReader(out).ReadString('\n'); l != "up\n" {
		t.Fatalf("sibling said %q", l)
	}
	before, after, err := trimProgramPages(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("program pages resident: %d KiB before, %d KiB after", before>>10, after>>10)
	if before <= 0 || after >= before/2 {
		t.Errorf("resident %d bytes before the trim, %d after: want less than half", before, after)
	}
}

// TestTrimSibling is the other process of the test above: it maps the
// same binary, says so and waits to be killed.
func TestTrimSibling(t *testing.T) {
	if os.Getenv("EC2DIAG_TRIM_SIBLING") == "" {
		t.Skip("helper process of TestTrimGivesBackProgramPages")
	}
	os.Stdout.WriteString("up\n")
	time.Sleep(time.Minute)
}
