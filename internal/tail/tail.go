// Package tail follows one log file by path the way a log source must: it
// survives rename-and-create rotation (finishing the old file first, since
// rsyslog writes to it until its HUP), copytruncate and truncation, delete
// and re-create, a file that does not exist yet and permission errors. Its
// position is checkpointed by file identity (device, inode, fingerprint of
// the first bytes) and offset, and advances only when the handler
// acknowledges that a batch's consequences were handed on.
package tail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Options configure a Follower.
type Options struct {
	Path     string
	StateDir string
	// FromStart reads a file's existing content when there is no
	// checkpoint; otherwise following starts at its end.
	FromStart bool
	// MaxLineBytes caps one line; the rest of a longer line is dropped and
	// counted. Default 64 KiB.
	MaxLineBytes int
	// PollInterval is the safety net behind inotify. Default 1s.
	PollInterval time.Duration
	// RotateGrace is how long a rotated file must stay quiet before the
	// follower moves to the new one. Default 2s.
	RotateGrace time.Duration
	// CheckpointEvery is how often the checkpoint is made durable (fsync of
	// file and directory); default 1s. The position itself is written
	// (rename, no fsync) after every acknowledged batch, so a kill -9 makes
	// at most the batch in flight be read again; only a power loss or a
	// kernel hang can cost up to this interval.
	CheckpointEvery time.Duration
	Log             *zap.Logger
}

// Line is one complete line. Data aliases the follower's buffer and is
// valid only during the handler call.
type Line struct {
	Data   []byte
	File   string // the file read: the path, or a rotated sibling while draining
	Offset int64  // of the line's first byte in File
	// Truncated: the line was longer than MaxLineBytes; Data is its start.
	Truncated bool
	// Partial: a rotated file ended without a newline; Data is what it had.
	Partial bool
	// NULs is how many NUL bytes (left by a crash) preceded the line.
	NULs int
}

// Handler receives each batch of lines and must call ack exactly once when
// what the lines produced has been handed on (it may do so later, from
// another goroutine, in batch order). An error stops the follower.
type Handler func(batch []Line, ack func()) error

// Stats are cumulative counters, safe to read at any time.
type Stats struct {
	Lines, Bytes, Truncated, NULBytes, Rotations, Truncations, Gaps, OpenErrors, ReadErrors atomic.Uint64
	// Wakes counts the times the follower woke to look at the file.
	Wakes atomic.Uint64
}

// Follower follows one path. Create with New, then Run once.
type Follower struct {
	o     Options
	log   *zap.Logger
	Stats Stats

	mu          sync.Mutex
	saveMu      sync.Mutex
	saveKick    chan struct{}
	pending     []*pendingBatch
	committed   *Checkpoint
	dirty       bool
	wake        chan struct{}
	lastSave    time.Time
	lastDurable time.Time
	lines       []Line
	started     chan struct{}
	startOnce   sync.Once
}

type pendingBatch struct {
	ck   Checkpoint
	done bool
}

