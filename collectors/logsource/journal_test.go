package logsource

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// Lines as `journalctl -o json` prints them on Debian 12 (systemd 252).
func TestParseJournalJSON(t *testing.T) {
	for _, tc := range []struct {
		name, line      string
		prog, msg, host string
		pid             int
		t               time.Time
		wantErr         bool
	}{
		{"cron CMD", `{"__CURSOR":"s=8f0f;i=1a2;b=77;m=1f;t=624e;x=9c","__REALTIME_TIMESTAMP":"1729486141801940","__MONOTONIC_TIMESTAMP":"1234","_BOOT_ID":"77","SYSLOG_FACILITY":"9","SYSLOG_IDENTIFIER":"CRON","SYSLOG_PID":"2978","_PID":"2978","_COMM":"cron","_HOSTNAME":"ip-172-31-20-5","PRIORITY":"6","MESSAGE":"(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)","_TRANSPORT":"syslog"}`,
			"CRON", "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)", "ip-172-31-20-5", 2978, time.UnixMicro(1729486141801940), false},
		{"kernel, no SYSLOG_PID", `{"__CURSOR":"c2","__REALTIME_TIMESTAMP":"1729486141000000","SYSLOG_IDENTIFIER":"kernel","_HOSTNAME":"h","MESSAGE":"Out of memory: Killed process 4242 (java)","_TRANSPORT":"kernel"}`,
			"kernel", "Out of memory: Killed process 4242 (java)", "h", 0, time.UnixMicro(1729486141000000), false},
		{"binary MESSAGE as bytes", `{"__CURSOR":"c3","__REALTIME_TIMESTAMP":"1729486141000000","_COMM":"app","_PID":"7","MESSAGE":[104,105,255]}`,
			"app", "hi\xff", "", 7, time.UnixMicro(1729486141000000), false},
		{"null MESSAGE", `{"__CURSOR":"c4","__REALTIME_TIMESTAMP":"1","MESSAGE":null}`, "", "", "", 0, time.UnixMicro(1), false},
		{"bad timestamp", `{"__CURSOR":"c5","__REALTIME_TIMESTAMP":"soon","MESSAGE":"x"}`, "", "", "", 0, time.Time{}, true},
		{"not JSON", `{"__CURSOR":`, "", "", "", 0, time.Time{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseJournalJSON([]byte(tc.line))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if string(e.Line.Program) != tc.prog || string(e.Line.Message) != tc.msg || string(e.Line.Host) != tc.host || e.Line.PID != tc.pid || !e.Line.Time.Equal(tc.t) || e.Cursor == "" {
				t.Errorf("got prog=%q msg=%q host=%q pid=%d t=%v cursor=%q", e.Line.Program, e.Line.Message, e.Line.Host, e.Line.PID, e.Line.Time, e.Cursor)
			}
		})
	}
}

func FuzzParseJournalJSON(f *testing.F) {
	f.Add([]byte(`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":[1,2,300]}`))
	f.Fuzz(func(t *testing.T, b []byte) { ParseJournalJSON(b) })
}

// stallingJournalctl is a journalctl whose --follow prints nothing and
// never wakes up, as seen under the hardened unit in a container, while
// reading without --follow works; -n 1 reports the newest entry as the
// real one does.
const stallingJournalctl = `#!/bin/sh
E="$JOURNAL_ENTRIES"
case " $* " in
*" -n 1 "*) tail -n 1 "$E"; exit 0 ;;
esac
after=""
follow=""
while [ $# -gt 0 ]; do [ "$1" = --after-cursor ] && after="$2"; [ "$1" = --follow ] && follow=1; shift; done
# Under the broken sandbox --follow printed not even its backlog.
[ -n "$follow" ] && exec sleep 1000
if [ -n "$after" ]; then
  awk -v c="\"__CURSOR\":\"$after\"" 'found {print} index($0, c) {found=1}' "$E"
fi
`

// workingJournalctl follows like the real one: what exists after the
// cursor, then every new entry as it is written.
const workingJournalctl = `#!/bin/sh
E="$JOURNAL_ENTRIES"
case " $* " in
*" -n 1 "*) tail -n 1 "$E"; exit 0 ;;
esac
after=""
while [ $# -gt 0 ]; do [ "$1" = --after-cursor ] && after="$2"; shift; done
n=$(awk -v c="\"__CURSOR\":\"$after\"" 'index($0, c) {print NR}' "$E")
exec tail -n +$((n+1)) -f "$E"
`

