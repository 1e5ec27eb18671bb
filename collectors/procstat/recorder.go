package procstat

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/host"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/incident"
	"github.com/ec2diag/ec2diag/internal/procinfo"
	"golang.org/x/sys/unix"
)

// Options configure the Recorder.
type Options struct {
	ProcRoot string
	Interval time.Duration // normal sampling
	// CalmProcessInterval: while calm (Detector.Calm, no job run open, not
	// woken early) processes are scanned at most this often; 0 = always.
	CalmProcessInterval time.Duration
	FastInterval        time.Duration // while a spike or pressure lasts
	SnapshotEvery       time.Duration // evidence repeated while a spike lasts
	JobWindow           time.Duration // a job started this long before onset is a candidate
	Thresholds          correlate.Thresholds
	Store               *incident.Store
	// Console is the kernel log device for the one-line onset notice that
	// reaches the serial console ("" disables it).
	Console  string
	TopN     int
	RingSize int
	// CronParents are the names a cron job's parent may have (default
	// DefaultTrustedParents).
	CronParents []string
	// BootGrace: for at most this long after boot, CPU alone makes no
	// incident while the boot is in progress (until systemd logs "Startup
	// finished", plus bootSettle). 0: no boot rule.
	BootGrace time.Duration
	// Self is the agent's pid (default: this process): listed, never blamed.
	Self int
	Log  func(msg string, err error)
}

// bootSettle is how long after systemd's "Startup finished" the boot still
// counts: what the last units started is still warming up.
const bootSettle = 30 * time.Second

// minSnapshotGap bounds the snapshots a spike that changes its kind can
// add: each is an fdatasync.
const minSnapshotGap = 2 * time.Second

// memorySnapshotEvery is the snapshot interval while memory is among a
// spike's reasons.
const memorySnapshotEvery = 5 * time.Second

// Recorder is the flight recorder collector.
type Recorder struct {
	o       Options
	host    host.Collector
	sampler *Sampler
	det     correlate.Detector
	ring    []tick
	psiBuf  []byte

	mu             sync.Mutex
	pending        []jobMsg
	pendingDropped uint64
	wake           chan struct{}

	bootDone time.Time        // systemd's "Startup finished" of this boot (under mu)
	kevents  []incident.Event // kernel events from the logs, not yet applied (under mu)
	logins   map[int]login    // SSH logins by the logging sshd's pid (under mu)

	// events are the recent kernel events (the last eventsKept within
	// eventsWindow) and recorded how many of them the incident's records
	// already hold; recordedTo is the newest sample they hold.
	events     []incident.Event
	recordedEv int
	recordedTo time.Time

	incident     string
	lastSnapshot time.Time
	lastConsole  time.Time
	consoleSaid  string // what the last console line said, to repeat only news
	snapKinds    string // the kinds of reason the last snapshot had
	kmsg         *os.File
	verdict      correlate.Verdict
	vmBuf        []byte
	kernelOnset  Kernel
	units        map[Key]string // units of the incident's processes, kept when they exit
	infos        map[Key]procInfo
	lastScan     time.Time
	// Scans and ScansSkipped count process scans made and left out while
	// calm (read by tests and the summary).
	Scans, ScansSkipped uint64
}

// queue hands a job message to the sampling goroutine, within maxPending:
// a flood of start lines (anyone can log them) is counted, not kept.
func (r *Recorder) queue(m jobMsg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) >= maxPending {
		r.pendingDropped++
		return
	}
	r.pending = append(r.pending, m)
}

// maxPending bounds the job messages queued between two samples.
const maxPending = 4 * MaxJobs

type jobMsg struct {
	run    *JobRun
	ended  time.Time
	id     string
	cancel bool
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
	o = o.withDefaults()
	r := &Recorder{o: o, host: host.Collector{ProcRoot: o.ProcRoot}, sampler: NewSampler(o.ProcRoot),
		det: correlate.Detector{T: o.Thresholds}, psiBuf: make([]byte, 512), wake: make(chan struct{}, 1), units: map[Key]string{}, infos: map[Key]procInfo{}}
	if len(o.CronParents) > 0 {
		r.sampler.TrustedParents = o.CronParents
	}
	return r
}

