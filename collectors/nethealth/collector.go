package nethealth

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/ethtool"
	"golang.org/x/sys/unix"
)

// EthtoolStats reads statistics through the ioctl, in the calling thread's
// network namespace (the agent's: the host's).
func EthtoolStats() (StatsFunc, func(), error) {
	r, err := ethtool.Open()
	if err != nil {
		return nil, func() {}, err
	}
	return func(iface string) (map[string]uint64, error) {
		st, err := r.Stats(iface)
		if err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return nil, nil
			}
			return nil, err
		}
		m := make(map[string]uint64, len(st))
		for _, s := range st {
			m[s.Name] += s.Value
		}
		return m, nil
	}, func() { r.Close() }, nil
}

// Collector checks every Interval, emits per-device figures and deltas as
// samples, and an event only when a device's state changes. The checker's
// counter history and the states live in the value, across reloads; the
// checker is closed by its owner.
type Collector struct {
	Checker  *Checker
	Interval time.Duration
	Clock    clock.Clock
	states   map[string]string
}

// Update takes a reloaded interval.
func (c *Collector) Update(interval time.Duration) { c.Interval = interval }

func (c *Collector) Name() string { return "nethealth" }

// published are the deltas and gauges sent as metrics; the rest (per-queue
// counters ...) stays in evidence: a fleet must not pay for thousands of
// series per interface.
var published = map[string]bool{
	"bw_in_allowance_exceeded": true, "bw_out_allowance_exceeded": true, "pps_allowance_exceeded": true,
	"conntrack_allowance_exceeded": true, "linklocal_allowance_exceeded": true, "total_resets": true,
	"tx_timeout": true, "carrier_down_count": true, "rx_dropped": true, "tx_dropped": true, "rx_over_errors": true,
	"rx_drops": true, "rx_pkts": true, "tx_pkts": true, "retrans_pkts": true, "cmds_err": true, "rdma_read_wr_err": true, "rdma_write_wr_err": true,
}

func (c *Collector) Run(ctx context.Context, e collectors.Emitter) error {
	if c.states == nil {
		c.states = map[string]string{}
	}
	return collectors.Periodic{Interval: c.Interval, Clock: c.Clock}.Run(ctx, e, func(ctx context.Context, now time.Time) error {
		for _, d := range c.Checker.Check() {
			m := map[string]float64{"healthy": 0}
			if d.State == OK {
				m["healthy"] = 1
			}
			for k, v := range d.Figures {
				if gauges[k] {
					m[k] = v
				}
			}
			for k, v := range d.Deltas {
				if published[k] {
					m[k] = float64(v)
				}
			}
			dims := map[string]string{"iface": d.Name, "kind": d.Kind}
			if err := e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindSample, Source: collectors.SourceNetHealth, Type: collectors.Type(d.Kind), Metrics: m, Dims: dims}); err != nil {
				return err
			}
			key := d.Kind + "/" + d.Name
			if prev, ok := c.states[key]; (!ok && d.State != OK) || (ok && prev != d.State) {
				lvl := "info"
				if d.State != OK {
					lvl = "warn"
				}
				if err := e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceNetHealth, Type: collectors.TypeNICState,
					Message: d.Kind + " " + d.Name + " is " + d.State + reasonsSuffix(d.Reasons),
					Dims:    map[string]string{"iface": d.Name, "kind": d.Kind, "state": d.State, "level": lvl}}); err != nil {
					return err
				}
			}
			c.states[key] = d.State
		}
		return nil
	})
}

func reasonsSuffix(r []string) string {
	if len(r) == 0 {
		return ""
	}
	return ": " + strings.Join(r, "; ")
}

// Fields lists the per-interface fields the collector publishes (its
// samples carry no others): for dashboards that name them.
func Fields() []string {
	out := []string{"healthy"}
	for k := range published {
		out = append(out, k)
	}
	for k := range gauges {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
