package tail

import (
	"context"
	"sync"
)

type pendingBatch struct {
	ck   Checkpoint
	done bool
}

// hand registers a pending batch ending at end and calls the handler.
func (t *Follower) hand(ctx context.Context, fl *file, lines []Line, end int64, h Handler) error {
	pb := &pendingBatch{ck: Checkpoint{Path: t.o.Path, File: fl.name, ID: fl.id, Offset: end}}
	t.mu.Lock()
	t.pending = append(t.pending, pb)
	t.mu.Unlock()
	var once sync.Once
	ack := func() { once.Do(func() { t.ack(pb) }) }
	if len(lines) == 0 {
		ack()
		return nil
	}
	t.Stats.Lines.Add(uint64(len(lines)))
	if err := ctx.Err(); err != nil {
		return err
	}
	return h(lines, ack)
}

func (t *Follower) ack(pb *pendingBatch) {
	t.mu.Lock()
	pb.done = true
	for len(t.pending) > 0 && t.pending[0].done {
		ck := t.pending[0].ck
		t.committed = &ck
		t.dirty = true
		t.pending = t.pending[1:]
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
