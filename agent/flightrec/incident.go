package flightrec

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/procstat"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"go.uber.org/zap"
)

// current is the incident in progress.
type current struct {
	id           string
	onset        time.Time
	kernelOnset  procstat.Kernel
	verdict      correlate.Verdict
	lastSnapshot time.Time
	snapKinds    string // the kinds of reason the last record had
	units        map[procstat.Key]string
	infos        map[procstat.Key]procInfo
	// events are the incident's kernel events (its first eventsKept);
	// recordedEv how many of them its records hold, recordedTo the
	// newest sample they hold.
	events        []evidence.Event
	recordedEv    int
	recordedTo    time.Time
	eventsDropped int
}

func (c *current) addEvent(ev evidence.Event) {
	if len(c.events) >= eventsKept {
		c.eventsDropped++ // the incident keeps its first ones
		return
	}
	c.events = append(c.events, ev)
}

// snapshotDue says whether the incident is written again now: every
// SnapshotEvery, and sooner when the spike changed in kind: a fast memory
// exhaustion that starts as a CPU spike can hang the machine within
// seconds, before the next regular snapshot would have said it was memory
// (seen in the VM).
func (c *current) snapshotDue(r *Recorder, now time.Time) bool {
	changed := correlate.KindSet(r.det.Reasons) != c.snapKinds && now.Sub(c.lastSnapshot) >= minSnapshotGap
	every := r.o.SnapshotEvery
	if correlate.AnyMemory(r.det.Reasons) {
		// Memory is what hangs a machine, within seconds: in the VM's
		// thrash the agent's last record was 25 s before the last
		// heartbeat, most of a 30 s snapshot interval. A record is
		// small; an fdatasync every 5 s is cheap next to that.
		every = min(every, memorySnapshotEvery)
	}
	return changed || now.Sub(c.lastSnapshot) >= every
}

// ID is the incident in progress ("" when calm).
func (r *Recorder) ID() string {
	if r.inc == nil {
		return ""
	}
	return r.inc.id
}

// Verdict is the incident's verdict as it stands (zero when calm).
func (r *Recorder) Verdict() correlate.Verdict {
	if r.inc == nil {
		return correlate.Verdict{}
	}
	return r.inc.verdict
}

func (r *Recorder) onset(ctx context.Context, e collectors.Emitter, now time.Time) error {
	_, onset := r.det.Active()
	c := &current{id: onset.UTC().Format("20060102T150405Z"), onset: onset, kernelOnset: procstat.ReadKernel(r.o.Root.Proc, &r.vmBuf),
		units: map[procstat.Key]string{}, infos: map[procstat.Key]procInfo{}, recordedTo: onset.Add(-eventsWindow)}
	for _, ev := range r.events {
		if !ev.Time.Before(onset.Add(-eventsWindow)) {
			c.addEvent(ev)
		}
	}
	r.events = nil
	r.inc = c
	return r.record(ctx, e, now, evidence.KindOnset)
}

// record decides the verdict and writes the incident's record of kind.
func (r *Recorder) record(ctx context.Context, e collectors.Emitter, now time.Time, kind evidence.Kind) error {
	c := r.inc
	_, onset := r.det.Active()
	c.verdict = r.decide(onset)
	c.lastSnapshot, c.snapKinds = now, correlate.KindSet(r.det.Reasons)
	last := r.ring[len(r.ring)-1]
	d := &evidence.Incident{Onset: onset, Reasons: correlate.Strings(r.det.Reasons), ReasonKinds: correlate.Kinds(r.det.Reasons), Host: &last.h, Verdict: c.verdict}
	r.addTimeline(d)
	// How memory ran out, in the kernel's words: an UNFINISHED incident
	// read after the reset says whether it was OOM kills, or reclaim and
	// program text read back in (a thrash) that stopped the machine.
	if k := procstat.ReadKernel(r.o.Root.Proc, &r.vmBuf); k.Available && c.kernelOnset.Available {
		g := k.Since(c.kernelOnset)
		d.Kernel = &evidence.Kernel{OOMKills: g.OOMKills, MajorFaults: g.MajorFaults, AllocStalls: g.AllocStalls}
	}
	if err := r.o.Evidence.Incident(kind, c.id, now, d); err != nil {
		r.o.Log.Error("incident record not kept", zap.String("incident", c.id), zap.String("kind", string(kind)), zap.Error(err))
	}
	dims := map[string]string{"incident": c.id, "level": "warn"}
	if kind == evidence.KindOnset {
		dims["journal_priority"] = "2" // CRIT: journald syncs its files at once
	}
	if len(c.verdict.Top) > 0 {
		dims["top_pid"] = strconv.Itoa(c.verdict.Top[0].PID)
		dims["top_comm"] = c.verdict.Top[0].Comm
	}
	if len(c.verdict.Jobs) > 0 && c.verdict.Jobs[0].Verdict != correlate.Coincident {
		dims["job"] = c.verdict.Jobs[0].Job
	}
	typ := collectors.TypeSpike
	if kind == evidence.KindSnapshot {
		typ = collectors.TypeSpikeSnapshot
	}
	return e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceRecorder, Type: typ, Dims: dims,
		Message: fmt.Sprintf("spike (%s): cause %s; %s", strings.Join(d.Reasons, ", "), c.verdict.Cause, c.verdict.Summary),
		Metrics: map[string]float64{"cpu_busy_pct": last.h.CPUBusy, "mem_available_pct": last.h.MemAvailPct}})
}

func (r *Recorder) end(ctx context.Context, e collectors.Emitter, now time.Time) error {
	c := r.inc
	d := &evidence.Incident{Verdict: c.verdict}
	r.addTimeline(d)
	r.inc = nil
	if err := r.o.Evidence.Incident(evidence.KindEnd, c.id, now, d); err != nil {
		r.o.Log.Error("incident record not kept", zap.String("incident", c.id), zap.String("kind", string(evidence.KindEnd)), zap.Error(err))
	}
	return e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceRecorder, Type: collectors.TypeSpikeEnd,
		Dims: map[string]string{"incident": c.id}, Message: "spike ended: cause " + c.verdict.Cause})
}

// addTimeline adds to a record the samples and kernel events its
// incident's records do not hold yet: each record carries its part of the
// timeline, so what reached the disk before a hang is all of it up to
// then, and no record repeats another's.
func (r *Recorder) addTimeline(d *evidence.Incident) {
	c := r.inc
	for _, t := range r.ring {
		if !t.t.After(c.recordedTo) {
			continue
		}
		s := evidence.Sample{Time: t.t.UTC(), CPUBusy: evidence.Round2(t.h.CPUBusy), SwapUsed: evidence.Round2(t.h.SwapUsedPct),
			PSIMemSome: evidence.Round2(t.h.PSIMemSome), PSIMemFull: evidence.Round2(t.h.PSIMemFull), PSICPUSome: evidence.Round2(t.h.PSICPUSome),
			PSIIOSome: evidence.Round2(t.h.PSIIOSome), PSIIOFull: evidence.Round2(t.h.PSIIOFull), CPUSteal: evidence.Round2(t.h.CPUSteal),
			IOStalled: evidence.Round2(t.h.IOStalled.Seconds())}
		if t.h.MemKnown {
			m := evidence.Round2(t.h.MemAvailPct)
			s.MemAvail = &m
		}
		d.Samples = append(d.Samples, s)
		c.recordedTo = t.t
	}
	if c.recordedEv < len(c.events) {
		d.Events = append([]evidence.Event(nil), c.events[c.recordedEv:]...)
		c.recordedEv = len(c.events)
	}
}
