// Package cloudwatch is the sink that publishes the agent's metrics with
// PutMetricData. Records are aggregated per period (internal/metrics);
// every closed period is first written to the on-disk spool
// (internal/spool) and only then sent, and a batch leaves the spool only
// once CloudWatch has accepted it. So an outage, a kill -9 or a reboot
// delays data but does not lose it, and a batch is sent twice only if the
// agent dies between CloudWatch's answer and the spool update (the API has
// no idempotency key to make even that impossible).
package cloudwatch

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go"
	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/logging"
	"github.com/ec2diag/ec2diag/internal/metrics"
	"github.com/ec2diag/ec2diag/internal/spool"
	"go.uber.org/zap"
)

// API is the one call the sink makes; *cloudwatch.Client satisfies it.
type API interface {
	PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error)
}

// Limits of PutMetricData (API reference): 1,000 datums and 1 MB per
// request. The byte budget is for the uncompressed body, since AWS does
// not say whether the limit applies before or after gzip.
const (
	MaxDatums   = 1000
	MaxBytes    = 900_000
	MaxAge      = 14*24*time.Hour - 10*time.Minute // CloudWatch refuses older data
	maxBackoff  = 5 * time.Minute
	baseBackoff = 2 * time.Second
)

// Options configure the sink.
type Options struct {
	Namespace string
	API       API
	Agg       *metrics.Aggregator
	Spool     *spool.Spool
	Period    time.Duration
	// Offset delays each flush past the period boundary, derived from the
	// instance id so a fleet's calls spread over the minute instead of
	// arriving together.
	Offset         time.Duration
	RequestTimeout time.Duration
	Log            *zap.Logger
	// Clock dates the periods and the retries; nil is the system clock.
	Clock clock.Clock
	// SummaryEvery is how often the journal gets one line on publishing
	// (calls, datums, failures, metrics billed in the last hour, spool);
	// 0: never.
	SummaryEvery time.Duration
}

// Sink implements agent.Sink.
type Sink struct {
	o       Options
	start   sync.Once
	running atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	kick    chan struct{}
	failed  atomic.Int64 // PutMetricData calls that failed, since the last flush
	dropped atomic.Int64 // datums the API rejected or that were too old
	stats   Stats
	statsMu sync.Mutex
	// series maps each metric published (name and dimensions) to its
	// latest datum's time: CloudWatch bills a custom metric for every
	// hour it has data, so the count over the last hour is the bill.
	series map[string]time.Time
	// the loop's last summary
	sumAt    time.Time
	sumStats Stats
}

// Stats are cumulative figures for the publishing summary, tests and
// benchmarks.
type Stats struct {
	Requests, Accepted, Rejected, Failures int
	Datums                                 int
	// Series is how many metrics (name and dimensions) had data in the
	// hour before the last flush: the custom metrics billed for it.
	Series int
}

// Offset spreads flushes: a stable fraction of half the period.
func Offset(instanceID string, period time.Duration) time.Duration {
	h := fnv.New32a()
	h.Write([]byte(instanceID))
	if period < 2 {
		return 0
	}
	return time.Duration(uint64(h.Sum32()) % uint64(period/2))
}

// New returns a sink; its loop starts with the first Write.
func New(o Options) *Sink {
	if o.Period <= 0 {
		o.Period = time.Minute
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	return &Sink{o: o, stop: make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1), series: map[string]time.Time{}}
}

func (s *Sink) Name() string { return "cloudwatch" }

func (s *Sink) now() time.Time { return clock.Or(s.o.Clock).Now() }

// Write only aggregates: the pipeline never waits for the network.
func (s *Sink) Write(_ context.Context, batch []collectors.Record) error {
	s.start.Do(func() { s.running.Store(true); go s.loop() })
	for i := range batch {
		s.o.Agg.Add(&batch[i])
	}
	return nil
}

