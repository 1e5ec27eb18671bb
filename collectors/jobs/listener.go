package jobs

import (
	"fmt"

	"strconv"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/redact"
	"github.com/ec2diag/ec2diag/internal/syslog"
)

// Listener hears what the log says happened, as it is read: the flight
// recorder implements it. Calls come from the log reader's goroutines and
// must not block.
type Listener interface {
	// JobStarted: a job run began (a CMD line, a unit starting). The run
	// is the tracker's; copy what is kept.
	JobStarted(r *Run)
	// JobEnded: the log says run id ended at t.
	JobEnded(id string, t time.Time)
	// JobCancelled: run id turned out not to be a job (a unit that
	// started and keeps running is a service).
	JobCancelled(id string)
	// KernelEvent: the kernel logged an OOM kill, a hung task, a soft
	// lockup or an RCU stall.
	KernelEvent(ev KernelEvent)
	// SSHLogin: an sshd logged a login.
	SSHLogin(l Login)
	// BootFinished: systemd (PID 1) logged "Startup finished".
	BootFinished(t time.Time)
}

// KernelEvent is a kernel event the logs told of.
type KernelEvent struct {
	Time    time.Time
	Type    string // TypeOOMKill, TypeHungTask, TypeSoftLockup, TypeRCUStall
	PID     int    // the victim or the blocked task
	Comm    string
	Message string // escaped and bounded
	// FromKernel: a trusted source (the journal's _TRANSPORT=kernel) says
	// the kernel logged it. Otherwise only the log line says so, which
	// anyone can write: the recorder checks it against the kernel's own
	// counters before it counts as evidence.
	FromKernel bool
}

// Login is an SSH login: sshd process PID logged that User logged in from
// Addr at Time.
type Login struct {
	PID  int
	User string
	Addr string
	Time time.Time
}

// MaxMessage bounds a log message lifted into a record.
const MaxMessage = 1024

// Events is the agent's reading of the log: it recognises each line,
// pairs job starts and ends, tells a Listener what they mean and turns
// what sinks should see into records. Safe for concurrent use (the log
// files are read concurrently).
type Events struct {
	Listener Listener
	// Clock times the bursts of warnings; nil is the system clock.
	Clock  clock.Clock
	mu     sync.Mutex
	tr     *Tracker
	out    []collectors.Record
	stats  EventStats
	bursts map[string]*burst
}

// burst is one event type's warnings in the current window.
type burst struct {
	start      time.Time
	n          int
	suppressed int
	source     string
}

// A kernel event goes to the journal as a warning at most burstMax times
// per burstWindow per type; the rest of a burst is said in one line when
// the window is over: a million forged "Out of memory" lines made 273,000
// journal entries.
const (
	burstMax    = 10
	burstWindow = time.Minute
)

// allow says whether a record of typ goes out now, and emits the summary
// of any burst whose window is over.
func (g *Events) allow(typ, source string) bool {
	now := clock.Or(g.Clock).Now()
	if g.bursts == nil {
		g.bursts = map[string]*burst{}
	}
	for t, b := range g.bursts {
		if now.Sub(b.start) < burstWindow {
			continue
		}
		if b.suppressed > 0 {
			g.stats.Suppressed += uint64(b.suppressed)
			g.out = append(g.out, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.Source(b.source), Type: collectors.TypeLogSummary,
				Message: fmt.Sprintf("%d more %s lines in %s were not logged one by one (a burst)", b.suppressed, t, now.Sub(b.start).Round(time.Second)),
				Dims:    map[string]string{"level": "warn", "event": t, "suppressed": strconv.Itoa(b.suppressed)}})
		}
		delete(g.bursts, t)
	}
	b := g.bursts[typ]
	if b == nil {
		b = &burst{start: now, source: source}
		g.bursts[typ] = b
	}
	if b.n < burstMax {
		b.n++
		return true
	}
	b.suppressed++
	return false
}

// EventStats count lines the agent did not take at their word.
type EventStats struct {
	// NotPID1 counts systemd lines that were not the system manager's;
	// Suppressed kernel event lines a burst left out of the journal.
	NotPID1, Suppressed uint64
}

// Stats returns the counts so far.
func (g *Events) Stats() EventStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

