package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/config"
	"go.uber.org/zap"
)

type notes struct {
	mu       sync.Mutex
	pings    int
	ready    int
	statuses []string
	stopping int // pings before STOPPING=1
}

func (n *notes) Ready()     { n.mu.Lock(); n.ready++; n.mu.Unlock() }
func (n *notes) Reloading() {}
func (n *notes) Stopping()  { n.mu.Lock(); n.stopping = n.pings; n.mu.Unlock() }
func (n *notes) Watchdog()  { n.mu.Lock(); n.pings++; n.mu.Unlock() }
func (n *notes) Status(s string) {
	n.mu.Lock()
	n.statuses = append(n.statuses, s)
	n.mu.Unlock()
}
func (n *notes) get() (int, []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pings, append([]string(nil), n.statuses...)
}

// flaky fails its first `fails` runs at once (as the recorder did on
// EMFILE), then emits a record every 10 ms until stopped.
type flaky struct {
	name      string
	fails     int32
	essential bool
	runs      atomic.Int32
}

func (f *flaky) Name() string    { return f.name }
func (f *flaky) Essential() bool { return f.essential }
func (f *flaky) Run(ctx context.Context, e collectors.Emitter) error {
	if f.runs.Add(1) <= f.fails {
		return errors.New("read cpu times: too many open files")
	}
	e.Ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
			e.Emit(ctx, collectors.Record{Kind: collectors.KindSample, Source: collectors.Source(f.name), Time: time.Now()})
		}
	}
}

// system is a System of fixed collectors and sinks for the tests.
type system struct {
	p       *Pipeline
	closed  atomic.Int32
	prepare func(config.Config) (Change, error)
}

func (s *system) Pipeline() *Pipeline { return s.p }
func (s *system) Prepare(_ context.Context, c config.Config) (Change, error) {
	if s.prepare == nil {
		return nil, errors.New("no reload here")
	}
	return s.prepare(c)
}
func (s *system) Close() { s.closed.Add(1) }

func newAgent(n *notes) *Agent {
	return &Agent{Log: zap.NewNop(), Notify: n, WatchdogInterval: 50 * time.Millisecond, StatusInterval: 50 * time.Millisecond,
		StartTimeout: 100 * time.Millisecond, ShutdownTimeout: time.Second,
		Reload: func() (config.Config, error) { return config.Default(), nil }}
}

// run runs the agent in a synctest bubble for d of fake time.
func run(t *testing.T, sys System, d time.Duration) (*notes, error) {
	n := &notes{}
	var err error
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		err = newAgent(n).Run(ctx, sys, nil)
	})
	return n, err
}

