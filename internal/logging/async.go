package logging

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// QueueLen is how many entries wait for journald before new ones are
// dropped. The agent writes a few entries a minute when all is well and a
// burst of some dozens at a spike's onset; 1024 holds many such bursts.
const QueueLen = 1024

// syncWait bounds Sync: a journald that takes nothing must not keep the
// agent from exiting.
const syncWait = 2 * time.Second

type entry struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

// asyncSender puts a queue between the agent and journald. journald writes
// its files on the same disks the agent watches: when one stalls, journald
// stops reading its socket, the socket's queue fills, and a blocking send
// would stop whichever goroutine logged, the flight recorder included,
// exactly when it is needed. Entries that do not fit are counted and
// reported in one entry once journald takes entries again.
type asyncSender struct {
	send    SendFunc
	q       chan entry
	dropped atomic.Uint64
	queued  atomic.Int64 // enqueued and not yet handed to send
	err     atomic.Pointer[error]
}

func newAsyncSender(send SendFunc, n int) *asyncSender {
	// The goroutine lives as long as the process: closing the queue
	// would race every logger still holding the core.
	a := &asyncSender{send: send, q: make(chan entry, n)}
	go a.run()
	return a
}

// Send queues the entry, never waiting. It returns the last error journald
// gave, so the core can report a dead socket once.
func (a *asyncSender) Send(msg string, prio journal.Priority, vars map[string]string) error {
	a.queued.Add(1)
	select {
	case a.q <- entry{msg, prio, vars}:
	default:
		a.queued.Add(-1)
		a.dropped.Add(1)
	}
	if p := a.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (a *asyncSender) run() {
	for e := range a.q {
		a.deliver(e)
		a.queued.Add(-1)
		if n := a.dropped.Swap(0); n > 0 {
			a.deliver(entry{"journald did not take log entries in time: dropped", journal.PriWarning, map[string]string{
				"SYSLOG_IDENTIFIER": e.vars["SYSLOG_IDENTIFIER"],
				fieldName(KeyEvent): "log_dropped",
				"DROPPED":           strconv.FormatUint(n, 10),
			}})
		}
	}
}

func (a *asyncSender) deliver(e entry) {
	err := a.send(e.msg, e.prio, e.vars)
	if err != nil {
		a.err.Store(&err)
	} else if a.err.Load() != nil {
		a.err.Store(nil)
	}
}

// Dropped is how many entries were dropped and not yet reported.
func (a *asyncSender) Dropped() uint64 { return a.dropped.Load() }

// Sync waits until every queued entry is handed to journald, or ctx ends.
func (a *asyncSender) Sync(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for a.queued.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
