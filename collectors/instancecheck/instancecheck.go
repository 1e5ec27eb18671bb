// Package instancecheck runs the instance hygiene checks in the daemon:
// at start and then every interval, logging what is not a pass and
// publishing the number of failures.
package instancecheck

import (
	"context"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/checks"
)

// Collector runs Check every Interval.
type Collector struct {
	Interval time.Duration
	Check    func(ctx context.Context) []checks.Result
}

func (c *Collector) Name() string { return "instancecheck" }

func (c *Collector) Run(ctx context.Context, e collectors.Emitter) error {
	e.Ready() // the checks call AWS: never hold up READY for them
	for {
		now := time.Now()
		rs := c.Check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fail, warn := 0, 0
		for _, r := range rs {
			switch r.Status {
			case checks.Fail:
				fail++
			case checks.Warn:
				warn++
			}
			if r.Status != checks.Pass {
				lvl := "warn"
				if r.Status == checks.Fail {
					lvl = "error"
				}
				e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: "instancecheck", Type: "instance_check",
					Message: r.Name + ": " + r.Status + ": " + r.Reason, Dims: map[string]string{"check": r.Name, "status": r.Status, "level": lvl}})
			}
		}
		e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindSample, Source: "instancecheck", Type: "instancecheck",
			Metrics: map[string]float64{"fail": float64(fail), "warn": float64(warn)}})
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.Interval):
		}
	}
}