// Close spools what was aggregated (the open period too) and tries one
// bounded drain; what is not sent stays in the spool for the next start.
func (s *Sink) Close(ctx context.Context) error {
	s.start.Do(func() {}) // a sink that never got a Write has no loop
	close(s.stop)
	if s.running.Load() {
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	}
	s.flush(s.now(), true)
	s.Drain(ctx)
	return nil
}

// Stats returns cumulative counts.
func (s *Sink) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.stats
	st.Series = len(s.series)
	return st
}

// count notes the metrics of a flush and forgets those without data for
// an hour.
func (s *Sink) count(ds []metrics.Datum, now time.Time) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	for i := range ds {
		k := ds[i].Series()
		if t, ok := s.series[k]; !ok || ds[i].Time.After(t) {
			s.series[k] = ds[i].Time
		}
	}
	for k, t := range s.series {
		if now.Sub(t) > time.Hour {
			delete(s.series, k)
		}
	}
}

// summarize logs what publishing did since the last summary, so that
// "is it sending, and what does it cost" is one journalctl away.
func (s *Sink) summarize(now time.Time) {
	if s.o.SummaryEvery <= 0 {
		return
	}
	if s.sumAt.IsZero() {
		s.sumAt = now
		return
	}
	if now.Sub(s.sumAt) < s.o.SummaryEvery {
		return
	}
	st, prev := s.Stats(), s.sumStats
	s.o.Log.Info("CloudWatch publishing", zap.String(logging.KeyEvent, "cloudwatch_summary"),
		zap.Duration("since", now.Sub(s.sumAt).Round(time.Second)),
		zap.Int("calls", st.Requests-prev.Requests), zap.Int("datums_accepted", st.Datums-prev.Datums),
		zap.Int("calls_failed", st.Failures-prev.Failures), zap.Int("calls_rejected", st.Rejected-prev.Rejected),
		zap.Int("metrics_last_hour", st.Series),
		// What those metrics cost this instance at list price (first tier):
		// the figure a fleet decides on.
		zap.String("metrics_usd_per_month", fmt.Sprintf("%.2f", metrics.MonthlyCost(st.Series))),
		zap.Int64("spool_bytes", s.o.Spool.Size()))
	s.sumAt, s.sumStats = now, st
}

func (s *Sink) loop() {
	defer close(s.done)
	backoff := time.Duration(0)
	retryAt := time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.stop; cancel() }()
	// Data spooled by an earlier run goes first.
	if err := s.Drain(ctx); err != nil {
		backoff = baseBackoff
		retryAt = s.now().Add(jitter(backoff))
	}
	for {
		now := s.now()
		next := now.Truncate(s.o.Period).Add(s.o.Period + s.o.Offset)
		if next.Sub(now) > s.o.Period {
			next = next.Add(-s.o.Period)
		}
		wake := next
		if !retryAt.IsZero() && retryAt.Before(wake) {
			wake = retryAt
		}
		select {
		case <-s.stop:
			return
		case <-time.After(wake.Sub(s.now())):
		case <-s.kick:
		}
		now = s.now()
		if !now.Before(next) {
			s.flush(now.Add(-s.o.Offset), false)
		} else if retryAt.IsZero() || now.Before(retryAt) {
			continue
		}
		if err := s.Drain(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, baseBackoff), maxBackoff)
			retryAt = s.now().Add(jitter(backoff))
			msg := "CloudWatch unreachable; data kept in the spool"
			if code := deniedCode(err); code != "" {
				// Not the network: the role lacks cloudwatch:PutMetricData,
				// or its credentials are not accepted. Someone must act.
				msg = "CloudWatch refused the request (" + code + "): the instance role needs cloudwatch:PutMetricData; data kept in the spool"
			}
			s.o.Log.Warn(msg, zap.Error(err),
				zap.Duration("retry_in", retryAt.Sub(s.now()).Round(time.Millisecond)), zap.Int64("spool_bytes", s.o.Spool.Size()))
		} else {
			if backoff > 0 {
				s.o.Log.Info("CloudWatch reachable again; spool drained")
			}
			backoff, retryAt = 0, time.Time{}
		}
		s.summarize(s.now())
	}
}

