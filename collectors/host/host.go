// Package host samples host-wide CPU by state and memory through gopsutil
// (cheap at host level: ~30 µs a sample), with the proc root passed per call
// so tests and containers can point it elsewhere without os.Setenv.
package host

import (
	"context"
	"fmt"
	"math"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/shirou/gopsutil/v3/common"
	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/mem"
)

// Collector reads host samples for the flight recorder, which decides
// when.
type Collector struct {
	ProcRoot string      // "" = /proc
	Clock    clock.Clock // nil = the system clock
	prev     *cpu.TimesStat
}

func (c *Collector) Name() string { return "host" }

func (c *Collector) ctx(ctx context.Context) context.Context {
	if c.ProcRoot == "" {
		return ctx
	}
	return context.WithValue(ctx, common.EnvKey, common.EnvMap{common.HostProcEnvKey: c.ProcRoot})
}

// Sample reads one host sample; the first call has no CPU rates (it needs
// two readings) and reports memory only.
func (c *Collector) Sample(ctx context.Context) (collectors.Record, error) {
	ctx = c.ctx(ctx)
	r := collectors.Record{Time: clock.Or(c.Clock).Now(), Kind: collectors.KindSample, Source: collectors.SourceHost, Type: collectors.TypeHost, Metrics: map[string]float64{}}
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil || len(ts) == 0 {
		return r, fmt.Errorf("read cpu times: %v", err)
	}
	cur := ts[0]
	if c.prev != nil {
		total := cur.Total() - c.prev.Total()
		if total > 0 {
			pct := func(a, b float64) float64 { return math.Max(0, 100*(a-b)/total) }
			r.Metrics["cpu_user_pct"] = pct(cur.User+cur.Nice, c.prev.User+c.prev.Nice)
			r.Metrics["cpu_system_pct"] = pct(cur.System+cur.Irq+cur.Softirq, c.prev.System+c.prev.Irq+c.prev.Softirq)
			r.Metrics["cpu_iowait_pct"] = pct(cur.Iowait, c.prev.Iowait)
			r.Metrics["cpu_steal_pct"] = pct(cur.Steal, c.prev.Steal)
			r.Metrics["cpu_busy_pct"] = math.Min(100, pct(cur.Total()-cur.Idle-cur.Iowait, c.prev.Total()-c.prev.Idle-c.prev.Iowait))
		}
	}
	c.prev = &cur
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return r, fmt.Errorf("read memory: %w", err)
	}
	r.Metrics["mem_used_pct"] = vm.UsedPercent
	if vm.Total > 0 {
		r.Metrics["mem_available_pct"] = 100 * float64(vm.Available) / float64(vm.Total)
	}
	if vm.SwapTotal > 0 {
		r.Metrics["swap_used_pct"] = 100 * float64(vm.SwapTotal-vm.SwapFree) / float64(vm.SwapTotal)
	}
	return r, nil
}
