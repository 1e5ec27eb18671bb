// Package report turns one incident's records from the evidence store into
// what a person reads after the reboot: what happened, the verdict and its
// evidence, the timeline around onset, the groups and processes blamed.
// Build is pure (records in, Report out); Text and HTML render it. Every
// string that came from another process or a log line is escaped where
// it is printed: the text report through escape.Control, the page through
// html/template.
package report

import (
	"fmt"
	"sort"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/evidence"
)

// Report is one incident, put together from all its records.
type Report struct {
	ID    string
	Onset time.Time
	End   *time.Time // nil: no end was recorded
	// Last is the newest record's time: after a hang, the last moment the
	// agent was known to see the machine.
	Last time.Time
	// Boot is the incident's boot, 0 this one, -1 the one before...
	Boot int
	// Unfinished says why the incident has no end (empty when it ended or
	// is still going on this boot).
	Unfinished string
	// Reasons are every reason the spike gave, in the order first seen: a
	// CPU spike that turned into memory exhaustion names both.
	Reasons []string
	Verdict correlate.Verdict
	// Kernel is the growth of the kernel's counters since onset at the
	// last record that read them.
	Kernel  *evidence.Kernel
	Samples []evidence.Sample
	Events  []evidence.Event
	Runs    []Run
	Records int
}

// Run is a job run drawn on the timeline: one the verdict judged, or one
// the store summarised that overlapped the incident.
type Run struct {
	ID      string
	Job     string
	PID     int
	Start   time.Time
	End     time.Time           // zero: still running at the last record
	Verdict correlate.Judgement // empty for a run the verdict did not judge
	Reason  string
}

// Hung reports whether the incident never ended before the machine
// rebooted (or the agent stopped).
func (r *Report) Hung() bool { return r.Unfinished != "" }

// Build puts together incident id from recs (the whole store: job-run
// summaries are records of no incident). boot and unfinished come from
// the caller, which knows the boots the store has seen.
func Build(recs []evidence.Record, id string, boot int, unfinished string) (*Report, error) {
	r := &Report{ID: id, Boot: boot, Unfinished: unfinished}
	seenReason := map[string]bool{}
	seenSample := map[int64]bool{}
	runs := map[string]*Run{}
	var order []string
	addRun := func(x Run) *Run {
		if p, ok := runs[x.ID]; ok {
			return p
		}
		p := &x
		runs[x.ID], order = p, append(order, x.ID)
		return p
	}
	for _, rec := range recs {
		if rec.Incident != id {
			continue
		}
		r.Records++
		r.Last = rec.Time
		d, err := rec.DecodeIncident()
		if err != nil {
			continue // a record of another version's shape: its fields are skipped
		}
		if !d.Onset.IsZero() {
			r.Onset = d.Onset
		}
		for _, x := range d.Reasons {
			if !seenReason[x] {
				seenReason[x] = true
				r.Reasons = append(r.Reasons, x)
			}
		}
		if d.Verdict.Cause != "" || r.Verdict.Cause == "" {
			r.Verdict = d.Verdict
		}
		if d.Kernel != nil {
			r.Kernel = d.Kernel
		}
		for _, s := range d.Samples {
			if k := s.Time.UnixNano(); !seenSample[k] {
				seenSample[k] = true
				r.Samples = append(r.Samples, s)
			}
		}
		r.Events = append(r.Events, d.Events...)
		if rec.Kind == evidence.KindEnd {
			t := rec.Time
			r.End = &t
		}
	}
	if r.Records == 0 {
		return nil, fmt.Errorf("no incident %q", id)
	}
	sort.SliceStable(r.Samples, func(i, j int) bool { return r.Samples[i].Time.Before(r.Samples[j].Time) })
	r.Events = dedupEvents(r.Events)
	for _, j := range r.Verdict.Jobs {
		p := addRun(Run{ID: j.ID, Job: j.Job, PID: j.PID, Start: j.Start, End: j.End})
		p.Verdict, p.Reason = j.Verdict, j.Reason
	}
	// Runs that overlapped the incident, judged or not: the seed's debian-sa1
	// line is exactly such a run, and the timeline shows it beside the spike.
	from, to := r.Onset.Add(-correlate.Window), r.Last
	if len(r.Samples) > 0 && r.Samples[0].Time.After(from) {
		from = r.Samples[0].Time
	}
	for _, rec := range recs {
		if rec.Kind != evidence.KindJobRun {
			continue
		}
		j, err := rec.DecodeJobRun()
		if err != nil || j.ID == "" {
			continue
		}
		if j.Start.After(to) || (!j.End.IsZero() && j.End.Before(from)) {
			continue
		}
		p := addRun(Run{ID: j.ID, Job: j.Job, PID: j.PID, Start: j.Start})
		if p.End.IsZero() {
			p.End = j.End
		}
	}
	for _, id := range order {
		r.Runs = append(r.Runs, *runs[id])
	}
	sort.SliceStable(r.Runs, func(i, j int) bool { return r.Runs[i].Start.Before(r.Runs[j].Start) })
	r.escape()
	return r, nil
}

