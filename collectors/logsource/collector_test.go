package logsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
)

// appendOnReady logs a line the moment the collector says it is ready, as
// a cron job starting right after `systemctl start ec2diag` returns would.
type appendOnReady struct {
	path string
	mu   sync.Mutex
	msgs []string
	t    *testing.T
}

func (a *appendOnReady) Emit(_ context.Context, r collectors.Record) error {
	a.mu.Lock()
	a.msgs = append(a.msgs, r.Message)
	a.mu.Unlock()
	if r.Done != nil {
		r.Done()
	}
	return nil
}

func (a *appendOnReady) Ready() {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		a.t.Error(err)
		return
	}
	fmt.Fprintln(f, "2026-11-27T04:09:29.000000+00:00 testhost CRON[31187]: (root) CMD (after ready)")
	f.Close()
}

func (a *appendOnReady) seen(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// On a first start (no checkpoint) the files are followed from their end;
// a line written right after the agent said it was ready must still be
// read (it was lost when readiness came before the files were opened).
func TestLineWrittenRightAfterReadyIsRead(t *testing.T) {
	for i := 0; i < 20; i++ {
		dir := t.TempDir()
		path := filepath.Join(dir, "syslog")
		if err := os.WriteFile(path, []byte("2026-11-27T04:00:00.000000+00:00 testhost CRON[1]: (root) CMD (before start)\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		src := New(Options{Files: []string{path}, StateDir: filepath.Join(dir, "state"), PollInterval: 50 * time.Millisecond})
		em := &appendOnReady{path: path, t: t}
		c := &Collector{Source: src, StatsInterval: time.Hour, Recognize: func(e *Entry) []collectors.Record {
			return []collectors.Record{{Message: string(e.Line.Message)}}
		}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx, em) }()
		deadline := time.Now().Add(5 * time.Second)
		for !em.seen("after ready") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if !em.seen("after ready") {
			t.Fatalf("run %d: the line written right after Ready was never read; read: %q", i, em.msgs)
		}
		if em.seen("before start") {
			t.Fatalf("run %d: a first start read the file's old content: %q", i, em.msgs)
		}
	}
}

// One followed file that stops stops the source with its error (so the
// collector is restarted and says why); it used to stop alone, unsaid,
// while the other files went on.
func TestOneFileFailingStopsTheSource(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "syslog"), filepath.Join(dir, "auth.log")
	os.WriteFile(a, []byte("x\n"), 0o644)
	os.WriteFile(b, []byte("y\n"), 0o644)
	src := New(Options{Files: []string{a, b}, StateDir: filepath.Join(dir, "state"), FromStart: true, PollInterval: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		done <- src.Run(context.Background(), func(batch []Entry, ack func()) error {
			ack()
			if batch[0].Raw.File == b {
				return errors.New("handler refused")
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "auth.log: handler refused") {
			t.Fatalf("Run returned %v, want the failing file named", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("one follower failed and the source ran on without it")
	}
}
