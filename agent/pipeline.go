package agent

import (
	"context"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"go.uber.org/zap"
)

// queueLen bounds the fan-in: a burst beyond it blocks collectors (which
// then read more slowly) instead of growing memory.
const queueLen = 1024

// maxBatch caps one sink write so a burst is handed on in steady pieces.
const maxBatch = 512

// heartbeat is how often an idle fan-in loop still counts as progress.
const heartbeat = 500 * time.Millisecond

type running struct {
	log        *zap.Logger
	cancel     context.CancelFunc
	collectors sync.WaitGroup
	collDone   chan struct{}
	loopDone   chan struct{}
	flushCtx   context.Context
	flushStop  context.CancelFunc
}

type emitter struct {
	ch    chan<- collectors.Record
	ready func()
}

func (e emitter) Emit(ctx context.Context, r collectors.Record) error {
	select {
	case e.ch <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e emitter) Ready() { e.ready() }

// start runs p's collectors and the fan-in loop, and returns once every
// collector said Ready (or returned, or StartTimeout passed).
func (a *Agent) start(parent context.Context, p *Pipeline) *running {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	flushCtx, flushStop := context.WithCancel(context.Background())
	r := &running{
		log:       a.Log,
		cancel:    cancel,
		collDone:  make(chan struct{}),
		loopDone:  make(chan struct{}),
		flushCtx:  flushCtx,
		flushStop: flushStop,
	}
	ch := make(chan collectors.Record, queueLen)
	readyWG := sync.WaitGroup{}
	for _, c := range p.Collectors {
		readyWG.Add(1)
		var once sync.Once
		ready := func() { once.Do(readyWG.Done) }
		r.collectors.Add(1)
		go func(c collectors.Collector) {
			defer r.collectors.Done()
			defer ready()
			a.supervise(ctx, c, emitter{ch: ch, ready: ready})
		}(c)
	}
	go func() { r.collectors.Wait(); close(r.collDone) }()
	go a.loop(r, ch, p.Sinks)

	allReady := make(chan struct{})
	go func() { readyWG.Wait(); close(allReady) }()
	select {
	case <-allReady:
	case <-time.After(a.StartTimeout):
		a.Log.Warn("not every collector finished its first cycle in time; continuing", zap.Duration("timeout", a.StartTimeout))
	}
	return r
}

// supervise runs c until ctx ends; a collector that fails is run again
// after a backoff (1 s doubling to a minute, from 1 s again after a minute
// of running), and is shown DOWN in STATUS= meanwhile. One EMFILE used to
// stop the recorder for good while the watchdog pings went on.
func (a *Agent) supervise(ctx context.Context, c collectors.Collector, e emitter) {
	log := a.Log.Named(c.Name())
	backoff := time.Second
	for {
		started := time.Now()
		err := c.Run(ctx, e)
		if ctx.Err() != nil || err == nil {
			return // stopped, or finished by design
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		a.setDown(c.Name(), err.Error())
		log.Error("collector failed; restarting it", zap.String("collector", c.Name()), zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			a.setDown(c.Name(), "")
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
		a.setDown(c.Name(), "")
	}
}

// loop is the pipeline's one consumer. Each round counts as progress; a
// sink that blocks stops the rounds and so the watchdog pings.
func (a *Agent) loop(r *running, ch chan collectors.Record, sinks []Sink) {
	defer close(r.loopDone)
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	batch := make([]collectors.Record, 0, maxBatch)
	for {
		a.progress.Add(1)
		select {
		case rec := <-ch:
			batch = append(batch[:0], rec)
		fill:
			for len(batch) < maxBatch {
				select {
				case rec := <-ch:
					batch = append(batch, rec)
				default:
					break fill
				}
			}
			a.write(r.flushCtx, batch, sinks)
		case <-tick.C:
		case <-r.collDone:
			// Collectors are gone: hand on what they left, then close.
			for {
				select {
				case rec := <-ch:
					a.write(r.flushCtx, []collectors.Record{rec}, sinks)
					continue
				default:
				}
				break
			}
			for _, s := range sinks {
				if err := s.Close(r.flushCtx); err != nil {
					a.Log.Error("sink close", zap.String("sink", s.Name()), zap.Error(err))
				}
			}
			return
		}
	}
}

func (a *Agent) write(ctx context.Context, batch []collectors.Record, sinks []Sink) {
	for _, s := range sinks {
		if err := s.Write(ctx, batch); err != nil {
			a.stats.SinkErrors.Add(1)
			a.Log.Warn("sink write failed", zap.String("sink", s.Name()), zap.Int("records", len(batch)), zap.Error(err))
		}
	}
	for _, rec := range batch {
		a.stats.Records.Add(1)
		if rec.Kind == collectors.KindEvent {
			a.stats.Events.Add(1)
		}
		if rec.Done != nil {
			rec.Done()
		}
	}
	a.stats.LastWrite.Store(time.Now().UnixNano())
}

// stop cancels the collectors, lets the loop hand on what is queued and
// close the sinks, all within timeout; past it, sink contexts are cancelled
// and stop returns regardless, so shutdown is bounded.
func (r *running) stop(timeout time.Duration) {
	r.cancel()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case <-r.loopDone:
	case <-deadline.C:
		r.log.Error("shutdown timed out; abandoning unflushed sinks", zap.Duration("timeout", timeout))
		r.flushStop()
		select {
		case <-r.loopDone:
		case <-time.After(time.Second):
		}
	}
	r.flushStop()
}