// A failed collector is run again: one EMFILE stopped the recorder for
// good while everything looked healthy.
func TestFailedCollectorIsRestarted(t *testing.T) {
	c := &flaky{name: "recorder", fails: 1, essential: true}
	n, err := run(t, &system{p: &Pipeline{Collectors: []collectors.Collector{c, &flaky{name: "other"}}, Describe: "test"}}, 2500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.runs.Load() < 2 {
		t.Fatalf("ran %d times; want a restart", c.runs.Load())
	}
	_, sts := n.get()
	down := false
	for _, s := range sts {
		down = down || strings.Contains(s, "recorder DOWN, restarting: read cpu times: too many open files")
	}
	if !down {
		t.Errorf("STATUS never said the recorder was down: %q", sts)
	}
	var last string
	for _, s := range sts {
		if strings.Contains(s, "test;") {
			last = s
		}
	}
	if last == "" || strings.Contains(last, "DOWN") {
		t.Errorf("last running STATUS %q; want it healthy again", last)
	}
}

// While an essential collector cannot run, the watchdog pings stop, so
// systemd restarts the agent; another collector's failure does not. In
// fake time the count is exact: the first ping, and none after.
func TestEssentialCollectorDownStopsWatchdog(t *testing.T) {
	n, _ := run(t, &system{p: &Pipeline{Collectors: []collectors.Collector{&flaky{name: "recorder", fails: 1 << 30, essential: true}, &flaky{name: "other"}}}}, 800*time.Millisecond)
	if p := n.stopping; p != 1 {
		t.Errorf("%d watchdog pings with the recorder down; want only the first", p)
	}
	n, _ = run(t, &system{p: &Pipeline{Collectors: []collectors.Collector{&flaky{name: "recorder", essential: true}, &flaky{name: "nethealth", fails: 1 << 30}}}}, 800*time.Millisecond)
	if p := n.stopping; p < 13 {
		t.Errorf("%d watchdog pings with a non-essential collector down; want them every 50 ms", p)
	}
}

// stuck ignores cancellation until released.
type stuck struct{ release chan struct{} }

func (s *stuck) Name() string { return "stuck" }
func (s *stuck) Run(ctx context.Context, e collectors.Emitter) error {
	e.Ready()
	<-s.release
	return nil
}

// A collector that does not stop when asked: the agent does not close
// what it uses under it (the store was closed under a live recorder), and
// says which collector it was.
func TestStopWaitsForWhatItStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stuck{release: make(chan struct{})}
		sys := &system{p: &Pipeline{Collectors: []collectors.Collector{s, &flaky{name: "other"}}}}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := newAgent(&notes{}).Run(ctx, sys, nil)
		if !errors.Is(err, ErrStuck) || !strings.Contains(err.Error(), "stuck still running") {
			t.Errorf("Run returned %v; want ErrStuck naming the collector", err)
		}
		if sys.closed.Load() != 0 {
			t.Error("the system was closed while a collector still ran")
		}
		close(s.release) // what is left of the agent then ends too
		synctest.Wait()
	})
	// A collector that stops: the system is closed once, after it.
	sys := &system{p: &Pipeline{Collectors: []collectors.Collector{&flaky{name: "other"}}}}
	if _, err := run(t, sys, 300*time.Millisecond); err != nil || sys.closed.Load() != 1 {
		t.Fatalf("Run returned %v, closed %d times; want nil and 1", err, sys.closed.Load())
	}
}

// testChange records what a reload did.
type testChange struct {
	applied, discarded *atomic.Int32
	running            func() int32
	ranDuringApply     *atomic.Int32
	retire             []Sink
}

func (c testChange) Apply() []Sink {
	c.applied.Add(1)
	c.ranDuringApply.Add(c.running())
	return c.retire
}
func (c testChange) Discard() { c.discarded.Add(1) }

// counting counts its running instances.
type counting struct {
	live, runs atomic.Int32
}

func (c *counting) Name() string { return "counting" }
func (c *counting) Run(ctx context.Context, e collectors.Emitter) error {
	c.live.Add(1)
	defer c.live.Add(-1)
	c.runs.Add(1)
	e.Ready()
	<-ctx.Done()
	return nil
}

// A reload applies a prepared change only while no collector runs, then
// runs the same collectors again; a reload whose Prepare fails changes
// nothing and stops nothing.
func TestReloadAppliesBetweenRunsAndARejectedOneChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &counting{}
		var applied, discarded, ranDuringApply atomic.Int32
		reject := true
		retired := &fakeSink{name: "old-file"}
		sys := &system{p: &Pipeline{Collectors: []collectors.Collector{c}, Sinks: []Sink{retired}}}
		sys.prepare = func(config.Config) (Change, error) {
			if reject {
				return nil, errors.New("sinks.file.path: permission denied")
			}
			sys.p = &Pipeline{Collectors: []collectors.Collector{c}}
			return testChange{applied: &applied, discarded: &discarded, running: c.live.Load, ranDuringApply: &ranDuringApply, retire: []Sink{retired}}, nil
		}
		n := &notes{}
		a := newAgent(n)
		hup := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Run(ctx, sys, hup) }()
		time.Sleep(time.Second)
		hup <- struct{}{} // rejected
		time.Sleep(time.Second)
		synctest.Wait()
		if c.runs.Load() != 1 || applied.Load() != 0 || a.Stats().Reloads.Load() != 0 {
			t.Fatalf("a rejected reload restarted the collector (%d runs) or applied (%d)", c.runs.Load(), applied.Load())
		}
		reject = false
		hup <- struct{}{}
		time.Sleep(time.Second)
		synctest.Wait()
		if applied.Load() != 1 || ranDuringApply.Load() != 0 || c.runs.Load() != 2 || c.live.Load() != 1 {
			t.Fatalf("applied %d (collectors running meanwhile: %d), runs %d, live %d; want 1, 0, 2, 1",
				applied.Load(), ranDuringApply.Load(), c.runs.Load(), c.live.Load())
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