// fromPID1 reports whether a systemd line is the system manager's: by the
// journal's word when it is the source, else by the line's own tag.
func fromPID1(ev *Event, o syslog.Origin) bool {
	if o.Known {
		return o.PID == 1 && o.Comm == "systemd"
	}
	return ev.PID == 1
}

func isKernel(typ string) bool {
	switch typ {
	case TypeOOMKill, TypeOOMInvoked, TypeHungTask, TypeSoftLockup, TypeRCUStall:
		return true
	}
	return false
}

// NewEvents reads the log for l, naming jobs with n.
func NewEvents(n *Namer, l Listener) *Events {
	g := &Events{Listener: l, tr: NewTracker(n, false)}
	g.tr.OnStart = func(r *Run) {
		l.JobStarted(r)
		if r.Source == "systemd" {
			// Not yet known to be a job: most units that start are
			// services. Its summary comes if it finishes as a job.
			return
		}
		g.out = append(g.out, collectors.Record{Time: r.Start, Kind: collectors.KindEvent, Source: collectors.Source(r.Source), Type: collectors.TypeJobStart,
			Message: "job " + r.Job + " started",
			Dims:    map[string]string{"job": r.Job, "user": r.User, "pid": strconv.Itoa(r.PID), "unit": r.Unit, "command": r.Command}})
	}
	g.tr.OnEnd = func(r *Run) {
		if r.End != nil {
			l.JobEnded(r.Key(), *r.End)
		}
	}
	g.tr.OnCancel = func(r *Run) { l.JobCancelled(r.Key()) }
	return g
}

// Line reads one parsed log line (from file at offset; origin is who
// logged it when a trusted source says) and returns the records it makes
// for the sinks.
func (g *Events) Line(line *syslog.Line, origin syslog.Origin, file string, offset int64) []collectors.Record {
	var ev Event
	if !Recognize(line, &ev) {
		return nil
	}
	ev.File, ev.Offset = file, offset
	if ev.Type == TypeSSHLogin {
		g.Listener.SSHLogin(Login{PID: ev.PID, User: ev.User, Addr: ev.Addr, Time: ev.Time})
		return nil
	}
	if ev.Source == "systemd" && !fromPID1(&ev, origin) {
		// A unit's start, end or boot's end is news only from the system
		// manager: "systemd[1]: Starting x.service..." can be logged by
		// anyone, and a user's manager or a container's systemd runs
		// units of its own.
		g.mu.Lock()
		g.stats.NotPID1++
		g.mu.Unlock()
		return nil
	}
	if ev.Type == TypeStartupDone {
		g.Listener.BootFinished(ev.Time)
	}
	if isKernel(ev.Type) {
		ev.Verified = origin.Kernel()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.out = g.out[:0]
	g.tr.Feed(&ev)
	if ev.Message != "" {
		ev.Message, _ = redact.Text(ev.Message)
		ev.Message = escape.Truncate(ev.Message, MaxMessage)
	}
	switch ev.Type {
	case TypeOOMKill, TypeOOMInvoked, TypeHungTask, TypeSoftLockup, TypeRCUStall, TypeENA, TypeLinesLost:
		dims := map[string]string{"level": "warn"}
		if ev.Comm != "" {
			dims["comm"] = ev.Comm
		}
		if ev.Victim != 0 {
			dims["victim_pid"] = strconv.Itoa(ev.Victim)
		}
		if ev.Iface != "" {
			dims["iface"] = ev.Iface
		}
		if !ev.Verified && isKernel(ev.Type) {
			dims["origin"] = "log line" // the recorder checks it against the kernel's counters
		}
		if g.allow(ev.Type, ev.Source) {
			g.out = append(g.out, collectors.Record{Time: ev.Time, Kind: collectors.KindEvent, Source: collectors.Source(ev.Source), Type: collectors.Type(ev.Type), Message: ev.Message, Dims: dims})
		}
		if ev.Type != TypeENA && ev.Type != TypeLinesLost && ev.Type != TypeOOMInvoked {
			pid := ev.Victim
			if pid == 0 {
				pid = ev.JobPID
			}
			g.Listener.KernelEvent(KernelEvent{Time: ev.Time.UTC(), Type: ev.Type, PID: pid, Comm: ev.Comm, Message: escape.Truncate(escape.Control(ev.Message), 200),
				FromKernel: ev.Verified})
		}
	}
	return append([]collectors.Record(nil), g.out...)
}
