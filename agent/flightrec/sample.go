package flightrec

import (
	"context"
	"fmt"
	"github.com/ec2diag/ec2diag/internal/utmp"
	"strconv"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/procstat"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"go.uber.org/zap"
)

// eventsKept bounds the kernel events an incident records, eventsWindow
// how long before onset one still belongs to it.
const (
	eventsKept   = 64
	eventsWindow = 2 * time.Minute
)

// sample is one turn of the recorder: take in what the log said, sample
// the host (and, when needed, every process), keep the tick in the ring,
// infer which job runs ended, and detect, decide and record.
func (r *Recorder) sample(ctx context.Context, e collectors.Emitter, woken bool) error {
	r.applyUpdate()
	r.applyInbox()
	now := r.clk.Now()
	hs, err := r.host.Sample(ctx)
	if err != nil {
		return err
	}
	psi := procstat.ReadPSI(r.o.Root.Proc, r.psiBuf)
	if psi.Available {
		hs.Metrics["psi_cpu_some_avg10"] = psi.CPUSome
		hs.Metrics["psi_memory_some_avg10"] = psi.MemSome
		hs.Metrics["psi_memory_full_avg10"] = psi.MemFull
		hs.Metrics["psi_io_full_avg10"] = psi.IOFull
		hs.Metrics["psi_io_some_avg10"] = psi.IOSome
	}
	disk := worstDisk(r.disks.Observe(now))
	_, memKnown := hs.Metrics["mem_available_pct"]
	// The guest's own use: CPUBusy (the metric) counts steal too, which is
	// the hypervisor's, not a process's.
	h := correlate.Host{Time: now, CPUBusy: max(0, hs.Metrics["cpu_busy_pct"]-hs.Metrics["cpu_steal_pct"]), CPUSteal: hs.Metrics["cpu_steal_pct"],
		MemAvailPct: hs.Metrics["mem_available_pct"], MemKnown: memKnown, PSIMemFull: psi.MemFull, PSIMemSome: psi.MemSome, PSICPUSome: psi.CPUSome,
		SwapUsedPct: hs.Metrics["swap_used_pct"], PSIIOSome: psi.IOSome, PSIIOFull: psi.IOFull,
		Booting: r.booting(now)}
	if disk != nil {
		h.IOStalled, h.IODevice = disk.Stalled, disk.Device
		if disk.Stalled > 0 {
			hs.Metrics["io_stalled_seconds"] = disk.Stalled.Seconds()
		}
	}
	t := tick{t: now, h: h, jobs: map[string]float64{}, disk: disk}
	if r.needScan(h, now, woken) {
		before := map[*procstat.JobRun]float64{}
		for _, j := range r.sampler.Jobs() {
			before[j] = j.CPUSec
		}
		var procs []procstat.ProcUse
		procs, t.total = r.sampler.Tick(now, nil)
		t.top = procstat.Top(procs, r.o.TopN)
		r.lastScan = now
		r.stats.Scans++
		r.jobEnds(now, procs, before, t.jobs)
	} else {
		r.stats.ScansSkipped++
	}
	r.ring = append(r.ring, t)
	if len(r.ring) > r.o.RingSize {
		r.ring = r.ring[len(r.ring)-r.o.RingSize:]
	}
	if err := r.summaries(ctx, e, now); err != nil {
		return err
	}
	switch r.det.Observe(t.h) {
	case correlate.Onset:
		err = r.onset(ctx, e, now)
	case correlate.End:
		err = r.end(ctx, e, now)
	default:
		if r.inc != nil && r.inc.snapshotDue(r, now) {
			err = r.record(ctx, e, now, evidence.KindSnapshot)
		}
	}
	if err != nil {
		return err
	}
	// Every sample says whether the host is stalled: the liveness alarm
	// reboots on 1, and on the figure missing (the agent cannot publish).
	hs.Metrics["stalled"] = 0
	if r.stalled(now, h) {
		hs.Metrics["stalled"] = 1
	}
	if _, ok := hs.Metrics["cpu_busy_pct"]; ok {
		return e.Emit(ctx, hs)
	}
	return nil
}

