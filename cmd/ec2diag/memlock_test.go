package main

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// Trimming gives back the program pages resident now: on this kernel the
// test binary's own text and read-only data, most of which start-up and
// the tests before this one touched, drop to what runs after the trim.
func TestTrimGivesBackProgramPages(t *testing.T) {
	before, after, err := trimProgramPages(false)
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("MADV_PAGEOUT refused (kernel before 5.4?): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("program pages resident: %d KiB before, %d KiB after", before>>10, after>>10)
	if before <= 0 || after >= before/2 {
		t.Errorf("resident %d bytes before the trim, %d after: want less than half", before, after)
	}
}
