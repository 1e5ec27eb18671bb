// Package agent runs ec2diag's lifecycle: it builds a pipeline of collectors
// and sinks from the config, fans records in, talks to systemd (READY,
// RELOADING, STOPPING, STATUS, WATCHDOG), reloads on SIGHUP without ever
// dropping the running config for a bad one, and shuts down within a bound.
package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
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

// Pipeline is what a config turns into. Building it must not start
// anything, so a reload can build the new one while the old keeps running.
type Pipeline struct {
	Collectors []collectors.Collector
	Sinks      []Sink
	// Describe is a short human summary for STATUS= ("tailing /var/log/syslog").
	Describe string
	// Activate, if set, runs after the previous pipeline stopped and before
	// this one starts: the place to change state that outlives a reload
	// (the flight recorder's settings), never touched while two pipelines
	// exist.
	Activate func()
}

// Builder turns a config into a pipeline; it validates and opens what must
// exist (an error keeps the old pipeline on reload).
type Builder func(ctx context.Context, cfg config.Config) (*Pipeline, error)

// Notifier is the part of sdnotify the agent uses; tests may pass their own.
type Notifier interface {
	Ready()
	Reloading()
	Stopping()
	Watchdog()
	Status(string)
}

// Agent is configured by its fields, then Run once.
type Agent struct {
	Log    *zap.Logger
	Notify Notifier
	Build  Builder
	// Reload loads and validates the config again on SIGHUP.
	Reload func() (config.Config, error)
	// OnConfig, if set, sees each config that took effect (log level).
	OnConfig func(config.Config)
	// Mode is shown in STATUS= ("local mode", "instance i-0abc…").
	Mode string
	// WatchdogInterval is how often to ping (half of WATCHDOG_USEC); 0 = off.
	WatchdogInterval time.Duration
	ShutdownTimeout  time.Duration
	StartTimeout     time.Duration
	StatusInterval   time.Duration

	// Essential names the collectors without which the agent is not
	// doing its job: while one of them is down, the watchdog pings stop,
	// so systemd restarts the whole agent (a fresh process clears what
	// wedged it, an exhausted descriptor table say).
	Essential []string

	progress atomic.Uint64 // moves each time the fan-in loop comes round
	stats    Stats
	downMu   sync.Mutex
	down     map[string]string // collector -> why it is down, while it waits to restart
}

// setDown records (why != "") or clears a collector's failure.
func (a *Agent) setDown(name, why string) {
	a.downMu.Lock()
	defer a.downMu.Unlock()
	if a.down == nil {
		a.down = map[string]string{}
	}
	if why == "" {
		delete(a.down, name)
	} else {
		a.down[name] = why
	}
}

// essentialDown reports whether an essential collector is down.
func (a *Agent) essentialDown() bool {
	a.downMu.Lock()
	defer a.downMu.Unlock()
	for _, n := range a.Essential {
		if _, ok := a.down[n]; ok {
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
	if a.ShutdownTimeout <= 0 {
		a.ShutdownTimeout = 10 * time.Second
	}
	if a.StartTimeout <= 0 {
		a.StartTimeout = 20 * time.Second
	}
	if a.StatusInterval <= 0 {
		a.StatusInterval = 10 * time.Second
	}
}

// Run builds and starts the pipeline for cfg, says READY, and serves until
// ctx is done (SIGTERM). Each value on hup triggers a reload.
func (a *Agent) Run(ctx context.Context, cfg config.Config, hup <-chan struct{}) error {
	a.defaults()
	p, err := a.Build(ctx, cfg)
	if err != nil {
		return fmt.Errorf("build pipeline: %w", err)
	}
	if p.Activate != nil {
		p.Activate()
	}
	cur := a.start(ctx, p)
	if a.OnConfig != nil {
		a.OnConfig(cfg)
	}
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
			cur.stop(a.ShutdownTimeout)
			a.Log.Info("agent stopped")
			return nil
		case <-hup:
			a.Notify.Reloading()
			a.Notify.Status("reloading config")
			np, ncfg, err := a.rebuild(ctx)
			if err != nil {
				// The old pipeline never stopped: a bad edit costs nothing.
				// The reason is the news, not where in the agent it was
				// found: no stack trace for an admin's typo.
				a.Log.WithOptions(zap.AddStacktrace(zap.FatalLevel)).Error("config reload rejected; keeping the running config", zap.Error(err))
				a.Notify.Ready()
				a.Notify.Status(a.statusLine(p))
				continue
			}
			cur.stop(a.ShutdownTimeout)
			if np.Activate != nil {
				np.Activate()
			}
			p, cur = np, a.start(ctx, np)
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

func (a *Agent) rebuild(ctx context.Context) (*Pipeline, config.Config, error) {
	cfg, err := a.Reload()
	if err != nil {
		return nil, cfg, err
	}
	p, err := a.Build(ctx, cfg)
	return p, cfg, err
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
		s += fmt.Sprintf(", last write %s ago", time.Since(time.Unix(0, lw)).Round(time.Second))
	}
	if n := a.stats.SinkErrors.Load(); n > 0 {
		s += fmt.Sprintf(", %d sink errors", n)
	}
	if n := a.stats.SinkDropped.Load(); n > 0 {
		s += fmt.Sprintf(", %d records dropped by a failing sink", n)
	}
	a.downMu.Lock()
	names := make([]string, 0, len(a.down))
	for n := range a.down {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		verb := "restarting"
		if strings.HasPrefix(n, "sink ") {
			verb = "retrying"
		}
		s += fmt.Sprintf("; %s DOWN, %s: %s", n, verb, a.down[n])
	}
	a.downMu.Unlock()
	return s
}