// stalled reports whether the host has been stalled for StalledAfter: a
// spike of memory, I/O or withheld CPU, or CPU so busy that tasks wait
// for it half the time (PSI cpu some): not a busy batch job alone.
func (r *Recorder) stalled(now time.Time, h correlate.Host) bool {
	active, onset := r.det.Active()
	if !active || r.o.StalledAfter <= 0 || now.Sub(onset) < r.o.StalledAfter {
		return false
	}
	for _, x := range r.det.Reasons {
		if x.Kind != correlate.ReasonCPU {
			return true
		}
	}
	return h.PSICPUSome >= 50
}

// worstDisk is the device an I/O spike is about: the longest stalled,
// else the busiest (nil: no disk read).
func worstDisk(ds []procstat.DiskState) *procstat.DiskState {
	var w *procstat.DiskState
	for i := range ds {
		d := &ds[i]
		if w == nil || d.Stalled > w.Stalled || d.Stalled == w.Stalled && d.BusyPct > w.BusyPct {
			w = d
		}
	}
	return w
}

// applyInbox takes in what the log said since the last sample.
func (r *Recorder) applyInbox() {
	r.in.mu.Lock()
	msgs := r.in.jobs.take()
	kev := r.in.kernel.take()
	claims := r.in.claims.take()
	r.in.mu.Unlock()
	for _, l := range claims {
		if why := r.checkLogin(l); why != "" {
			r.stats.LoginsRefused++
			r.o.Log.Debug("SSH login line not confirmed by the process table; not used", zap.Int("pid", l.PID), zap.String("why", why))
			continue
		}
		r.in.mu.Lock()
		r.in.logins.add(l)
		r.in.mu.Unlock()
	}
	for _, ev := range kev {
		if ev.Time.Before(r.sampler.BootTime()) {
			continue // an earlier boot's, read again from the log
		}
		e := evidence.Event{Time: ev.Time, Type: ev.Type, PID: ev.PID, Comm: ev.Comm, Message: ev.Message}
		if !ev.FromKernel {
			e.Unverified = r.kernel.check(r, ev)
		}
		r.keepEvent(e)
	}
	for _, m := range msgs {
		if m.run != nil {
			r.sampler.AddJob(m.run) // refuses a line read again after a restart
			continue
		}
		if m.cancel {
			r.sampler.RemoveJob(m.id)
			continue
		}
		for _, j := range r.sampler.Jobs() {
			if j.ID == m.id && j.Ended.IsZero() {
				j.LogEnded = m.ended // taken once its processes are gone
			}
		}
	}
}

// jobEnds infers which job runs ended from a scan. The log may never say
// a job ended (Debian cron logs no END by default): when none of its
// processes is left, it has. An end the log gave counts only then, with
// the log's time: session lines come from auth.log and CMD lines from
// syslog, read apart, and the VM paired a burner with debian-sa1's
// session, which closed at once and ended the burner's run 0.2 s in.
func (r *Recorder) jobEnds(now time.Time, procs []procstat.ProcUse, before map[*procstat.JobRun]float64, used map[string]float64) {
	live := map[string]bool{}
	for _, p := range procs {
		if p.Job != "" {
			live[p.Job] = true
		}
	}
	for _, j := range r.sampler.Jobs() {
		used[j.ID] = j.CPUSec - before[j]
		if live[j.ID] {
			j.LastLive = now
		}
		if j.Ended.IsZero() && j.Procs > 0 && !live[j.ID] {
			j.Ended = now
			// The log's time is finer than a sample, unless processes
			// were seen alive after it: then it was some other run's end.
			if j.LogEnded.After(j.LastLive) && j.LogEnded.Before(now) {
				j.Ended = j.LogEnded
			}
		}
		if j.Ended.IsZero() && j.Procs == 0 && !j.LogEnded.IsZero() {
			j.Ended = j.LogEnded // ended before any sample saw it
		}
		// Never seen live: it exited before the first scan after its log
		// line (the stock debian-sa1 line on systemd hosts takes ~1 ms).
		if j.Ended.IsZero() && j.Procs == 0 && now.Sub(j.Start) > 2*r.o.Interval+5*time.Second {
			j.Ended = j.Start
		}
	}
}

