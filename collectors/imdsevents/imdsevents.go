// Package imdsevents watches IMDS for what AWS announces to an instance
// before it happens: spot interruption notices (2 minutes' warning),
// rebalance recommendations, and scheduled maintenance events. Each
// notice is logged once, with its deadline, and published as a figure.
package imdsevents

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/clock"
)

// Getter reads an IMDS meta-data path; found=false is a 404 (nothing
// announced), the normal answer.
type Getter func(ctx context.Context, path string) (value string, found bool, err error)

// Collector polls every Interval (AWS suggests every 5 s for spot notices).
// What it saw lives in the value: run again after a reload, it does not
// announce the same notices twice.
type Collector struct {
	Get      Getter
	Interval time.Duration
	Clock    clock.Clock
	seen     map[string]bool
	errors   int
}

func (c *Collector) Name() string { return "imdsevents" }

// Notice is one announcement.
type Notice struct {
	Kind     string // spot_interruption, rebalance_recommendation, scheduled_event
	Action   string
	Deadline string
	ID       string
	Message  string
}

// Update takes a reloaded interval from the next poll on.
func (c *Collector) Update(interval time.Duration) { c.Interval = interval }

func (c *Collector) Run(ctx context.Context, e collectors.Emitter) error {
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	return collectors.Periodic{Interval: c.Interval, Clock: c.Clock}.Run(ctx, e, func(ctx context.Context, now time.Time) error {
		ns, m, err := c.Poll(ctx)
		if ctx.Err() != nil {
			return ctx.Err() // a poll cut short by shutdown says nothing
		}
		if err != nil {
			c.errors++
			if c.errors == 1 || c.errors%720 == 0 { // once, then hourly at 5 s
				if err := e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceIMDSEvents, Type: collectors.TypeIMDSError,
					Message: "cannot read instance notices from IMDS: " + err.Error(), Dims: map[string]string{"level": "warn"}}); err != nil {
					return err
				}
			}
		}
		for _, n := range ns {
			// An instance gets one interruption notice, but its time
			// may be restated (AEMM recomputes it per request): the
			// deadline is not part of its identity.
			key := n.Kind + "/" + n.ID + "/" + n.Action
			if c.seen[key] {
				continue
			}
			c.seen[key] = true
			if err := e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceIMDSEvents, Type: collectors.Type(n.Kind), Message: n.Message,
				Dims: map[string]string{"level": "warn", "action": n.Action, "deadline": n.Deadline, "event_id": n.ID}}); err != nil {
				return err
			}
		}
		if m != nil {
			return e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindSample, Source: collectors.SourceIMDSEvents, Type: collectors.TypeIMDSEvents, Metrics: m})
		}
		return nil
	})
}

// Poll reads the three paths once.
func (c *Collector) Poll(ctx context.Context) ([]Notice, map[string]float64, error) {
	var out []Notice
	m := map[string]float64{}
	var firstErr error
	keep := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	// A path gets a figure only once it answered: a 0 for one that could
	// not be read would say "no notice" when the truth is "not known" (and
	// a poll cut short by shutdown would end the series on a false 0).
	if v, ok, err := c.Get(ctx, "spot/instance-action"); err != nil {
		keep(err)
	} else if !ok {
		m["spot_interruption"] = 0
	} else {
		var ia struct{ Action, Time string }
		if err := json.Unmarshal([]byte(v), &ia); err != nil {
			keep(fmt.Errorf("spot/instance-action is not the documented JSON: %w", err))
		} else {
			m["spot_interruption"] = 1
			// The path answers only when a notice exists, so even an answer
			// lacking its fields is a notice, said without the missing parts.
			when := "at an unknown time"
			if ia.Time != "" {
				when = fmt.Sprintf("at %s (%s from now)", ia.Time, until(ia.Time, clock.Or(c.Clock).Now()))
			}
			out = append(out, Notice{Kind: "spot_interruption", Action: ia.Action, Deadline: ia.Time,
				Message: fmt.Sprintf("spot interruption notice: the instance will be %s %s", pastTense(ia.Action), when)})
		}
	}
	if v, ok, err := c.Get(ctx, "events/recommendations/rebalance"); err != nil {
		keep(err)
	} else if !ok {
		m["rebalance_recommendation"] = 0
	} else {
		var rb struct{ NoticeTime string }
		if err := json.Unmarshal([]byte(v), &rb); err != nil {
			keep(fmt.Errorf("events/recommendations/rebalance is not the documented JSON: %w", err))
		} else {
			m["rebalance_recommendation"] = 1
			out = append(out, Notice{Kind: "rebalance_recommendation", Deadline: rb.NoticeTime,
				Message: "rebalance recommendation (since " + rb.NoticeTime + "): this spot instance is at elevated risk of interruption"})
		}
	}
	if v, ok, err := c.Get(ctx, "events/maintenance/scheduled"); err != nil {
		keep(err)
	} else if !ok || strings.TrimSpace(v) == "" {
		m["scheduled_events"] = 0
	} else {
		var evs []struct{ Code, Description, EventId, NotBefore, NotAfter, NotBeforeDeadline, State string }
		if err := json.Unmarshal([]byte(v), &evs); err != nil {
			keep(fmt.Errorf("events/maintenance/scheduled is not the documented JSON: %w", err))
		} else {
			m["scheduled_events"] = 0
		}
		for _, ev := range evs {
			if ev.State != "" && ev.State != "active" {
				continue // completed or canceled
			}
			m["scheduled_events"]++
			out = append(out, Notice{Kind: "scheduled_event", Action: ev.Code, Deadline: ev.NotBefore, ID: ev.EventId,
				Message: fmt.Sprintf("scheduled event %s (%s) %s: not before %s, not after %s", ev.EventId, ev.Code, ev.Description, ev.NotBefore, ev.NotAfter)})
		}
	}
	if len(m) == 0 {
		m = nil
	}
	return out, m, firstErr
}

func pastTense(a string) string {
	switch a {
	case "terminate":
		return "terminated"
	case "stop":
		return "stopped"
	case "hibernate":
		return "hibernated"
	case "":
		return "interrupted"
	}
	return a
}

func until(ts string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return "unknown time"
	}
	return t.Sub(now).Round(time.Second).String()
}
