package cloudwatch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/metrics"
	"github.com/ec2diag/ec2diag/internal/spool"
	"github.com/ec2diag/ec2diag/internal/testkit/fakecw"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// sdkEnv gives the SDK's default chain the fake's static test keys and
// nothing else (no IMDS, no shared files), as an operator's environment
// variables would.
func sdkEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", fakecw.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", fakecw.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", fakecw.Region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_ENDPOINT_URL_CLOUDWATCH", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
}

type rig struct {
	fake  *fakecw.Server
	sink  *Sink
	agg   *metrics.Aggregator
	spool *spool.Spool
	dir   string
}

func newAggForBench() *metrics.Aggregator {
	return metrics.New(metrics.Options{BaseDims: []metrics.Dim{{Name: "InstanceId", Value: "i-0123456789abcdef0"}}})
}

func newBenchRig(b *testing.B, fake *fakecw.Server) *rig {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": fakecw.AccessKey, "AWS_SECRET_ACCESS_KEY": fakecw.SecretKey,
		"AWS_REGION": fakecw.Region, "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"} {
		b.Setenv(k, v)
	}
	return buildRig(b, fake, b.TempDir(), 5*time.Second)
}

func newRig(t *testing.T, fake *fakecw.Server, dir string, timeout time.Duration) *rig {
	t.Helper()
	sdkEnv(t)
	return buildRig(t, fake, dir, timeout)
}

