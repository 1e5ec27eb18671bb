package logging

import (
	"errors"
	"sync"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
)

type sent struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

// capture returns a journal logger and a function that waits for what was
// logged to reach the send function and returns it.
func capture(t *testing.T, level string) (*zap.Logger, func() []sent) {
	var mu sync.Mutex
	var got []sent
	log, _, format, err := New(Options{Level: level, Format: "journal", Ident: "ec2diag", Send: func(m string, p journal.Priority, v map[string]string) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, sent{m, p, v})
		return nil
	}})
	if err != nil || format != "journal" {
		t.Fatalf("New: %v %s", err, format)
	}
	return log, func() []sent {
		if err := log.Sync(); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		return append([]sent(nil), got...)
	}
}

func TestJournalCoreFieldsAndPriorities(t *testing.T) {
	log, sentSoFar := capture(t, "debug")
	l := log.Named("spike").With(zap.String(KeyJob, "debian-sa1"))
	l.Debug("d")
	l.Info("i", zap.Int(KeyPID, 2978), zap.String("weird key-1", "x"), zap.String("_hidden", "y"), zap.String("9lives", "z"))
	l.Warn("w", zap.Error(errors.New("boom")))
	l.Error("e")
	l.Warn("onset", zap.Int(PriorityKey, int(journal.PriCrit)), zap.String(KeyEvent, "spike"))
	l.Info("multi\nline")
	wantPrio := []journal.Priority{7, 6, 4, 3, 2, 6}
	all := sentSoFar()
	got := &all
	if len(*got) != len(wantPrio) {
		t.Fatalf("sent %d entries, want %d", len(*got), len(wantPrio))
	}
	for i, s := range *got {
		if s.prio != wantPrio[i] {
			t.Errorf("entry %d %q priority %d, want %d", i, s.msg, s.prio, wantPrio[i])
		}
		if s.vars["JOB"] != "debian-sa1" || s.vars["SYSLOG_IDENTIFIER"] != "ec2diag" || s.vars["EC2DIAG_COMPONENT"] != "spike" {
			t.Errorf("entry %d lacks With/ident/component fields: %v", i, s.vars)
		}
	}
	info := (*got)[1].vars
	for k, want := range map[string]string{"PID": "2978", "WEIRD_KEY_1": "x", "HIDDEN": "y", "F_9LIVES": "z"} {
		if info[k] != want {
			t.Errorf("field %s = %q, want %q (%v)", k, info[k], want, info)
		}
	}
	if (*got)[2].vars["ERROR"] != "boom" {
		t.Errorf("error field: %v", (*got)[2].vars)
	}
	if _, ok := (*got)[4].vars["JOURNAL_PRIORITY"]; ok || (*got)[4].vars["EC2DIAG_EVENT"] != "spike" {
		t.Errorf("priority override leaked or event missing: %v", (*got)[4].vars)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"job": "JOB", "ec2diag_event": "EC2DIAG_EVENT", "a.b": "A_B", "__x": "X", "": "F_", "1a": "F_1A", "aü": "A__"} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}
