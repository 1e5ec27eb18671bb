package collectors

import (
	"context"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
)

// Periodic is how a polling collector runs: one tick, then one every
// Interval, until ctx is done. The collector's state lives in its own
// value, not in the loop, so a collector run again after a reload carries
// on where it was.
type Periodic struct {
	Interval time.Duration
	// First is how long to wait before the first tick (0: at once): a
	// collector run again after a reload waits out what is left of its
	// period instead of ticking again at once.
	First time.Duration
	// ReadyAtOnce says Ready before the first tick, for ticks that may
	// take long (AWS calls); otherwise Ready follows the first tick.
	ReadyAtOnce bool
	Clock       clock.Clock
}

// Run calls tick with the time of each round. A tick's error ends the
// loop and is returned (the agent restarts the collector); an Emit that
// failed because ctx ended returns nil.
func (p Periodic) Run(ctx context.Context, e Emitter, tick func(ctx context.Context, now time.Time) error) error {
	clk := clock.Or(p.Clock)
	ready := func() {
		if e != nil {
			e.Ready()
		}
	}
	if p.ReadyAtOnce {
		ready()
	}
	wait := p.First
	for first := true; ; first = false {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				if first && !p.ReadyAtOnce {
					ready()
				}
				return nil
			case <-t.C:
			}
		}
		if err := tick(ctx, clk.Now()); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if first && !p.ReadyAtOnce {
			ready()
		}
		if ctx.Err() != nil {
			return nil
		}
		wait = p.Interval
	}
}
