package procstat

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/host"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/incident"
	"golang.org/x/sys/unix"
)

// Options configure the Recorder.
type Options struct {
	ProcRoot      string
	Interval      time.Duration // normal sampling
	FastInterval  time.Duration // while a spike or pressure lasts
	SnapshotEvery time.Duration // evidence repeated while a spike lasts
	JobWindow     time.Duration // a job started this long before onset is a candidate
	Thresholds    correlate.Thresholds
	Store         *incident.Store
	// Console is the kernel log device for the one-line onset notice that
	// reaches the serial console ("" disables it).
	Console  string
	TopN     int
	RingSize int
	Log      func(msg string, err error)
}

// Recorder is the flight recorder collector.
type Recorder struct {
	o       Options
	host    host.Collector
	sampler *Sampler
	det     correlate.Detector
	ring    []tick
	psiBuf  []byte

	mu      sync.Mutex
	pending []jobMsg
	wake    chan struct{}

	incident     string
	lastSnapshot time.Time
	lastConsole  time.Time
	verdict      correlate.Verdict
}

type jobMsg struct {
	run   *JobRun
	ended time.Time
	id    string
}

type tick struct {
	t     time.Time
	h     correlate.Host
	total float64
	jobs  map[string]float64
	top   []ProcUse
}

// NewRecorder builds the recorder; nothing runs until Run.
func NewRecorder(o Options) *Recorder {
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.TopN == 0 {
		o.TopN = 10
	}
	if o.RingSize == 0 {
		o.RingSize = 240
	}
	if o.Log == nil {
		o.Log = func(string, error) {}
	}
	return &Recorder{o: o, host: host.Collector{ProcRoot: o.ProcRoot}, sampler: NewSampler(o.ProcRoot),
		det: correlate.Detector{T: o.Thresholds}, psiBuf: make([]byte, 512), wake: make(chan struct{}, 1)}
}

func (r *Recorder) Name() string { return "recorder" }

// JobStarted tells the recorder about a job run seen in the logs; it
// samples at once so that a short job's processes are found live.
func (r *Recorder) JobStarted(id, job string, pid int, unit string, start time.Time) {
	r.mu.Lock()
	r.pending = append(r.pending, jobMsg{run: &JobRun{ID: id, Job: job, PID: pid, Unit: unit, Start: start}})
	r.mu.Unlock()
	r.nudge()
}

// JobEnded marks a run ended (from its log line).
func (r *Recorder) JobEnded(id string, at time.Time) {
	r.mu.Lock()
	r.pending = append(r.pending, jobMsg{id: id, ended: at})
	r.mu.Unlock()
}

func (r *Recorder) nudge() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Recorder) Run(ctx context.Context, e collectors.Emitter) error {
	WatchPSI(ctx, r.o.ProcRoot, "memory", "some 150000 2000000", r.wake)
	WatchPSI(ctx, r.o.ProcRoot, "cpu", "some 500000 2000000", r.wake)
	first := true
	for {
		if err := r.sample(ctx, e); err != nil {
			return err
		}
		if first {
			e.Ready()
			first = false
		}
		iv := r.o.Interval
		if active, _ := r.det.Active(); active && r.o.FastInterval > 0 {
			iv = r.o.FastInterval
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(iv):
		case <-r.wake:
		}
	}
}

func (r *Recorder) applyJobs() {
	r.mu.Lock()
	msgs := r.pending
	r.pending = nil
	r.mu.Unlock()
	for _, m := range msgs {
		if m.run != nil {
			dup := false
			for _, j := range r.sampler.Jobs() {
				dup = dup || j.ID == m.run.ID // a line read again after a restart
			}
			if !dup {
				r.sampler.AddJob(m.run)
			}
			continue
		}
		for _, j := range r.sampler.Jobs() {
			if j.ID == m.id && j.Ended.IsZero() {
				j.Ended = m.ended
			}
		}
	}
}

