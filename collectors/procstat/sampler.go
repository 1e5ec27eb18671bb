package procstat

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/hostfs"
	"github.com/ec2diag/ec2diag/internal/procinfo"
)

// clkTck is USER_HZ, 100 on every Linux that ec2diag targets.
const clkTck = 100

// ProcUse is one process's use over one tick.
type ProcUse struct {
	PID      int     `json:"pid"`
	PPID     int     `json:"ppid"`
	SID      int     `json:"sid"`
	Comm     string  `json:"comm"`
	CPUPct   float64 `json:"cpu_pct"` // of one core over the tick
	CPUSec   float64 `json:"cpu_seconds"`
	RSSBytes int64   `json:"rss_bytes"`
	Start    uint64  `json:"start_ticks"`
	Job      string  `json:"job,omitempty"` // the job run it belongs to
	State    byte    `json:"-"`             // R, S, D ... as /proc/PID/stat says
}

// JobRun is a run the sampler attributes processes to.
type JobRun struct {
	ID    string
	Job   string
	PID   int       // cron: the job's sh = its session id; 0 for systemd
	Unit  string    // systemd: the unit whose cgroup holds it
	Start time.Time // from the log line
	Ended time.Time // zero while running
	// LogEnded is the end a log line gave; it is taken only once none of
	// the run's processes is left.
	LogEnded time.Time
	LastLive time.Time // last sample that found one of its processes
	CPUSec   float64   // accumulated over its life
	Peak     int64     // peak RSS of its processes together
	Procs    int       // processes seen
	leader   Key
	// Unverified says why the process table did not confirm the log line
	// (anyone can write "CRON[pid]: (root) CMD (...)" with logger): such a
	// run gets no processes and is never blamed.
	Unverified string
	// Unchecked says why the line could not be checked (its process was
	// gone already). Such a run gets no processes either: the session id
	// of a gone leader may be a daemon's that outlived it.
	Unchecked string
	// early counts the scans that found the line's process a child of
	// cron not yet its own session leader: cron logs CMD just before
	// setsid(), and a fast reader (or a slow emulated guest) gets there
	// in between. Such a run gets no processes until it is confirmed.
	early int
}

type procState struct {
	ticks, child uint64  // utime+stime, cutime+cstime at last scan
	dOwn, dChild uint64  // their growth in this scan
	credit       uint64  // ticks of reaped children already counted
	creditGen    int64   // scan that last added to credit
	reaped       *JobRun // the job of the children it reaped this scan
	reapedMixed  bool    // ... when they were of more than one
	seen         int64   // scan generation
	job          *JobRun
	ppid         int // parent at last sight: who reaps it, unless it dies too
	parent       Key // parent at first sight: job membership
	comm         string
	rss          int64
	unit         string // systemd service of its cgroup, read once (unitRead)
	unitRead     bool
	info         *procinfo.Info // what it is, read once (Info)
}

// Sampler keeps per-process state between scans.
type Sampler struct {
	Root     string // the proc root
	scanner  *Scanner
	procs    map[Key]*procState
	byPID    map[int]Key
	gen      int64
	last     time.Time
	bootTime time.Time
	pageSize int64
	jobs     []*JobRun
	// TrustedParents are the names a cron job's parent may have.
	TrustedParents []string
	// JobsRefused and Unverified count runs refused for the MaxJobs bound
	// and runs the process table did not confirm; Evicted ended runs
	// forgotten early to make room.
	JobsRefused, Unverified, Evicted uint64
	cur                              []*procState // this scan's processes, in out's order
	// orphans holds ticks of processes that vanished with their parent
	// gone: the subreaper or init that reaped them will show them as
	// cutime growth, which is not its own use.
	orphans     uint64
	orphansGen  int64
	orphanJob   *JobRun // as procState.reaped, for the pool
	orphanMixed bool
	// Cgroup reads the cgroup of a new process while systemd runs are
	// active; nil uses /proc/PID/cgroup.
	Cgroup func(pid int) string
	info   procinfo.Reader
}

