package metrics

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
)

// Dim is one CloudWatch dimension.
type Dim struct {
	Name  string `json:"n"`
	Value string `json:"v"`
}

// Stats is a CloudWatch StatisticSet.
type Stats struct {
	Count float64 `json:"c"`
	Sum   float64 `json:"s"`
	Min   float64 `json:"lo"`
	Max   float64 `json:"hi"`
}

// Datum is one CloudWatch MetricDatum in a form the spool can store
// without the SDK. Exactly one of Value and Stats is set.
type Datum struct {
	Name       string    `json:"name"`
	Unit       string    `json:"unit"`
	Dims       []Dim     `json:"dims"`
	Time       time.Time `json:"time"`
	Resolution int32     `json:"res,omitempty"` // 1 = high resolution; 0 = standard (60)
	Value      *float64  `json:"value,omitempty"`
	Stats      *Stats    `json:"stats,omitempty"`
}

// Series identifies the datum's metric: name and dimensions, what
// CloudWatch bills as one custom metric.
func (d *Datum) Series() string {
	var b strings.Builder
	b.WriteString(d.Name)
	for _, x := range d.Dims {
		b.WriteString("|" + x.Name + "=" + x.Value)
	}
	return b.String()
}

// Key identifies the datum's metric and timestamp (not its values).
func (d *Datum) Key() string {
	return d.Series() + "@" + strconv.FormatInt(d.Time.UnixMilli(), 10)
}

// Options configure an Aggregator.
type Options struct {
	// Period is the aggregation period; default 60 s. Below 60 s every
	// datum is sent at high resolution (StorageResolution 1).
	Period time.Duration
	// HighRes names metrics aggregated over HighResPeriod and sent at
	// StorageResolution 1, for people who alarm on 10-second data.
	HighRes       map[string]bool
	HighResPeriod time.Duration
	// BaseDims go on every datum: InstanceId and the configured extras.
	BaseDims []Dim
	// Job dimension cardinality: JobNames, if set, are the only names
	// published as themselves; otherwise the first MaxJobNames seen are.
	// Everything else folds into "other".
	JobNames    []string
	MaxJobNames int
	// Detailed publishes the whole catalogue per instance: every host
	// figure, per-interface counters, per-instance per-job metrics
	// (cloudwatch.metrics: detailed). The standard set (default) is at
	// most 20 per instance; per-job metrics then go by Job alone, shared
	// by the fleet, for the JobNames only.
	Detailed bool
}

// Aggregator folds records into per-period datums. Safe for concurrent
// use: the pipeline adds, the publisher flushes.
type Aggregator struct {
	o       Options
	mu      sync.Mutex
	buckets map[string]*acc
	active  map[int64]bool // periods in which the agent was alive (zero-fill)
	prevCum map[string]float64
	jobs    map[string]bool
	invalid int
}

type acc struct {
	spec  Spec
	dims  []Dim
	start time.Time
	res   int32
	st    Stats
	fleet bool // without the base dimensions
}

// New returns an empty aggregator.
func New(o Options) *Aggregator {
	if o.Period <= 0 {
		o.Period = time.Minute
	}
	if o.HighResPeriod <= 0 {
		o.HighResPeriod = 10 * time.Second
	}
	if o.MaxJobNames <= 0 {
		o.MaxJobNames = 20
	}
	a := &Aggregator{o: o, buckets: map[string]*acc{}, active: map[int64]bool{}, prevCum: map[string]float64{}, jobs: map[string]bool{}}
	for _, j := range o.JobNames {
		a.jobs[j] = true
	}
	return a
}

// FleetJobs is how many jobs get fleet-wide metrics (standard set).
func (a *Aggregator) FleetJobs() int {
	if a.o.Detailed {
		return 0
	}
	return len(a.o.JobNames)
}

