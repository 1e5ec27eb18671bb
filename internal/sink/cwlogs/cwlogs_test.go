package cwlogs

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence/store"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/evidence"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/ec2diag/ec2diag/internal/tail"
	"github.com/ec2diag/ec2diag/internal/testkit/fakelogs"
	"go.uber.org/zap"
)

type env struct {
	t     *testing.T
	fake  *fakelogs.Server
	dir   string
	store *store.Store
}

func newEnv(t *testing.T) *env {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": fakelogs.AccessKey, "AWS_SECRET_ACCESS_KEY": fakelogs.SecretKey, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"} {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	st, err := store.Open(dir, 64<<20, 3, store.Boot{ID: "boot-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &env{t: t, fake: fakelogs.Start(t, ""), dir: dir, store: st}
}

type nopEmitter struct{}

func (nopEmitter) Emit(context.Context, collectors.Record) error { return nil }
func (nopEmitter) Ready()                                        {}

// start runs a shipper until the returned stop is called.
func (e *env) start() (stop func(), s *Shipper) { return e.startEvery(100 * time.Millisecond) }

func (e *env) startEvery(flush time.Duration) (stop func(), s *Shipper) {
	cfg, err := cwsink.AWSConfig(context.Background(), cwsink.ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	s = New(Options{StateDir: e.dir, Group: "/ec2diag", Stream: "i-0123456789abcdef0", RetentionDays: 30, InstanceID: "i-0123456789abcdef0",
		API: NewClient(cfg, e.fake.URL), FlushEvery: flush, RequestTimeout: 2 * time.Second, Log: zap.NewNop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, nopEmitter{}) }()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			e.t.Fatal("shipper did not stop")
		}
	}, s
}

func (e *env) add(n int, kind evidence.Kind, data any) {
	for i := 0; i < n; i++ {
		if _, err := e.store.Append(kind, "20261201T000000Z", time.Now(), data, false); err != nil {
			e.t.Fatal(err)
		}
	}
}

// seqs counts each record's events by its seq.
func (e *env) seqs() map[uint64]int {
	out := map[uint64]int{}
	for _, ev := range e.fake.Events() {
		var m struct{ Seq uint64 }
		if json.Unmarshal([]byte(ev.Message), &m) != nil {
			e.t.Fatalf("not JSON: %q", ev.Message)
		}
		out[m.Seq]++
	}
	return out
}

func (e *env) waitEvents(n int, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(e.fake.Events()) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := len(e.fake.Events()); got < n {
		e.t.Fatalf("%d events in CloudWatch Logs, want %d", got, n)
	}
}

func (e *env) exactlyOnce(n int) {
	e.t.Helper()
	got := e.seqs()
	for seq := uint64(1); seq <= uint64(n); seq++ {
		if got[seq] != 1 {
			e.t.Errorf("record %d delivered %d times", seq, got[seq])
		}
	}
	if len(got) != n {
		e.t.Errorf("%d distinct records delivered, want %d", len(got), n)
	}
}

func TestShipsRecordsWithGroupStreamAndRetention(t *testing.T) {
	e := newEnv(t)
	e.add(1, evidence.KindOnset, map[string]any{"reasons": []string{"CPU 100% busy"}, "verdict": map[string]any{"cause": "job backup.sh",
		"jobs": []map[string]any{{"job": "backup.sh", "verdict": "caused"}}}})
	e.add(1, evidence.KindJobRun, map[string]any{"job": "backup.sh", "cpu_seconds": 12.5})
	stop, s := e.start()
	defer stop()
	e.waitEvents(2, 10*time.Second)
	if g := e.fake.Groups(); g["/ec2diag"] != 30 {
		t.Errorf("groups %v, want /ec2diag with 30 days", g)
	}
	evs := e.fake.Events()
	var onset, run map[string]any
	json.Unmarshal([]byte(evs[0].Message), &onset)
	json.Unmarshal([]byte(evs[1].Message), &run)
	if evs[0].Stream != "i-0123456789abcdef0" || onset["kind"] != "onset" || onset["cause"] != "job backup.sh" || onset["blamed_job"] != "backup.sh" ||
		onset["instance_id"] != "i-0123456789abcdef0" || run["job"] != "backup.sh" {
		t.Errorf("events: %s | %s", evs[0].Message, evs[1].Message)
	}
	if e.fake.SigFailures() != 0 {
		t.Errorf("%d requests failed SigV4", e.fake.SigFailures())
	}
	if st := s.Stats(); st.Events != 2 || st.Rejected != 0 {
		t.Errorf("stats %+v", st)
	}
}

// An outage, and the shipper stopped during it (as a kill or a reboot
// stops the agent): after the restart every record arrives exactly once.
func TestOutageAndRestartDeliverEveryRecordOnce(t *testing.T) {
	e := newEnv(t)
	e.add(3, evidence.KindJobRun, map[string]any{"job": "a"})
	stop, _ := e.start()
	e.waitEvents(3, 10*time.Second)
	e.fake.Stop()
	e.add(5, evidence.KindSnapshot, map[string]any{"verdict": map[string]any{"cause": "process x"}})
	time.Sleep(500 * time.Millisecond) // a few failed attempts
	stop()
	e.add(2, evidence.KindEnd, map[string]any{})
	if err := e.fake.Restart(); err != nil {
		t.Fatal(err)
	}
	stop, _ = e.start()
	defer stop()
	e.waitEvents(10, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	e.exactlyOnce(10)
}

// Throttling delays delivery; it loses and doubles nothing.
func TestThrottlingIsRetried(t *testing.T) {
	e := newEnv(t)
	e.fake.SetFault(fakelogs.Throttle, 100)
	stop, s := e.start()
	defer stop()
	e.add(4, evidence.KindJobRun, map[string]any{"job": "a"})
	// The SDK retries throttling itself, with backoff, before the shipper
	// sees a failure.
	for deadline := time.Now().Add(15 * time.Second); s.Stats().Failures == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if len(e.fake.Events()) != 0 || s.Stats().Failures == 0 {
		t.Fatalf("throttled calls: %d events stored, %d failures", len(e.fake.Events()), s.Stats().Failures)
	}
	e.fake.SetFault(fakelogs.None, 0)
	e.waitEvents(4, 20*time.Second)
	e.exactlyOnce(4)
}

// Batches respect the service's limits: 12,000 records and ~1.6 MB go in
// several calls, none over 10,000 events or 1 MiB (the stand-in refuses
// such a call with InvalidParameterException).
func TestBatchLimits(t *testing.T) {
	e := newEnv(t)
	e.add(12000, evidence.KindJobRun, map[string]any{"job": "a", "pad": strings.Repeat("x", 100)})
	stop, s := e.start()
	defer stop()
	e.waitEvents(12000, 30*time.Second)
	if st := s.Stats(); st.Rejected != 0 || e.fake.Calls("PutLogEvents") < 3 {
		t.Errorf("stats %+v, %d calls", st, e.fake.Calls("PutLogEvents"))
	}
	e.exactlyOnce(12000)
}

// A record over the event size limit is shipped without its data (which
// stays in the store), not refused and not dropped.
func TestOversizedRecordIsShippedWithoutItsData(t *testing.T) {
	e := newEnv(t)
	e.add(1, evidence.KindSnapshot, map[string]any{"verdict": map[string]any{"cause": "process big"}, "pad": strings.Repeat("y", 300<<10)})
	stop, s := e.start()
	defer stop()
	e.waitEvents(1, 10*time.Second)
	var m map[string]any
	json.Unmarshal([]byte(e.fake.Events()[0].Message), &m)
	if m["data"] != nil || m["data_truncated_bytes"] == nil || m["cause"] != "process big" || s.Stats().Oversized != 1 {
		t.Errorf("oversized event: %.200s", e.fake.Events()[0].Message)
	}
}

// Without permission to create the group (an administrator made it), the
// shipper ships to it; without the group too, nothing is acknowledged and
// the events wait in the store until the group exists.
func TestDeniedGroupCreationStillShips(t *testing.T) {
	e := newEnv(t)
	e.fake.SetFault(fakelogs.Deny, 0)
	stop, s := e.start()
	defer stop()
	e.add(2, evidence.KindJobRun, map[string]any{"job": "a"})
	time.Sleep(500 * time.Millisecond)
	if len(e.fake.Events()) != 0 || s.Stats().Failures == 0 {
		t.Fatalf("no group: %d events stored, stats %+v", len(e.fake.Events()), s.Stats())
	}
	e.fake.CreateGroup("/ec2diag", 90)
	e.waitEvents(2, 15*time.Second)
	e.exactlyOnce(2)
	if g := e.fake.Groups(); g["/ec2diag"] != 90 {
		t.Errorf("the administrator's retention was changed: %v", g)
	}
}

// BenchmarkEventBytes reports the size of the events a job run and a
// snapshot of 10 processes become, for the ingestion-cost estimate.
func BenchmarkEventBytes(b *testing.B) {
	s := New(Options{InstanceID: "i-0123456789abcdef0", AutoScalingGroup: "web-asg"})
	now := time.Now()
	run := map[string]any{"id": "r-20261201T000000Z-1234", "job": "nightly-report", "pid": 12345, "unit": "", "start": now, "end": now.Add(time.Minute),
		"cpu_seconds": 12.34, "peak_rss_bytes": 123456789, "processes_seen": true}
	var top []map[string]any
	for i := 0; i < 10; i++ {
		top = append(top, map[string]any{"pid": 1000 + i, "comm": "python3", "cpu_seconds": 1.5, "cpu_share": 0.1, "rss_bytes": 1 << 28, "job": "nightly-report"})
	}
	snap := map[string]any{"onset": now, "reasons": []string{"CPU 100% busy for 10s"}, "host": map[string]any{"cpu_busy": 99.5, "mem_available_pct": 40.2,
		"psi_cpu_some": 80.1, "psi_mem_full": 0.0, "swap_used_bytes": 0}, "verdict": map[string]any{"cause": "job nightly-report", "summary": "job nightly-report used 95% of CPU",
		"top_processes": top, "jobs": []map[string]any{{"job": "nightly-report", "verdict": "caused", "cpu_share": 0.95}}}}
	st, err := store.Open(b.TempDir(), 16<<20, 1, store.Boot{ID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	st.Append(evidence.KindJobRun, "", now, run, false)
	st.Append(evidence.KindSnapshot, "20261201T000000Z", now, snap, false)
	raw, _ := os.ReadFile(filepath.Join(st.Dir(), store.FileName))
	ls := bytes.Split(bytes.TrimSpace(raw), []byte("\n"))
	lr, lsn := tail.Line{Data: ls[0]}, tail.Line{Data: ls[1]}
	var nr, ns int
	for i := 0; i < b.N; i++ {
		er, _, ok1 := s.event(lr)
		es, _, ok2 := s.event(lsn)
		if !ok1 || !ok2 {
			b.Fatal("store line not parsed")
		}
		nr, ns = len(*er.Message)+eventOverhead, len(*es.Message)+eventOverhead
	}
	b.ReportMetric(float64(nr), "job_run_bytes")
	b.ReportMetric(float64(ns), "snapshot_bytes")
}

// Job runs wait for the flush interval (one call a minute at defaults);
// an incident record goes at once, and takes what waits with it.
func TestIncidentRecordsGoAtOnce(t *testing.T) {
	e := newEnv(t)
	stop, _ := e.startEvery(time.Hour)
	defer stop()
	e.add(2, evidence.KindJobRun, map[string]any{"job": "a"})
	time.Sleep(time.Second)
	if n := len(e.fake.Events()); n != 0 {
		t.Fatalf("%d job-run events sent before the flush interval", n)
	}
	e.add(1, evidence.KindOnset, map[string]any{"reasons": []string{"CPU 100% busy"}})
	e.waitEvents(3, 5*time.Second)
	e.exactlyOnce(3)
}

// A real incident's records (recorded with the real agent: hundreds of
// fields each once flattened) are found by the fleet's Logs Insights query
// on a server that, as AWS does, extracts only an event's first 200
// fields: the fields queries filter on come first and the record travels
// as one field. With the record as an object, kind sat past field 190.
func TestShippedIncidentsAreFoundByLogsInsights(t *testing.T) {
	e := newEnv(t)
	recs, _, err := store.ReadDir("../../report/testdata/recorded")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := e.store.Append(r.Kind, r.Incident, time.Now().Add(-time.Minute), []byte(r.Data), false); err != nil {
			t.Fatal(err)
		}
	}
	stop, _ := e.start()
	e.waitEvents(len(recs), 10*time.Second)
	stop()
	for _, ev := range e.fake.Events() {
		var m map[string]any
		json.Unmarshal([]byte(ev.Message), &m)
		if n := countFields(m); n > 30 {
			t.Errorf("an event of %d fields once flattened", n)
		}
	}
	rows := e.fake.Query(t, `filter kind in ["onset", "snapshot", "end"] | stats count(*) as records, latest(cause) as cause by instance_id, incident`)
	if len(rows) != 1 || rows[0]["incident"] == "" || rows[0]["cause"] == "" {
		t.Fatalf("Logs Insights rows %v; want the recorded incident with its cause", rows)
	}
}

func countFields(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := 0
		for _, y := range x {
			n += countFields(y)
		}
		return n
	case []any:
		n := 0
		for _, y := range x {
			n += countFields(y)
		}
		return n
	}
	return 1
}

// One event the service refuses does not drop its batch: the batch is
// halved until the event at fault is alone, and only it is left out. A
// job name of 60,000 "<" (lifted into the event, six times longer once
// HTML-escaped) made the whole batch of 4, an onset with it, fail.
func TestOneBadEventDoesNotDropItsBatch(t *testing.T) {
	e := newEnv(t)
	e.fake.RejectEventsContaining("poison")
	e.add(1, evidence.KindJobRun, map[string]any{"job": "before"})
	e.add(1, evidence.KindJobRun, map[string]any{"job": "poison"})
	e.add(1, evidence.KindOnset, map[string]any{"verdict": map[string]any{"cause": "job after"}})
	e.add(1, evidence.KindJobRun, map[string]any{"job": strings.Repeat("<", 60000)})
	stop, s := e.startEvery(time.Hour)
	e.waitEvents(3, 10*time.Second)
	stop()
	got := e.seqs()
	if got[1] != 1 || got[2] != 0 || got[3] != 1 || got[4] != 1 || s.Stats().Rejected != 1 {
		t.Fatalf("delivered %v, rejected %d; want records 1, 3 and 4, and the poison left out", got, s.Stats().Rejected)
	}
	for _, ev := range e.fake.Events() {
		if len(ev.Message) > 20000 {
			t.Errorf("an event of %d bytes: the lifted job name is not bounded", len(ev.Message))
		}
	}
}
