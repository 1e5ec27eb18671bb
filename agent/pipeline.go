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

// heartbeat is how often an idle fan-in loop still counts as progress:
// twice per watchdog ping, so a ping never finds it still, and no more
// often (it woke the idle agent twice a second).
func (a *Agent) heartbeat() time.Duration {
	if a.WatchdogInterval <= 0 {
		return 10 * time.Second
	}
	return min(max(a.WatchdogInterval/2, 100*time.Millisecond), 10*time.Second)
}

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
	tick := time.NewTicker(a.heartbeat())
	defer tick.Stop()
	states := make([]*sinkState, len(sinks))
	for i, s := range sinks {
		states[i] = &sinkState{s: s}
	}
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
			a.write(r.flushCtx, batch, states)
		case <-tick.C:
			a.retry(r.flushCtx, states, false)
		case <-r.collDone:
			// Collectors are gone: hand on what they left, then close.
			for {
				select {
				case rec := <-ch:
					a.write(r.flushCtx, []collectors.Record{rec}, states)
					continue
				default:
				}
				break
			}
			a.retry(r.flushCtx, states, true)
			for _, ss := range states {
				if n := len(ss.backlog); n > 0 {
					a.Log.Error("sink still failing at shutdown; its records are not acknowledged, so the log lines behind them are read again at the next start",
						zap.String("sink", ss.s.Name()), zap.Int("records", n))
				}
				if err := ss.s.Close(r.flushCtx); err != nil {
					a.Log.Error("sink close", zap.String("sink", ss.s.Name()), zap.Error(err))
				}
			}
			return
		}
	}
}

// maxBacklog bounds what one failing sink holds for its retries.
const maxBacklog = 50000

// sinkState is one sink's retry state. A sink that fails a write keeps
// the records it has not taken, in order, and retries them with backoff;
// later records queue behind them. A record's Done (which lets the log
// position move past its line) runs only once every sink took it: the
// position used to advance whatever Write returned, so a full disk under
// the file sink dropped events for good.
type sinkState struct {
	s       Sink
	backlog []*tracked
	retryAt time.Time
	backoff time.Duration
	lastErr string
}

// tracked is a record some sinks have not taken yet.
type tracked struct {
	rec  collectors.Record
	left int // sinks still to take it
}

func (a *Agent) write(ctx context.Context, batch []collectors.Record, sinks []*sinkState) {
	var tr []tracked // made only when a sink did not take the batch
	for _, ss := range sinks {
		if len(ss.backlog) == 0 {
			err := ss.s.Write(ctx, batch)
			if err == nil {
				continue
			}
			a.sinkFailed(ss, len(batch), err)
		}
		if tr == nil {
			tr = make([]tracked, len(batch))
			for i := range batch {
				tr[i].rec = batch[i]
			}
		}
		for i := range tr {
			tr[i].left++
			ss.backlog = append(ss.backlog, &tr[i])
		}
		a.trim(ss)
	}
	for i, rec := range batch {
		a.stats.Records.Add(1)
		if rec.Kind == collectors.KindEvent {
			a.stats.Events.Add(1)
		}
		if tr != nil && tr[i].left > 0 {
			continue
		}
		if rec.Done != nil {
			rec.Done()
		}
	}
	a.stats.LastWrite.Store(time.Now().UnixNano())
}

func (a *Agent) sinkFailed(ss *sinkState, n int, err error) {
	a.stats.SinkErrors.Add(1)
	if ss.backoff == 0 {
		ss.backoff = time.Second
		a.Log.Warn("sink write failed; keeping its records and retrying", zap.String("sink", ss.s.Name()), zap.Int("records", n), zap.Error(err))
	} else {
		ss.backoff = min(2*ss.backoff, 30*time.Second)
	}
	ss.retryAt = time.Now().Add(ss.backoff)
	if why := err.Error(); why != ss.lastErr {
		ss.lastErr = why
		a.setDown("sink "+ss.s.Name(), why)
	}
}

// retry hands a failing sink its backlog once its backoff has passed (or
// now, when final).
func (a *Agent) retry(ctx context.Context, sinks []*sinkState, final bool) {
	for _, ss := range sinks {
		if len(ss.backlog) == 0 || (!final && time.Now().Before(ss.retryAt)) {
			continue
		}
		for len(ss.backlog) > 0 {
			n := min(len(ss.backlog), maxBatch)
			recs := make([]collectors.Record, n)
			for i, t := range ss.backlog[:n] {
				recs[i] = t.rec
			}
			if err := ss.s.Write(ctx, recs); err != nil {
				a.sinkFailed(ss, len(ss.backlog), err)
				break
			}
			for _, t := range ss.backlog[:n] {
				if t.left--; t.left == 0 && t.rec.Done != nil {
					t.rec.Done()
				}
			}
			ss.backlog = ss.backlog[n:]
		}
		if len(ss.backlog) == 0 {
			ss.backlog, ss.backoff, ss.lastErr = nil, 0, ""
			a.setDown("sink "+ss.s.Name(), "")
			a.Log.Info("sink writes again; its backlog was handed on", zap.String("sink", ss.s.Name()))
		}
	}
}

// trim drops a failing sink's oldest records beyond maxBacklog. Their Done
// never runs, so the log position stays behind them and a restart reads
// those lines again (the other sinks then see them twice): memory stays
// bounded and no log line is lost. Records that are not log lines (samples)
// are lost to this sink only, and counted.
func (a *Agent) trim(ss *sinkState) {
	over := len(ss.backlog) - maxBacklog
	if over <= 0 {
		return
	}
	for _, t := range ss.backlog[:over] {
		t.left = -1 << 30 // never acknowledged
	}
	if a.stats.SinkDropped.Add(uint64(over)) == uint64(over) {
		a.Log.Error("failing sink's backlog is full; dropping its oldest records (log lines stay unacknowledged and are read again at the next start)",
			zap.String("sink", ss.s.Name()), zap.Int("max_backlog", maxBacklog))
	}
	ss.backlog = append(ss.backlog[:0:0], ss.backlog[over:]...)
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