func buildRig(t testing.TB, fake *fakecw.Server, dir string, timeout time.Duration) *rig {
	cfg, err := AWSConfig(context.Background(), ClientOptions{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(dir, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	agg := newAggForBench()
	s := New(Options{Namespace: "EC2DiagTest", API: NewClient(cfg, fake.URL), Agg: agg, Spool: sp, RequestTimeout: timeout, Log: zap.NewNop()})
	return &rig{fake: fake, sink: s, agg: agg, spool: sp, dir: dir}
}

// feed adds host samples every 10 s over n minutes starting at t0, with
// cpu = minute*10 + second/10 so every period's statistics are known.
func (r *rig) feed(t0 time.Time, minutes int) {
	for m := 0; m < minutes; m++ {
		for sec := 0; sec < 60; sec += 10 {
			rec := collectors.Record{Time: t0.Add(time.Duration(m)*time.Minute + time.Duration(sec)*time.Second), Kind: collectors.KindSample,
				Source: "host", Type: "host", Metrics: map[string]float64{"cpu_busy_pct": float64(m*10 + sec/10), "mem_available_pct": 50}}
			r.agg.Add(&rec)
		}
	}
}

func (r *rig) drainAll(t *testing.T, tries int) {
	t.Helper()
	for i := 0; i < tries; i++ {
		if err := r.sink.Drain(context.Background()); err == nil {
			if n := r.spool.Size(); n != 0 {
				t.Fatalf("Drain returned nil with %d bytes still spooled", n)
			}
			return
		}
	}
	t.Fatalf("spool not drained after %d attempts", tries)
}

func count(ds []fakecw.Datum, name string) (n int, keys map[string]bool) {
	keys = map[string]bool{}
	for _, d := range ds {
		if d.Name == name {
			n++
			keys[d.Key()] = true
		}
	}
	return
}

func TestPublishesStatisticSetsOverTheWire(t *testing.T) {
	fake := fakecw.Start(t, "")
	r := newRig(t, fake, t.TempDir(), 5*time.Second)
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	r.feed(t0, 3)
	r.sink.flush(t0.Add(3*time.Minute), false)
	r.drainAll(t, 1)

	ds := fake.Datums()
	if _, _, _, sig, _ := fake.Counts(); sig != 0 {
		t.Fatalf("%d requests failed SigV4 verification", sig)
	}
	var cpu []fakecw.Datum
	for _, d := range ds {
		if d.Name == "CPUBusy" {
			cpu = append(cpu, d)
		}
		if d.Namespace != "EC2DiagTest" || d.Dims == "" {
			t.Errorf("datum %s: namespace %q dims %q", d.Name, d.Namespace, d.Dims)
		}
	}
	if len(cpu) != 3 {
		t.Fatalf("CPUBusy datums = %d, want 3 (one statistic set per minute): %+v", len(cpu), cpu)
	}
	for m, d := range cpu {
		st := d.Stats
		if st == nil || *st.SampleCount != 6 || *st.Minimum != float64(m*10) || *st.Maximum != float64(m*10+5) || *st.Sum != float64(6*m*10+15) {
			t.Errorf("minute %d: stats %v, want n=6 min=%d max=%d", m, st, m*10, m*10+5)
		}
		if !d.Time.Equal(t0.Add(time.Duration(m) * time.Minute)) {
			t.Errorf("minute %d: timestamp %s", m, d.Time)
		}
		if d.Dims != "InstanceId=i-0123456789abcdef0" || d.Unit != "Percent" {
			t.Errorf("minute %d: dims %q unit %q", m, d.Dims, d.Unit)
		}
	}
	// Zero-fill: a minute without spikes says 0, so alarms see data.
	if n, _ := count(ds, "Spikes"); n != 3 {
		t.Errorf("Spikes datums = %d, want 3 zero-filled", n)
	}
	if req, _, _, _, _ := fake.Counts(); req != 1 {
		t.Errorf("requests = %d, want 1 for 3 minutes of data", req)
	}
}

func TestThrottlingHalfTheTimeLosesNothingAndDuplicatesNothing(t *testing.T) {
	fake := fakecw.Start(t, "")
	r := newRig(t, fake, t.TempDir(), 5*time.Second)
	fake.SetFault(fakecw.Throttle, 50)
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	for b := 0; b < 20; b++ { // 20 batches: 20 flushes of 3 minutes
		r.feed(t0.Add(time.Duration(3*b)*time.Minute), 3)
		r.sink.flush(t0.Add(time.Duration(3*b+3)*time.Minute), false)
	}
	r.drainAll(t, 200)
	n, keys := count(fake.Datums(), "CPUBusy")
	if n != 60 || len(keys) != 60 {
		t.Errorf("CPUBusy: %d datums, %d distinct, want 60 and 60", n, len(keys))
	}
	if d := fake.Duplicates(); len(d) > 0 {
		t.Errorf("duplicates: %v", d)
	}
	if _, _, faulted, _, _ := fake.Counts(); faulted == 0 {
		t.Error("the fake never throttled: the test proves nothing")
	}
}

func TestInvalidDatumIsIsolatedAndDropped(t *testing.T) {
	fake := fakecw.Start(t, "")
	r := newRig(t, fake, t.TempDir(), 5*time.Second)
	fake.RejectMetric("MemoryAvailable")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
	r.feed(t0, 4)
	r.sink.flush(t0.Add(4*time.Minute), false)
	r.drainAll(t, 1)
	ds := fake.Datums()
	if n, _ := count(ds, "CPUBusy"); n != 4 {
		t.Errorf("CPUBusy datums = %d, want 4: one bad metric blocked the rest", n)
	}
	if n, _ := count(ds, "MemoryAvailable"); n != 0 {
		t.Errorf("rejected metric stored %d times", n)
	}
	if got := r.sink.dropped.Load(); got != 4 {
		t.Errorf("dropped = %d, want 4 (the four MemoryAvailable datums)", got)
	}
	st := r.sink.Stats()
	if st.Rejected == 0 || st.Rejected > 4*12 {
		t.Errorf("rejected requests = %d: bisection should take a few per bad datum", st.Rejected)
	}
}

func TestOutageSpoolsAndARestartedAgentDrains(t *testing.T) {
	fake := fakecw.Start(t, "")
	dir := t.TempDir()
	r := newRig(t, fake, dir, 2*time.Second)
	fake.Stop() // endpoint gone: connection refused
	t0 := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)
	for b := 0; b < 10; b++ { // ten minutes of outage
		r.feed(t0.Add(time.Duration(b)*time.Minute), 1)
		r.sink.flush(t0.Add(time.Duration(b+1)*time.Minute), false)
		if err := r.sink.Drain(context.Background()); err == nil {
			t.Fatal("Drain succeeded with the endpoint down")
		}
	}
	es, _ := r.spool.List()
	if len(es) != 10 {
		t.Fatalf("spool holds %d batches, want 10", len(es))
	}
	if err := fake.Restart(); err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t, fake, dir, 2*time.Second) // a new process, same state dir
	r2.drainAll(t, 1)
	n, keys := count(fake.Datums(), "CPUBusy")
	if n != 10 || len(keys) != 10 {
		t.Errorf("after the outage: %d CPUBusy datums (%d distinct), want 10", n, len(keys))
	}
	if d := fake.Duplicates(); len(d) > 0 {
		t.Errorf("duplicates: %v", d)
	}
}

func TestHangingEndpointIsBounded(t *testing.T) {
	fake := fakecw.Start(t, "")
	r := newRig(t, fake, t.TempDir(), 300*time.Millisecond)
	fake.SetFault(fakecw.Hang, 0)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
	r.feed(t0, 1)
	r.sink.flush(t0.Add(time.Minute), false)
	done := make(chan error, 1)
	go func() { done <- r.sink.Drain(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Drain succeeded against a hanging endpoint")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Drain hung with the endpoint")
	}
	if r.spool.Size() == 0 {
		t.Fatal("data left the spool without being accepted")
	}
	fake.SetFault(fakecw.None, 0)
	r.drainAll(t, 1)
}

// PutMetricData has no idempotency key: if the connection breaks after
// CloudWatch stored a request, the SDK's retry stores it again. This test
// pins that documented limitation down.
func TestResetAfterStoreDuplicatesAsDocumented(t *testing.T) {
	fake := fakecw.Start(t, "")
	r := newRig(t, fake, t.TempDir(), 5*time.Second)
	fake.SetFault(fakecw.ResetAfterStore, 0)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
	r.feed(t0, 1)
	r.sink.flush(t0.Add(time.Minute), false)
	r.sink.Drain(context.Background())
	if len(fake.Duplicates()) == 0 {
		t.Fatal("expected duplicates when the answer is lost after the store")
	}
}

func TestSpoolFullDropsOldestAndCounts(t *testing.T) {
	fake := fakecw.Start(t, "")
	dir := t.TempDir()
	r := newRig(t, fake, dir, time.Second)
	sp, err := spool.Open(dir, 6000) // room for a few batches
	if err != nil {
		t.Fatal(err)
	}
	r.sink.o.Spool, r.spool = sp, sp
	fake.Stop()
	t0 := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	for b := 0; b < 30; b++ {
		r.feed(t0.Add(time.Duration(b)*time.Minute), 1)
		r.sink.flush(t0.Add(time.Duration(b+1)*time.Minute), false)
	}
	if sz := sp.Size(); sz > 6000+3000 {
		t.Errorf("spool is %d bytes, cap 6000", sz)
	}
	dropped := sp.Dropped() + r.sink.dropped.Load()
	if dropped == 0 {
		t.Fatal("nothing counted as dropped")
	}
	es, _ := sp.List()
	last, _ := sp.Read(es[len(es)-1].Name)
	newest := t0.Add(29 * time.Minute)
	found := false
	for _, d := range last {
		found = found || (d.Name == "CPUBusy" && d.Time.Equal(newest))
	}
	if !found {
		t.Error("the newest data was dropped instead of the oldest")
	}
	t.Logf("spool kept %d batches, dropped %d datums", len(es), dropped)
}

func TestBatchesRespectLimits(t *testing.T) {
	var ds []metrics.Datum
	for i := 0; i < 2500; i++ {
		v := float64(i)
		ds = append(ds, metrics.Datum{Name: fmt.Sprintf("M%d", i), Unit: "Count", Value: &v})
	}
	bs := Batches(ds)
	if len(bs) != 3 || len(bs[0]) != 1000 || len(bs[2]) != 500 {
		t.Errorf("batches of %d datums: %d, want 1000,1000,500", len(ds), len(bs))
	}
	// Long dimension values hit the byte limit before the count limit.
	long := make([]byte, 1000)
	for i := range long {
		long[i] = 'x'
	}
	ds = ds[:0]
	for i := 0; i < 1000; i++ {
		v := 1.0
		dims := make([]metrics.Dim, 30)
		for j := range dims {
			dims[j] = metrics.Dim{Name: fmt.Sprintf("D%d", j), Value: string(long[:100])}
		}
		ds = append(ds, metrics.Datum{Name: "Wide", Unit: "Count", Value: &v, Dims: dims})
	}
	for _, b := range Batches(ds) {
		total := 0
		for i := range b {
			total += estimate(&b[i])
		}
		if total > MaxBytes {
			t.Errorf("batch estimate %d > %d", total, MaxBytes)
		}
	}
	if len(Batches(ds)) < 2 {
		t.Error("1000 wide datums (~4 MB) fit one request")
	}
}

func TestCorruptSpoolFileIsDroppedNotFatal(t *testing.T) {
	fake := fakecw.Start(t, "")
	dir := t.TempDir()
	r := newRig(t, fake, dir, time.Second)
	os.WriteFile(filepath.Join(dir, "00000000000000000001-00000001.batch"), []byte("{not json"), 0o600)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
	r.feed(t0, 1)
	r.sink.flush(t0.Add(time.Minute), false)
	r.drainAll(t, 1)
	if n, _ := count(fake.Datums(), "CPUBusy"); n != 1 {
		t.Errorf("CPUBusy = %d, want 1", n)
	}
}

// The journal says every SummaryEvery what publishing did, and the metric
// count it gives is the number of distinct metrics CloudWatch received:
// what the fleet is billed for.
func TestSummaryCountsCallsAndBilledMetrics(t *testing.T) {
	fake := fakecw.Start(t, "")
	sdkEnv(t)
	cfg, err := AWSConfig(context.Background(), ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	agg := metrics.New(metrics.Options{Period: time.Second, BaseDims: []metrics.Dim{{Name: "InstanceId", Value: "i-0123456789abcdef0"}}})
	s := New(Options{Namespace: "EC2DiagTest", API: NewClient(cfg, fake.URL), Agg: agg, Spool: sp, Period: time.Second,
		RequestTimeout: 5 * time.Second, Log: zap.New(core), SummaryEvery: 2 * time.Second})
	deadline := time.Now().Add(20 * time.Second)
	summaries := func() []observer.LoggedEntry {
		return logs.FilterMessage("CloudWatch publishing").FilterField(zap.String("ec2diag_event", "cloudwatch_summary")).All()
	}
	for len(summaries()) == 0 && time.Now().Before(deadline) {
		now := time.Now()
		s.Write(context.Background(), []collectors.Record{
			{Time: now, Kind: collectors.KindSample, Source: "host", Type: "host", Metrics: map[string]float64{"cpu_busy_pct": 10, "mem_available_pct": 50}},
			{Time: now, Kind: collectors.KindSample, Source: "nethealth", Type: "ena", Metrics: map[string]float64{"healthy": 1, "rx_dropped": 0}, Dims: map[string]string{"iface": "ens5"}},
			{Time: now, Kind: collectors.KindSample, Source: "nethealth", Type: "ena", Metrics: map[string]float64{"healthy": 1, "rx_dropped": 0}, Dims: map[string]string{"iface": "ens6"}},
		})
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	sum := summaries()
	if len(sum) == 0 {
		t.Fatal("no publishing summary in the log")
	}
	f := sum[0].ContextMap()
	if f["calls"].(int64) < 1 || f["datums_accepted"].(int64) < 1 || f["metrics_last_hour"].(int64) < 1 || f["calls_failed"].(int64) != 0 {
		t.Errorf("summary %v", f)
	}
	got := map[string]bool{}
	for _, d := range fake.Datums() {
		got[d.Name+"{"+d.Dims+"}"] = true
	}
	if st := s.Stats(); st.Series != len(got) {
		t.Errorf("Stats().Series = %d, CloudWatch received %d distinct metrics: %v", st.Series, len(got), got)
	}
	for _, want := range []string{"NICUnhealthy{InstanceId=i-0123456789abcdef0}", "NICAllowanceExceeded{InstanceId=i-0123456789abcdef0}", "CPUBusy{InstanceId=i-0123456789abcdef0}"} {
		if !got[want] {
			t.Errorf("CloudWatch lacks %s: %v", want, got)
		}
	}
}

// A metric without data for an hour is no longer billed, nor counted.
func TestSeriesOlderThanAnHourAreForgotten(t *testing.T) {
	s := New(Options{Log: zap.NewNop()})
	now := time.Now()
	v := 1.0
	s.count([]metrics.Datum{{Name: "Old", Time: now.Add(-61 * time.Minute), Value: &v}, {Name: "New", Time: now.Add(-time.Minute), Value: &v},
		{Name: "New", Dims: []metrics.Dim{{Name: "Interface", Value: "ens5"}}, Time: now, Value: &v}}, now)
	if n := s.Stats().Series; n != 2 {
		t.Errorf("series %d, want 2 (New, New by Interface)", n)
	}
}
