package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit"
	"golang.org/x/sys/unix"
)

// The agent under systemd: stderr is a journal stream (JOURNAL_STREAM
// matches its dev:ino), so format "auto" must switch to the native protocol.
// go-systemd's socket path is fixed at link time; this build points it at a
// socket the test owns and reads the real datagrams.
func TestJournalNativeOnTheWire(t *testing.T) {
	dir, err := os.MkdirTemp("", "ec2diag-j") // short: unix socket paths max 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "journal.sock")
	j := testkit.ListenJournal(t, sock)
	b := testkit.Build(t, dir, "-ldflags", "-X github.com/coreos/go-systemd/v22/journal.journalSocket="+sock)

	// Non-blocking so os.NewFile makes them pollable and deadlines work.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	stream := os.NewFile(uintptr(fds[0]), "stream")
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer stream.Close()
	defer peer.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fds[0], &st); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, "host:\n  interval: 100ms\nsinks:\n  summary_interval: 1s\n"+noConsole)
	c := startAgentWith(t, b, []string{fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino)},
		func(cmd *exec.Cmd) { cmd.Stderr = stream },
		"--config", cfg, "--state-dir", filepath.Join(dir, "state"))

	e, ok := j.Find(map[string]string{"MESSAGE": "running in local mode: CloudWatch publishing is off; local sinks only"}, 10*time.Second)
	if !ok {
		t.Fatalf("no local-mode entry reached the journal socket (%d unparsable datagrams)", j.Bad())
	}
	for k, want := range map[string]string{"PRIORITY": "4", "SYSLOG_IDENTIFIER": "ec2diag", "REASON": "IMDS disabled"} {
		if e[k] != want {
			t.Errorf("local-mode entry %s=%q, want %q (entry %v)", k, e[k], want, e)
		}
	}
	if !strings.HasSuffix(e["CODE_FILE"], "run.go") || e["CODE_LINE"] == "" {
		t.Errorf("entry lacks caller fields: %v", e)
	}
	s, ok := j.Find(map[string]string{"EC2DIAG_EVENT": "summary"}, 10*time.Second)
	if !ok {
		t.Fatal("no EC2DIAG_EVENT=summary entry")
	}
	if s["PRIORITY"] != "6" || s["EC2DIAG_COMPONENT"] != "events" || !strings.Contains(s["LATEST"], "mem_available_pct=") {
		t.Errorf("summary entry %v", s)
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	if _, ok := j.Find(map[string]string{"MESSAGE": "agent stopped"}, 15*time.Second); !ok {
		t.Error("no 'agent stopped' entry after SIGTERM")
	}
	// Nothing should have gone to the stream as text: the native protocol
	// carries it all.
	peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 4096)
	if n, _ := peer.Read(buf); n > 0 {
		t.Errorf("agent wrote text to its journal stream: %q", buf[:n])
	}
}
