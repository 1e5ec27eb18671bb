package agent

import (
	"context"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"go.uber.org/zap"
)

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
	a.stats.LastWrite.Store(a.Clock.Now().UnixNano())
}

func (a *Agent) sinkFailed(ss *sinkState, n int, err error) {
	a.stats.SinkErrors.Add(1)
	if ss.backoff == 0 {
		ss.backoff = time.Second
		a.Log.Warn("sink write failed; keeping its records and retrying", zap.String("sink", ss.s.Name()), zap.Int("records", n), zap.Error(err))
	} else {
		ss.backoff = min(2*ss.backoff, 30*time.Second)
	}
	ss.retryAt = a.Clock.Now().Add(ss.backoff)
	if why := err.Error(); why != ss.lastErr {
		ss.lastErr = why
		a.setSinkDown(ss.s.Name(), why)
	}
}

// retry hands a failing sink its backlog once its backoff has passed (or
// now, when final).
func (a *Agent) retry(ctx context.Context, sinks []*sinkState, final bool) {
	for _, ss := range sinks {
		if len(ss.backlog) == 0 || (!final && a.Clock.Now().Before(ss.retryAt)) {
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
			a.setSinkDown(ss.s.Name(), "")
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