// NewSampler reads boot time once (identity uses ticks since boot); a host
// whose boot time cannot be read counts from now (clk).
func NewSampler(root hostfs.Root, clk clock.Clock) *Sampler {
	root = root.OrDefault()
	s := &Sampler{Root: root.Proc, scanner: NewScanner(root.Proc), procs: map[Key]*procState{}, byPID: map[int]Key{}, pageSize: int64(os.Getpagesize()),
		TrustedParents: DefaultTrustedParents, info: procinfo.Reader{Proc: root.Proc, Root: root.FS}}
	s.bootTime = clock.Or(clk).Now()
	if bt := root.BootTime(); bt > 0 {
		s.bootTime = time.Unix(bt, 0)
	}
	return s
}

// BootTime is when the host booted.
func (s *Sampler) BootTime() time.Time { return s.bootTime }

// StartTime converts a process start in ticks to wall time.
func (s *Sampler) StartTime(ticks uint64) time.Time {
	// Whole seconds first: ticks * time.Second overflows int64 after
	// ~2.9 years of uptime, and the pid-reuse guard then rejected real
	// session leaders.
	return s.bootTime.Add(time.Duration(ticks/clkTck)*time.Second + time.Duration(ticks%clkTck)*time.Second/clkTck)
}

// MaxJobs bounds the runs tracked at once; more are refused and counted.
const MaxJobs = 512

// AddJob starts attributing processes to r from the next scan on; a
// process already running in its session counts from now. A cron run is
// first checked against the process table (Verify). It reports false when
// the run is refused: already tracked (a line read again), or too many.
func (s *Sampler) AddJob(r *JobRun) bool {
	for _, j := range s.jobs {
		if j.ID == r.ID {
			return false
		}
	}
	if len(s.jobs) >= MaxJobs && !s.evict() {
		s.JobsRefused++
		return false
	}
	if r.PID > 0 {
		s.check(r)
	}
	s.jobs = append(s.jobs, r)
	return true
}

// evict makes room for a new run by forgetting the oldest run that ended,
// one the process table refuted or could not check first: a flood of
// forged start lines filled the table with them, and the real job that
// started next was refused and never blamed. It reports whether it made
// room (false: every run is still open).
func (s *Sampler) evict() bool {
	victim := -1
	for i, j := range s.jobs {
		if j.Ended.IsZero() {
			continue
		}
		dud := j.Unverified != "" || j.Unchecked != ""
		if victim < 0 {
			victim = i
			continue
		}
		v := s.jobs[victim]
		vdud := v.Unverified != "" || v.Unchecked != ""
		if dud && !vdud || dud == vdud && j.Ended.Before(v.Ended) {
			victim = i
		}
	}
	if victim < 0 {
		return false
	}
	v := s.jobs[victim]
	s.RemoveJob(v.ID)
	s.Evicted++
	return true
}

// EarlyScans is how many scans a run's process may take to call setsid()
// before the line counts as refuted.
const EarlyScans = 3

// check verifies r's line against the process table, again at each scan
// while its process has not yet called setsid().
func (s *Sampler) check(r *JobRun) {
	why, refuted, early := s.Verify(r.PID, r.Start)
	if early {
		if r.early++; r.early <= EarlyScans {
			return
		}
		why = fmt.Sprintf("pid %d, a child of cron, did not become a session leader", r.PID)
		refuted = true
	}
	r.early = 0
	if refuted {
		r.Unverified = why
	} else {
		r.Unchecked = why
	}
	if why != "" {
		// Ended at once: it holds no processes and must not stay
		// open for minutes (a flood of forged lines kept them all).
		r.Ended = r.Start
		s.Unverified++
	}
}

