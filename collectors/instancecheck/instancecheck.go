// Package instancecheck runs the instance hygiene checks in the daemon:
// at start and then every interval, logging what is not a pass and
// publishing the number of failures.
package instancecheck

import (
	"context"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/checks/result"
	"github.com/ec2diag/ec2diag/internal/clock"
)

// Collector runs Check every Interval. It remembers when it last ran: run
// again after a reload, it waits out the rest of its interval instead of
// calling AWS again at once.
type Collector struct {
	Interval time.Duration
	Check    func(ctx context.Context) []result.Result
	Clock    clock.Clock
	last     time.Time
}

func (c *Collector) Name() string { return "instancecheck" }

// Update takes a reloaded interval.
func (c *Collector) Update(interval time.Duration) { c.Interval = interval }

func (c *Collector) Run(ctx context.Context, e collectors.Emitter) error {
	clk := clock.Or(c.Clock)
	var first time.Duration
	if !c.last.IsZero() {
		first = max(0, c.Interval-clk.Now().Sub(c.last))
	}
	// The checks call AWS: never hold up READY for them.
	return collectors.Periodic{Interval: c.Interval, First: first, ReadyAtOnce: true, Clock: clk}.Run(ctx, e, func(ctx context.Context, now time.Time) error {
		rs := c.Check(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.last = now
		fail, warn := 0, 0
		for _, r := range rs {
			switch r.Status {
			case result.Fail:
				fail++
			case result.Warn:
				warn++
			}
			if r.Status != result.Pass {
				lvl := "warn"
				if r.Status == result.Fail {
					lvl = "error"
				}
				if err := e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceInstanceCheck, Type: collectors.TypeCheckResult,
					Message: r.Name + ": " + r.Status + ": " + r.Reason, Dims: map[string]string{"check": r.Name, "status": r.Status, "level": lvl}}); err != nil {
					return err
				}
			}
		}
		return e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindSample, Source: collectors.SourceInstanceCheck, Type: collectors.TypeInstanceCheck,
			Metrics: map[string]float64{"fail": float64(fail), "warn": float64(warn)}})
	})
}
