package jobs

import (
	"fmt"
	"sort"
	"time"
)

// Run is one job run: a cron job or a systemd (timer) service.
type Run struct {
	Job     string     `json:"job"`
	Source  string     `json:"source"` // cron, cronie, systemd
	User    string     `json:"user,omitempty"`
	PID     int        `json:"pid,omitempty"` // the job's shell (cron) = its session id
	Command string     `json:"command,omitempty"`
	Unit    string     `json:"unit,omitempty"`
	Host    string     `json:"host,omitempty"`
	Start   time.Time  `json:"-"`
	End     *time.Time `json:"-"` // nil: unknown; never guessed
	Digits  int        `json:"-"`
	// SessionPID is cron's intermediate child (pam session, END, No MTA).
	SessionPID int      `json:"session_pid,omitempty"`
	EndBy      string   `json:"end_by,omitempty"` // what ended it: session_close, end_line, unit_end, exit_status
	Result     string   `json:"result,omitempty"`
	CPU        float64  `json:"cpu_seconds,omitempty"`
	Notes      []string `json:"notes,omitempty"`
	// Ambiguous says the end could not be tied to this run alone (jobs
	// started in the same second interleave their session pids).
	Ambiguous string `json:"ambiguous,omitempty"`
	// EndBound is a time the run certainly ended before (the next boot)
	// when its real end is unknown.
	EndBound *time.Time `json:"-"`
	File     string     `json:"file,omitempty"`
}

// Key identifies a run across re-reads of the same line.
func (r *Run) Key() string {
	return fmt.Sprintf("%s|%s|%d|%s|%d", r.Host, r.Source, r.PID, r.Unit+r.Command, r.Start.UnixNano())
}

// Tracker pairs events into runs. Feed events in time order (per host);
// it holds open runs and the sessions it could not yet pair.
type Tracker struct {
	Namer *Namer
	// OnStart and OnEnd, if set, see runs as they open and close.
	OnStart func(*Run)
	OnEnd   func(*Run)
	// OnCancel sees a run that turned out not to be a job: a systemd unit
	// that said "Started" is a service that keeps running.
	OnCancel func(*Run)

	open     []*Run // not ended yet
	sessions []*session
	closed   []*Run // kept for Finish/Runs
	keep     bool
}

type session struct {
	pid    int
	user   string
	opened time.Time
	run    *Run
}

// NewTracker returns a tracker; keep makes it remember closed runs for Runs().
func NewTracker(n *Namer, keep bool) *Tracker {
	if n == nil {
		n = &Namer{}
	}
	return &Tracker{Namer: n, keep: keep}
}

// pairWindow is how far apart a session open and a CMD line may be logged:
// both happen within the same fork, but rsyslog stamps reception time.
const pairWindow = 2 * time.Second

// Feed processes one event.
func (t *Tracker) Feed(ev *Event) {
	switch ev.Type {
	case TypeCronCmd:
		r := &Run{Job: t.Namer.Name(ev.Command), Source: ev.Source, User: ev.User, PID: ev.JobPID, Command: ev.Command,
			Host: ev.Host, Start: ev.Time, Digits: ev.Digits, File: ev.File}
		if ev.JobPID != ev.PID {
			r.SessionPID = ev.PID // -L 8: the CMD line came from the session child
		}
		t.start(r)
		t.pairSessions(ev.Time)
	case TypeSessionOpen:
		if ev.Source == "pam" {
			t.sessions = append(t.sessions, &session{pid: ev.PID, user: ev.User, opened: ev.Time})
			t.pairSessions(ev.Time)
		}
	case TypeSessionClose:
		for i, s := range t.sessions {
			if s.pid == ev.PID {
				t.sessions = append(t.sessions[:i], t.sessions[i+1:]...)
				if s.run != nil {
					t.end(s.run, ev.Time, "session_close", "")
				} else {
					t.ambiguousClose(s, ev)
				}
				return
			}
		}
	case TypeCronEnd:
		if r := t.findCron(ev); r != nil {
			t.end(r, ev.Time, "end_line", "")
		}
	case TypeCronFailed:
		for _, r := range t.open {
			if r.PID == ev.JobPID && r.Source != "systemd" {
				t.end(r, ev.Time, "exit_status", ev.Result)
				return
			}
		}
	case TypeCronNote:
		for _, r := range t.open {
			if r.SessionPID != 0 && r.SessionPID == ev.PID || r.PID == ev.PID {
				r.Notes = append(r.Notes, ev.Message)
				return
			}
		}
	case TypeUnitStart:
		name := ev.Unit
		if name == "" {
			name = ev.Message
		}
		t.start(&Run{Job: trimService(name), Source: "systemd", Unit: ev.Unit, Command: ev.Message, Host: ev.Host,
			Start: ev.Time, Digits: ev.Digits, File: ev.File})
	case TypeUnitStarted:
		// Every unit says "Starting" first; only oneshots (what timers
		// run) stay activating until they are done. One that started and
		// keeps running is a service: at boot that is rsyslog, dbus, the
		// agent itself, which must not read as job runs.
		if r := t.findUnit(ev); r != nil {
			t.remove(r)
			if t.OnCancel != nil {
				t.OnCancel(r)
			}
		}
	case TypeUnitEnd:
		if r := t.findUnit(ev); r != nil {
			t.end(r, ev.Time, "unit_end", ev.Result)
		}
	case TypeUnitCPU:
		// Logged right after the end: attach to the newest run of the unit.
		for i := len(t.closed) - 1; i >= 0; i-- {
			if r := t.closed[i]; r.Unit == ev.Unit && r.Source == "systemd" {
				r.CPU = ev.CPU
				return
			}
		}
		if r := t.findUnit(ev); r != nil {
			r.CPU = ev.CPU
		}
	case TypeBoot, TypeCronDaemon:
		if ev.Type == TypeBoot {
			t.Boot(ev.Time)
		}
	}
}

