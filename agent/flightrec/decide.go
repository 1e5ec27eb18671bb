package flightrec

import (
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/collectors/procstat"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/procinfo"
)

// decide builds the verdict from the ring ticks since onset.
func (r *Recorder) decide(onset time.Time) correlate.Verdict {
	var total float64
	jobCPU := map[string]float64{}
	procs := map[procstat.Key]*correlate.ProcUse{}
	var memTotal int64
	// Each process's resident memory before the spike, from the earliest
	// tick of the window before onset that lists it: the base its growth
	// is measured from.
	base := map[procstat.Key]int64{}
	dstate := map[procstat.Key]float64{} // seconds seen in D state
	jobD := map[string]float64{}
	// The agent's own unit start reads as a run like any other (systemd
	// logs it at boot): the run its processes belong to is no candidate.
	agentRuns := map[string]bool{}
	var since, prev time.Time
	var disk *procstat.DiskState
	for _, t := range r.ring {
		dt := 0.0
		if !prev.IsZero() {
			dt = t.t.Sub(prev).Seconds()
		}
		prev = t.t
		if t.t.Before(onset.Add(-r.o.JobWindow)) {
			continue
		}
		if t.t.Before(onset.Add(-time.Second)) {
			if since.IsZero() {
				since = t.t
			}
			for _, p := range t.top {
				if _, ok := base[procstat.Key{PID: p.PID, Start: p.Start}]; !ok {
					base[procstat.Key{PID: p.PID, Start: p.Start}] = p.RSSBytes
				}
			}
			continue
		}
		total += t.total
		for id, c := range t.jobs {
			jobCPU[id] += c
		}
		if t.disk != nil && (disk == nil || t.disk.Stalled >= disk.Stalled) {
			disk = t.disk
		}
		for _, p := range t.top {
			k := procstat.Key{PID: p.PID, Start: p.Start}
			if p.State == 'D' && t.top != nil {
				dstate[k] += dt
				if p.Job != "" {
					jobD[p.Job] += dt
				}
			}
			pu, ok := procs[k]
			if !ok {
				pu = &correlate.ProcUse{PID: p.PID, Comm: p.Comm}
				procs[k] = pu
				if _, ok := base[k]; !ok {
					// Not listed before the spike: started since (it grew
					// from nothing), else too small to be listed, which
					// its first sight in the spike bounds from above.
					base[k] = p.RSSBytes
					if !since.IsZero() && r.sampler.StartTime(p.Start).After(since) {
						base[k] = 0
					}
				}
			}
			pu.CPUSec += p.CPUSec
			pu.RSSBytes = max(pu.RSSBytes, p.RSSBytes)
			pu.Comm = p.Comm // the latest: a forked shell becomes what it execs
			pu.Agent = p.PID == r.o.Self || p.PPID == r.o.Self
			if pu.Agent && p.Job != "" {
				agentRuns[p.Job] = true
			}
			// kthreadd (pid 2) and its children: jbd2, kworkers, flush
			// threads wait on the disk for the processes that wrote.
			pu.Kernel = p.PID == 2 || p.PPID == 2
			if p.Job != "" {
				pu.Job = r.jobName(p.Job)
			}
		}
	}
	var pl []correlate.ProcUse
	for k, p := range procs {
		p.RSSGrowth = max(0, p.RSSBytes-base[k])
		p.DStateSec = dstate[k]
		r.describe(k, p)
		if p.Job == "" && !p.Agent {
			// Remembered for the incident: an OOM-killed hog is gone by
			// the next snapshot, and the VM's verdict then lost its unit.
			if u := r.sampler.Unit(k); u != "" {
				r.inc.units[k] = u
			}
			p.Unit = r.inc.units[k]
		}
		pl = append(pl, *p)
		memTotal += p.RSSBytes
	}
	var runs []correlate.RunUse
	for _, j := range r.sampler.Jobs() {
		if agentRuns[j.ID] {
			continue
		}
		runs = append(runs, correlate.RunUse{ID: j.ID, Job: j.Job, PID: j.PID, Unit: j.Unit, Start: j.Start, End: j.Ended,
			// A run none of whose processes was ever sampled was not seen
			// running: the stock debian-sa1 line on systemd hosts exits in
			// a millisecond, and must not read as "running at onset".
			Active: j.Procs != 0 && (j.Ended.IsZero() || j.Ended.After(onset)), CPUSec: jobCPU[j.ID], TotalCPU: j.CPUSec, PeakRSS: j.Peak,
			Unverified: j.Unverified, DStateSec: jobD[j.ID]})
	}
	in := correlate.In{Onset: onset, Window: r.o.JobWindow, Runs: runs, Procs: pl, Total: total, MemTotal: memTotal,
		Rank: correlate.RankFor(r.det.Reasons), TopN: r.o.TopN, BusyCPU: correlate.Has(r.det.Reasons, correlate.ReasonCPU)}
	if in.Rank == correlate.RankIO && disk != nil {
		in.Disk = &correlate.Disk{Device: disk.Device, Volume: disk.Volume, InFlight: disk.InFlight, StalledSeconds: evidence.Round2(disk.Stalled.Seconds()),
			BusyPct: evidence.Round2(disk.BusyPct), CompletedPerS: evidence.Round2(disk.CompletedPerS), LatencyMs: evidence.Round2(disk.LatencyMs)}
	}
	if correlate.Has(r.det.Reasons, correlate.ReasonCPUSteal) {
		last := r.ring[len(r.ring)-1].h
		in.Steal = &correlate.Steal{Pct: evidence.Round2(last.CPUSteal), InstanceType: r.o.InstanceType, Burstable: Burstable(r.o.InstanceType)}
	}
	return correlate.DecideIn(in)
}