func (r *Recorder) sample(ctx context.Context, e collectors.Emitter) error {
	r.applyJobs()
	now := time.Now()
	hs, err := r.host.Sample(ctx)
	if err != nil {
		return err
	}
	psi := ReadPSI(r.o.ProcRoot, r.psiBuf)
	if psi.Available {
		hs.Metrics["psi_cpu_some_avg10"] = psi.CPUSome
		hs.Metrics["psi_memory_some_avg10"] = psi.MemSome
		hs.Metrics["psi_memory_full_avg10"] = psi.MemFull
		hs.Metrics["psi_io_full_avg10"] = psi.IOFull
	}
	before := map[*JobRun]float64{}
	live := map[*JobRun]bool{}
	for _, j := range r.sampler.Jobs() {
		before[j] = j.CPUSec
	}
	procs, total := r.sampler.Tick(now, nil)
	for _, p := range procs {
		for _, j := range r.sampler.Jobs() {
			if p.Job == j.ID {
				live[j] = true
			}
		}
	}
	t := tick{t: now, total: total, jobs: map[string]float64{}, top: Top(procs, r.o.TopN),
		h: correlate.Host{Time: now, CPUBusy: hs.Metrics["cpu_busy_pct"], CPUSteal: hs.Metrics["cpu_steal_pct"],
			MemAvailPct: hs.Metrics["mem_available_pct"], PSIMemFull: psi.MemFull, PSICPUSome: psi.CPUSome}}
	for _, j := range r.sampler.Jobs() {
		t.jobs[j.ID] = j.CPUSec - before[j]
		// The log may never say a job ended (Debian cron logs no END by
		// default): when none of its processes is left, it has.
		if j.Ended.IsZero() && j.Procs > 0 && !live[j] {
			j.Ended = now
		}
		// Never seen live: it exited before the first scan after its log
		// line (the stock debian-sa1 line on systemd hosts takes ~1 ms).
		if j.Ended.IsZero() && j.Procs == 0 && now.Sub(j.Start) > 2*r.o.Interval+5*time.Second {
			j.Ended = j.Start
		}
	}
	r.ring = append(r.ring, t)
	if len(r.ring) > r.o.RingSize {
		r.ring = r.ring[len(r.ring)-r.o.RingSize:]
	}
	if _, ok := hs.Metrics["cpu_busy_pct"]; ok {
		e.Emit(ctx, hs)
	}
	r.summaries(ctx, e, now)
	switch r.det.Observe(t.h) {
	case correlate.Onset:
		r.onset(ctx, e, now)
	case correlate.End:
		r.end(ctx, e, now)
	default:
		if active, _ := r.det.Active(); active && now.Sub(r.lastSnapshot) >= r.o.SnapshotEvery {
			r.snapshot(ctx, e, now, incident.KindSnapshot)
		}
	}
	return nil
}

// summaries writes a resource summary for every job run that ended: every
// run gets one, spike or not.
func (r *Recorder) summaries(ctx context.Context, e collectors.Emitter, now time.Time) {
	for _, j := range r.sampler.Jobs() {
		if j.Ended.IsZero() || j.Procs < 0 {
			continue
		}
		sum := map[string]any{"id": j.ID, "job": j.Job, "pid": j.PID, "unit": j.Unit, "start": j.Start, "end": j.Ended,
			"cpu_seconds": j.CPUSec, "peak_rss_bytes": j.Peak, "processes_seen": j.Procs > 0}
		if r.o.Store != nil {
			if _, err := r.o.Store.Append(incident.KindJobRun, "", now, sum, false); err != nil {
				r.o.Log("incident store", err)
			}
		}
		e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: "recorder", Type: "job_run",
			Message: fmt.Sprintf("job %s ran %s, used %.2f s CPU, peak RSS %d MiB", j.Job, j.Ended.Sub(j.Start).Round(time.Millisecond), j.CPUSec, j.Peak>>20),
			Dims:    map[string]string{"job": j.Job, "pid": strconv.Itoa(j.PID)},
			Metrics: map[string]float64{"cpu_seconds": j.CPUSec, "peak_rss_bytes": float64(j.Peak), "duration_seconds": j.Ended.Sub(j.Start).Seconds()}})
		j.Procs = -1 // summarised
	}
	r.sampler.DropEnded(now.Add(-r.o.JobWindow - time.Minute))
}

// decide builds the verdict from the ring ticks since onset.
func (r *Recorder) decide(onset time.Time) correlate.Verdict {
	var total float64
	jobCPU := map[string]float64{}
	procs := map[Key]*correlate.ProcUse{}
	var memTotal int64
	for _, t := range r.ring {
		if t.t.Before(onset.Add(-time.Second)) {
			continue
		}
		total += t.total
		for id, c := range t.jobs {
			jobCPU[id] += c
		}
		for _, p := range t.top {
			k := Key{p.PID, p.Start}
			pu, ok := procs[k]
			if !ok {
				pu = &correlate.ProcUse{PID: p.PID, Comm: p.Comm}
				procs[k] = pu
			}
			pu.CPUSec += p.CPUSec
			pu.RSSBytes = max(pu.RSSBytes, p.RSSBytes)
			pu.Comm = p.Comm // the latest: a forked shell becomes what it execs
			if p.Job != "" {
				pu.Job = r.jobName(p.Job)
			}
		}
	}
	var pl []correlate.ProcUse
	for _, p := range procs {
		pl = append(pl, *p)
		memTotal += p.RSSBytes
	}
	var runs []correlate.RunUse
	for _, j := range r.sampler.Jobs() {
		runs = append(runs, correlate.RunUse{ID: j.ID, Job: j.Job, PID: j.PID, Unit: j.Unit, Start: j.Start,
			// A run none of whose processes was ever sampled was not seen
			// running: the stock debian-sa1 line on systemd hosts exits in
			// a millisecond, and must not read as "running at onset".
			Active: j.Procs != 0 && (j.Ended.IsZero() || j.Ended.After(onset)), CPUSec: jobCPU[j.ID], TotalCPU: j.CPUSec, PeakRSS: j.Peak})
	}
	return correlate.Decide(onset, r.o.JobWindow, runs, pl, total, memTotal)
}

