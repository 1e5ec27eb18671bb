// Package agent runs ec2diag's lifecycle: it runs the collectors and sinks
// of a System, fans records in, talks to systemd (READY, RELOADING,
// STOPPING, STATUS, WATCHDOG), reloads on SIGHUP by updating the running
// system in place (a config that does not take changes nothing), and
// shuts down within a bound, closing what the collectors use only once
// they have stopped.
package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/config"
	"go.uber.org/zap"
)

// Sink receives batches of records. Write is all-or-error; Close flushes
// within ctx's deadline and is never concurrent with Write.
type Sink interface {
	Name() string
	Write(ctx context.Context, batch []collectors.Record) error
	Close(ctx context.Context) error
}

// Pipeline is what runs: the collectors and the sinks their records go to.
type Pipeline struct {
	Collectors []collectors.Collector
	Sinks      []Sink
	// Describe is a short human summary for STATUS= ("tailing /var/log/syslog").
	Describe string
}

// System is what the agent runs: built once from the first config, and
// changed in place by every reload, so what its components know (the
// incident in progress, notices seen, counter history) outlives a SIGHUP.
type System interface {
	// Pipeline is what runs now.
	Pipeline() *Pipeline
	// Prepare checks cfg against the running system and opens what it
	// needs that the system lacks (a new file sink, a new listener). It
	// changes nothing that runs: an error leaves everything as it was.
	Prepare(ctx context.Context, cfg config.Config) (Change, error)
	// Close releases what the system holds (the store, sockets); called
	// once, only when no collector runs.
	Close()
}

// Change is a prepared reload.
type Change interface {
	// Apply makes the prepared config the running one; called while no
	// collector runs. It returns the sinks it took out of the pipeline,
	// which the agent flushes and closes.
	Apply() (retired []Sink)
	// Discard releases what Prepare opened; the running system is as it
	// was.
	Discard()
}

// Notifier is the part of sdnotify the agent uses; tests may pass their own.
type Notifier interface {
	Ready()
	Reloading()
	Stopping()
	Watchdog()
	Status(string)
}

// ErrStuck is returned when a collector does not stop when asked: the
// agent cannot safely change or close what it uses, so it exits and
// systemd starts it afresh.
var ErrStuck = errors.New("collectors did not stop")

// Agent is configured by its fields, then Run once.
type Agent struct {
	Log    *zap.Logger
	Notify Notifier
	Clock  clock.Clock
	// Reload loads and validates the config again on SIGHUP.
	Reload func() (config.Config, error)
	// OnConfig, if set, sees each config that took effect on reload (log
	// level).
	OnConfig func(config.Config)
	// Mode is shown in STATUS= ("local mode", "instance i-0abc…").
	Mode string
	// WatchdogInterval is how often to ping (half of WATCHDOG_USEC); 0 = off.
	WatchdogInterval time.Duration
	ShutdownTimeout  time.Duration
	StartTimeout     time.Duration
	StatusInterval   time.Duration

	progress atomic.Uint64 // moves each time the fan-in loop comes round
	stats    Stats
	downMu   sync.Mutex
	down     map[string]string // collector -> why it is down, while it waits to restart
	sinkDown map[string]string // sink -> why it fails, while it retries
	// essential names the collectors without which the agent is not
	// doing its job (collectors.Essential): while one of them is down,
	// the watchdog pings stop, so systemd restarts the whole agent (a
	// fresh process clears what wedged it, an exhausted descriptor table
	// say).
	essential map[string]bool
	states    map[Sink]*sinkState // each sink's retry state, across reloads
}

// setDown records (why != "") or clears a collector's failure.
func (a *Agent) setDown(name, why string) { a.mark(&a.down, name, why) }

// setSinkDown records (why != "") or clears a sink's failure.
func (a *Agent) setSinkDown(name, why string) { a.mark(&a.sinkDown, name, why) }

func (a *Agent) mark(m *map[string]string, name, why string) {
	a.downMu.Lock()
	defer a.downMu.Unlock()
	if *m == nil {
		*m = map[string]string{}
	}
	if why == "" {
		delete(*m, name)
	} else {
		(*m)[name] = why
	}
}

// essentialDown reports whether an essential collector is down.
func (a *Agent) essentialDown() bool {
	a.downMu.Lock()
	defer a.downMu.Unlock()
	for n := range a.down {
		if a.essential[n] {
			return true
		}
	}
	return false
}

// Stats are the agent's own counters, shown in STATUS= and summaries.
type Stats struct {
	Records    atomic.Uint64
	Events     atomic.Uint64
	SinkErrors atomic.Uint64
	// SinkDropped counts records a failing sink's full backlog gave up.
	SinkDropped atomic.Uint64
	LastWrite   atomic.Int64 // unix nanoseconds
	Reloads     atomic.Uint64
}

// Stats returns the live counters.
func (a *Agent) Stats() *Stats { return &a.stats }

func (a *Agent) defaults() {
	a.Clock = clock.Or(a.Clock)
	if a.ShutdownTimeout <= 0 {
		a.ShutdownTimeout = 10 * time.Second
	}
	if a.StartTimeout <= 0 {
		a.StartTimeout = 20 * time.Second
	}
	if a.StatusInterval <= 0 {
		a.StatusInterval = 10 * time.Second
	}
	if a.states == nil {
		a.states = map[Sink]*sinkState{}
	}
}

