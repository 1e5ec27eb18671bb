package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"
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

// running is one run of a pipeline: its collectors and the fan-in loop.
type running struct {
	cancel   context.CancelFunc
	collDone chan struct{}
	loopDone chan struct{}
	// flush bounds the loop's sink writes once stopping: cancelled when
	// the stop's deadline passes.
	flush     context.Context
	flushStop context.CancelFunc

	mu   sync.Mutex
	live map[string]int // collectors still running, by name
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
	flush, flushStop := context.WithCancel(context.Background())
	r := &running{cancel: cancel, collDone: make(chan struct{}), loopDone: make(chan struct{}), flush: flush, flushStop: flushStop, live: map[string]int{}}
	a.essential = map[string]bool{}
	ch := make(chan collectors.Record, queueLen)
	var readyWG, collWG sync.WaitGroup
	for _, c := range p.Collectors {
		if e, ok := c.(collectors.Essential); ok && e.Essential() {
			a.essential[c.Name()] = true
		}
		readyWG.Add(1)
		var once sync.Once
		ready := func() { once.Do(readyWG.Done) }
		collWG.Add(1)
		r.live[c.Name()]++
		go func(c collectors.Collector) {
			defer collWG.Done()
			defer func() {
				r.mu.Lock()
				if r.live[c.Name()]--; r.live[c.Name()] == 0 {
					delete(r.live, c.Name())
				}
				r.mu.Unlock()
			}()
			defer ready()
			a.supervise(ctx, c, emitter{ch: ch, ready: ready})
		}(c)
	}
	go func() { collWG.Wait(); close(r.collDone) }()
	states := make([]*sinkState, len(p.Sinks))
	for i, s := range p.Sinks {
		states[i] = a.state(s)
	}
	go a.loop(r, ch, states)

	allReady := make(chan struct{})
	go func() { readyWG.Wait(); close(allReady) }()
	t := time.NewTimer(a.StartTimeout)
	defer t.Stop()
	select {
	case <-allReady:
	case <-t.C:
		a.Log.Warn("not every collector finished its first cycle in time; continuing", zap.Duration("timeout", a.StartTimeout))
	}
	return r
}

// state is s's retry state, kept across reloads while s stays in the
// pipeline: a failing sink's backlog is not lost to a SIGHUP.
func (a *Agent) state(s Sink) *sinkState {
	ss, ok := a.states[s]
	if !ok {
		ss = &sinkState{s: s}
		a.states[s] = ss
	}
	return ss
}

// stop cancels the collectors and waits for every one of them to return,
// then for the loop to hand on what they left (sink writes are cut short
// when ctx ends). It returns an error naming the collectors still running
// when ctx ends first: what they use must not be closed or changed under
// them.
func (r *running) stop(ctx context.Context) error {
	r.cancel()
	defer r.flushStop()
	select {
	case <-r.collDone:
	case <-ctx.Done():
		r.mu.Lock()
		var names []string
		for n := range r.live {
			names = append(names, n)
		}
		r.mu.Unlock()
		sort.Strings(names)
		return fmt.Errorf("%w: %s still running", ErrStuck, strings.Join(names, ", "))
	}
	stop := context.AfterFunc(ctx, r.flushStop)
	defer stop()
	<-r.loopDone
	return nil
}

// supervise runs c until ctx ends; a collector that fails is run again
// after a backoff (1 s doubling to a minute, from 1 s again after a minute
// of running), and is shown DOWN in STATUS= meanwhile. One EMFILE used to
// stop the recorder for good while the watchdog pings went on.
func (a *Agent) supervise(ctx context.Context, c collectors.Collector, e emitter) {
	log := a.Log.Named(c.Name())
	backoff := time.Second
	for {
		t0 := a.Clock.Now()
		err := c.Run(ctx, e)
		if ctx.Err() != nil || err == nil {
			return // stopped, or finished by design
		}
		if a.Clock.Now().Sub(t0) > time.Minute {
			backoff = time.Second
		}
		a.setDown(c.Name(), err.Error())
		log.Error("collector failed; restarting it", zap.String("collector", c.Name()), zap.Error(err), zap.Duration("backoff", backoff))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			a.setDown(c.Name(), "")
			return
		case <-t.C:
		}
		backoff = min(2*backoff, time.Minute)
		a.setDown(c.Name(), "")
	}
}

// loop is the pipeline's one consumer. Each round counts as progress; a
// sink that blocks stops the rounds and so the watchdog pings. When the
// collectors are gone it hands on what they left and returns; the sinks
// stay open (a reload keeps them), their backlogs kept in their states.
func (a *Agent) loop(r *running, ch chan collectors.Record, states []*sinkState) {
	defer close(r.loopDone)
	tick := time.NewTicker(a.heartbeat())
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
			a.write(r.flush, batch, states)
		case <-tick.C:
			a.retry(r.flush, states, false)
		case <-r.collDone:
			for {
				select {
				case rec := <-ch:
					a.write(r.flush, []collectors.Record{rec}, states)
					continue
				default:
				}
				return
			}
		}
	}
}