// rejectingJournalctl is workingJournalctl that, like the real one, fails
// on a cursor it cannot seek to.
const rejectingJournalctl = `#!/bin/sh
E="$JOURNAL_ENTRIES"
case " $* " in
*" -n 1 "*) tail -n 1 "$E"; exit 0 ;;
esac
after=""
while [ $# -gt 0 ]; do [ "$1" = --after-cursor ] && after="$2"; shift; done
n=0
if [ -n "$after" ]; then
  n=$(awk -v c="\"__CURSOR\":\"$after\"" 'index($0, c) {print NR}' "$E")
  if [ -z "$n" ]; then echo "Failed to seek to cursor: Invalid argument" >&2; exit 1; fi
fi
exec tail -n +$((n+1)) -f "$E"
`

// A saved cursor journalctl rejects (a damaged state file) used to wedge
// the journal source for good; now it is dropped, said, counted, and
// reading goes on from the journal's end.
func TestJournalRejectedCursorDoesNotWedge(t *testing.T) {
	if _, err := exec.LookPath("journalctl"); err == nil {
		// The fake must fail the way the real one does.
		out, _ := exec.Command("journalctl", "--after-cursor", "garbage", "-n", "1", "--no-pager").CombinedOutput()
		if !strings.Contains(string(out), "Failed to seek to cursor") {
			t.Fatalf("the real journalctl says %q for a bad cursor; the reader looks for \"Failed to seek to cursor\"", out)
		}
	}
	src, got := runFakeJournal(t, rejectingJournalctl, "garbage;not-a-cursor")
	for i := 1; i <= 5; i++ {
		if c := got[fmt.Sprintf("(root) CMD (job%d)", i)]; c != 1 {
			t.Errorf("job%d delivered %d times, want once (got %v)", i, c, got)
		}
	}
	if g := src.Stats().Gaps; g != 1 {
		t.Errorf("gaps %d, want the dropped cursor counted once", g)
	}
}

func TestCursorTime(t *testing.T) {
	c := "s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece7;b=6c7c6013a8674b1b9f6f0c4c6e3b9f8a;m=7e1e9b7a;t=5f0a1b2c3d4e5;x=8e5fdf2d9c9e2c1a"
	if got := cursorTime(c); got.UnixMicro() != 0x5f0a1b2c3d4e5 {
		t.Errorf("cursorTime = %v", got)
	}
	if !cursorTime("garbage").IsZero() {
		t.Error("garbage has no time")
	}
}

func TestJournalFollowStallIsDetectedAndNothingLost(t *testing.T) {
	src, got := runFakeJournal(t, stallingJournalctl, "c0")
	for i := 1; i <= 5; i++ {
		if c := got[fmt.Sprintf("(root) CMD (job%d)", i)]; c != 1 {
			t.Errorf("job%d delivered %d times, want once (got %v)", i, c, got)
		}
	}
	if got["(root) CMD (job0)"] != 0 {
		t.Error("entry before the cursor delivered again")
	}
	if src.journal.stalls.Load() == 0 {
		t.Error("stall never detected")
	}
}

// A follower that works is never taken for a stalled one.
func TestJournalProbeLeavesAWorkingFollowerAlone(t *testing.T) {
	src, got := runFakeJournal(t, workingJournalctl, "c0")
	if len(got) != 5 {
		t.Errorf("delivered %v, want job1..job5 once", got)
	}
	if n := src.journal.stalls.Load(); n != 0 {
		t.Errorf("%d stalls reported for a working follower", n)
	}
}

func runFakeJournal(t *testing.T, script, cursor string) (*Source, map[string]int) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "journalctl"), []byte(script), 0o755)
	entries := filepath.Join(dir, "entries")
	add := func(i int) {
		f, _ := os.OpenFile(entries, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		fmt.Fprintf(f, `{"__CURSOR":"c%d","__REALTIME_TIMESTAMP":"%d","_HOSTNAME":"h","SYSLOG_IDENTIFIER":"CRON","SYSLOG_PID":"%d","MESSAGE":"(root) CMD (job%d)"}`+"\n", i, time.Now().UnixMicro(), 100+i, i)
		f.Close()
	}
	add(0)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("JOURNAL_ENTRIES", entries)
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o755)
	os.WriteFile(filepath.Join(state, "journal.cursor"), []byte(cursor+"\n"), 0o644)

	src := New(Options{Journal: true, StateDir: state, JournalProbe: 150 * time.Millisecond, Log: zap.NewNop()})
	var mu sync.Mutex
	got := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(b []Entry, ack func()) error {
			mu.Lock()
			for _, e := range b {
				got[string(e.Line.Message)]++
			}
			mu.Unlock()
			ack()
			return nil
		})
	}()
	time.Sleep(200 * time.Millisecond)
	for i := 1; i <= 5; i++ {
		add(i)
		time.Sleep(100 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a few more probes
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return src, got
}