// Run runs sys, says READY, and serves until ctx is done (SIGTERM). Each
// value on hup triggers a reload. It returns ErrStuck (wrapped) when a
// collector would not stop; sys is then left open for the process's exit.
func (a *Agent) Run(ctx context.Context, sys System, hup <-chan struct{}) error {
	a.defaults()
	p := sys.Pipeline()
	cur := a.start(ctx, p)
	a.Notify.Ready()
	a.Notify.Status(a.statusLine(p))
	a.Log.Info("agent running", zap.String("pipeline", p.Describe), zap.String("mode", a.Mode))

	wdCtx, wdStop := context.WithCancel(context.Background())
	defer wdStop()
	if a.WatchdogInterval > 0 {
		go a.watchdog(wdCtx)
	}

	status := time.NewTicker(a.StatusInterval)
	defer status.Stop()
	for {
		select {
		case <-ctx.Done():
			a.Notify.Stopping()
			a.Notify.Status("stopping")
			a.Log.Info("agent stopping", zap.Duration("timeout", a.ShutdownTimeout))
			sctx, cancel := context.WithTimeout(context.Background(), a.ShutdownTimeout)
			defer cancel()
			if err := cur.stop(sctx); err != nil {
				// A collector still runs: closing the store or a socket
				// under it is how records got torn. The process's exit
				// closes them.
				a.Log.Error("shutdown: a collector did not stop; leaving what it uses to the process's exit", zap.Error(err))
				return err
			}
			a.closeSinks(sctx, p.Sinks)
			sys.Close()
			a.Log.Info("agent stopped")
			return nil
		case <-hup:
			a.Notify.Reloading()
			a.Notify.Status("reloading config")
			ch, ncfg, err := a.prepare(ctx, sys)
			if err != nil {
				// Nothing was changed: a bad edit costs nothing. The
				// reason is the news, not where in the agent it was
				// found: no stack trace for an admin's typo.
				a.Log.WithOptions(zap.AddStacktrace(zap.FatalLevel)).Error("config reload rejected; keeping the running config", zap.Error(err))
				a.Notify.Ready()
				a.Notify.Status(a.statusLine(p))
				continue
			}
			sctx, cancel := context.WithTimeout(context.Background(), a.ShutdownTimeout)
			err = cur.stop(sctx)
			if err != nil {
				cancel()
				ch.Discard()
				a.Log.Error("reload: a collector did not stop; exiting so that systemd starts the agent afresh", zap.Error(err))
				return err
			}
			retired := ch.Apply()
			a.closeSinks(sctx, retired)
			cancel()
			p = sys.Pipeline()
			cur = a.start(ctx, p)
			if a.OnConfig != nil {
				a.OnConfig(ncfg)
			}
			a.stats.Reloads.Add(1)
			a.Notify.Ready()
			a.Notify.Status(a.statusLine(p))
			a.Log.Info("config reloaded", zap.String("pipeline", p.Describe))
		case <-status.C:
			a.Notify.Status(a.statusLine(p))
		}
	}
}

func (a *Agent) prepare(ctx context.Context, sys System) (Change, config.Config, error) {
	cfg, err := a.Reload()
	if err != nil {
		return nil, cfg, err
	}
	ch, err := sys.Prepare(ctx, cfg)
	return ch, cfg, err
}

// closeSinks hands each sink's backlog a last try and closes it, within
// ctx's deadline.
func (a *Agent) closeSinks(ctx context.Context, sinks []Sink) {
	var states []*sinkState
	for _, s := range sinks {
		states = append(states, a.state(s))
	}
	a.retry(ctx, states, true)
	for _, ss := range states {
		if n := len(ss.backlog); n > 0 {
			a.Log.Error("sink still failing at shutdown; its records are not acknowledged, so the log lines behind them are read again at the next start",
				zap.String("sink", ss.s.Name()), zap.Int("records", n))
		}
		if err := ss.s.Close(ctx); err != nil {
			a.Log.Error("sink close", zap.String("sink", ss.s.Name()), zap.Error(err))
		}
		delete(a.states, ss.s)
		a.setSinkDown(ss.s.Name(), "")
	}
}

// watchdog pings only when the fan-in loop moved since the last ping: a
// pipeline stuck in a sink must let systemd's watchdog fire and restart us.
func (a *Agent) watchdog(ctx context.Context) {
	t := time.NewTicker(a.WatchdogInterval)
	defer t.Stop()
	last := a.progress.Load()
	a.Notify.Watchdog()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if now := a.progress.Load(); now != last && !a.essentialDown() {
				last = now
				a.Notify.Watchdog()
			}
		}
	}
}

func (a *Agent) statusLine(p *Pipeline) string {
	s := fmt.Sprintf("%s; %s; %d records, %d events", a.Mode, p.Describe, a.stats.Records.Load(), a.stats.Events.Load())
	if lw := a.stats.LastWrite.Load(); lw != 0 {
		s += fmt.Sprintf(", last write %s ago", a.Clock.Now().Sub(time.Unix(0, lw)).Round(time.Second))
	}
	if n := a.stats.SinkErrors.Load(); n > 0 {
		s += fmt.Sprintf(", %d sink errors", n)
	}
	if n := a.stats.SinkDropped.Load(); n > 0 {
		s += fmt.Sprintf(", %d records dropped by a failing sink", n)
	}
	a.downMu.Lock()
	defer a.downMu.Unlock()
	for _, d := range []struct {
		m    map[string]string
		kind string
		verb string
	}{{a.down, "", "restarting"}, {a.sinkDown, "sink ", "retrying"}} {
		names := make([]string, 0, len(d.m))
		for n := range d.m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			s += fmt.Sprintf("; %s%s DOWN, %s: %s", d.kind, n, d.verb, d.m[n])
		}
	}
	return s
}
