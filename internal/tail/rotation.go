package tail

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// resume decides where to start from the checkpoint, if any. It returns
// the file to read now and the files to read after it, oldest first, the
// file at the path last.
func (t *Follower) resume() (*file, []*file, error) {
	ck, err := loadCheckpoint(t.o.StateDir, t.o.Path)
	if err != nil {
		t.log.Warn("unreadable checkpoint; starting afresh", zap.Error(err))
		ck = nil
	}
	live, lerr := t.open(t.o.Path)
	if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
		t.Stats.OpenErrors.Add(1)
		t.log.Warn("cannot open log file; retrying", zap.Error(lerr))
	}
	if ck == nil {
		if live != nil && !t.o.FromStart {
			live.off = lastLineEnd(live.osf)
		}
		if live != nil {
			// Persisted at once (see Run): killed before its first
			// batch, a restart must still resume here, not at the end of
			// a file that has grown or rotated meanwhile.
			t.committed = &Checkpoint{Path: t.o.Path, File: live.name, ID: live.id, Offset: live.off}
			t.dirty = true
		}
		return live, nil, nil
	}
	t.committed = ck
	if live != nil && live.id.Dev == ck.ID.Dev && live.id.Ino == ck.ID.Ino && ck.ID.matches(live.r) && live.size() >= ck.Offset {
		live.off = ck.Offset
		return live, nil, nil
	}
	// Rotated or copytruncated while we were down: find the checkpointed
	// content among the rotated files, then read the younger ones and the
	// file at the path, in order.
	sibs := t.siblings()
	for k := len(sibs) - 1; k >= 0; k-- {
		f, err := t.open(sibs[k])
		if err != nil {
			continue
		}
		sameFile := f.id.Dev == ck.ID.Dev && f.id.Ino == ck.ID.Ino
		// An empty fingerprint (checkpoint at the start of an empty file)
		// matches anything: then only the same inode will do.
		byContent := ck.ID.FPLen > 0 && (f.osf == nil || f.size() >= ck.Offset)
		if !ck.ID.matches(f.r) || !(sameFile || byContent) || (live != nil && f.osf != nil && f.id.Ino == live.id.Ino) {
			f.close()
			continue
		}
		f.off, f.id = ck.Offset, ck.ID
		var chain []*file
		for _, n := range sibs[k+1:] {
			if g, err := t.open(n); err == nil {
				chain = append(chain, g)
			}
		}
		if live != nil {
			chain = append(chain, live)
		}
		t.Stats.Rotations.Add(uint64(len(chain)))
		t.log.Info("resuming in rotated file", zap.String("rotated", f.name), zap.Int64("offset", ck.Offset), zap.Int("files_after", len(chain)))
		return f, chain, nil
	}
	t.gap("checkpointed file not found among the rotated files")
	return live, nil, nil
}

// siblings lists rotated files of the path, oldest first: path.N and
// path.N.gz by N descending, then dateext names (path-YYYYMMDD) ascending.
func (t *Follower) siblings() []string {
	names, _ := filepath.Glob(t.o.Path + "?*")
	type sib struct {
		name string
		n    int
	}
	var out []sib
	for _, n := range names {
		rest := strings.TrimSuffix(n[len(t.o.Path):], ".gz")
		switch {
		case strings.HasSuffix(n, ".xz"), strings.HasSuffix(n, ".bz2"), strings.HasSuffix(n, ".zst"):
			continue // not readable here
		case len(rest) > 1 && rest[0] == '.':
			if v, err := strconv.Atoi(rest[1:]); err == nil {
				out = append(out, sib{n, v})
			}
		case len(rest) > 1 && rest[0] == '-':
			out = append(out, sib{n, -1})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.n >= 0) != (b.n >= 0) {
			return a.n < 0 // dateext first; never mixed in practice
		}
		if a.n >= 0 {
			return a.n > b.n
		}
		return a.name < b.name
	})
	r := make([]string, len(out))
	for i, s := range out {
		r[i] = s.name
	}
	return r
}

func (t *Follower) gap(why string) {
	t.Stats.Gaps.Add(1)
	t.log.Warn("lines may be missing: "+why+"; reading the current file from its start", zap.String(KeyEvent, "tail_gap"))
}

// KeyEvent matches logging.KeyEvent without importing it.
const KeyEvent = "ec2diag_event"

// lastLineEnd finds where the last complete line ends, so starting "at the
// end" never starts inside a line.
func lastLineEnd(f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	size := fi.Size()
	start := size - 64<<10
	if start < 0 {
		start = 0
	}
	buf := make([]byte, size-start)
	n, _ := f.ReadAt(buf, start)
	if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
		return start + int64(i) + 1
	}
	return start
}