// New validates options and fills defaults.
func New(o Options) *Follower {
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = 64 << 10
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.RotateGrace <= 0 {
		o.RotateGrace = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Follower{o: o, log: o.Log.With(zap.String("file", o.Path)), wake: make(chan struct{}, 1), saveKick: make(chan struct{}, 1), started: make(chan struct{})}
}

// Started is closed once Run knows where it reads from (the checkpoint, or
// the end of the file as it was): a line appended after that is never
// missed, so the agent reports ready to systemd only then. A Run that
// cannot resume closes it too, before returning the error.
func (t *Follower) Started() <-chan struct{} { return t.started }

func (t *Follower) markStarted() { t.startOnce.Do(func() { close(t.started) }) }

// file is a file being read: a plain file (which may still grow) or a
// compressed rotation (sealed: read once, start to end).
type file struct {
	r        io.ReaderAt
	c        io.Closer
	osf      *os.File // nil for compressed files
	name     string
	id       Identity
	off      int64 // file offset of buf[0]
	buf      []byte
	skipping bool // inside an over-long line
	grew     time.Time
	sealed   bool
	fpBuf    [fpMax]byte // for sameStart, so the read path does not allocate
}

// sameStart says whether the file still starts with the bytes its identity
// fingerprinted (id.matches without an allocation per read).
func (fl *file) sameStart() bool {
	if fl.id.FPLen == 0 {
		return true
	}
	fp, n, err := fingerprintInto(fl.r, fl.fpBuf[:fl.id.FPLen])
	return err == nil && n == fl.id.FPLen && fp == fl.id.FP
}

func (fl *file) close() {
	if fl != nil && fl.c != nil {
		fl.c.Close()
	}
}

func statID(fi os.FileInfo) (uint64, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// OpenRegular opens name for reading only if it is a regular file, and
// never blocks: a log path that is a FIFO blocked open() forever (SIGTERM
// ignored), and one that links to /dev/zero was read forever.
func OpenRegular(name string) (*os.File, error) {
	f, _, err := openRegular(name)
	return f, err
}

// openRegular is OpenRegular that also returns the file's stat, which the
// follower needs for the file's identity.
func openRegular(name string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file (%s): not followed", name, fi.Mode().Type())
	}
	return f, fi, nil
}

// openFile opens a file to read; a variable so that a test can make reads
// fail, which a regular file on a healthy disk never does.
var openFile = openFileReal

func openFileReal(name string) (*file, error) {
	if isCompressed(name) {
		return openGzip(name)
	}
	f, fi, err := openRegular(name)
	if err != nil {
		return nil, err
	}
	dev, ino := statID(fi)
	fp, n, err := fingerprint(f, fpMax)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &file{r: f, c: f, osf: f, name: name, id: Identity{Dev: dev, Ino: ino, FP: fp, FPLen: n}, grew: time.Now()}, nil
}

func isCompressed(name string) bool { return strings.HasSuffix(name, ".gz") }

// size is the current size of a plain file; -1 for compressed ones.
func (fl *file) size() int64 {
	if fl.osf == nil {
		return -1
	}
	fi, err := fl.osf.Stat()
	if err != nil {
		return -1
	}
	return fi.Size()
}

// Run follows until ctx is done, then writes a final checkpoint.
func (t *Follower) Run(ctx context.Context, h Handler) error {
	w, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if err == nil {
		if err := w.Add(filepath.Dir(t.o.Path)); err == nil {
			events, watchErrs = w.Events, w.Errors
		} else {
			t.log.Debug("inotify unavailable; polling only", zap.Error(err))
		}
		defer w.Close()
	}
	every := t.o.PollInterval
	if events == nil {
		// No inotify: the poll is the only way lines arrive.
		every = min(every, time.Second)
	}
	poll := time.NewTicker(every)
	defer poll.Stop()

	cur, chain, err := t.resume()
	t.save(true)
	t.markStarted()
	if err != nil {
		return err
	}
	saverDone := make(chan struct{})
	stopSaver := make(chan struct{})
	go t.saver(stopSaver, saverDone)
	defer func() {
		cur.close()
		for _, f := range chain {
			f.close()
		}
		close(stopSaver)
		<-saverDone
		t.save(true)
	}()
	var openErrLogged, readFailed bool
	var readErrLogged string
	for {
		if cur == nil {
			f, err := openFile(t.o.Path)
			switch {
			case err == nil:
				cur = f // a file that appears is new: read it whole
				openErrLogged = false
			case errors.Is(err, fs.ErrNotExist):
			default:
				t.Stats.OpenErrors.Add(1)
				if !openErrLogged {
					t.log.Warn("cannot open log file; retrying", zap.Error(err))
					openErrLogged = true
				}
			}
		}
		if cur != nil {
			got, err := t.drain(ctx, cur, h)
			var re *readError
			failed := errors.As(err, &re)
			if failed {
				// An I/O error on the file stopped it for good, with nothing
				// in the log. Said once per kind of error, counted, and
				// retried from the same offset at the next poll: nothing is
				// skipped.
				t.Stats.ReadErrors.Add(1)
				if msg := re.Error(); msg != readErrLogged {
					readErrLogged = msg
					t.log.Warn("cannot read log file; retrying at the next poll", zap.String("read_file", cur.name), zap.Int64("offset", re.off), zap.Error(re.err))
				}
				got, err = false, nil
			} else if err == nil && readFailed {
				readErrLogged = ""
				t.log.Info("log file readable again", zap.String("read_file", cur.name))
			}
			readFailed = failed
			if err != nil {
				return err
			}
			if got {
				continue
			}
			if !readFailed {
				var switched bool
				cur, chain, switched = t.atEOF(ctx, cur, chain, h)
				if switched {
					continue
				}
			}
		}
		t.kick()
		var grace <-chan time.Time
		if len(chain) > 0 {
			grace = time.After(t.o.RotateGrace)
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev, ok := <-events:
				if !ok {
					events = nil
				} else if !t.concerns(ev.Name) {
					// Another file in the directory (auth.log beside
					// syslog): nothing to read here.
					continue
				}
			case err, ok := <-watchErrs:
				// Unread, this channel blocked fsnotify's goroutine after an
				// inotify queue overflow and events stopped. The poll covers
				// what inotify missed.
				if !ok {
					watchErrs = nil
				} else {
					t.log.Warn("inotify error; the poll still covers the file", zap.Error(err))
				}
			case <-poll.C:
			case <-t.wake:
			case <-grace:
			}
			t.Stats.Wakes.Add(1)
			break
		}
	}
}