// deniedCode is the error code when AWS refused the caller (permissions or
// credentials), "" for anything else.
func deniedCode(err error) string {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return ""
	}
	switch c := ae.ErrorCode(); c {
	case "AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "UnauthorizedOperation":
		return c
	}
	return ""
}

// jitter is "full jitter": uniform in [d/2, d], so a fleet that lost its
// network together does not come back in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// flush moves closed periods into the spool, with the publisher's own
// health figures for the period just closed.
func (s *Sink) flush(now time.Time, all bool) {
	at := now.Add(-time.Nanosecond)
	if n := s.o.Agg.Invalid(); n > 0 {
		s.dropped.Add(int64(n))
	}
	s.o.Agg.Observe(metrics.AgentSpoolBytes, at, float64(s.o.Spool.Size()))
	s.o.Agg.Observe(metrics.AgentPublishFail, at, float64(s.failed.Swap(0)))
	s.o.Agg.Observe(metrics.AgentDropped, at, float64(s.dropped.Swap(0)+s.o.Spool.Dropped()))
	ds := s.o.Agg.Flush(now, all)
	s.count(ds, now)
	for _, b := range Batches(ds) {
		if err := s.o.Spool.Put(b); err != nil {
			// A full or read-only disk: keep going without the spool
			// for this batch rather than blocking the agent.
			s.o.Log.Error("cannot spool metrics; sending without a copy on disk", zap.Error(err))
			ctx, cancel := context.WithTimeout(context.Background(), s.o.RequestTimeout)
			if _, err := s.put(ctx, b); err != nil {
				s.dropped.Add(int64(len(b)))
			}
			cancel()
		}
	}
}