// Verify checks that pid is what a cron job's log line says it is: alive,
// a session leader started with the line (not an older process whose pid
// the line names), and a child of a cron daemon (TrustedParents). It
// returns "" when it is, else why not; refuted says the process table
// contradicts the line, rather than the process being gone already (the
// stock debian-sa1 line on systemd hosts exits within a millisecond);
// early that it is a child of cron that has not yet called setsid(),
// which cron does just after logging CMD: a reader can get in between.
func (s *Sampler) Verify(pid int, logged time.Time) (why string, refuted, early bool) {
	var p, pp Proc
	if !s.scanner.ReadOne(pid, &p) {
		return fmt.Sprintf("pid %d was gone before it could be checked", pid), false, false
	}
	if st := s.StartTime(p.Start); st.Before(logged.Add(-5*time.Second)) || st.After(logged.Add(5*time.Second)) {
		return fmt.Sprintf("pid %d started at %s, not with the log line", pid, st.UTC().Format(time.RFC3339)), true, false
	}
	if !s.scanner.ReadOne(p.PPID, &pp) {
		return fmt.Sprintf("the parent of pid %d was gone before it could be checked", pid), false, false
	}
	if !slices.Contains(s.TrustedParents, pp.Comm) {
		return fmt.Sprintf("the parent of pid %d is %q, not a cron daemon", pid, escape.Control(pp.Comm)), true, false
	}
	if p.SID != pid {
		return "", false, true
	}
	return "", false, false
}

// DefaultTrustedParents are the process names of cron daemons whose
// children a CMD line may name: Debian's cron, cronie's crond, fcron.
var DefaultTrustedParents = []string{"cron", "crond", "fcron"}

// Jobs returns the runs being tracked, ended ones included until dropped.
func (s *Sampler) Jobs() []*JobRun { return s.jobs }

// RemoveJob forgets the run with this id and every membership in it.
func (s *Sampler) RemoveJob(id string) {
	out := s.jobs[:0]
	for _, r := range s.jobs {
		if r.ID != id {
			out = append(out, r)
			continue
		}
		for _, st := range s.procs {
			if st.job == r {
				st.job = nil
			}
		}
	}
	s.jobs = out
}

// Unit returns the systemd service whose cgroup holds the process k
// ("" if none, or if it is gone), reading /proc/PID/cgroup once per
// process: only the few processes an incident names are asked.
func (s *Sampler) Unit(k Key) string {
	st, ok := s.procs[k]
	if !ok {
		return ""
	}
	if !st.unitRead {
		st.unitRead = true
		if g := procinfo.Classify(s.cgroupOf(k.PID)); g.Kind == "service" {
			st.unit = g.Name
		}
	}
	return st.unit
}

// ReadProc reads one process's stat now, for the few processes looked at
// outside a scan (the pid a log line names).
func (s *Sampler) ReadProc(pid int, p *Proc) bool { return s.scanner.ReadOne(pid, p) }

// ReadInfo reads what process pid is now (not kept).
func (s *Sampler) ReadInfo(pid int) procinfo.Info { return s.info.Read(pid) }

// Info returns what the process k is (command line, user, cgroup and its
// meaning), read once per process: only the few an incident names are
// asked. ok is false when k is not a live process of the last scan.
func (s *Sampler) Info(k Key) (procinfo.Info, bool) {
	st, ok := s.procs[k]
	if !ok {
		return procinfo.Info{}, false
	}
	if st.info == nil {
		in := s.info.Read(k.PID)
		st.info = &in
	}
	return *st.info, true
}

// Parents returns the chain of k's parents as last seen, nearest first,
// as "comm(pid)", up to PID 1 or max entries.
func (s *Sampler) Parents(k Key, max int) []string {
	var out []string
	for _, pk := range s.Ancestors(k, max) {
		out = append(out, fmt.Sprintf("%s(%d)", escape.Control(s.procs[pk].comm), pk.PID))
	}
	return out
}

// Ancestors returns the keys of k's parents as last seen, nearest first,
// up to max and short of PID 1.
func (s *Sampler) Ancestors(k Key, max int) []Key {
	var out []Key
	st := s.procs[k]
	for st != nil && len(out) < max && st.ppid > 1 {
		pk, ok := s.byPID[st.ppid]
		if !ok {
			break
		}
		st = s.procs[pk]
		if st == nil {
			break
		}
		out = append(out, pk)
	}
	return out
}

// DropEnded forgets runs that ended before t.
func (s *Sampler) DropEnded(t time.Time) {
	out := s.jobs[:0]
	for _, r := range s.jobs {
		if r.Ended.IsZero() || r.Ended.After(t) {
			out = append(out, r)
		}
	}
	s.jobs = out
}