// findCopy finds, for copytruncate, the youngest rotated file that starts
// with id's fingerprint and is at least minSize long.
func (t *Follower) findCopy(id Identity, minSize int64, notIno uint64) *file {
	sibs := t.siblings()
	for k := len(sibs) - 1; k >= 0; k-- {
		f, err := t.open(sibs[k])
		if err != nil {
			continue
		}
		if f.osf != nil && f.id.Ino != notIno && id.matches(f.r) {
			return f
		}
		f.close()
	}
	return nil
}

// atEOF decides, with cur read to its end, whether to move on to the next
// file (reporting switched) and watches the path for rotation and
// truncation. An error is the handler's, which stops the follower; a read
// error leaves cur where it was, to be read again at the next poll.
func (t *Follower) atEOF(ctx context.Context, cur *file, chain []*file, h Handler) (*file, []*file, bool, error) {
	if len(chain) > 0 {
		// rsyslog writes the renamed file until its HUP and the new one
		// after: once the next file has data, or the old one was quiet for
		// the grace period, the old one is complete.
		if !cur.sealed && chain[0].size() <= 0 && t.clk.Now().Sub(cur.grew) < t.o.RotateGrace {
			return cur, chain, false, nil
		}
		if !cur.sealed {
			if _, err := t.drain(ctx, cur, h); err != nil {
				var re *readError
				if errors.As(err, &re) {
					return cur, chain, false, nil
				}
				return cur, chain, false, err
			}
		}
		if err := t.finish(ctx, cur, h); err != nil {
			return cur, chain, false, err
		}
		cur.close()
		next := chain[0]
		t.log.Debug("finished rotated file; moving on", zap.String("next", next.name), zap.String(KeyEvent, "tail_rotated"))
		if err := t.hand(ctx, next, nil, next.off, h); err != nil {
			return next, chain[1:], true, err
		}
		return next, chain[1:], true, nil
	}
	if cur.sealed {
		return cur, chain, false, nil
	}
	fi, err := os.Stat(t.o.Path)
	if err != nil {
		return cur, chain, false, nil // deleted: keep the old fd until a new file appears
	}
	dev, ino := statID(fi)
	if dev != cur.id.Dev || ino != cur.id.Ino {
		nf, err := t.open(t.o.Path)
		if err != nil {
			return cur, chain, false, nil
		}
		mid := t.between(cur, nf)
		t.Stats.Rotations.Add(uint64(1 + len(mid)))
		return cur, append(append(chain, mid...), nf), true, nil
	}
	readTo := cur.off + int64(len(cur.buf))
	if fi.Size() < readTo || !cur.id.matches(cur.r) {
		return cur, chain, true, t.truncated(ctx, cur, h)
	}
	if cur.id.FPLen < fpMax && fi.Size() > int64(cur.id.FPLen) {
		if fp, n, err := fingerprint(cur.r, fpMax); err == nil {
			cur.id.FP, cur.id.FPLen = fp, n
			t.refreshID(cur.id)
		}
	}
	return cur, chain, false, nil
}

// between finds the files rotated after cur and before live: a follower
// two or more rotations behind (stopped, starved, or busy with a flood)
// used to go straight from cur to the file now at the path and never read
// the ones in the middle. cur is found among the rotated files by inode, or
// for a compressed rotation by its fingerprint; the younger files after it
// are the middle ones. When cur is gone from the directory (a rotation
// count exceeded, or an mv over it) the younger files are those written
// after cur last was, and a file rotated away before we got to it is lost:
// that is said and counted.
func (t *Follower) between(cur, live *file) []*file {
	sibs := t.siblings()
	var files []*file
	at := -1
	for _, n := range sibs {
		f, err := t.open(n)
		if err != nil {
			continue
		}
		if f.osf != nil && f.id.Dev == live.id.Dev && f.id.Ino == live.id.Ino {
			f.close()
			continue
		}
		isCur := f.osf != nil && f.id.Dev == cur.id.Dev && f.id.Ino == cur.id.Ino
		if f.osf == nil && cur.id.FPLen > 0 && cur.id.matches(f.r) {
			isCur = true
		}
		if isCur {
			for _, g := range files {
				g.close() // older than cur: read before
			}
			f.close()
			files, at = nil, len(sibs)
			continue
		}
		files = append(files, f)
	}
	if at >= 0 {
		return files
	}
	var curTime time.Time
	if cur.osf != nil {
		if fi, err := cur.osf.Stat(); err == nil {
			curTime = fi.ModTime()
		}
	}
	var younger []*file
	for _, f := range files {
		if f.osf == nil || curTime.IsZero() {
			f.close() // cannot be placed after cur
			continue
		}
		fi, err := f.osf.Stat()
		if err != nil || fi.ModTime().Before(curTime) {
			f.close()
			continue
		}
		younger = append(younger, f)
	}
	if len(sibs) > 0 {
		t.Stats.Gaps.Add(1)
		t.log.Warn("lines may be missing: the file being read was rotated away before the follower finished it; files rotated out in between cannot be read",
			zap.String(KeyEvent, "tail_lines_lost"), zap.Int("younger_files_read", len(younger)))
	}
	return younger
}