// Burstable reports whether an instance type earns and spends CPU
// credits (t2, t3, t3a, t4g): out of credits, it runs at its baseline and
// the guest sees the rest as steal.
func Burstable(instanceType string) bool {
	fam, _, _ := strings.Cut(instanceType, ".")
	switch fam {
	case "t1", "t2", "t3", "t3a", "t4g":
		return true
	}
	return false
}

// procInfo is what an incident keeps of one process it names.
type procInfo struct {
	info    procinfo.Info
	parents []string
	wchan   string
}

// describe fills in what p is: read once per process and kept for the
// incident, since a killed hog is gone by the next snapshot.
func (r *Recorder) describe(k procstat.Key, p *correlate.ProcUse) {
	pi, ok := r.inc.infos[k]
	if !ok {
		in, live := r.sampler.Info(k)
		if !live {
			return
		}
		pi = procInfo{info: in, parents: r.sampler.Parents(k, 8)}
		r.inc.infos[k] = pi
	}
	in := pi.info
	p.Cmdline, p.CmdlineRedacted, p.User, p.Cgroup, p.Parents = in.Cmdline, in.Redacted, in.User, in.Cgroup, pi.parents
	if in.UID >= 0 {
		u := in.UID
		p.UID = &u
	}
	p.Group, p.GroupKind = in.Group.String(), in.Group.Kind
	if g := in.Group; g.Kind == "session" || g.Kind == "" || g.Kind == "system" || g.Kind == "service" && (g.Name == "ssh.service" || g.Name == "sshd.service") {
		// A login's processes (a host without logind leaves them in
		// sshd's service): named by who logged in from where, which is
		// what people recognise. Never a container's or another
		// service's: a process there is that service's, whoever's
		// session started it.
		if l, ok := r.loginOf(k); ok {
			p.Group, p.GroupKind = "session of "+l.User+" from "+l.Addr, "session"
			p.Login = l.User + "@" + l.Addr
		}
	}
	p.Started = r.sampler.StartTime(k.Start).UTC()
	if p.DStateSec > 0 && pi.wchan == "" {
		pi.wchan = procstat.Wchan(r.o.Root.Proc, k.PID)
		r.inc.infos[k] = pi
	}
	p.Wchan = pi.wchan
}

func (r *Recorder) jobName(id string) string {
	for _, j := range r.sampler.Jobs() {
		if j.ID == id {
			return j.Job
		}
	}
	return ""
}