// Reconfigure applies a reloaded configuration's settings, keeping what
// the recorder knows: the incident in progress, its job runs, the samples
// behind it. A reload used to build a new recorder, so the incident in
// progress never got its end and was reported after the next boot as a
// hang. Call it only while Run is not running (between pipelines). The
// store, /proc root and own pid do not change.
func (r *Recorder) Reconfigure(o Options) {
	o.Store, o.ProcRoot, o.Self = r.o.Store, r.o.ProcRoot, r.o.Self
	r.o = o.withDefaults()
	r.det.T = o.Thresholds
	if len(o.CronParents) > 0 {
		r.sampler.TrustedParents = o.CronParents
	}
}

func (o Options) withDefaults() Options {
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
	if o.Self == 0 {
		o.Self = os.Getpid()
	}
	return o
}

func (r *Recorder) Name() string { return "recorder" }

// JobStarted tells the recorder about a job run seen in the logs; it
// samples at once so that a short job's processes are found live.
func (r *Recorder) JobStarted(id, job string, pid int, unit string, start time.Time) {
	r.queue(jobMsg{run: &JobRun{ID: id, Job: job, PID: pid, Unit: unit, Start: start}})
	r.nudge()
}

// JobEnded marks a run ended (from its log line).
func (r *Recorder) JobEnded(id string, at time.Time) {
	r.queue(jobMsg{id: id, ended: at})
}

// JobCancelled forgets a run that turned out not to be a job (a systemd
// unit that started and keeps running is a service).
func (r *Recorder) JobCancelled(id string) {
	r.queue(jobMsg{id: id, cancel: true})
}

// KernelEvent tells the recorder about a kernel event from the logs (an
// OOM kill, a hung task, a soft lockup): an incident's records keep those
// of its time for the report's timeline. Bounded like job messages: the
// kernel can log thousands of hung tasks.
func (r *Recorder) KernelEvent(ev incident.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.kevents) >= maxPending {
		r.pendingDropped++
		return
	}
	r.kevents = append(r.kevents, ev)
}

// login is an SSH login from auth.log.
type login struct {
	user, addr string
	at         time.Time
}

// maxLogins bounds the logins remembered: a host under a password-guessing
// storm logs failures, which are not kept, but a busy bastion logs many
// real logins.
const maxLogins = 1024

// SSHLogin tells the recorder that sshd process pid logged a login of user
// from addr at t: the processes of that session (its descendants) are then
// named "session of USER from ADDR".
func (r *Recorder) SSHLogin(pid int, user, addr string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logins == nil {
		r.logins = map[int]login{}
	}
	if _, ok := r.logins[pid]; !ok && len(r.logins) >= maxLogins {
		oldest := pid
		for p, l := range r.logins {
			if oldest == pid || l.at.Before(r.logins[oldest].at) {
				oldest = p
			}
		}
		delete(r.logins, oldest)
	}
	r.logins[pid] = login{user: user, addr: addr, at: t}
}

// loginOf finds the SSH login k descends from: the nearest ancestor (or k)
// whose pid logged one after it started (a reused pid started later).
func (r *Recorder) loginOf(k Key) (login, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.logins) == 0 {
		return login{}, false
	}
	for _, a := range append([]Key{k}, r.sampler.Ancestors(k, 16)...) {
		if l, ok := r.logins[a.PID]; ok && !l.at.Before(r.sampler.StartTime(a.Start).Add(-time.Second)) {
			return l, true
		}
	}
	return login{}, false
}

// eventsKept bounds the kernel events an incident records, eventsWindow
// how long before onset one still belongs to it.
const (
	eventsKept   = 64
	eventsWindow = 2 * time.Minute
)

// BootFinished tells the recorder that systemd logged "Startup finished"
// at t; a line from an earlier boot, read again from the log, is ignored.
func (r *Recorder) BootFinished(t time.Time) {
	if t.Before(r.sampler.bootTime) {
		return
	}
	r.mu.Lock()
	if r.bootDone.IsZero() {
		r.bootDone = t
	}
	r.mu.Unlock()
}

// booting reports whether the machine is still starting up: a boot runs
// every CPU at 100% by itself, which is not an incident.
func (r *Recorder) booting(now time.Time) bool {
	if r.o.BootGrace <= 0 || now.Sub(r.sampler.bootTime) >= r.o.BootGrace {
		return false
	}
	r.mu.Lock()
	done := r.bootDone
	r.mu.Unlock()
	return done.IsZero() || now.Sub(done) < bootSettle
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
	first, woken := true, false
	for {
		if err := r.sample(ctx, e, woken); err != nil {
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
		last := time.Now()
		woken = false
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(iv):
		case <-r.wake:
			woken = true
			// Woken early (a job started, a PSI trigger): at most every
			// minWake, or a flood of start lines (anyone can log them)
			// kept the recorder scanning /proc without a pause.
			if d := minWake - time.Since(last); d > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(d):
				}
			}
		}
	}
}

