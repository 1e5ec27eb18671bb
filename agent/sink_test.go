package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ec2diag/ec2diag/collectors"
	"go.uber.org/zap"
)

// fakeSink records what it took; its first `fails` writes fail.
type fakeSink struct {
	name  string
	fails int
	calls int
	got   []string
}

func (f *fakeSink) Name() string { return f.name }
func (f *fakeSink) Write(_ context.Context, b []collectors.Record) error {
	f.calls++
	if f.calls <= f.fails {
		return errors.New("write /var/lib/ec2diag/events.jsonl: no space left on device")
	}
	for _, r := range b {
		f.got = append(f.got, string(r.Type))
	}
	return nil
}
func (f *fakeSink) Close(context.Context) error { return nil }

func records(from, n int, done *[]string) []collectors.Record {
	out := make([]collectors.Record, n)
	for i := range out {
		name := fmt.Sprint("r", from+i)
		out[i] = collectors.Record{Kind: collectors.KindEvent, Type: collectors.Type(name), Done: func() { *done = append(*done, name) }}
	}
	return out
}

// A line counts as handled only when every sink took its records: the
// position used to advance whatever Write returned, and a full disk under
// the file sink lost the events for good.
func TestFailedSinkHoldsTheLogPositionAndRetries(t *testing.T) {
	a := &Agent{Log: zap.NewNop()}
	a.defaults()
	bad, good := &fakeSink{name: "file", fails: 3}, &fakeSink{name: "journal"}
	states := []*sinkState{{s: bad}, {s: good}}
	var done []string
	ctx := context.Background()

	a.write(ctx, records(0, 3, &done), states)
	a.write(ctx, records(3, 2, &done), states)
	if len(done) != 0 {
		t.Fatalf("acknowledged %v while the file sink had not taken them", done)
	}
	if len(good.got) != 5 {
		t.Fatalf("healthy sink got %v, want all 5 at once", good.got)
	}
	if bad.calls != 1 {
		t.Fatalf("failing sink called %d times, want 1 (later batches queue behind its backlog)", bad.calls)
	}
	a.retry(ctx, states, false) // backoff not over
	if bad.calls != 1 {
		t.Fatalf("retried before the backoff passed")
	}
	if s := a.statusLine(&Pipeline{}); !strings.Contains(s, "sink file DOWN, retrying: write /var/lib/ec2diag/events.jsonl: no space") {
		t.Errorf("STATUS does not say the sink is down: %q", s)
	}
	a.retry(ctx, states, true) // fails (2)
	a.retry(ctx, states, true) // fails (3)
	if len(done) != 0 {
		t.Fatalf("acknowledged %v before the retry succeeded", done)
	}
	a.retry(ctx, states, true) // succeeds
	want := "[r0 r1 r2 r3 r4]"
	if fmt.Sprint(bad.got) != want || fmt.Sprint(done) != want {
		t.Fatalf("after recovery: sink got %v, acknowledged %v; want each %s once, in order", bad.got, done, want)
	}
	a.write(ctx, records(5, 1, &done), states)
	if fmt.Sprint(done) != "[r0 r1 r2 r3 r4 r5]" || bad.calls != 5 {
		t.Fatalf("after recovery the sink is written directly: done %v, calls %d", done, bad.calls)
	}
	if s := a.statusLine(&Pipeline{}); strings.Contains(s, "DOWN") {
		t.Errorf("STATUS still says DOWN: %q", s)
	}
}

// A sink that never recovers keeps a bounded backlog; what it drops stays
// unacknowledged, so the lines are read again after a restart.
func TestFailingSinkBacklogIsBounded(t *testing.T) {
	a := &Agent{Log: zap.NewNop()}
	a.defaults()
	bad := &fakeSink{name: "file", fails: 1 << 30}
	states := []*sinkState{{s: bad}}
	var done []string
	ctx := context.Background()
	for i := 0; i < maxBacklog+1000; i += 500 {
		a.write(ctx, records(i, 500, &done), states)
	}
	if n := len(states[0].backlog); n != maxBacklog {
		t.Fatalf("backlog %d, want it capped at %d", n, maxBacklog)
	}
	if a.stats.SinkDropped.Load() != 1000 {
		t.Fatalf("dropped %d, want 1000 counted", a.stats.SinkDropped.Load())
	}
	if len(done) != 0 {
		t.Fatalf("%d records acknowledged though no sink took them", len(done))
	}
}