// Tick scans every process and returns the use of each over the time since
// the last tick, plus the total CPU seconds all processes used.
//
// A process's use is its own ticks plus the growth of its children's
// ticks (cutime+cstime) that we did not already see those children use:
// short-lived children come and go between scans, and their CPU reaches
// us only through their parent. What a vanished process was seen to use
// is credited to whoever reaped it: its last known parent if that is still
// alive, otherwise a pool for the subreaper or init that adopted it.
// Without the pool, init was charged with the whole life of every orphan
// it reaped (seen in a test: PID 1 "used" 3.6 s while idle, and took the
// blame for a spike a killed job had made).
func (s *Sampler) Tick(now time.Time, out []ProcUse) ([]ProcUse, float64) {
	s.gen++
	dt := now.Sub(s.last).Seconds()
	first := s.last.IsZero()
	s.last = now
	anySystemd := false
	for _, r := range s.jobs {
		if r.Unit != "" && r.Ended.IsZero() {
			anySystemd = true
		}
	}
	for _, r := range s.jobs {
		if r.early > 0 {
			s.check(r)
		}
	}
	base := len(out)
	s.cur = s.cur[:0]
	s.orphanJob, s.orphanMixed = nil, false
	s.scanner.Scan(func(p *Proc) {
		k := Key{p.PID, p.Start}
		st, ok := s.procs[k]
		ticks, child := p.UTime+p.STime, p.CUTime+p.CSTime
		if !ok {
			st = &procState{ticks: ticks, child: child, comm: p.Comm}
			if pk, ok := s.byPID[p.PPID]; ok {
				st.parent = pk // parentage recorded at first sight keeps orphans attributed
			}
			s.procs[k] = st
			s.byPID[p.PID] = k
			st.job = s.membership(p, st, anySystemd)
			if !first {
				// New since the last scan: all its CPU was used in this tick.
				st.ticks, st.child = 0, 0
			}
		} else if st.job == nil || !st.job.Ended.IsZero() {
			st.job = s.membership(p, st, anySystemd)
		}
		st.seen = s.gen
		st.reaped, st.reapedMixed = nil, false
		st.ppid = p.PPID
		st.comm = p.Comm
		st.rss = p.RSSPages * s.pageSize
		st.dOwn = ticks - min(st.ticks, ticks)
		st.dChild = child - min(st.child, child)
		st.ticks, st.child = ticks, child
		s.cur = append(s.cur, st)
		out = append(out, ProcUse{PID: p.PID, PPID: p.PPID, SID: p.SID, Comm: p.Comm, RSSBytes: st.rss, Start: p.Start, State: p.State})
	})
	// Reap first, so that a parent's cutime growth in this very scan is
	// matched with the children that vanished in it.
	for k, st := range s.procs {
		if st.seen == s.gen {
			continue
		}
		used := st.ticks + st.child
		if pk, ok := s.byPID[st.ppid]; ok && pk.Start <= k.Start && s.procs[pk] != nil && s.procs[pk].seen == s.gen {
			pst := s.procs[pk]
			pst.credit += used
			pst.creditGen = s.gen
			if st.job != nil && st.job != pst.job {
				pst.reapedMixed = pst.reapedMixed || (pst.reaped != nil && pst.reaped != st.job)
				pst.reaped = st.job
			}
		} else {
			s.orphans += used
			s.orphansGen = s.gen
			if st.job != nil {
				s.orphanMixed = s.orphanMixed || (s.orphanJob != nil && s.orphanJob != st.job)
				s.orphanJob = st.job
			}
		}
		delete(s.procs, k)
		if s.byPID[k.PID] == k {
			delete(s.byPID, k.PID)
		}
	}
	// Credits not claimed within a few scans were for children whose
	// parent never waited (SIGCHLD ignored): forget them.
	if s.gen-s.orphansGen > creditScans {
		s.orphans = 0
	}
	var total float64
	peak := map[*JobRun]int64{}
	for i, st := range s.cur {
		if s.gen-st.creditGen > creditScans {
			st.credit = 0
		}
		dc := st.dChild
		c := min(st.credit, dc)
		st.credit -= c
		dc -= c
		o := min(s.orphans, dc)
		s.orphans -= o
		dc -= o
		// What is left of the growth came from children we never saw or
		// from the last moments of those that vanished: a job's processes
		// use CPU between the last scan and their exit, and it shows only
		// in their reaper (the cron child, init). When the reaped children
		// were one job's, that rest is the job's, not the reaper's.
		var toJob *JobRun
		switch {
		case st.reaped != nil && !st.reapedMixed:
			toJob = st.reaped
		case o > 0 && s.orphanJob != nil && !s.orphanMixed:
			toJob = s.orphanJob
		}
		var jobSec float64
		if toJob != nil && toJob.Procs >= 0 && dc > 0 && !first {
			jobSec = float64(dc) / clkTck
			toJob.CPUSec += jobSec
			dc = 0
		}
		sec := float64(st.dOwn+dc) / clkTck
		if first {
			sec = 0
		}
		total += sec + jobSec
		if st.job != nil && st.job.Ended.IsZero() {
			st.job.CPUSec += sec
			peak[st.job] += st.rss
			st.job.Procs++
		}
		u := &out[base+i]
		u.CPUSec = sec
		if dt > 0 {
			u.CPUPct = 100 * sec / dt
		}
		if st.job != nil {
			u.Job = st.job.ID
		}
	}
	for r, v := range peak {
		r.Peak = max(r.Peak, v)
	}
	return out, total
}