// Batches packs datums up to the request limits, in order.
func Batches(ds []metrics.Datum) [][]metrics.Datum {
	var out [][]metrics.Datum
	var cur []metrics.Datum
	size := 0
	for _, d := range ds {
		n := estimate(&d)
		if len(cur) > 0 && (len(cur) == MaxDatums || size+n > MaxBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, d)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// estimate is a datum's CBOR size, rounded up: member names, strings,
// 9 bytes per float64, framing.
func estimate(d *metrics.Datum) int {
	n := 40 + len(d.Name) + len(d.Unit)
	for _, x := range d.Dims {
		n += 24 + len(x.Name) + len(x.Value)
	}
	if d.Stats != nil {
		n += 70
	}
	return n + 40
}

// Drain sends spooled batches oldest first and stops at the first
// transient failure, returning it.
func (s *Sink) Drain(ctx context.Context) error {
	unlock, ok := s.o.Spool.Lock()
	if !ok {
		return nil // the other pipeline is draining
	}
	defer unlock()
	es, err := s.o.Spool.List()
	if err != nil {
		return err
	}
	for _, e := range es {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ds, err := s.o.Spool.Read(e.Name)
		if err != nil {
			s.o.Log.Error("dropping an unreadable spool batch", zap.String("batch", e.Name), zap.Error(err))
			s.o.Spool.Drop(e.Name, 0)
			continue
		}
		fresh := ds[:0:0]
		for _, d := range ds {
			if s.now().Sub(d.Time) < MaxAge {
				fresh = append(fresh, d)
			}
		}
		if old := len(ds) - len(fresh); old > 0 {
			s.dropped.Add(int64(old))
			s.o.Log.Warn("dropping spooled data older than CloudWatch accepts", zap.Int("datums", old))
		}
		if err := s.send(ctx, e.Name, fresh); err != nil {
			return err
		}
	}
	return nil
}

// send delivers one batch. When the API calls it invalid, it is split in
// halves until the offending datums are isolated and dropped, so one bad
// datum never blocks the rest; after every accepted part the spool file
// is rewritten with what is left.
func (s *Sink) send(ctx context.Context, name string, ds []metrics.Datum) error {
	sent := make([]bool, len(ds))
	left := func() []metrics.Datum {
		var out []metrics.Datum
		for i, d := range ds {
			if !sent[i] {
				out = append(out, d)
			}
		}
		return out
	}
	type span struct{ lo, hi int }
	queue := []span{{0, len(ds)}}
	for len(queue) > 0 {
		sp := queue[0]
		queue = queue[1:]
		if sp.hi == sp.lo {
			continue
		}
		kind, err := s.put(ctx, ds[sp.lo:sp.hi])
		switch kind {
		case ok:
		case invalid:
			if sp.hi-sp.lo > 1 {
				mid := (sp.lo + sp.hi) / 2
				queue = append([]span{{sp.lo, mid}, {mid, sp.hi}}, queue...)
				continue
			}
			d := ds[sp.lo]
			s.dropped.Add(1)
			s.o.Log.Error("CloudWatch rejected a datum as invalid; dropped", zap.String("metric", d.Name),
				zap.Time("timestamp", d.Time), zap.Error(err))
		default:
			s.failed.Add(1)
			return err
		}
		for i := sp.lo; i < sp.hi; i++ {
			sent[i] = true
		}
		if err := s.o.Spool.Replace(name, left()); err != nil {
			s.o.Log.Error("cannot mark batch sent in the spool; it may be sent again", zap.Error(err))
		}
	}
	return s.o.Spool.Replace(name, nil)
}

type outcome int

const (
	ok outcome = iota
	invalid
	transient
)

func (s *Sink) put(ctx context.Context, ds []metrics.Datum) (outcome, error) {
	if len(ds) == 0 {
		return ok, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	defer cancel()
	in := &cloudwatch.PutMetricDataInput{Namespace: aws.String(s.o.Namespace), MetricData: ToSDK(ds)}
	_, err := s.o.API.PutMetricData(ctx, in)
	s.statsMu.Lock()
	s.stats.Requests++
	kind := classify(err)
	switch kind {
	case ok:
		s.stats.Accepted++
		s.stats.Datums += len(ds)
	case invalid:
		s.stats.Rejected++
	default:
		s.stats.Failures++
	}
	s.statsMu.Unlock()
	return kind, err
}

// classify tells a request CloudWatch will never take (drop it, do not
// retry) from a failure that may pass later (keep it). Error codes are
// compared, never messages; anything unknown counts as transient, because
// keeping data is the safer mistake.
func classify(err error) outcome {
	if err == nil {
		return ok
	}
	var ipe smithy.InvalidParamsError
	if errors.As(err, &ipe) {
		return invalid // the SDK's own validation: it never reached the wire
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == 413 {
		return invalid
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidParameterValue", "InvalidParameterValueException",
			"InvalidParameterCombination", "InvalidParameterCombinationException",
			"MissingParameter", "MissingRequiredParameter", "MissingRequiredParameterException",
			"RequestEntityTooLarge":
			return invalid
		}
	}
	return transient
}

// ToSDK converts datums for the SDK.
func ToSDK(ds []metrics.Datum) []types.MetricDatum {
	out := make([]types.MetricDatum, len(ds))
	for i := range ds {
		d := &ds[i]
		m := types.MetricDatum{MetricName: aws.String(d.Name), Unit: types.StandardUnit(d.Unit), Timestamp: aws.Time(d.Time)}
		for _, x := range d.Dims {
			m.Dimensions = append(m.Dimensions, types.Dimension{Name: aws.String(x.Name), Value: aws.String(x.Value)})
		}
		if d.Resolution == 1 {
			m.StorageResolution = aws.Int32(1)
		}
		if d.Stats != nil {
			m.StatisticValues = &types.StatisticSet{SampleCount: aws.Float64(d.Stats.Count), Sum: aws.Float64(d.Stats.Sum),
				Minimum: aws.Float64(d.Stats.Min), Maximum: aws.Float64(d.Stats.Max)}
		} else if d.Value != nil {
			m.Value = aws.Float64(*d.Value)
		}
		out[i] = m
	}
	return out
}
