package correlate

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// RunUse is one job run's use during the spike window.
type RunUse struct {
	ID    string    `json:"id"`
	Job   string    `json:"job"`
	PID   int       `json:"pid,omitempty"`
	Unit  string    `json:"unit,omitempty"`
	Start time.Time `json:"start"`
	// End is when the run ended, zero while it runs.
	End      time.Time `json:"end,omitzero"`
	Active   bool      `json:"active_at_onset"`
	CPUSec   float64   `json:"cpu_seconds_in_spike"`
	TotalCPU float64   `json:"cpu_seconds_total"`
	// DStateSec is how long its processes waited in D state (on I/O) in
	// the spike, summed.
	DStateSec float64 `json:"d_state_seconds,omitempty"`
	PeakRSS   int64   `json:"peak_rss_bytes"`
	// Unverified says why the process table did not confirm the run's
	// log line (a forged "CRON[pid]: ... CMD" line): such a run gets the
	// verdict "unverified" and is never the cause.
	Unverified string `json:"unverified,omitempty"`
}

// ProcUse is one process's use during the spike window.
type ProcUse struct {
	PID      int     `json:"pid"`
	Comm     string  `json:"comm"`
	CPUSec   float64 `json:"cpu_seconds"`
	CPUShare float64 `json:"cpu_share"`
	RSSBytes int64   `json:"rss_bytes"`
	// RSSGrowth is how much its resident memory grew from before the
	// spike (the earliest sample in the window before onset, or 0 for a
	// process started since) to its peak: what a memory spike ranks by.
	RSSGrowth int64  `json:"rss_growth_bytes,omitempty"`
	Job       string `json:"job,omitempty"`
	// Unit is the systemd service whose cgroup holds the process.
	Unit string `json:"unit,omitempty"`
	// Agent marks ec2diag itself: listed, so that its own cost shows, but
	// never the cause (at boot it is busy starting, like everything else).
	Agent bool `json:"agent,omitempty"`
	// Kernel marks a kernel thread (a child of kthreadd): listed with its
	// time waiting, never the cause, and left out of the waiting shares
	// (the filesystem's journal and writeback threads wait on the disk on
	// behalf of the processes that wrote).
	Kernel bool `json:"kernel_thread,omitempty"`
	// What the process is, read once per process (internal/procinfo):
	// the command line (bounded, secrets redacted), user, start, parents
	// nearest first, cgroup, and the group it belongs to in people's
	// words ("service etl.service", "container 3f2a... (postgres)",
	// "session 3"), GroupKind its kind.
	Cmdline         string    `json:"cmdline,omitempty"`
	CmdlineRedacted int       `json:"cmdline_redacted,omitempty"`
	User            string    `json:"user,omitempty"`
	UID             *int      `json:"uid,omitempty"`
	Started         time.Time `json:"started,omitzero"`
	Parents         []string  `json:"parents,omitempty"`
	Cgroup          string    `json:"cgroup,omitempty"`
	Group           string    `json:"group,omitempty"`
	// Login is the SSH login the process descends from, USER@ADDR.
	Login     string `json:"login,omitempty"`
	GroupKind string `json:"group_kind,omitempty"`
	// DStateSec is how long it was seen waiting in D state (on I/O) in the
	// spike; IOShare its part of all the waiting; Wchan where in the kernel
	// it waited, where /proc lets the agent read it.
	DStateSec float64 `json:"d_state_seconds,omitempty"`
	IOShare   float64 `json:"io_share,omitempty"`
	Wchan     string  `json:"wchan,omitempty"`
}

