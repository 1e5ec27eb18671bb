package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// analyze keeps going past damage: a truncated .gz, a line over 1 MiB and
// the NUL bytes a hard crash leaves each cost only themselves, are counted
// and named, and the good files given with them are analysed. (Each used to
// abort the whole run with no output.)
func TestAnalyzeReadsPastDamage(t *testing.T) {
	dir := t.TempDir()
	cmd := func(sec int, job string) string {
		return fmt.Sprintf("2026-12-01T10:00:%02d.000000+00:00 h CRON[%d]: (root) CMD (%s)\n", sec, 100+sec, job)
	}
	good := filepath.Join(dir, "syslog")
	writeFile(t, good, cmd(1, "good.sh"))

	var gz bytes.Buffer
	z := gzip.NewWriter(&gz)
	z.Write([]byte(cmd(2, "before-damage.sh")))
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(z, "2026-12-01T10:00:03.000000+00:00 h app[1]: filler %d %s\n", i, strings.Repeat("x", 40))
	}
	z.Close()
	trunc := filepath.Join(dir, "syslog.2.gz")
	os.WriteFile(trunc, gz.Bytes()[:gz.Len()*2/3], 0o644)

	crash := filepath.Join(dir, "syslog.1")
	writeFile(t, crash, cmd(4, "before-long.sh")+strings.Repeat("y", 2<<20)+"\n"+string(make([]byte, 2<<20))+cmd(5, "after-nuls.sh"))

	c := exec.Command(bin(t), "analyze", "--syslog", trunc, "--syslog", crash, "--syslog", good, "--syslog", filepath.Join(dir, "missing"), "--format", "json")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want 1 (one file missing); stderr: %s", err, stderr.String())
	}
	jobs := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(l), &r) == nil && r["type"] == "job_run" {
			jobs[fmt.Sprint(r["job"])] = true
		}
	}
	for _, j := range []string{"good.sh", "before-damage.sh", "before-long.sh", "after-nuls.sh"} {
		if !jobs[j] {
			t.Errorf("job %s not analysed; got %v; stderr: %s", j, jobs, stderr.String())
		}
	}
	for _, want := range []string{"syslog.2.gz: damaged at offset", "1 lines longer than", fmt.Sprintf("%d NUL bytes skipped", 2<<20), "missing", "1 of 4 files could not be read"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not say %q: %s", want, stderr.String())
		}
	}
}

// Text output never hands the terminal what a log line smuggled in: ESC,
// BEL and bidi controls come out escaped, in analyze and in tail.
func TestTextOutputEscapesControls(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "syslog")
	writeFile(t, f, "2026-12-01T10:00:01.000000+00:00 h CRON[101]: (root) CMD (/opt/\x1b[31mred\x07.sh)\n"+
		"2026-12-01T10:00:02.000000+00:00 h kernel: Out of memory: Killed process 4242 (x\x1b]0;owned\x07\u202e) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0\n")
	out, err := exec.Command(bin(t), "analyze", "--syslog", f, "--format", "text").Output()
	if err != nil {
		t.Fatal(err)
	}
	tc := exec.Command(bin(t), "tail", "--file", f, "--from-start", "--format", "text", "--state-dir", t.TempDir())
	var tb syncBuffer
	tc.Stdout = &tb
	if err := tc.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(tb.String(), "\n") < 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	tc.Process.Kill()
	tc.Wait()
	tail := []byte(tb.String())
	if strings.Count(string(tail), "\n") < 2 {
		t.Fatalf("tail printed %q", tail)
	}
	for name, b := range map[string][]byte{"analyze": out, "tail": tail} {
		if bytes.ContainsAny(b, "\x1b\x07") || strings.ContainsRune(string(b), 0x202e) {
			t.Errorf("%s --format text wrote raw controls: %q", name, b)
		}
	}
	if !strings.Contains(string(out), `\x1b[31mred\x07`) {
		t.Errorf("analyze text lost the escaped job: %q", out)
	}
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