func (r *Recorder) jobName(id string) string {
	for _, j := range r.sampler.Jobs() {
		if j.ID == id {
			return j.Job
		}
	}
	return ""
}

func (r *Recorder) onset(ctx context.Context, e collectors.Emitter, now time.Time) {
	_, onset := r.det.Active()
	r.incident = onset.UTC().Format("20060102T150405Z")
	r.snapshot(ctx, e, now, incident.KindOnset)
	r.console(now)
}

func (r *Recorder) snapshot(ctx context.Context, e collectors.Emitter, now time.Time, kind string) {
	_, onset := r.det.Active()
	r.verdict = r.decide(onset)
	r.lastSnapshot = now
	last := r.ring[len(r.ring)-1]
	data := map[string]any{"onset": onset, "reasons": r.det.Reasons, "host": last.h, "verdict": r.verdict}
	if r.o.Store != nil {
		// fdatasync: this record must be on disk before the machine can hang.
		if _, err := r.o.Store.Append(kind, r.incident, now, data, true); err != nil {
			r.o.Log("incident store", err)
		}
	}
	dims := map[string]string{"incident": r.incident, "level": "warn"}
	if kind == incident.KindOnset {
		dims["journal_priority"] = "2" // CRIT: journald syncs its files at once
	}
	if len(r.verdict.Top) > 0 {
		dims["top_pid"] = strconv.Itoa(r.verdict.Top[0].PID)
		dims["top_comm"] = r.verdict.Top[0].Comm
	}
	if len(r.verdict.Jobs) > 0 && r.verdict.Jobs[0].Verdict != "coincident" {
		dims["job"] = r.verdict.Jobs[0].Job
	}
	typ := "spike"
	if kind == incident.KindSnapshot {
		typ = "spike_snapshot"
	}
	e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: "recorder", Type: typ, Dims: dims,
		Message: fmt.Sprintf("spike (%s): cause %s; %s", joinReasons(r.det.Reasons), r.verdict.Cause, r.verdict.Summary),
		Metrics: map[string]float64{"cpu_busy_pct": last.h.CPUBusy, "mem_available_pct": last.h.MemAvailPct}})
}

func (r *Recorder) end(ctx context.Context, e collectors.Emitter, now time.Time) {
	if r.o.Store != nil {
		r.o.Store.Append(incident.KindEnd, r.incident, now, map[string]any{"verdict": r.verdict}, true)
	}
	e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: "recorder", Type: "spike_end",
		Dims: map[string]string{"incident": r.incident}, Message: "spike ended: cause " + r.verdict.Cause})
	r.incident = ""
}

// console writes one short line to the kernel log at KERN_CRIT: it reaches
// the serial console, which EC2 keeps ("Get system log") even when the disk
// never got the data. Rate-limited: the kernel limits /dev/kmsg writers too.
func (r *Recorder) console(now time.Time) {
	if r.o.Console == "" || now.Sub(r.lastConsole) < 30*time.Second {
		return
	}
	r.lastConsole = now
	line := fmt.Sprintf("<2>ec2diag: spike %s (%s): cause %s", r.incident, joinReasons(r.det.Reasons), r.verdict.Cause)
	if len(line) > 400 {
		line = line[:400]
	}
	var f *os.File
	if stderrIsKmsg() {
		// The unit has systemd open /dev/kmsg (root-only) as our stderr
		// before it drops privileges: the only way an unprivileged agent
		// can reach the console.
		f = os.Stderr
	} else {
		var err error
		if f, err = os.OpenFile(r.o.Console, os.O_WRONLY|os.O_APPEND, 0); err != nil {
			r.o.Log("console notice", err)
			return
		}
		defer f.Close()
	}
	if _, err := f.Write([]byte(line + "\n")); err != nil {
		r.o.Log("console notice", err)
	}
}

func joinReasons(rs []string) string {
	s := ""
	for i, x := range rs {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

// stderrIsKmsg reports whether fd 2 is /dev/kmsg (char device 1:11).
func stderrIsKmsg() bool {
	var st unix.Stat_t
	if unix.Fstat(2, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return false
	}
	return unix.Major(uint64(st.Rdev)) == 1 && unix.Minor(uint64(st.Rdev)) == 11
}
