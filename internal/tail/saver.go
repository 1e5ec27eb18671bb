package tail

import (
	"time"

	"go.uber.org/zap"
)

// kick asks the saver to write the committed position. The reader never
// waits for that write: during a flood the saver coalesces the batches
// acknowledged while it wrote the last position (a rename each time cost
// the reader half its throughput when done in line).
func (t *Follower) kick() {
	select {
	case t.saveKick <- struct{}{}:
	default:
	}
}

func (t *Follower) saver(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		case <-t.saveKick:
			t.save(false)
		}
	}
}

// save writes the committed position when it changed, durably when
// forced or once per CheckpointEvery.
func (t *Follower) save(force bool) {
	t.saveMu.Lock() // one write at a time, so an older position never lands last
	defer t.saveMu.Unlock()
	t.mu.Lock()
	if !t.dirty || t.committed == nil {
		t.mu.Unlock()
		return
	}
	ck := *t.committed
	t.dirty = false
	t.lastSave = t.clk.Now()
	every := t.o.CheckpointEvery
	if every <= 0 {
		every = time.Second
	}
	durable := force || t.lastSave.Sub(t.lastDurable) >= every
	if durable {
		t.lastDurable = t.lastSave
	}
	t.mu.Unlock()
	ck.Updated = t.lastSave.UTC()
	if err := saveCheckpoint(t.o.StateDir, ck, durable); err != nil {
		t.log.Warn("cannot write checkpoint", zap.Error(err))
	}
}
