// Package clock is the agent's one source of wall time. Components take a
// Clock instead of calling time.Now, so a test can run them at a fixed
// date (a fixture /proc says the machine booted at a given second, a
// syslog line carries a date) and step time without sleeping. Timers and
// tickers stay with the time package: tests that need them run in a
// testing/synctest bubble, where the time package itself is fake and
// Real follows it.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Real is the system clock (inside a synctest bubble, the bubble's).
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Or returns c, or Real when c is nil: a zero-valued component runs on
// the system clock.
func Or(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}

// Since is c.Now().Sub(t).
func Since(c Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

// Fake is a clock a test sets and advances; safe for concurrent use.
type Fake struct {
	mu sync.Mutex
	t  time.Time
}

// NewFake returns a fake clock reading t.
func NewFake(t time.Time) *Fake { return &Fake{t: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

// Advance moves the fake time on by d.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// Set moves the fake time to t.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
}