// Add folds one record in.
func (a *Aggregator) Add(r *collectors.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := r.Time
	a.active[t.Truncate(a.o.Period).UnixNano()] = true
	switch {
	case r.Kind == collectors.KindSample && r.Source == collectors.SourceHost:
		for k, v := range r.Metrics {
			if s, ok := hostSpecs[k]; ok && a.want(s) {
				a.add(s, nil, t, v)
			}
		}
	case r.Kind == collectors.KindSample && r.Source == collectors.SourceLog:
		if a.o.Detailed {
			a.delta(agentLines, "lines", t, r.Metrics["lines_read"])
			a.delta(agentUnparsed, "unparsed", t, r.Metrics["lines_unparsed"])
		}
	case r.Kind == collectors.KindSample && r.Source == collectors.SourceIMDSEvents:
		var n float64
		for k, v := range r.Metrics {
			if s, ok := noticeSpecs[k]; ok {
				n += v
				if a.o.Detailed {
					a.add(s, nil, t, v)
				}
			}
		}
		if !a.o.Detailed {
			a.add(instanceNotices, nil, t, n)
		}
	case r.Kind == collectors.KindSample && r.Source == collectors.SourceInstanceCheck:
		a.add(CheckFailures, nil, t, r.Metrics["fail"])
	case r.Kind == collectors.KindSample && r.Source == collectors.SourceNetHealth:
		iface := r.Dims["iface"]
		if iface == "" {
			return
		}
		if !a.o.Detailed {
			// Summed over the interfaces; the counters themselves are in
			// `ec2diag health` and the detailed set.
			if h, ok := r.Metrics["healthy"]; ok {
				a.add(nicUnhealthy, nil, t, 1-h)
			}
			var exceeded float64
			for k, v := range r.Metrics {
				if strings.HasSuffix(k, "_allowance_exceeded") {
					exceeded += v
				}
			}
			a.add(nicAllowance, nil, t, exceeded)
			return
		}
		dims := []Dim{{"Interface", iface}}
		for k, v := range r.Metrics {
			a.add(nicSpec(string(r.Type), k), dims, t, v)
		}
	case r.Kind == collectors.KindEvent:
		if a.o.Detailed {
			a.add(agentEvents, nil, t, 1)
		}
		switch r.Type {
		case "spike":
			a.add(eventSpecs["spike"], nil, t, 1)
			if r.Dims["job"] != "" {
				a.add(correlatedSpike, nil, t, 1)
			}
		case "job_run":
			if !a.o.Detailed {
				a.add(instanceJobRuns, nil, t, 1)
				if j := r.Dims["job"]; a.jobs[j] {
					dims := []Dim{{"Job", j}}
					a.addFleet(jobSpecs[""], dims, t, 1)
					for k, v := range r.Metrics {
						if s, ok := jobSpecs[k]; ok && k != "" {
							a.addFleet(s, dims, t, v)
						}
					}
				}
				return
			}
			dims := []Dim{{"Job", a.jobName(r.Dims["job"])}}
			a.add(jobSpecs[""], dims, t, 1)
			for k, v := range r.Metrics {
				if s, ok := jobSpecs[k]; ok && k != "" {
					a.add(s, dims, t, v)
				}
			}
		case "soft_lockup", "rcu_stall":
			if a.o.Detailed {
				a.add(eventSpecs[string(r.Type)], nil, t, 1)
			} else {
				a.add(kernelLockups, nil, t, 1)
			}
		default:
			if s, ok := eventSpecs[string(r.Type)]; ok && a.want(s) {
				a.add(s, nil, t, 1)
			}
		}
	}
}

// want says whether s is in the set being published.
func (a *Aggregator) want(s Spec) bool { return a.o.Detailed || !s.Detailed }

// Observe adds one value of a catalogue metric directly (the publisher's
// own health figures); in the standard set, the publisher's failures fold
// into AgentErrors and the rest is not published.
func (a *Aggregator) Observe(s Spec, t time.Time, v float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.o.Detailed && s.Detailed {
		if s.Name == AgentPublishFail.Name || s.Name == AgentDropped.Name {
			a.add(agentErrors, nil, t, v)
		}
		return
	}
	a.add(s, nil, t, v)
}

func (a *Aggregator) jobName(j string) string {
	if j == "" {
		return "other"
	}
	if a.jobs[j] {
		return j
	}
	if len(a.o.JobNames) == 0 && len(a.jobs) < a.o.MaxJobNames {
		a.jobs[j] = true
		return j
	}
	return "other"
}

func (a *Aggregator) delta(s Spec, key string, t time.Time, cum float64) {
	prev, ok := a.prevCum[key]
	a.prevCum[key] = cum
	if !ok {
		return // the first reading has nothing to compare with
	}
	d := cum - prev
	if d < 0 {
		d = cum // the counter restarted (a reload builds a new source)
	}
	a.add(Spec{Name: s.Name, Unit: s.Unit, Agg: Count}, nil, t, d)
}

