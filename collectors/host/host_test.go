package host

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/hostfs/hostfstest"
)

// The shares come from the change in /proc/stat between two samples;
// steal is its own figure and counts as busy (the CPUBusy metric), memory
// comes from MemAvailable and swap from its totals.
func TestSharesFromAScriptedHost(t *testing.T) {
	h := hostfstest.New(t, time.Unix(1_700_000_000, 0))
	h.MemAvailPct, h.SwapTotalKB, h.SwapFreeKB = 25, 1000, 750
	h.Write()
	c := &Collector{ProcRoot: h.Root.Proc, Clock: clock.NewFake(time.Unix(1_700_000_100, 0))}
	first, err := c.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := first.Metrics["cpu_busy_pct"]; ok {
		t.Errorf("the first sample has CPU rates: %v", first.Metrics)
	}
	h.StealPct = 30
	h.Step(40)
	r, err := c.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	near := func(name string, want float64) {
		t.Helper()
		if got := r.Metrics[name]; math.Abs(got-want) > 0.5 {
			t.Errorf("%s = %.2f, want %.0f", name, got, want)
		}
	}
	near("cpu_user_pct", 40)
	near("cpu_steal_pct", 30)
	near("cpu_busy_pct", 70)
	near("mem_available_pct", 25)
	near("swap_used_pct", 25)
	if !r.Time.Equal(time.Unix(1_700_000_100, 0)) {
		t.Errorf("sample time %s: not the injected clock's", r.Time)
	}
}

// A proc root without /proc/stat is an error, not a sample of zeros.
func TestMissingStatIsAnError(t *testing.T) {
	c := &Collector{ProcRoot: t.TempDir()}
	if _, err := c.Sample(context.Background()); err == nil {
		t.Fatal("no error for a proc root without stat")
	}
}