// GroupBlame is the verdict on one group of processes people recognise: a
// service, a container, a login session, a user's service, or a job run.
type GroupBlame struct {
	Kind     string  `json:"kind"` // service, container, session, user-service, job
	Name     string  `json:"name"` // as in a cause: "service etl.service"
	CPUShare float64 `json:"cpu_share"`
	MemShare float64 `json:"mem_share"`
	RSSBytes int64   `json:"rss_bytes"`
	// RSSGrowth sums its processes' growth; GrowthShare is its part of
	// the growth of all top processes, the share a memory spike's
	// verdict uses when memory grew (MinGrowth).
	RSSGrowth   int64   `json:"rss_growth_bytes,omitempty"`
	GrowthShare float64 `json:"growth_share,omitempty"`
	// DStateSec and IOShare: its processes' waiting in D state, in an I/O
	// spike.
	DStateSec float64   `json:"d_state_seconds,omitempty"`
	IOShare   float64   `json:"io_share,omitempty"`
	Processes int       `json:"processes"`
	Verdict   Judgement `json:"verdict"` // caused, contributed, coincident
}

// Blame is the verdict on one job run.
type Blame struct {
	RunUse
	CPUShare   float64   `json:"cpu_share"`
	MemShare   float64   `json:"mem_share"`
	IOShare    float64   `json:"io_share,omitempty"`
	Confidence float64   `json:"confidence"`
	Verdict    Judgement `json:"verdict"` // caused, contributed, coincident, unverified
	Reason     string    `json:"reason"`
}

// Verdict is the correlation of one spike.
type Verdict struct {
	Jobs []Blame   `json:"jobs"`
	Top  []ProcUse `json:"top_processes"`
	// Groups ranks the groups of the top processes by their share (CPU,
	// or memory in a memory spike).
	Groups  []GroupBlame `json:"groups,omitempty"`
	Cause   string       `json:"cause"`   // the job or process blamed, in words
	Summary string       `json:"summary"` // one line, plain words
	// RunsLeftOut counts, by verdict, the candidate runs beyond
	// MaxCandidates that the record does not list.
	RunsLeftOut map[Judgement]int `json:"runs_left_out,omitempty"`
	// Disk is the stalled device of an I/O spike; Steal the CPU the
	// hypervisor withheld, when that is a reason.
	Disk  *Disk  `json:"disk,omitempty"`
	Steal *Steal `json:"steal,omitempty"`
}

// Rank is what a spike's processes are ranked by.
type Rank int

// The rankings.
const (
	RankCPU    Rank = iota // CPU used
	RankMemory             // memory grown, then held
	RankIO                 // time waiting on I/O (D state)
)

// Disk is a block device as an I/O spike saw it.
type Disk struct {
	Device string `json:"device"`
	// Volume is the EBS volume id (vol-...), from an NVMe serial.
	Volume         string  `json:"volume,omitempty"`
	InFlight       uint64  `json:"in_flight"`
	StalledSeconds float64 `json:"stalled_seconds"`
	BusyPct        float64 `json:"busy_pct"`
	CompletedPerS  float64 `json:"completed_per_second"`
	LatencyMs      float64 `json:"latency_ms,omitempty"`
}

// Name says the device as people recognise it: "nvme1n1 (vol-0abc...)".
func (d *Disk) Name() string {
	if d.Volume != "" {
		return d.Device + " (" + d.Volume + ")"
	}
	return d.Device
}

// Steal is CPU the hypervisor withheld from the guest.
type Steal struct {
	Pct          float64 `json:"pct"`
	InstanceType string  `json:"instance_type,omitempty"`
	Burstable    bool    `json:"burstable,omitempty"`
}

// In is what a verdict is made from.
type In struct {
	Onset  time.Time
	Window time.Duration // a job started this long before onset is a candidate
	Runs   []RunUse
	Procs  []ProcUse // every process's use in the spike window
	Total  float64   // every process's CPU seconds in it
	// MemTotal is the summed RSS of the top processes.
	MemTotal int64
	Rank     Rank
	TopN     int
	// Disk, when an I/O stall is a reason; Steal, when withheld CPU is.
	Disk  *Disk
	Steal *Steal
	// BusyCPU says the guest's own CPU use is among the reasons: with
	// Steal and without it, the spike is the hypervisor's alone.
	BusyCPU bool
}

// DefaultTopN is how many processes a verdict lists by default;
// MaxTopN the most a config may ask for (a record's budget holds them).
const (
	DefaultTopN = 10
	MaxTopN     = 30
)

// MaxCandidates bounds the job runs a verdict judges in its record.
const MaxCandidates = 16