func trimService(s string) string {
	if len(s) > 8 && s[len(s)-8:] == ".service" {
		return s[:len(s)-8]
	}
	return s
}

func (t *Tracker) start(r *Run) {
	t.open = append(t.open, r)
	if t.OnStart != nil {
		t.OnStart(r)
	}
}

func (t *Tracker) remove(r *Run) {
	for i, o := range t.open {
		if o == r {
			t.open = append(t.open[:i], t.open[i+1:]...)
			return
		}
	}
}

func (t *Tracker) end(r *Run, at time.Time, by, result string) {
	t.remove(r)
	at2 := at
	r.End, r.EndBy = &at2, by
	if result != "" {
		r.Result = result
	}
	if t.keep {
		t.closed = append(t.closed, r)
	} else {
		// Keep a few for late "Consumed" lines.
		t.closed = append(t.closed, r)
		if len(t.closed) > 64 {
			t.closed = t.closed[len(t.closed)-64:]
		}
	}
	if t.OnEnd != nil {
		t.OnEnd(r)
	}
}

// pairSessions ties unpaired sessions to unpaired cron runs when exactly
// one of each falls in the same window: the pid arithmetic (session = CMD
// pid - 1) fails when jobs start in the same second, so it is never used.
func (t *Tracker) pairSessions(now time.Time) {
	var ss []*session
	for _, s := range t.sessions {
		if s.run == nil && absDur(now.Sub(s.opened)) <= pairWindow {
			ss = append(ss, s)
		}
	}
	var rs []*Run
	for _, r := range t.open {
		if r.Source != "systemd" && r.SessionPID == 0 && absDur(now.Sub(r.Start)) <= pairWindow && !t.paired(r) {
			rs = append(rs, r)
		}
	}
	// Group by user: a root job cannot own a session of another user.
	byUser := map[string][2]int{}
	for _, s := range ss {
		c := byUser[s.user]
		c[0]++
		byUser[s.user] = c
	}
	for _, r := range rs {
		c := byUser[r.User]
		c[1]++
		byUser[r.User] = c
	}
	for user, c := range byUser {
		if c[0] == 1 && c[1] == 1 {
			var s *session
			var r *Run
			for _, x := range ss {
				if x.user == user {
					s = x
				}
			}
			for _, x := range rs {
				if x.User == user {
					r = x
				}
			}
			s.run, r.SessionPID = r, s.pid
		} else if c[0] > 1 && c[1] > 1 {
			for _, r := range rs {
				if r.User == user {
					r.Ambiguous = fmt.Sprintf("%d %s jobs started together; their session lines cannot be told apart", c[1], user)
				}
			}
		}
	}
}

func (t *Tracker) paired(r *Run) bool {
	for _, s := range t.sessions {
		if s.run == r {
			return true
		}
	}
	return false
}

// ambiguousClose: a session ended that was never tied to one run. If all
// candidates run the same command, note the end on none of them: the end
// time belongs to one of them, but which one is not known.
func (t *Tracker) ambiguousClose(s *session, ev *Event) {
	for _, r := range t.open {
		if r.Ambiguous != "" && r.User == s.user && absDur(r.Start.Sub(s.opened)) <= pairWindow {
			r.Notes = append(r.Notes, fmt.Sprintf("one of the jobs started together ended at %s", ev.Time.Format(time.RFC3339)))
		}
	}
}

func (t *Tracker) findCron(ev *Event) *Run {
	var match []*Run
	for _, r := range t.open {
		if r.Source == "systemd" {
			continue
		}
		if ev.JobPID != 0 && r.PID == ev.JobPID {
			return r
		}
		if r.Command == ev.Command && r.User == ev.User && (r.SessionPID == 0 || r.SessionPID == ev.PID) {
			match = append(match, r)
		}
	}
	if len(match) == 1 {
		return match[0]
	}
	for _, r := range match {
		r.Ambiguous = "several runs of this command were open when an end line came"
	}
	return nil
}

func (t *Tracker) findUnit(ev *Event) *Run {
	for i := len(t.open) - 1; i >= 0; i-- {
		r := t.open[i]
		if r.Source == "systemd" && ((ev.Unit != "" && r.Unit == ev.Unit) || (ev.Unit == "" && ev.Message != "" && r.Command == ev.Message)) {
			return r
		}
	}
	return nil
}

// Boot closes every open run: they ended before the boot, when is unknown.
func (t *Tracker) Boot(at time.Time) {
	for _, r := range t.open {
		b := at
		r.EndBound = &b
		r.Notes = append(r.Notes, "end not logged before the next boot")
		if t.keep {
			t.closed = append(t.closed, r)
		}
		if t.OnEnd != nil {
			t.OnEnd(r)
		}
	}
	t.open, t.sessions = nil, nil
}

// Open returns the runs not yet ended.
func (t *Tracker) Open() []*Run { return t.open }

// Runs returns every run seen (with keep), ended or not, by start time.
func (t *Tracker) Runs() []*Run {
	all := append(append([]*Run(nil), t.closed...), t.open...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Start.Before(all[j].Start) })
	return all
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