// creditScans is how many scans a reaped child's credit waits for its
// reaper's cutime to show it.
const creditScans = 3

// membership decides which job run p belongs to: session id first (a cron
// job's pid is its session id, orphans keep it), then recorded parentage,
// then the cgroup of a systemd unit.
func (s *Sampler) membership(p *Proc, st *procState, anySystemd bool) *JobRun {
	for _, r := range s.jobs {
		if !r.Ended.IsZero() || r.PID == 0 || p.SID != r.PID || r.Unverified != "" || r.Unchecked != "" || r.early > 0 {
			continue
		}
		// Pid reuse guard: the session leader started with the job.
		if lk, ok := s.byPID[r.PID]; ok {
			if ls, ok := s.procs[lk]; ok && s.StartTime(lk.Start).Before(r.Start.Add(-5*time.Second)) && ls != st {
				continue
			}
		}
		return r
	}
	if pst, ok := s.procs[st.parent]; ok && pst.job != nil && pst.job.Ended.IsZero() {
		return pst.job
	}
	if anySystemd {
		unit := procinfo.SystemUnit(s.cgroupOf(p.PID))
		for _, r := range s.jobs {
			if r.Unit != "" && r.Ended.IsZero() && unit == r.Unit {
				return r
			}
		}
	}
	return nil
}

func (s *Sampler) cgroupOf(pid int) string {
	if s.Cgroup != nil {
		return s.Cgroup(pid)
	}
	b, err := os.ReadFile(filepath.Join(s.Root, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	// The unified hierarchy's path, as procinfo reads it: on a hybrid host
	// the name=systemd line comes first in the file.
	return procinfo.CgroupPath(b)
}

// Top returns the n processes using most CPU, the n using most memory and
// up to n waiting on I/O (D state: they use neither, and are what an I/O
// stall is made of), as a union, CPU order first.
func Top(ps []ProcUse, n int) []ProcUse {
	idx := make([]int, len(ps))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return ps[idx[a]].CPUSec > ps[idx[b]].CPUSec })
	seen := map[int]bool{}
	var out []ProcUse
	for _, i := range idx[:min(n, len(idx))] {
		out = append(out, ps[i])
		seen[i] = true
	}
	sort.Slice(idx, func(a, b int) bool { return ps[idx[a]].RSSBytes > ps[idx[b]].RSSBytes })
	for _, i := range idx[:min(n, len(idx))] {
		if !seen[i] {
			out = append(out, ps[i])
			seen[i] = true
		}
	}
	d := 0
	for i := range ps {
		if d < n && ps[i].State == 'D' && !seen[i] {
			out = append(out, ps[i])
			d++
		}
	}
	return out
}