// addFleet adds to a metric without the instance's dimensions: one series
// for the whole fleet.
func (a *Aggregator) addFleet(s Spec, dims []Dim, t time.Time, v float64) {
	a.addTo(s, dims, t, v, true)
}

func (a *Aggregator) add(s Spec, dims []Dim, t time.Time, v float64) {
	a.addTo(s, dims, t, v, false)
}

func (a *Aggregator) addTo(s Spec, dims []Dim, t time.Time, v float64, fleet bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e100 {
		a.invalid++ // CloudWatch rejects these; one bad figure must not sink a batch
		return
	}
	period, res := a.o.Period, int32(0)
	if period < time.Minute {
		res = 1
	}
	if a.o.HighRes[s.Name] && a.o.HighResPeriod < period {
		period, res = a.o.HighResPeriod, 1
	}
	start := t.Truncate(period)
	var kb strings.Builder
	kb.WriteString(s.Name)
	for _, d := range dims {
		kb.WriteString("|" + d.Name + "=" + d.Value)
	}
	if fleet {
		kb.WriteString("|fleet")
	}
	kb.WriteString("@" + strconv.FormatInt(start.UnixNano(), 10))
	k := kb.String()
	b := a.buckets[k]
	if b == nil {
		b = &acc{spec: s, dims: dims, start: start, res: res, st: Stats{Min: v, Max: v}, fleet: fleet}
		a.buckets[k] = b
	}
	b.st.Count++
	b.st.Sum += v
	b.st.Min = math.Min(b.st.Min, v)
	b.st.Max = math.Max(b.st.Max, v)
}

// Invalid returns and resets the count of values dropped as unpublishable.
func (a *Aggregator) Invalid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.invalid
	a.invalid = 0
	return n
}

// Flush returns the datums of every period that ended at or before now,
// in time order; all=true also returns the open periods (at shutdown:
// CloudWatch merges two datums with one timestamp, so the next run's
// datum for the same period adds to it rather than replacing it).
func (a *Aggregator) Flush(now time.Time, all bool) []Datum {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Datum
	closed := map[int64]bool{}
	for k, b := range a.buckets {
		period := a.o.Period
		if b.res == 1 && a.o.HighRes[b.spec.Name] && a.o.HighResPeriod < a.o.Period {
			period = a.o.HighResPeriod
		}
		if !all && b.start.Add(period).After(now) {
			continue
		}
		out = append(out, a.datum(b))
		delete(a.buckets, k)
	}
	for p := range a.active {
		if time.Unix(0, p).Add(a.o.Period).After(now) {
			// Still open: at shutdown it is dropped without zero-fill,
			// since the next run may fill the same period again.
			if all {
				delete(a.active, p)
			}
			continue
		}
		closed[p] = true
		delete(a.active, p)
	}
	// Zero-fill: a period in which the agent ran and nothing happened
	// says 0, so alarms on spikes or OOM kills see data, not silence.
	have := map[string]bool{}
	for i := range out {
		have[out[i].Name+"@"+strconv.FormatInt(out[i].Time.UnixNano(), 10)] = true
	}
	for p := range closed {
		start := time.Unix(0, p)
		for _, s := range zeroFill(a.o.Detailed) {
			if !have[s.Name+"@"+strconv.FormatInt(p, 10)] {
				res := int32(0)
				if a.o.Period < time.Minute {
					res = 1
				}
				out = append(out, a.datum(&acc{spec: s, start: start, res: res}))
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Key() < out[j].Key()
	})
	return out
}

func (a *Aggregator) datum(b *acc) Datum {
	d := Datum{Name: b.spec.Name, Unit: b.spec.Unit, Time: b.start.UTC(), Resolution: b.res}
	if b.fleet {
		d.Dims = append([]Dim(nil), b.dims...)
	} else {
		d.Dims = append(append([]Dim(nil), a.o.BaseDims...), b.dims...)
	}
	if b.spec.Agg == Gauge {
		st := b.st
		d.Stats = &st
	} else {
		v := b.st.Sum
		d.Value = &v
	}
	return d
}
