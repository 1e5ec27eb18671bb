package logging

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap/zapcore"
)

// SendFunc has the signature of journal.Send so tests can capture entries
// without a journald; one test also checks the real datagrams.
type SendFunc func(message string, priority journal.Priority, vars map[string]string) error

// PriorityKey is a field that overrides the level's journal priority. The
// spike onset uses it with journal.PriCrit: journald syncs its files at
// once for CRIT and above, which is the point of writing it before a hang.
const PriorityKey = "journal_priority"

// journalCore is a zapcore.Core speaking journald's native protocol so that
// every zap field becomes an indexed journal field (journalctl JOB=...).
// No maintained zap-journald core could be had; this is small enough to own.
type journalCore struct {
	zapcore.LevelEnabler
	send   SendFunc
	ident  string
	fields map[string]string // rendered by With, shared read-only

	errOnce *sync.Once
	async   *asyncSender // nil when send is called directly
}

// NewJournalCore returns a core sending to journald through send, from a
// queue of QueueLen entries: logging never waits for journald.
func NewJournalCore(level zapcore.LevelEnabler, ident string, send SendFunc) zapcore.Core {
	a := newAsyncSender(send, QueueLen)
	return &journalCore{LevelEnabler: level, send: a.Send, async: a, ident: ident, fields: map[string]string{}, errOnce: &sync.Once{}}
}

func (c *journalCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = make(map[string]string, len(c.fields)+len(fields))
	for k, v := range c.fields {
		clone.fields[k] = v
	}
	render(fields, clone.fields)
	return &clone
}

func (c *journalCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *journalCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	vars := make(map[string]string, len(c.fields)+len(fields)+6)
	for k, v := range c.fields {
		vars[k] = v
	}
	render(fields, vars)
	prio := levelPriority(ent.Level)
	if p, ok := vars[fieldName(PriorityKey)]; ok {
		if n, err := strconv.Atoi(p); err == nil && n >= 0 && n <= 7 {
			prio = journal.Priority(n)
		}
		delete(vars, fieldName(PriorityKey))
	}
	vars["SYSLOG_IDENTIFIER"] = c.ident
	if ent.LoggerName != "" {
		vars["EC2DIAG_COMPONENT"] = ent.LoggerName
	}
	if ent.Caller.Defined {
		vars["CODE_FILE"] = ent.Caller.File
		vars["CODE_LINE"] = strconv.Itoa(ent.Caller.Line)
		vars["CODE_FUNC"] = ent.Caller.Function
	}
	if ent.Stack != "" {
		vars["STACKTRACE"] = ent.Stack
	}
	err := c.send(ent.Message, prio, vars)
	if ent.Level > zapcore.ErrorLevel {
		// Panic and Fatal end the process next: let the entry get out.
		c.Sync()
	}
	if err != nil {
		// The log has nowhere else to go: say so once on stderr, which
		// systemd also captures, rather than fail every caller.
		c.errOnce.Do(func() {
			fmt.Fprintf(os.Stderr, "ec2diag: cannot write to journald: %v\n", err)
		})
	}
	return err
}

// Sync waits, a little, for the queue to reach journald: zap calls it
// before the process exits, and the last entries say why.
func (c *journalCore) Sync() error {
	if c.async == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), syncWait)
	defer cancel()
	return c.async.Sync(ctx)
}

func levelPriority(l zapcore.Level) journal.Priority {
	switch {
	case l <= zapcore.DebugLevel:
		return journal.PriDebug
	case l == zapcore.InfoLevel:
		return journal.PriInfo
	case l == zapcore.WarnLevel:
		return journal.PriWarning
	case l == zapcore.ErrorLevel:
		return journal.PriErr
	case l == zapcore.FatalLevel:
		return journal.PriEmerg
	}
	return journal.PriCrit // DPanic, Panic
}

// fieldName maps a zap key to a valid journal field name: upper case,
// [A-Z0-9_] only, no leading underscore (journald drops such fields
// silently, and leading "_" is reserved for trusted fields).
func fieldName(k string) string {
	b := []byte(strings.ToUpper(k))
	for i, ch := range b {
		if !(ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_') {
			b[i] = '_'
		}
	}
	s := strings.TrimLeft(string(b), "_")
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		s = "F_" + s
	}
	return s
}

func render(fields []zapcore.Field, into map[string]string) {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	for k, v := range enc.Fields {
		into[fieldName(k)] = valueString(v)
	}
}

func valueString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case fmt.Stringer:
		return x.String()
	case []byte:
		return string(x)
	case map[string]any, []any:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
	return fmt.Sprint(v)
}