// minWake is the shortest gap between two samples that a wake-up causes.
const minWake = 200 * time.Millisecond

func (r *Recorder) applyJobs() {
	r.mu.Lock()
	msgs := r.pending
	r.pending = nil
	kev := r.kevents
	r.kevents = nil
	r.mu.Unlock()
	for _, ev := range kev {
		if len(r.events) >= eventsKept {
			if r.incident != "" {
				r.pendingDropped++ // the incident keeps its first ones
				continue
			}
			r.events = r.events[1:]
		}
		r.events = append(r.events, ev)
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

func (r *Recorder) sample(ctx context.Context, e collectors.Emitter, woken bool) error {
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
	_, memKnown := hs.Metrics["mem_available_pct"]
	h := correlate.Host{Time: now, CPUBusy: hs.Metrics["cpu_busy_pct"], CPUSteal: hs.Metrics["cpu_steal_pct"],
		MemAvailPct: hs.Metrics["mem_available_pct"], MemKnown: memKnown, PSIMemFull: psi.MemFull, PSIMemSome: psi.MemSome, PSICPUSome: psi.CPUSome,
		SwapUsedPct: hs.Metrics["swap_used_pct"],
		Booting:     r.booting(now)}
	var procs []ProcUse
	var total float64
	scan := r.needScan(h, now, woken)
	if scan {
		procs, total = r.sampler.Tick(now, nil)
		r.lastScan = now
		r.Scans++
	} else {
		r.ScansSkipped++
	}
	for _, p := range procs {
		for _, j := range r.sampler.Jobs() {
			if p.Job == j.ID {
				live[j] = true
			}
		}
	}
	t := tick{t: now, total: total, jobs: map[string]float64{}, top: Top(procs, r.o.TopN), h: h}
	for _, j := range r.sampler.Jobs() {
		if !scan {
			break // what ended is decided from a scan only
		}
		t.jobs[j.ID] = j.CPUSec - before[j]
		// The log may never say a job ended (Debian cron logs no END by
		// default): when none of its processes is left, it has. An end the
		// log gave counts only then, with the log's time: session lines
		// come from auth.log and CMD lines from syslog, read apart, and
		// the VM paired a burner with debian-sa1's session, which closed
		// at once and ended the burner's run 0.2 s in.
		if live[j] {
			j.lastLive = now
		}
		if j.Ended.IsZero() && j.Procs > 0 && !live[j] {
			j.Ended = now
			// The log's time is finer than a sample, unless processes
			// were seen alive after it: then it was some other run's end.
			if j.LogEnded.After(j.lastLive) && j.LogEnded.Before(now) {
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
		// Again every SnapshotEvery, and sooner when the spike changed in
		// kind: a fast memory exhaustion that starts as a CPU spike can
		// hang the machine within seconds, before the next regular
		// snapshot would have said it was memory (seen in the VM).
		active, _ := r.det.Active()
		changed := reasonKinds(r.det.Reasons) != r.snapKinds && now.Sub(r.lastSnapshot) >= minSnapshotGap
		every := r.o.SnapshotEvery
		if r.memorySpike() {
			// Memory is what hangs a machine, within seconds: in the VM's
			// thrash the agent's last record was 25 s before the last
			// heartbeat, most of a 30 s snapshot interval. A record is
			// small; an fdatasync every 5 s is cheap next to that.
			every = min(every, memorySnapshotEvery)
		}
		if active && (changed || now.Sub(r.lastSnapshot) >= every) {
			r.snapshot(ctx, e, now, incident.KindSnapshot)
		}
	}
	return nil
}

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
	// Each process's resident memory before the spike, from the earliest
	// tick of the window before onset that lists it: the base its growth
	// is measured from.
	base := map[Key]int64{}
	var since time.Time
	for _, t := range r.ring {
		if t.t.Before(onset.Add(-r.o.JobWindow)) {
			continue
		}
		if t.t.Before(onset.Add(-time.Second)) {
			if since.IsZero() {
				since = t.t
			}
			for _, p := range t.top {
				if _, ok := base[Key{p.PID, p.Start}]; !ok {
					base[Key{p.PID, p.Start}] = p.RSSBytes
				}
			}
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
			if p.Job != "" {
				pu.Job = r.jobName(p.Job)
			}
		}
	}
	var pl []correlate.ProcUse
	for k, p := range procs {
		p.RSSGrowth = max(0, p.RSSBytes-base[k])
		r.describe(k, p)
		if p.Job == "" && !p.Agent {
			// Remembered for the incident: an OOM-killed hog is gone by
			// the next snapshot, and the VM's verdict then lost its unit.
			if u := r.sampler.Unit(k); u != "" {
				r.units[k] = u
			}
			p.Unit = r.units[k]
		}
		pl = append(pl, *p)
		memTotal += p.RSSBytes
	}
	var runs []correlate.RunUse
	for _, j := range r.sampler.Jobs() {
		runs = append(runs, correlate.RunUse{ID: j.ID, Job: j.Job, PID: j.PID, Unit: j.Unit, Start: j.Start, End: j.Ended,
			// A run none of whose processes was ever sampled was not seen
			// running: the stock debian-sa1 line on systemd hosts exits in
			// a millisecond, and must not read as "running at onset".
			Active: j.Procs != 0 && (j.Ended.IsZero() || j.Ended.After(onset)), CPUSec: jobCPU[j.ID], TotalCPU: j.CPUSec, PeakRSS: j.Peak,
			Unverified: j.Unverified})
	}
	return correlate.Decide(onset, r.o.JobWindow, runs, pl, total, memTotal, r.memorySpike())
}

// procInfo is what an incident keeps of one process it names.
type procInfo struct {
	info    procinfo.Info
	parents []string
}

// describe fills in what p is: read once per process and kept for the
// incident, since a killed hog is gone by the next snapshot.
func (r *Recorder) describe(k Key, p *correlate.ProcUse) {
	pi, ok := r.infos[k]
	if !ok {
		in, live := r.sampler.Info(k)
		if !live {
			return
		}
		pi = procInfo{info: in, parents: r.sampler.Parents(k, 8)}
		r.infos[k] = pi
	}
	in := pi.info
	p.Cmdline, p.CmdlineRedacted, p.User, p.Cgroup, p.Parents = in.Cmdline, in.Redacted, in.User, in.Cgroup, pi.parents
	if in.UID >= 0 {
		u := in.UID
		p.UID = &u
	}
	p.Group, p.GroupKind = in.Group.String(), in.Group.Kind
	if in.Group.Kind != "container" {
		// A login's processes, whatever their cgroup says (a host without
		// logind puts them in sshd.service): named by who logged in from
		// where, which is what people recognise.
		if l, ok := r.loginOf(k); ok {
			p.Group, p.GroupKind = "session of "+l.user+" from "+l.addr, "session"
			p.Login = l.user + "@" + l.addr
		}
	}
	p.Started = r.sampler.StartTime(k.Start).UTC()
}

// memorySpike reports whether memory is among the spike's reasons.
func (r *Recorder) memorySpike() bool {
	for _, x := range r.det.Reasons {
		if strings.Contains(x, "memory") {
			return true
		}
	}
	return false
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
	r.kernelOnset = ReadKernel(r.o.ProcRoot, &r.vmBuf)
	r.units = map[Key]string{}
	r.infos = map[Key]procInfo{}
	r.consoleSaid = ""
	r.recordedTo = onset.Add(-eventsWindow)
	kept := r.events[:0]
	for _, ev := range r.events {
		if !ev.Time.Before(onset.Add(-eventsWindow)) {
			kept = append(kept, ev)
		}
	}
	r.events, r.recordedEv = kept, 0
	r.snapshot(ctx, e, now, incident.KindOnset)
}

func (r *Recorder) snapshot(ctx context.Context, e collectors.Emitter, now time.Time, kind string) {
	_, onset := r.det.Active()
	r.verdict = r.decide(onset)
	r.lastSnapshot, r.snapKinds = now, reasonKinds(r.det.Reasons)
	last := r.ring[len(r.ring)-1]
	data := map[string]any{"onset": onset, "reasons": r.det.Reasons, "host": last.h, "verdict": r.verdict}
	r.addTimeline(data)
	// How memory ran out, in the kernel's words: an UNFINISHED incident
	// read after the reset says whether it was OOM kills, or reclaim and
	// program text read back in (a thrash) that stopped the machine.
	if k := ReadKernel(r.o.ProcRoot, &r.vmBuf); k.Available && r.kernelOnset.Available {
		data["kernel"] = k.Since(r.kernelOnset)
	}
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
	r.console(now)
}

func (r *Recorder) end(ctx context.Context, e collectors.Emitter, now time.Time) {
	if r.o.Store != nil {
		data := map[string]any{"verdict": r.verdict}
		r.addTimeline(data)
		r.o.Store.Append(incident.KindEnd, r.incident, now, data, true)
	}
	e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: "recorder", Type: "spike_end",
		Dims: map[string]string{"incident": r.incident}, Message: "spike ended: cause " + r.verdict.Cause})
	r.incident = ""
}

// addTimeline adds to a record the samples and kernel events its
// incident's records do not hold yet: each record carries its part of the
// timeline, so what reached the disk before a hang is all of it up to
// then, and no record repeats another's.
func (r *Recorder) addTimeline(data map[string]any) {
	var ss []incident.Sample
	for _, t := range r.ring {
		if !t.t.After(r.recordedTo) {
			continue
		}
		s := incident.Sample{Time: t.t.UTC(), CPUBusy: incident.Round2(t.h.CPUBusy), SwapUsed: incident.Round2(t.h.SwapUsedPct),
			PSIMemSome: incident.Round2(t.h.PSIMemSome), PSIMemFull: incident.Round2(t.h.PSIMemFull), PSICPUSome: incident.Round2(t.h.PSICPUSome)}
		if t.h.MemKnown {
			m := incident.Round2(t.h.MemAvailPct)
			s.MemAvail = &m
		}
		ss = append(ss, s)
		r.recordedTo = t.t
	}
	if len(ss) > 0 {
		data["samples"] = ss
	}
	if r.recordedEv < len(r.events) {
		data["events"] = append([]incident.Event(nil), r.events[r.recordedEv:]...)
		r.recordedEv = len(r.events)
	}
}

// console writes one short line to the kernel log at KERN_CRIT: it reaches
// the serial console, which EC2 keeps ("Get system log") even when the disk
// never got the data. At onset, and again at a snapshot only when the
// verdict or the kinds of reason changed (a memory hang becomes clear after
// the onset): at most one line per snapshot, which also keeps well inside
// the kernel's rate limit for /dev/kmsg writers.
func (r *Recorder) console(now time.Time) {
	if r.o.Console == "" {
		return
	}
	said := r.verdict.Cause + "|" + reasonKinds(r.det.Reasons)
	if said == r.consoleSaid || now.Sub(r.lastConsole) < 5*time.Second {
		return
	}
	update := ""
	if r.consoleSaid != "" {
		update = " update"
	}
	line := "<2>" + escape.Control(fmt.Sprintf("ec2diag: spike %s%s (%s): cause %s", r.incident, update, joinReasons(r.det.Reasons), r.verdict.Cause))
	if len(line) > 400 {
		line = line[:400]
	}
	if r.kmsg == nil {
		if fd := kmsgFd(); fd >= 0 {
			// The unit has systemd open /dev/kmsg (root-only) as our stdout
			// before it drops privileges: the only way an unprivileged
			// agent can reach the console. Kept for the life of the
			// recorder: a File dropped to the GC closes its descriptor.
			r.kmsg = os.NewFile(uintptr(fd), "/dev/kmsg")
		} else {
			f, err := os.OpenFile(r.o.Console, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				r.o.Log("console notice", err)
				return
			}
			r.kmsg = f
		}
	}
	r.lastConsole, r.consoleSaid = now, said
	if _, err := r.kmsg.Write([]byte(line + "\n")); err != nil {
		r.o.Log("console notice", err)
	}
}

// reasonKinds is the reasons without their figures.
func reasonKinds(rs []string) string {
	var b strings.Builder
	for _, x := range rs {
		if i := strings.IndexAny(x, "0123456789"); i >= 0 {
			x = x[:i]
		}
		b.WriteString(x)
		b.WriteByte(',')
	}
	return b.String()
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

// kmsgFd returns the standard descriptor (stdout, else stderr) that is
// /dev/kmsg (char device 1:11), or -1. The unit uses stdout; stderr is
// what earlier units used.
func kmsgFd() int {
	for _, fd := range []int{1, 2} {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR &&
			unix.Major(uint64(st.Rdev)) == 1 && unix.Minor(uint64(st.Rdev)) == 11 {
			return fd
		}
	}
	return -1
}
