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

	gone   bool // ended or given up: no longer in the tracker's open set
	paired bool // tied to a pam session
}

// Key identifies a run across re-reads of the same line: its host, source,
// pid (a cron job's) or unit (a timer's) and start. Never its command: the
// key is stored and shipped, and a command line can carry a password.
func (r *Run) Key() string {
	return fmt.Sprintf("%s|%s|%d|%s|%d", r.Host, r.Source, r.PID, r.Unit, r.Start.UnixNano())
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

	// Every lookup is by index, so an event costs the same however many
	// runs are open: scanning every open run per event made a flood of
	// forged CMD lines cost a core at ~1k lines/s, and open runs (never
	// ended by any line) grew without bound.
	open      []*Run // not ended yet, in start order; ended ones are skipped (gone)
	live      int    // open runs not gone
	byPID     map[int]*Run
	bySession map[int]*Run
	byCmd     map[string]*cmdRuns // user + command → open cron runs
	byUnit    map[string][]*Run   // unit (or its description) → open systemd runs
	recent    []*Run              // cron runs within pairWindow not yet paired with a session
	sessions  map[int]*session    // open pam sessions by pid
	sessOrder []*session          // the same, oldest first (for the bound)
	recentSes []*session          // unpaired sessions within pairWindow
	closed    []*Run              // kept for Finish/Runs
	keep      bool
	// Dropped counts open runs given up to bound memory (their end was
	// never logged); NotKept counts ended runs Runs() no longer lists.
	Dropped, NotKept int
}

// MaxOpen bounds the open runs (and open sessions) a tracker holds; the
// oldest are given up beyond it, and counted.
const MaxOpen = 4096

// MaxKept bounds the ended runs a keeping tracker (analyze) lists.
const MaxKept = 200000

type session struct {
	pid    int
	user   string
	opened time.Time
	run    *Run
	gone   bool
}