// Window is how long before onset a job's start still makes it a candidate.
const Window = 2 * time.Minute

// Decide blames job runs and processes for a spike. candidates are runs
// active at onset or started within window before it; procs are all
// processes' use during the spike window; total is every process's CPU in
// it; memTotal the summed RSS of the top processes. Preceding is not blame:
// a job's verdict depends on its share of what was used, not on timing.
// byMemory ranks processes by resident memory instead of CPU: in a memory
// spike the process that ate the memory is the suspect, whatever its CPU.
//
// topN bounds the processes listed (0: DefaultTopN), and at most
// MaxCandidates job runs are judged in the record: a flood of start
// lines (anyone can log them) is summarised in RunsLeftOut.
//
// Decide(onset, window, ...) is the CPU and memory form; DecideIn takes
// the whole input.
func Decide(onset time.Time, window time.Duration, runs []RunUse, procs []ProcUse, total float64, memTotal int64, byMemory bool, topN int) Verdict {
	in := In{Onset: onset, Window: window, Runs: runs, Procs: procs, Total: total, MemTotal: memTotal, TopN: topN}
	if byMemory {
		in.Rank = RankMemory
	}
	return DecideIn(in)
}

// DecideIn makes the verdict (see Decide). In an I/O spike (RankIO)
// processes, runs and groups are ranked by their time in D state: the
// ones waiting on the stalled disk, the writer among them; a spike that
// is only withheld CPU is the hypervisor's.
func DecideIn(in In) Verdict {
	onset, window, runs, procs, total, memTotal, topN := in.Onset, in.Window, in.Runs, in.Procs, in.Total, in.MemTotal, in.TopN
	byMemory, byIO := in.Rank == RankMemory, in.Rank == RankIO
	if topN <= 0 {
		topN = DefaultTopN
	}
	var v Verdict
	v.Disk, v.Steal = in.Disk, in.Steal
	var dTotal float64
	for _, p := range procs {
		if !p.Agent && !p.Kernel {
			dTotal += p.DStateSec
		}
	}
	for _, p := range procs {
		if total > 0 {
			p.CPUShare = p.CPUSec / total
		}
		if dTotal > 0 && !p.Agent && !p.Kernel {
			p.IOShare = p.DStateSec / dTotal
		}
		v.Top = append(v.Top, p)
	}
	sort.SliceStable(v.Top, func(i, j int) bool {
		if byIO && v.Top[i].DStateSec != v.Top[j].DStateSec {
			return v.Top[i].DStateSec > v.Top[j].DStateSec
		}
		if byMemory {
			// What grew, then what is big: a database's steady buffers
			// are big but are not what ate the memory.
			if gi, gj := growth(v.Top[i]), growth(v.Top[j]); gi != gj {
				return gi > gj
			}
			if v.Top[i].RSSBytes != v.Top[j].RSSBytes {
				return v.Top[i].RSSBytes > v.Top[j].RSSBytes
			}
		}
		if v.Top[i].CPUSec != v.Top[j].CPUSec {
			return v.Top[i].CPUSec > v.Top[j].CPUSec
		}
		// Ties (idle processes) in a fixed order, so the same spike is
		// always recorded the same way: bigger first, then by pid.
		if v.Top[i].RSSBytes != v.Top[j].RSSBytes {
			return v.Top[i].RSSBytes > v.Top[j].RSSBytes
		}
		return v.Top[i].PID < v.Top[j].PID
	})
	if len(v.Top) > topN {
		v.Top = v.Top[:topN]
	}
	for _, r := range runs {
		// Active only for a run that started before onset and had not
		// ended: one that starts later is a candidate (it may be what keeps
		// the spike going) but was not running at onset.
		r.Active = r.Active && !r.Start.After(onset)
		if !r.Active && (r.Start.After(onset.Add(2*time.Second)) || r.Start.Before(onset.Add(-window))) {
			continue
		}
		b := Blame{RunUse: r}
		if total > 0 {
			b.CPUShare = r.CPUSec / total
		}
		if memTotal > 0 {
			b.MemShare = float64(r.PeakRSS) / float64(memTotal)
		}
		if dTotal > 0 {
			b.IOShare = r.DStateSec / dTotal
		}
		b.Confidence = max(b.CPUShare, b.MemShare)
		if byIO && dTotal > 0 {
			b.Confidence = b.IOShare
		}
		when := "was running at onset"
		switch {
		case r.Active:
		case r.Start.After(onset):
			when = fmt.Sprintf("started %s after onset", r.Start.Sub(onset).Round(time.Second))
		default:
			when = fmt.Sprintf("ran %s before onset", onset.Sub(r.Start).Round(time.Second))
		}
		switch {
		case r.Unverified != "":
			b.Confidence = 0
			b.Verdict = Unverified
			b.Reason = fmt.Sprintf("%s %s, but its log line is not confirmed by the process table (%s): not blamed", r.Job, when, r.Unverified)
		case byIO && dTotal > 0 && b.Confidence >= 0.1:
			b.Verdict = Contributed
			if b.Confidence >= 0.5 {
				b.Verdict = Caused
			}
			b.Reason = fmt.Sprintf("%s %s and its processes waited %.0f s on I/O (%.0f%% of all the waiting)", r.Job, when, r.DStateSec, 100*b.IOShare)
		case b.Confidence >= 0.5:
			b.Verdict = Caused
			b.Reason = fmt.Sprintf("%s %s and used %.0f%% of the CPU and %.0f%% of the memory of the busiest processes", r.Job, when, 100*b.CPUShare, 100*b.MemShare)
		case b.Confidence >= 0.1:
			b.Verdict = Contributed
			b.Reason = fmt.Sprintf("%s %s and used %.0f%% of the CPU", r.Job, when, 100*b.CPUShare)
		default:
			b.Verdict = Coincident
			b.Reason = fmt.Sprintf("%s %s but used %.2f s CPU (%.0f%%): not the cause", r.Job, when, r.CPUSec, 100*b.CPUShare)
		}
		v.Jobs = append(v.Jobs, b)
	}
	sort.SliceStable(v.Jobs, func(i, j int) bool { return v.Jobs[i].Confidence > v.Jobs[j].Confidence })
	if len(v.Jobs) > MaxCandidates {
		// The most confident are kept; those left out are the least
		// (refuted lines, runs that used nothing), counted by verdict.
		for _, b := range v.Jobs[MaxCandidates:] {
			if v.RunsLeftOut == nil {
				v.RunsLeftOut = map[Judgement]int{}
			}
			v.RunsLeftOut[b.Verdict]++
		}
		v.Jobs = v.Jobs[:MaxCandidates]
	}
	var parts []string
	suspect := -1
	for i, p := range v.Top {
		if !p.Agent && !p.Kernel {
			suspect = i
			break
		}
	}
	var grown int64
	v.Groups, grown = groups(v.Top, memTotal, in.Rank)
	// Ten python3 processes of one service outweigh the single yes that
	// used more than any one of them: when the leading group's share is
	// larger than the busiest process's own, the cause is that group, named
	// by its own busiest process.
	lead := ""
	if suspect >= 0 && len(v.Groups) > 0 {
		g, p := v.Groups[0], v.Top[suspect]
		if rankShare(g.CPUShare, g.IOShare, g.RSSBytes, g.RSSGrowth, memTotal, grown, in.Rank) >
			rankShare(p.CPUShare, p.IOShare, p.RSSBytes, p.RSSGrowth, memTotal, grown, in.Rank) {
			for i, q := range v.Top {
				if _, name, ok := GroupOf(q); ok && !q.Agent && !q.Kernel && name == g.Name {
					suspect, lead = i, name
					break
				}
			}
		}
	}
	stealOnly := in.Steal != nil && in.Rank == RankCPU && !in.BusyCPU
	switch {
	case stealOnly:
	case byIO && dTotal == 0:
		suspect = -1 // nothing was seen waiting: the disk is the news
	}
	if len(v.Jobs) > 0 && v.Jobs[0].Verdict == Caused {
		v.Cause = "job " + v.Jobs[0].Job
	} else if suspect >= 0 && !stealOnly {
		p := v.Top[suspect]
		cmd := ""
		if p.Cmdline != "" {
			cmd = ": " + p.Cmdline
		}
		switch {
		case p.Job != "":
			v.Cause = fmt.Sprintf("process %s (pid %d%s) of job %s", p.Comm, p.PID, cmd, p.Job)
		case p.GroupKind == "container" || p.GroupKind == "session" || p.GroupKind == "user-service":
			g := p.Group
			if p.GroupKind == "session" && p.Login == "" && p.User != "" {
				g = "session of " + p.User + " (" + strings.TrimPrefix(p.Group, "session ") + ")"
			}
			v.Cause = fmt.Sprintf("%s (process %s pid %d%s)", g, p.Comm, p.PID, cmd)
		case p.Unit != "":
			v.Cause = fmt.Sprintf("service %s (process %s pid %d%s)", p.Unit, p.Comm, p.PID, cmd)
		case p.GroupKind == "service":
			v.Cause = fmt.Sprintf("%s (process %s pid %d%s)", p.Group, p.Comm, p.PID, cmd)
		default:
			v.Cause = fmt.Sprintf("process %s (pid %d%s)", p.Comm, p.PID, cmd)
		}
	}
	if v.Cause == "" && byIO && in.Disk != nil {
		v.Cause = "disk " + in.Disk.Name() + " stalled"
	}
	if in.Steal != nil && (v.Cause == "" || stealOnly) {
		v.Cause = fmt.Sprintf("CPU withheld by the hypervisor (steal %.0f%%)", in.Steal.Pct)
	}
	if d := in.Disk; d != nil {
		s := fmt.Sprintf("disk %s: %d requests in flight, %.1f completed a second, busy %.0f%% for %.0f s", d.Name(), d.InFlight, d.CompletedPerS, d.BusyPct, d.StalledSeconds)
		if d.LatencyMs > 0 {
			s += fmt.Sprintf(", %.0f ms a request", d.LatencyMs)
		}
		parts = append(parts, s)
	}
	if st := in.Steal; st != nil {
		s := fmt.Sprintf("the hypervisor withheld %.0f%% of the CPU (steal)", st.Pct)
		switch {
		case st.Burstable:
			s += "; " + st.InstanceType + " is burstable: CPU credits exhausted?"
		case st.InstanceType != "":
			s += "; " + st.InstanceType + " is not burstable: a noisy neighbour or the host"
		}
		parts = append(parts, s)
	}
	for _, b := range v.Jobs {
		parts = append(parts, b.Reason)
	}
	if lead != "" && v.Groups[0].Processes > 1 {
		g := v.Groups[0]
		if byIO && dTotal > 0 {
			parts = append(parts, fmt.Sprintf("%s waited %.0f s on I/O in %d processes", g.Name, g.DStateSec, g.Processes))
		} else if byMemory {
			grew := ""
			if grown >= MinGrowth {
				grew = fmt.Sprintf(" (grew %d MiB)", g.RSSGrowth>>20)
			}
			parts = append(parts, fmt.Sprintf("%s held %d MiB%s in %d processes", g.Name, g.RSSBytes>>20, grew, g.Processes))
		} else {
			parts = append(parts, fmt.Sprintf("%s used %.0f%% of the CPU in %d processes", g.Name, 100*g.CPUShare, g.Processes))
		}
	}
	if suspect >= 0 && !stealOnly {
		p := v.Top[suspect]
		if byIO && dTotal > 0 {
			w := ""
			if p.Wchan != "" {
				w = " in " + p.Wchan
			}
			parts = append(parts, fmt.Sprintf("%s pid %d waited %.0f s in D state%s", p.Comm, p.PID, p.DStateSec, w))
		} else if byMemory {
			grew := ""
			if growth(p) > 0 {
				grew = fmt.Sprintf(" (grew %d MiB)", p.RSSGrowth>>20)
			}
			parts = append(parts, fmt.Sprintf("%s pid %d held %d MiB%s and used %.0f%% of the CPU", p.Comm, p.PID, p.RSSBytes>>20, grew, 100*p.CPUShare))
		} else {
			parts = append(parts, fmt.Sprintf("%s pid %d used %.0f%% of the CPU", p.Comm, p.PID, 100*p.CPUShare))
		}
	}
	if len(parts) == 0 {
		v.Summary = "no process data covers the spike yet"
	} else {
		v.Summary = strings.Join(parts, "; ")
	}
	return v
}