// escape makes every text that came from another process or a log line
// safe to print, once, for the text report and the page alike: control
// characters and the bidi controls that reorder what follows them
// (html/template escapes markup, not those). Control is idempotent, so
// text already escaped where it entered stays as it was.
func (r *Report) escape() {
	e := escape.Control
	for i := range r.Reasons {
		r.Reasons[i] = e(r.Reasons[i])
	}
	v := &r.Verdict
	v.Cause, v.Summary = e(v.Cause), e(v.Summary)
	for i := range v.Jobs {
		j := &v.Jobs[i]
		j.Job, j.Reason, j.ID, j.Unverified, j.Unit = e(j.Job), e(j.Reason), e(j.ID), e(j.Unverified), e(j.Unit)
	}
	for i := range v.Top {
		p := &v.Top[i]
		p.Comm, p.Cmdline, p.User, p.Cgroup, p.Group, p.Login, p.Job, p.Unit = e(p.Comm), e(p.Cmdline), e(p.User), e(p.Cgroup), e(p.Group), e(p.Login), e(p.Job), e(p.Unit)
		for k := range p.Parents {
			p.Parents[k] = e(p.Parents[k])
		}
	}
	for i := range v.Groups {
		v.Groups[i].Name = e(v.Groups[i].Name)
	}
	for i := range r.Runs {
		r.Runs[i].Job, r.Runs[i].Reason = e(r.Runs[i].Job), e(r.Runs[i].Reason)
	}
	for i := range r.Events {
		ev := &r.Events[i]
		ev.Comm, ev.Message, ev.Unverified = e(ev.Comm), e(ev.Message), e(ev.Unverified)
	}
}

// dedupEvents drops repeats: the kernel reports one OOM kill in two lines
// ("Out of memory: Killed process" and the "oom-kill:" summary).
func dedupEvents(evs []evidence.Event) []evidence.Event {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	var out []evidence.Event
	for _, e := range evs {
		dup := false
		for k := len(out) - 1; k >= 0 && e.Time.Sub(out[k].Time) <= 2*time.Second; k-- {
			if o := out[k]; o.Type == e.Type && o.PID == e.PID {
				dup = true
				if o.Comm == "" {
					out[k].Comm = e.Comm
				}
				break
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	return out
}

// Duration is how long the incident lasted, or has lasted up to its last
// record.
func (r *Report) Duration() time.Duration {
	end := r.Last
	if r.End != nil {
		end = *r.End
	}
	return end.Sub(r.Onset)
}

// Split of the top processes: the first few of the spike's own ranking
// (CPU, or growth then memory in a memory spike) are always printed in
// full, and so is any other process with a visible part in it.
const (
	alwaysShown = 3
	minCPUShare = 0.01
)

// ShownTop splits the verdict's top processes into those a report prints
// in full and the rest it names in one line. Ten idle shells and sleeps
// printed like the hog bury it; the JSON records keep every one.
func (r *Report) ShownTop() (shown, rest []correlate.ProcUse) {
	for i, p := range r.Verdict.Top {
		if i < alwaysShown || p.CPUShare >= minCPUShare || p.RSSGrowth >= correlate.MinGrowth {
			shown = append(shown, p)
		} else {
			rest = append(rest, p)
		}
	}
	return shown, rest
}
