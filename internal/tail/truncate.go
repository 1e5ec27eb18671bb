package tail

import (
	"context"
	"errors"

	"go.uber.org/zap"
)

// refreshID puts a longer fingerprint of the file being read into the
// checkpoints already taken of it. A file followed from empty is first
// fingerprinted with zero bytes; if all its lines then came in one batch,
// that batch's checkpoint kept the empty fingerprint, which after a
// copytruncate while the agent was down could not find the copy (it only
// trusts the inode then) and lost the lines in it.
func (t *Follower) refreshID(id Identity) {
	t.mu.Lock()
	defer t.mu.Unlock()
	better := func(old Identity) bool { return old.Dev == id.Dev && old.Ino == id.Ino && old.FPLen < id.FPLen }
	if c := t.committed; c != nil && better(c.ID) {
		c2 := *c
		c2.ID = id
		t.committed, t.dirty = &c2, true
	}
	for _, p := range t.pending {
		if better(p.ck.ID) {
			p.ck.ID = id
		}
	}
}

// truncated handles copytruncate: what we had not read yet is in the copy
// logrotate made, so read it there before starting the file again at 0.
// An error is the handler's (a copy that cannot be read is passed over:
// its lines are said lost).
func (t *Follower) truncated(ctx context.Context, cur *file, h Handler) error {
	t.Stats.Truncations.Add(1)
	var cp *file
	if cur.id.FPLen > 0 && cur.off > 0 {
		cp = t.findCopy(cur.id, cur.off, cur.id.Ino)
	}
	if cp != nil && cp.size() <= cur.off {
		// The copy holds nothing we have not read (what came after the
		// copy was read from the original before the truncate).
		cp.close()
	} else if cp != nil {
		cp.off = cur.off
		_, err := t.drain(ctx, cp, h)
		var re *readError
		if errors.As(err, &re) {
			t.gap("the copy of a truncated file could not be read: " + re.Error())
			err = nil
		} else if err == nil {
			err = t.finish(ctx, cp, h)
		}
		cp.close()
		if err != nil {
			return err
		}
		t.log.Info("file truncated; read the rest from its copy", zap.String("copy", cp.name), zap.String(KeyEvent, "tail_truncated"))
	} else if cur.off > 0 {
		t.log.Warn("file truncated; reading it again from the start", zap.Int64("offset", cur.off), zap.String(KeyEvent, "tail_truncated"))
	}
	fp, n, _ := fingerprint(cur.r, fpMax)
	cur.id.FP, cur.id.FPLen = fp, n
	cur.off, cur.buf, cur.skipping = 0, cur.buf[:0], false
	return t.hand(ctx, cur, nil, 0, h)
}
