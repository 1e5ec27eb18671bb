package flightrec

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/host"
	"github.com/ec2diag/ec2diag/collectors/procstat"
	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/hostfs"
	"go.uber.org/zap"
)

// Evidence is where the recorder's records go. Implementations (the
// store, the console, the shipper behind the store) must not block the
// recorder on a disk: a record that cannot be written yet waits in their
// memory, in order.
type Evidence interface {
	// Incident keeps one onset, snapshot or end record of incident id.
	Incident(kind evidence.Kind, id string, t time.Time, d *evidence.Incident) error
	// JobRun keeps the summary of a job run that ended.
	JobRun(t time.Time, d *evidence.JobRun) error
}

// Options configure the Recorder; all but Root, Clock and Self may change
// with Update.
type Options struct {
	Root  hostfs.Root
	Clock clock.Clock
	// Interval: normal sampling.
	Interval time.Duration
	// CalmProcessInterval: while calm (Detector.Calm, no job run open, not
	// woken early) processes are scanned at most this often; 0 = always.
	CalmProcessInterval time.Duration
	FastInterval        time.Duration // while a spike or pressure lasts
	SnapshotEvery       time.Duration // evidence repeated while a spike lasts
	JobWindow           time.Duration // a job started this long before onset is a candidate
	Thresholds          correlate.Thresholds
	Evidence            Evidence
	TopN                int
	RingSize            int
	// CronParents are the names a cron job's parent may have (default
	// procstat.DefaultTrustedParents).
	CronParents []string
	// BootGrace: for at most this long after boot, CPU alone makes no
	// incident while the boot is in progress (until systemd logs "Startup
	// finished", plus bootSettle). 0: no boot rule.
	BootGrace time.Duration
	// Self is the agent's pid (default: this process): listed, never blamed.
	Self int
	Log  *zap.Logger
	// NoPSITriggers: do not register PSI triggers (fixture trees, where
	// the pressure files are plain files).
	NoPSITriggers bool
	// InstanceType (from IMDS) says, for a spike of withheld CPU, whether
	// the instance is burstable.
	InstanceType string
	// StalledAfter: the host counts as stalled (the Stalled figure the
	// liveness alarm watches) once a spike of memory, I/O or withheld
	// CPU has lasted this long; 0: never.
	StalledAfter time.Duration
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

// minWake is the shortest gap between two samples that a wake-up causes.
const minWake = 200 * time.Millisecond

// Recorder is the flight recorder collector. Its state (the incident in
// progress, its job runs, the samples behind it) lives as long as the
// value: a reload updates its settings (Update) and runs it again.
type Recorder struct {
	omu  sync.Mutex
	o    Options // the settings in force (read by the sampling goroutine)
	next *Options

	clk clock.Clock
	// utmpRead is when utmp was last read for the boot's end (sampling
	// goroutine only).
	utmpRead time.Time
	host     host.Collector
	sampler  *procstat.Sampler
	disks    procstat.Disks
	in       *inbox
	psiBuf   []byte
	vmBuf    []byte

	// The rest belongs to the sampling goroutine.
	det      correlate.Detector
	ring     []tick
	lastScan time.Time
	inc      *current         // the incident in progress, nil when calm
	events   []evidence.Event // recent kernel events, while calm
	kernel   kernelCheck
	stats    Stats
}

// Stats are the recorder's counters.
type Stats struct {
	// Scans and ScansSkipped count process scans made and left out while
	// calm.
	Scans, ScansSkipped uint64
	// Dropped counts job and kernel messages a flood left out.
	Dropped uint64
	// LoginsRefused counts SSH login lines the process table did not
	// confirm; RunsRefuted job start lines it refuted (no summary kept).
	LoginsRefused, RunsRefuted uint64
}

type tick struct {
	t     time.Time
	h     correlate.Host
	total float64
	jobs  map[string]float64
	top   []procstat.ProcUse
	disk  *procstat.DiskState // the most stalled (or busiest) disk
}

// New builds the recorder; nothing runs until Run.
func New(o Options) *Recorder {
	o = o.withDefaults()
	r := &Recorder{o: o, clk: o.Clock, host: host.Collector{ProcRoot: o.Root.Proc, Clock: o.Clock}, sampler: procstat.NewSampler(o.Root, o.Clock),
		disks: procstat.Disks{Proc: o.Root.Proc, Sys: o.Root.Sys}, in: newInbox(), psiBuf: make([]byte, 512)}
	r.det.T = o.Thresholds
	if len(o.CronParents) > 0 {
		r.sampler.TrustedParents = o.CronParents
	}
	return r
}

// Update applies a reloaded configuration's settings from the next sample
// on, keeping what the recorder knows: the incident in progress, its job
// runs, the samples behind it. Safe at any time. The host root, the clock
// and the agent's own pid do not change.
func (r *Recorder) Update(o Options) {
	r.omu.Lock()
	defer r.omu.Unlock()
	r.next = &o
}

func (r *Recorder) applyUpdate() {
	r.omu.Lock()
	n := r.next
	r.next = nil
	r.omu.Unlock()
	if n == nil {
		return
	}
	o := *n
	o.Root, o.Clock, o.Self, o.Log, o.InstanceType = r.o.Root, r.o.Clock, r.o.Self, r.o.Log, r.o.InstanceType
	if o.Evidence == nil {
		o.Evidence = r.o.Evidence
	}
	r.o = o.withDefaults()
	r.det.T = o.Thresholds
	if len(o.CronParents) > 0 {
		r.sampler.TrustedParents = o.CronParents
	}
}

func (o Options) withDefaults() Options {
	o.Root = o.Root.OrDefault()
	o.Clock = clock.Or(o.Clock)
	if o.TopN == 0 {
		o.TopN = 10
	}
	if o.RingSize == 0 {
		o.RingSize = 240
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Self == 0 {
		o.Self = os.Getpid()
	}
	return o
}

// Name is the collector's name.
func (r *Recorder) Name() string { return "recorder" }

// Essential: without the recorder the agent does not do its job.
func (r *Recorder) Essential() bool { return true }

// Stats returns the counters; call it from the goroutine that samples
// (tests) or after Run returned.
func (r *Recorder) Stats() Stats {
	s := r.stats
	r.in.mu.Lock()
	s.Dropped = r.in.jobs.dropped + r.in.kernel.dropped
	r.in.mu.Unlock()
	return s
}

// Run samples on the recorder's cadence until ctx is done.
func (r *Recorder) Run(ctx context.Context, e collectors.Emitter) error {
	if !r.o.NoPSITriggers {
		procstat.WatchPSI(ctx, r.o.Root.Proc, "memory", "some 150000 2000000", r.in.wake)
		procstat.WatchPSI(ctx, r.o.Root.Proc, "cpu", "some 500000 2000000", r.in.wake)
	}
	first, woken := true, false
	for {
		if err := r.sample(ctx, e, woken); err != nil {
			if ctx.Err() != nil {
				return nil
			}
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
		last := r.clk.Now()
		woken = false
		t := time.NewTimer(iv)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-r.in.wake:
			t.Stop()
			woken = true
			// Woken early (a job started, a PSI trigger): at most every
			// minWake, or a flood of start lines (anyone can log them)
			// kept the recorder scanning /proc without a pause.
			if d := minWake - r.clk.Now().Sub(last); d > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(d):
				}
			}
		}
	}
}

// Sample takes one sample as Run does on its schedule (woken: early, at a
// job start or a PSI trigger), detects, decides and records. For tests
// and tools that drive the recorder themselves; never concurrently with Run.
func (r *Recorder) Sample(ctx context.Context, e collectors.Emitter, woken bool) error {
	return r.sample(ctx, e, woken)
}

// Runs returns a copy of the job runs the recorder follows (ended ones
// until they are dropped): for tests and diagnostics.
func (r *Recorder) Runs() []procstat.JobRun {
	var out []procstat.JobRun
	for _, j := range r.sampler.Jobs() {
		out = append(out, *j)
	}
	return out
}