// NewTracker returns a tracker; keep makes it remember closed runs for Runs().
func NewTracker(n *Namer, keep bool) *Tracker {
	if n == nil {
		n = &Namer{}
	}
	return &Tracker{Namer: n, keep: keep, byPID: map[int]*Run{}, bySession: map[int]*Run{}, byCmd: map[string]*cmdRuns{},
		byUnit: map[string][]*Run{}, sessions: map[int]*session{}}
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
			if old := t.sessions[ev.PID]; old != nil {
				old.gone = true // pid reused: the old one's close was lost
			}
			s := &session{pid: ev.PID, user: ev.User, opened: ev.Time}
			t.sessions[ev.PID] = s
			t.sessOrder = append(t.sessOrder, s)
			t.recentSes = append(t.recentSes, s)
			t.boundSessions()
			t.pairSessions(ev.Time)
		}
	case TypeSessionClose:
		if s := t.sessions[ev.PID]; s != nil {
			delete(t.sessions, ev.PID)
			s.gone = true
			if s.run != nil {
				if s.run.open() {
					t.end(s.run, ev.Time, "session_close", "")
				}
			} else {
				t.ambiguousClose(s, ev)
			}
		}
	case TypeCronEnd:
		if r := t.findCron(ev); r != nil {
			t.end(r, ev.Time, "end_line", "")
		}
	case TypeCronFailed:
		if r := t.byPID[ev.JobPID]; r != nil && r.open() {
			t.end(r, ev.Time, "exit_status", ev.Result)
		}
	case TypeCronNote:
		r := t.bySession[ev.PID]
		if r == nil || !r.open() {
			r = t.byPID[ev.PID]
		}
		if r != nil && r.open() && len(r.Notes) < maxNotes {
			r.Notes = append(r.Notes, ev.Message)
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

// maxNotes bounds the notes one run collects (a flood of "No MTA" lines).
const maxNotes = 16

func (r *Run) open() bool { return !r.gone }

func (t *Tracker) start(r *Run) {
	for t.live >= MaxOpen {
		t.dropOldest()
	}
	t.open = append(t.open, r)
	t.live++
	if r.Source == "systemd" {
		k := r.Unit
		if k == "" {
			k = "\x00" + r.Command
		}
		t.byUnit[k] = append(t.byUnit[k], r)
	} else {
		if r.PID != 0 {
			t.byPID[r.PID] = r
		}
		if r.SessionPID != 0 {
			t.bySession[r.SessionPID] = r
		} else {
			t.recent = append(t.recent, r)
		}
		k := r.User + "\x00" + r.Command
		c := t.byCmd[k]
		if c == nil {
			c = &cmdRuns{}
			t.byCmd[k] = c
		}
		c.add(r)
	}
	if t.OnStart != nil {
		t.OnStart(r)
	}
}

// dropOldest gives up the oldest open run: its end was never logged (a
// forged line, or a log that lost it).
func (t *Tracker) dropOldest() {
	for len(t.open) > 0 && !t.open[0].open() {
		t.open[0] = nil
		t.open = t.open[1:]
	}
	for _, r := range t.open {
		if r.open() {
			t.Dropped++
			r.Notes = append(r.Notes, fmt.Sprintf("end never logged; given up after %d newer runs opened", MaxOpen))
			t.remove(r)
			t.closeRun(r)
			return
		}
	}
}

// remove takes r out of the open set and its indexes.
func (t *Tracker) remove(r *Run) {
	if r.gone {
		return
	}
	r.gone = true
	t.live--
	if t.byPID[r.PID] == r {
		delete(t.byPID, r.PID)
	}
	if r.SessionPID != 0 && t.bySession[r.SessionPID] == r {
		delete(t.bySession, r.SessionPID)
	}
	if r.Source == "systemd" {
		k := r.Unit
		if k == "" {
			k = "\x00" + r.Command
		}
		t.byUnit[k] = without(t.byUnit[k], r)
		if len(t.byUnit[k]) == 0 {
			delete(t.byUnit, k)
		}
	} else {
		k := r.User + "\x00" + r.Command
		if c := t.byCmd[k]; c != nil {
			c.rs = without(c.rs, r)
			if c.open--; c.open <= 0 {
				delete(t.byCmd, k)
			}
		}
	}
	// Compact the start-order list once most of it is gone: amortised O(1).
	if len(t.open) > 64 && t.live < len(t.open)/2 {
		out := t.open[:0]
		for _, o := range t.open {
			if o.open() {
				out = append(out, o)
			}
		}
		clear(t.open[len(out):])
		t.open = out
	}
}

// cmdRuns are the open runs of one user's command. An end line that names
// no pid is matched by command; with more than maxSameCmd of them open it
// is ambiguous whatever the list holds, so only that many are indexed and
// removal stays cheap (a flood of one forged command made it O(n)).
type cmdRuns struct {
	rs   []*Run
	open int // all open runs of the command, indexed or not
}

const maxSameCmd = 16

func (c *cmdRuns) add(r *Run) {
	c.open++
	if len(c.rs) < maxSameCmd {
		c.rs = append(c.rs, r)
	}
}

// without removes r from a short list (runs of one command or unit that
// are open together).
func without(rs []*Run, r *Run) []*Run {
	for i, o := range rs {
		if o == r {
			return append(rs[:i], rs[i+1:]...)
		}
	}
	return rs
}

// boundSessions gives up the oldest open sessions beyond MaxOpen (their
// close was never logged).
func (t *Tracker) boundSessions() {
	for len(t.sessions) > MaxOpen && len(t.sessOrder) > 0 {
		s := t.sessOrder[0]
		t.sessOrder = t.sessOrder[1:]
		if !s.gone && t.sessions[s.pid] == s {
			delete(t.sessions, s.pid)
			s.gone = true
		}
	}
	if len(t.sessOrder) > 2*len(t.sessions)+64 {
		out := t.sessOrder[:0]
		for _, s := range t.sessOrder {
			if !s.gone {
				out = append(out, s)
			}
		}
		clear(t.sessOrder[len(out):])
		t.sessOrder = out
	}
}

func (t *Tracker) end(r *Run, at time.Time, by, result string) {
	t.remove(r)
	at2 := at
	r.End, r.EndBy = &at2, by
	if result != "" {
		r.Result = result
	}
	t.closeRun(r)
}

// closeRun keeps an ended run (all of them for Runs, up to MaxKept, or a
// few for late "Consumed" lines) and tells OnEnd.
func (t *Tracker) closeRun(r *Run) {
	switch {
	case !t.keep:
		t.closed = append(t.closed, r)
		if len(t.closed) > 64 {
			t.closed = append(t.closed[:0], t.closed[len(t.closed)-64:]...)
		}
	case len(t.closed) < MaxKept:
		t.closed = append(t.closed, r)
	default:
		t.NotKept++
	}
	if t.OnEnd != nil {
		t.OnEnd(r)
	}
}

// pairSessions ties unpaired sessions to unpaired cron runs when exactly
// one of each falls in the same window: the pid arithmetic (session = CMD
// pid - 1) fails when jobs start in the same second, so it is never used.
// Only what lies within the window is looked at.
func (t *Tracker) pairSessions(now time.Time) {
	t.recentSes = trimSessions(t.recentSes, now)
	t.recent = trimRuns(t.recent, now)
	var ss []*session
	for _, s := range t.recentSes {
		if s.run == nil && !s.gone && absDur(now.Sub(s.opened)) <= pairWindow {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return
	}
	var rs []*Run
	for _, r := range t.recent {
		if r.open() && r.SessionPID == 0 && !r.paired && absDur(now.Sub(r.Start)) <= pairWindow {
			rs = append(rs, r)
		}
	}
	if len(ss) == 0 || len(rs) == 0 {
		return
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
			s.run, r.SessionPID, r.paired = r, s.pid, true
			t.bySession[s.pid] = r
		} else if c[0] > 1 && c[1] > 1 {
			for _, r := range rs {
				if r.User == user {
					r.Ambiguous = fmt.Sprintf("%d %s jobs started together; their session lines cannot be told apart", c[1], user)
				}
			}
		}
	}
}

// maxRecent bounds the runs (and sessions) within one pairing window that
// are looked at: more than this starting in two seconds are a flood, whose
// sessions could not be told apart anyway.
const maxRecent = 64

// trimRuns drops from the front what fell out of the pairing window
// (events come in time order, give or take rsyslog's stamping).
func trimRuns(rs []*Run, now time.Time) []*Run {
	i := max(0, len(rs)-maxRecent) // more starting together cannot be paired anyway
	for i < len(rs) && (!rs[i].open() || rs[i].paired || now.Sub(rs[i].Start) > 2*pairWindow) {
		i++
	}
	if i == 0 {
		return rs
	}
	clear(rs[:i])
	return rs[i:]
}

func trimSessions(ss []*session, now time.Time) []*session {
	i := max(0, len(ss)-maxRecent)
	for i < len(ss) && (ss[i].gone || ss[i].run != nil || now.Sub(ss[i].opened) > 2*pairWindow) {
		i++
	}
	if i == 0 {
		return ss
	}
	clear(ss[:i])
	return ss[i:]
}

// ambiguousClose: a session ended that was never tied to one run. If all
// candidates run the same command, note the end on none of them: the end
// time belongs to one of them, but which one is not known.
func (t *Tracker) ambiguousClose(s *session, ev *Event) {
	for _, r := range t.recent {
		if r.open() && r.Ambiguous != "" && r.User == s.user && absDur(r.Start.Sub(s.opened)) <= pairWindow && len(r.Notes) < maxNotes {
			r.Notes = append(r.Notes, fmt.Sprintf("one of the jobs started together ended at %s", ev.Time.Format(time.RFC3339)))
		}
	}
}

func (t *Tracker) findCron(ev *Event) *Run {
	if ev.JobPID != 0 {
		if r := t.byPID[ev.JobPID]; r != nil && r.open() {
			return r
		}
	}
	c := t.byCmd[ev.User+"\x00"+ev.Command]
	if c == nil {
		return nil
	}
	var match []*Run
	for _, r := range c.rs {
		if r.SessionPID == 0 || r.SessionPID == ev.PID {
			match = append(match, r)
		}
	}
	if len(match) == 1 && c.open == len(c.rs) {
		return match[0]
	}
	for _, r := range match {
		r.Ambiguous = "several runs of this command were open when an end line came"
	}
	return nil
}

func (t *Tracker) findUnit(ev *Event) *Run {
	var rs []*Run
	switch {
	case ev.Unit != "":
		rs = t.byUnit[ev.Unit]
	case ev.Message != "":
		rs = t.byUnit["\x00"+ev.Message]
	}
	if len(rs) == 0 {
		return nil
	}
	return rs[len(rs)-1]
}

// Boot closes every open run: they ended before the boot, when is unknown.
func (t *Tracker) Boot(at time.Time) {
	for _, r := range t.Open() {
		b := at
		r.EndBound = &b
		r.Notes = append(r.Notes, "end not logged before the next boot")
		r.gone = true
		if t.keep {
			if len(t.closed) < MaxKept {
				t.closed = append(t.closed, r)
			} else {
				t.NotKept++
			}
		}
		if t.OnEnd != nil {
			t.OnEnd(r)
		}
	}
	t.open, t.live, t.recent, t.recentSes, t.sessOrder = nil, 0, nil, nil, nil
	clear(t.byPID)
	clear(t.bySession)
	clear(t.byCmd)
	clear(t.byUnit)
	clear(t.sessions)
}

// Open returns the runs not yet ended, in start order.
func (t *Tracker) Open() []*Run {
	out := make([]*Run, 0, t.live)
	for _, r := range t.open {
		if r.open() {
			out = append(out, r)
		}
	}
	return out
}

// Runs returns every run seen (with keep), ended or not, by start time.
func (t *Tracker) Runs() []*Run {
	all := append(append([]*Run(nil), t.closed...), t.Open()...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Start.Before(all[j].Start) })
	return all
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
