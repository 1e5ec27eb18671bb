// Package suspend notices when the instance was suspended (hibernation
// on EC2) or its wall clock was stepped, so that neither is taken for a
// hang: CLOCK_BOOTTIME keeps counting while suspended and CLOCK_MONOTONIC
// does not, so their difference grows by exactly the time spent asleep.
package suspend

import (
	"context"
	"fmt"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/clock"
	"golang.org/x/sys/unix"
)

// Clocks reads (boottime, monotonic, realtime).
type Clocks func() (boot, mono, real time.Duration)

// System reads the kernel's clocks.
func System() (boot, mono, real time.Duration) {
	var b, m, r unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &b)
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &m)
	unix.ClockGettime(unix.CLOCK_REALTIME, &r)
	return time.Duration(b.Nano()), time.Duration(m.Nano()), time.Duration(r.Nano())
}

// Collector checks every Interval.
type Collector struct {
	Clocks   Clocks
	Interval time.Duration
	// Threshold: smaller changes are scheduling noise (default 2 s).
	Threshold time.Duration
	Clock     clock.Clock
	d         *Detector
}

func (c *Collector) Name() string { return "suspend" }

// Change is what one check found.
type Change struct {
	Slept   time.Duration // suspended for this long
	Stepped time.Duration // wall clock moved by this much beyond elapsed time
}

// Detector compares successive clock readings.
type Detector struct {
	Threshold              time.Duration
	have                   bool
	lastSleep, lastWallOff time.Duration
}

// Observe takes one reading.
func (d *Detector) Observe(boot, mono, real time.Duration) Change {
	sleep, wallOff := boot-mono, real-boot
	var ch Change
	if d.have {
		if s := sleep - d.lastSleep; s > d.Threshold {
			ch.Slept = s
		}
		if w := wallOff - d.lastWallOff; w > d.Threshold || w < -d.Threshold {
			ch.Stepped = w
		}
	}
	d.have, d.lastSleep, d.lastWallOff = true, sleep, wallOff
	return ch
}

func (c *Collector) Run(ctx context.Context, e collectors.Emitter) error {
	if c.Clocks == nil {
		c.Clocks = System
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	if c.d == nil {
		c.d = &Detector{Threshold: c.Threshold}
		if c.d.Threshold <= 0 {
			c.d.Threshold = 2 * time.Second
		}
	}
	return collectors.Periodic{Interval: c.Interval, Clock: c.Clock}.Run(ctx, e, func(ctx context.Context, now time.Time) error {
		ch := c.d.Observe(c.Clocks())
		if ch.Slept > 0 {
			if err := e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceSuspend, Type: collectors.TypeResume,
				Message: fmt.Sprintf("resumed after %s suspended (hibernation): the gap is sleep, not a hang", ch.Slept.Round(time.Second)),
				Dims:    map[string]string{"level": "warn", "slept": ch.Slept.Round(time.Millisecond).String()}}); err != nil {
				return err
			}
		}
		if ch.Stepped != 0 {
			return e.Emit(ctx, collectors.Record{Time: now, Kind: collectors.KindEvent, Source: collectors.SourceSuspend, Type: collectors.TypeClockStep,
				Message: fmt.Sprintf("wall clock stepped by %s (NTP or manual): log times around %s are not comparable", ch.Stepped.Round(time.Millisecond), now.Format(time.RFC3339)),
				Dims:    map[string]string{"level": "warn", "step": ch.Stepped.Round(time.Millisecond).String()}})
		}
		return nil
	})
}