// concerns says whether a change to the file name in the watched directory
// may be news for this follower: the file itself, or one of its rotated
// names (syslog.1, syslog.2.gz), which rotation creates and renames.
func (t *Follower) concerns(name string) bool {
	return strings.HasPrefix(filepath.Base(name), filepath.Base(t.o.Path))
}

// resume decides where to start from the checkpoint, if any. It returns
// the file to read now and the files to read after it, oldest first, the
// file at the path last.
func (t *Follower) resume() (*file, []*file, error) {
	ck, err := loadCheckpoint(t.o.StateDir, t.o.Path)
	if err != nil {
		t.log.Warn("unreadable checkpoint; starting afresh", zap.Error(err))
		ck = nil
	}
	live, lerr := openFile(t.o.Path)
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
		f, err := openFile(sibs[k])
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
			if g, err := openFile(n); err == nil {
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
		f, err := openFile(sibs[k])
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

// drain reads what fl has beyond its buffer and hands complete lines on.
// It reports whether any bytes were read.
func (t *Follower) drain(ctx context.Context, fl *file, h Handler) (bool, error) {
	if cap(fl.buf) == 0 {
		fl.buf = make([]byte, 0, readBuf)
	}
	got := false
	for {
		if len(fl.buf) == cap(fl.buf) {
			// No newline in a full buffer: cap the line.
			if err := t.emitLong(ctx, fl, h); err != nil {
				return got, err
			}
		}
		space := fl.buf[len(fl.buf):cap(fl.buf)]
		n, err := fl.r.ReadAt(space, fl.off+int64(len(fl.buf)))
		if n > 0 && fl.osf != nil && !fl.sameStart() {
			// Truncated (copytruncate) and written again while we were
			// still catching up: what was just read is the new content at
			// an old offset. Drop it; atEOF sees the changed start and
			// reads the rest of the old content from logrotate's copy.
			return got, nil
		}
		if n > 0 {
			got = true
			fl.grew = time.Now()
			fl.buf = fl.buf[:len(fl.buf)+n]
			t.Stats.Bytes.Add(uint64(n))
			if err := t.deliver(ctx, fl, h); err != nil {
				return got, err
			}
		}
		if err == io.EOF || (n == 0 && err == nil) {
			return got, nil
		}
		if err != nil {
			return got, &readError{off: fl.off + int64(len(fl.buf)), err: err}
		}
	}
}

// readError is a failed read of the file (as opposed to the handler's
// error, which stops the follower).
type readError struct {
	off int64
	err error
}

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// readBuf is the per-file read buffer: large reads make catching up on a
// big file cheap; it is allocated only while a file is open.
const readBuf = 1 << 20

// batchMax bounds one handler call.
const batchMax = 4096

func (t *Follower) deliver(ctx context.Context, fl *file, h Handler) error {
	lines := t.lines[:0] // reused: the handler may not keep the slice
	start := 0
	for {
		i := bytes.IndexByte(fl.buf[start:], '\n')
		if i < 0 {
			break
		}
		raw, at := fl.buf[start:start+i], start
		start += i + 1
		if fl.skipping {
			fl.skipping = false
			continue
		}
		nuls := 0
		for nuls < len(raw) && raw[nuls] == 0 {
			nuls++
		}
		if nuls > 0 {
			t.Stats.NULBytes.Add(uint64(nuls))
			if nuls == len(raw) {
				continue
			}
		}
		data := raw[nuls:]
		truncated := false
		if len(data) > t.o.MaxLineBytes {
			data, truncated = data[:t.o.MaxLineBytes], true
			t.Stats.Truncated.Add(1)
		}
		lines = append(lines, Line{Data: data, File: fl.name, Offset: fl.off + int64(at+nuls), Truncated: truncated, NULs: nuls})
		if len(lines) == batchMax {
			if err := t.hand(ctx, fl, lines, fl.off+int64(start), h); err != nil {
				return err
			}
			t.kick()
			lines = lines[:0]
		}
	}
	// A run of NULs with no newline yet is crash padding: drop it now rather
	// than hold it as a line.
	for start < len(fl.buf) && fl.buf[start] == 0 && !fl.skipping {
		start++
		t.Stats.NULBytes.Add(1)
	}
	if len(lines) > 0 || start > 0 {
		if err := t.hand(ctx, fl, lines, fl.off+int64(start), h); err != nil {
			return err
		}
		t.kick() // keep the checkpoint close behind during a burst
	}
	t.lines = lines[:0]
	fl.off += int64(start)
	fl.buf = fl.buf[:copy(fl.buf, fl.buf[start:])]
	return nil
}

// emitLong hands on the start of a line that filled the buffer and skips
// the rest of it.
func (t *Follower) emitLong(ctx context.Context, fl *file, h Handler) error {
	n := len(fl.buf)
	var err error
	if !fl.skipping {
		// Once per line, not once per buffer (a 50 MB line said it 47 times).
		t.Stats.Truncated.Add(1)
		t.log.Warn("line longer than the buffer; keeping its start", zap.Int("max_line_bytes", t.o.MaxLineBytes), zap.Int64("offset", fl.off))
		keep := fl.buf[:min(t.o.MaxLineBytes, n)]
		err = t.hand(ctx, fl, []Line{{Data: keep, File: fl.name, Offset: fl.off, Truncated: true}}, fl.off+int64(n), h)
	}
	fl.skipping = true
	fl.off += int64(n)
	fl.buf = fl.buf[:0]
	return err
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

// atEOF decides, with cur read to its end, whether to move on to the next
// file (reporting switched) and watches the path for rotation and
// truncation.
func (t *Follower) atEOF(ctx context.Context, cur *file, chain []*file, h Handler) (*file, []*file, bool) {
	if len(chain) > 0 {
		// rsyslog writes the renamed file until its HUP and the new one
		// after: once the next file has data, or the old one was quiet for
		// the grace period, the old one is complete.
		if !cur.sealed && chain[0].size() <= 0 && time.Since(cur.grew) < t.o.RotateGrace {
			return cur, chain, false
		}
		if !cur.sealed {
			if _, err := t.drain(ctx, cur, h); err != nil {
				return cur, chain, false
			}
		}
		t.finish(ctx, cur, h)
		cur.close()
		next := chain[0]
		t.log.Debug("finished rotated file; moving on", zap.String("next", next.name), zap.String(KeyEvent, "tail_rotated"))
		t.hand(ctx, next, nil, next.off, h)
		return next, chain[1:], true
	}
	if cur.sealed {
		return cur, chain, false
	}
	fi, err := os.Stat(t.o.Path)
	if err != nil {
		return cur, chain, false // deleted: keep the old fd until a new file appears
	}
	dev, ino := statID(fi)
	if dev != cur.id.Dev || ino != cur.id.Ino {
		nf, err := openFile(t.o.Path)
		if err != nil {
			return cur, chain, false
		}
		mid := t.between(cur, nf)
		t.Stats.Rotations.Add(uint64(1 + len(mid)))
		return cur, append(append(chain, mid...), nf), true
	}
	readTo := cur.off + int64(len(cur.buf))
	if fi.Size() < readTo || !cur.id.matches(cur.r) {
		t.truncated(ctx, cur, h)
		return cur, chain, true
	}
	if cur.id.FPLen < fpMax && fi.Size() > int64(cur.id.FPLen) {
		if fp, n, err := fingerprint(cur.r, fpMax); err == nil {
			cur.id.FP, cur.id.FPLen = fp, n
			t.refreshID(cur.id)
		}
	}
	return cur, chain, false
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
		f, err := openFile(n)
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
func (t *Follower) truncated(ctx context.Context, cur *file, h Handler) {
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
		t.drain(ctx, cp, h)
		t.finish(ctx, cp, h)
		cp.close()
		t.log.Info("file truncated; read the rest from its copy", zap.String("copy", cp.name), zap.String(KeyEvent, "tail_truncated"))
	} else if cur.off > 0 {
		t.log.Warn("file truncated; reading it again from the start", zap.Int64("offset", cur.off), zap.String(KeyEvent, "tail_truncated"))
	}
	fp, n, _ := fingerprint(cur.r, fpMax)
	cur.id.FP, cur.id.FPLen = fp, n
	cur.off, cur.buf, cur.skipping = 0, cur.buf[:0], false
	t.hand(ctx, cur, nil, 0, h)
}

// finish hands on a last line without newline, flagged Partial.
func (t *Follower) finish(ctx context.Context, fl *file, h Handler) {
	data := bytes.TrimLeft(fl.buf, "\x00")
	if len(data) > 0 && !fl.skipping {
		t.hand(ctx, fl, []Line{{Data: data, File: fl.name, Offset: fl.off + int64(len(fl.buf)-len(data)), Partial: true}}, fl.off+int64(len(fl.buf)), h)
	}
	fl.off += int64(len(fl.buf))
	fl.buf = fl.buf[:0]
}

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
	t.lastSave = time.Now()
	every := t.o.CheckpointEvery
	if every <= 0 {
		every = time.Second
	}
	durable := force || time.Since(t.lastDurable) >= every
	if durable {
		t.lastDurable = t.lastSave
	}
	t.mu.Unlock()
	ck.Updated = time.Now().UTC()
	if err := saveCheckpoint(t.o.StateDir, ck, durable); err != nil {
		t.log.Warn("cannot write checkpoint", zap.Error(err))
	}
}