// GroupOf is the group a process is blamed with: its job run, else the
// group of its cgroup; a system process or one in no group has none.
func GroupOf(p ProcUse) (kind, name string, ok bool) {
	kind, name = p.GroupKind, p.Group
	switch {
	case p.Job != "":
		return "job", "job " + p.Job, true
	case kind == "" && p.Unit != "":
		return "service", "service " + p.Unit, true
	case kind == "" || kind == "system":
		return "", "", false
	}
	return kind, name, true
}

// groups sums the top processes by what they belong to: a job run, else
// the group of their cgroup (a service, container, session), else the
// process alone is no group. The agent is left out.
func groups(top []ProcUse, memTotal int64, rank Rank) ([]GroupBlame, int64) {
	byMemory := rank == RankMemory
	idx := map[string]int{}
	var out []GroupBlame
	// grown counts every non-agent process, grouped or not, so a group's
	// growth share is of all that grew, not only of what had a group.
	var grown int64
	for _, p := range top {
		if p.Agent {
			continue
		}
		grown += p.RSSGrowth
		kind, name, ok := GroupOf(p)
		if !ok {
			continue
		}
		i, ok := idx[name]
		if !ok {
			i = len(out)
			idx[name] = i
			out = append(out, GroupBlame{Kind: kind, Name: name})
		}
		g := &out[i]
		g.CPUShare += p.CPUShare
		g.IOShare += p.IOShare
		g.DStateSec += p.DStateSec
		g.RSSBytes += p.RSSBytes
		g.RSSGrowth += p.RSSGrowth
		g.Processes++
	}
	for i := range out {
		g := &out[i]
		if memTotal > 0 {
			g.MemShare = float64(g.RSSBytes) / float64(memTotal)
		}
		if grown > 0 {
			g.GrowthShare = float64(g.RSSGrowth) / float64(grown)
		}
		switch share := rankShare(g.CPUShare, g.IOShare, g.RSSBytes, g.RSSGrowth, memTotal, grown, rank); {
		case share >= 0.5:
			g.Verdict = Caused
		case share >= 0.1:
			g.Verdict = Contributed
		default:
			g.Verdict = Coincident
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if rank == RankIO && out[i].IOShare != out[j].IOShare {
			return out[i].IOShare > out[j].IOShare
		}
		if byMemory {
			if grown >= MinGrowth && out[i].GrowthShare != out[j].GrowthShare {
				return out[i].GrowthShare > out[j].GrowthShare
			}
			if out[i].MemShare != out[j].MemShare {
				return out[i].MemShare > out[j].MemShare
			}
		} else if out[i].CPUShare != out[j].CPUShare {
			return out[i].CPUShare > out[j].CPUShare
		}
		if out[i].RSSBytes != out[j].RSSBytes {
			return out[i].RSSBytes > out[j].RSSBytes
		}
		return out[i].Name < out[j].Name
	})
	return out, grown
}

// rankShare is the share a spike is judged by: of the CPU, else of the
// growth of all top processes when memory grew (MinGrowth), else of their
// resident memory.
func rankShare(cpu, io float64, rss, grew, memTotal, grown int64, rank Rank) float64 {
	switch {
	case rank == RankIO && io > 0:
		return io
	case rank != RankMemory:
		return cpu
	case grown >= MinGrowth:
		return float64(grew) / float64(grown)
	case memTotal > 0:
		return float64(rss) / float64(memTotal)
	}
	return 0
}

// MinGrowth is the least growth that ranks a memory spike: below it, page
// cache and allocator noise would reorder processes that did not grow, and
// resident memory alone decides.
const MinGrowth = 16 << 20

func growth(p ProcUse) int64 {
	if p.RSSGrowth < MinGrowth {
		return 0
	}
	return p.RSSGrowth
}