// booting reports whether the machine is still starting up: a boot runs
// every CPU at 100% by itself, which is not an incident.
func (r *Recorder) booting(now time.Time) bool {
	if r.o.BootGrace <= 0 || now.Sub(r.sampler.BootTime()) >= r.o.BootGrace {
		return false
	}
	r.in.mu.Lock()
	done := r.in.boot
	r.in.mu.Unlock()
	if done.IsZero() && now.Sub(r.utmpRead) >= utmpEvery {
		// Started after systemd logged "Startup finished" (installed on
		// a running machine, restarted), the agent never reads that
		// line: the run-level record in utmp says the same.
		r.utmpRead = now
		if t, err := utmp.RunLevelTime(r.o.Root.Path("/run/utmp")); err == nil {
			r.BootFinished(t)
			r.in.mu.Lock()
			done = r.in.boot
			r.in.mu.Unlock()
		}
	}
	return done.IsZero() || now.Sub(done) < bootSettle
}

// utmpEvery is how often, while the boot seems to go on, utmp is read.
const utmpEvery = 10 * time.Second

// needScan decides whether this sample scans every process. The scan is
// what attribution, job runs and their figures are made of; while the host
// is calm and no run is open, nothing needs it every sample, and a scan of
// a few hundred processes is most of the idle agent's CPU (bench/idle.sh).
// A sample that is not calm scans, so the samples of an onset always hold
// processes: the first one's figures then cover the time since the last
// calm scan, which only dilutes a share, it never moves the blame.
func (r *Recorder) needScan(h correlate.Host, now time.Time, woken bool) bool {
	if r.o.CalmProcessInterval <= 0 || woken || r.lastScan.IsZero() || now.Sub(r.lastScan) >= r.o.CalmProcessInterval {
		return true
	}
	if !r.det.Calm(h) {
		return true
	}
	for _, j := range r.sampler.Jobs() {
		if j.Ended.IsZero() {
			return true
		}
	}
	return false
}

// summaries writes a resource summary for every job run that ended: every
// run gets one, spike or not.
func (r *Recorder) summaries(ctx context.Context, e collectors.Emitter, now time.Time) error {
	for _, j := range r.sampler.Jobs() {
		if j.Ended.IsZero() || j.Procs < 0 {
			continue
		}
		if j.Unverified != "" {
			// A line the process table refuted (a forged CMD line): no
			// summary of its own, only a count; a flood of them would
			// fill the store and the journal.
			j.Procs = -1
			r.stats.RunsRefuted++
			continue
		}
		sum := evidence.JobRun{ID: j.ID, Job: j.Job, PID: j.PID, Unit: j.Unit, Start: j.Start, End: j.Ended,
			CPUSeconds: j.CPUSec, PeakRSSBytes: j.Peak, ProcessesSeen: j.Procs > 0}
		j.Procs = -1 // summarised
		if err := r.o.Evidence.JobRun(now, &sum); err != nil {
			r.o.Log.Warn("job run summary not kept", zap.Error(err))
		}
		err := e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceRecorder, Type: collectors.TypeJobRun,
			Message: fmt.Sprintf("job %s ran %s, used %.2f s CPU, peak RSS %d MiB", j.Job, j.Ended.Sub(j.Start).Round(time.Millisecond), j.CPUSec, j.Peak>>20),
			Dims:    map[string]string{"job": j.Job, "pid": strconv.Itoa(j.PID)},
			Metrics: map[string]float64{"cpu_seconds": j.CPUSec, "peak_rss_bytes": float64(j.Peak), "duration_seconds": j.Ended.Sub(j.Start).Seconds()}})
		if err != nil {
			return err
		}
	}
	r.sampler.DropEnded(now.Add(-r.o.JobWindow - time.Minute))
	return nil
}

// keepEvent keeps a kernel event for the incident's timeline: the last
// eventsKept, or, during an incident, its first ones.
func (r *Recorder) keepEvent(ev evidence.Event) {
	if r.inc != nil {
		r.inc.addEvent(ev)
		return
	}
	if len(r.events) >= eventsKept {
		r.events = r.events[1:]
	}
	r.events = append(r.events, ev)
}
