package logging

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A journald that reads nothing (its disk stalled) must not stop the
// goroutine that logs; what did not fit is counted and said afterwards.
func TestJournaldThatTakesNothingStopsNoLogger(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []sent
	send := func(m string, p journal.Priority, v map[string]string) error {
		<-release
		mu.Lock()
		defer mu.Unlock()
		got = append(got, sent{m, p, v})
		return nil
	}
	log := zap.New(NewJournalCore(zapcore.DebugLevel, "ec2diag", send))
	const total = 5 * QueueLen
	done := make(chan struct{})
	go func() {
		for i := 0; i < total; i++ {
			log.Info("entry", zap.Int("n", i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("logging waited for a journald that takes nothing")
	}
	if err := log.Sync(); err == nil {
		t.Error("Sync reported success with nothing delivered")
	}
	close(release)
	if err := log.Sync(); err != nil {
		t.Fatalf("Sync after journald came back: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	kept, dropped, notices := 0, 0, 0
	for _, s := range got {
		if s.vars["EC2DIAG_EVENT"] == "log_dropped" {
			notices++
			n, err := strconv.Atoi(s.vars["DROPPED"])
			if err != nil || s.prio != journal.PriWarning || s.vars["SYSLOG_IDENTIFIER"] != "ec2diag" {
				t.Errorf("drop notice: %+v", s)
			}
			dropped += n
			continue
		}
		if s.vars["N"] != strconv.Itoa(kept) {
			t.Fatalf("entry %d is n=%s: the queue kept entries out of order", kept, s.vars["N"])
		}
		kept++
	}
	if notices != 1 || kept+dropped != total || kept < QueueLen {
		t.Errorf("kept %d + dropped %d (in %d notices), want %d in all, at least %d kept, one notice", kept, dropped, notices, total, QueueLen)
	}
}
