package metrics

import (
	"math"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
)

var t0 = time.Date(2026, 11, 27, 4, 49, 0, 0, time.UTC)

func find(ds []Datum, name string) []Datum {
	var out []Datum
	for _, d := range ds {
		if d.Name == name {
			out = append(out, d)
		}
	}
	return out
}

func TestJobNamesAreCapped(t *testing.T) {
	a := New(Options{MaxJobNames: 2, Detailed: true})
	for _, j := range []string{"debian-sa1", "logrotate", "backup", "debian-sa1", "adhoc-42"} {
		a.Add(&collectors.Record{Time: t0, Kind: collectors.KindEvent, Type: "job_run", Dims: map[string]string{"job": j},
			Metrics: map[string]float64{"cpu_seconds": 1, "duration_seconds": 2, "peak_rss_bytes": 1 << 20}})
	}
	runs := map[string]float64{}
	for _, d := range find(a.Flush(t0.Add(time.Minute), false), "JobRuns") {
		runs[d.Dims[0].Value] = *d.Value
	}
	want := map[string]float64{"debian-sa1": 2, "logrotate": 1, "other": 2}
	if len(runs) != len(want) {
		t.Fatalf("JobRuns by job = %v, want %v", runs, want)
	}
	for k, v := range want {
		if runs[k] != v {
			t.Errorf("JobRuns{%s} = %v, want %v", k, runs[k], v)
		}
	}
}

func TestAllowListedJobNames(t *testing.T) {
	a := New(Options{JobNames: []string{"backup"}, Detailed: true})
	for _, j := range []string{"debian-sa1", "backup"} {
		a.Add(&collectors.Record{Time: t0, Kind: collectors.KindEvent, Type: "job_run", Dims: map[string]string{"job": j}})
	}
	got := map[string]bool{}
	for _, d := range find(a.Flush(t0.Add(time.Minute), false), "JobRuns") {
		got[d.Dims[0].Value] = true
	}
	if !got["backup"] || !got["other"] || got["debian-sa1"] {
		t.Errorf("JobRuns dims = %v", got)
	}
}

func TestCumulativeCountersBecomeDeltas(t *testing.T) {
	a := New(Options{Detailed: true})
	for i, cum := range []float64{100, 150, 180, 20} { // 20: the source restarted
		a.Add(&collectors.Record{Time: t0.Add(time.Duration(i) * 10 * time.Second), Kind: collectors.KindSample, Source: "logsource",
			Metrics: map[string]float64{"lines_read": cum}})
	}
	ds := find(a.Flush(t0.Add(time.Minute), false), "AgentLinesRead")
	if len(ds) != 1 || *ds[0].Value != 50+30+20 {
		t.Fatalf("AgentLinesRead = %+v, want one datum of 100", ds)
	}
}

func TestUnpublishableValuesAreCountedNotSent(t *testing.T) {
	a := New(Options{})
	a.Add(&collectors.Record{Time: t0, Kind: collectors.KindSample, Source: "host", Metrics: map[string]float64{"cpu_busy_pct": math.NaN(), "mem_available_pct": math.Inf(1)}})
	a.Add(&collectors.Record{Time: t0, Kind: collectors.KindSample, Source: "host", Metrics: map[string]float64{"cpu_busy_pct": 5}})
	ds := find(a.Flush(t0.Add(time.Minute), false), "CPUBusy")
	if len(ds) != 1 || ds[0].Stats.Count != 1 || ds[0].Stats.Sum != 5 {
		t.Errorf("CPUBusy = %+v", ds)
	}
	if n := a.Invalid(); n != 2 {
		t.Errorf("invalid = %d, want 2", n)
	}
}

func TestOpenPeriodWaitsUnlessAll(t *testing.T) {
	a := New(Options{})
	a.Add(&collectors.Record{Time: t0.Add(30 * time.Second), Kind: collectors.KindSample, Source: "host", Metrics: map[string]float64{"cpu_busy_pct": 5}})
	if ds := a.Flush(t0.Add(59*time.Second), false); len(ds) != 0 {
		t.Fatalf("open period flushed: %+v", ds)
	}
	ds := a.Flush(t0.Add(59*time.Second), true)
	if len(find(ds, "CPUBusy")) != 1 || len(find(ds, "Spikes")) != 0 {
		t.Errorf("shutdown flush: want the open CPUBusy without zero-fill, got %+v", ds)
	}
}

func TestHighResolutionMetrics(t *testing.T) {
	a := New(Options{HighRes: map[string]bool{"CPUBusy": true}, HighResPeriod: 10 * time.Second})
	for s := 0; s < 60; s += 5 {
		a.Add(&collectors.Record{Time: t0.Add(time.Duration(s) * time.Second), Kind: collectors.KindSample, Source: "host",
			Metrics: map[string]float64{"cpu_busy_pct": 1, "mem_available_pct": 1}})
	}
	ds := a.Flush(t0.Add(time.Minute), false)
	cpu, mem := find(ds, "CPUBusy"), find(ds, "MemoryAvailable")
	if len(cpu) != 6 || cpu[0].Resolution != 1 || len(mem) != 1 || mem[0].Resolution != 0 {
		t.Errorf("CPUBusy %d datums (res %d), MemoryAvailable %d", len(cpu), cpu[0].Resolution, len(mem))
	}
}

func TestSpikesAndCorrelatedSpikes(t *testing.T) {
	a := New(Options{})
	a.Add(&collectors.Record{Time: t0, Kind: collectors.KindEvent, Type: "spike", Dims: map[string]string{"job": "backup"}})
	a.Add(&collectors.Record{Time: t0, Kind: collectors.KindEvent, Type: "spike"})
	a.Add(&collectors.Record{Time: t0, Kind: collectors.KindEvent, Type: "spike_snapshot"})
	ds := a.Flush(t0.Add(time.Minute), false)
	if s := find(ds, "Spikes"); len(s) != 1 || *s[0].Value != 2 {
		t.Errorf("Spikes = %+v", s)
	}
	if s := find(ds, "CorrelatedSpikes"); len(s) != 1 || *s[0].Value != 1 {
		t.Errorf("CorrelatedSpikes = %+v", s)
	}
}
