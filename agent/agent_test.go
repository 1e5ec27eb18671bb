package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/config"
	"go.uber.org/zap"
)

type notes struct {
	mu       sync.Mutex
	pings    int
	statuses []string
}

func (n *notes) Ready()     {}
func (n *notes) Reloading() {}
func (n *notes) Stopping()  {}
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
	name  string
	fails int32
	runs  atomic.Int32
}

func (f *flaky) Name() string { return f.name }
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
			e.Emit(ctx, collectors.Record{Kind: collectors.KindSample, Source: f.name, Time: time.Now()})
		}
	}
}

func run(t *testing.T, c collectors.Collector, essential []string, d time.Duration) *notes {
	n := &notes{}
	a := &Agent{Log: zap.NewNop(), Notify: n, WatchdogInterval: 50 * time.Millisecond, StatusInterval: 50 * time.Millisecond,
		StartTimeout: 100 * time.Millisecond, Essential: essential,
		Build: func(context.Context, config.Config) (*Pipeline, error) {
			return &Pipeline{Collectors: []collectors.Collector{c, &flaky{name: "other"}}, Describe: "test"}, nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := a.Run(ctx, config.Default(), nil); err != nil {
		t.Fatal(err)
	}
	return n
}

// A failed collector is run again: one EMFILE stopped the recorder for
// good while everything looked healthy.
func TestFailedCollectorIsRestarted(t *testing.T) {
	c := &flaky{name: "recorder", fails: 1}
	n := run(t, c, []string{"recorder"}, 2500*time.Millisecond)
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
// systemd restarts the agent; another collector's failure does not.
func TestEssentialCollectorDownStopsWatchdog(t *testing.T) {
	n := run(t, &flaky{name: "recorder", fails: 1 << 30}, []string{"recorder"}, 800*time.Millisecond)
	// The first ping, and at most one more racing the first failure (seen
	// under qemu-user for arm64, where the collector's first run is slow):
	// a watchdog that went on would have pinged ~15 times.
	if p, _ := n.get(); p > 2 {
		t.Errorf("%d watchdog pings with the recorder down; want only the first (or two)", p)
	}
	n = run(t, &flaky{name: "nethealth", fails: 1 << 30}, []string{"recorder"}, 800*time.Millisecond)
	if p, _ := n.get(); p < 5 {
		t.Errorf("%d watchdog pings with a non-essential collector down; want them to go on", p)
	}
}
