// Package tail follows one log file by path the way a log source must: it
// survives rename-and-create rotation (finishing the old file first, since
// rsyslog writes to it until its HUP), copytruncate and truncation, delete
// and re-create, a file that does not exist yet and permission errors. Its
// position is checkpointed by file identity (device, inode, fingerprint of
// the first bytes) and offset, and advances only when the handler
// acknowledges that a batch's consequences were handed on.
package tail

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
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
	// Clock dates growth and checkpoints; nil is the system clock.
	Clock clock.Clock
	// NoInotify polls only (every PollInterval): for a tree that a test
	// steps in fake time, where a goroutine blocked in inotify's read
	// would keep the clock from moving.
	NoInotify bool
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
	clk   clock.Clock
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
	return &Follower{o: o, clk: clock.Or(o.Clock), log: o.Log.With(zap.String("file", o.Path)), wake: make(chan struct{}, 1), saveKick: make(chan struct{}, 1), started: make(chan struct{})}
}

// Started is closed once Run knows where it reads from (the checkpoint, or
// the end of the file as it was): a line appended after that is never
// missed, so the agent reports ready to systemd only then. A Run that
// cannot resume closes it too, before returning the error.
func (t *Follower) Started() <-chan struct{} { return t.started }

func (t *Follower) markStarted() { t.startOnce.Do(func() { close(t.started) }) }

// Run follows until ctx is done, then writes a final checkpoint.
func (t *Follower) Run(ctx context.Context, h Handler) error {
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if w, err := t.watcher(); err == nil {
		if err := w.Add(filepath.Dir(t.o.Path)); err == nil {
			events, watchErrs = w.Events, w.Errors
		} else {
			t.log.Debug("inotify unavailable; polling only", zap.Error(err))
		}
		defer w.Close()
	}
	every := t.o.PollInterval
	if events == nil && !t.o.NoInotify {
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
			f, err := t.open(t.o.Path)
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
				cur, chain, switched, err = t.atEOF(ctx, cur, chain, h)
				if err != nil {
					return err
				}
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

func (t *Follower) watcher() (*fsnotify.Watcher, error) {
	if t.o.NoInotify {
		return nil, errors.New("inotify not wanted")
	}
	return fsnotify.NewWatcher()
}

// concerns says whether a change to the file name in the watched directory
// may be news for this follower: the file itself, or one of its rotated
// names (syslog.1, syslog.2.gz), which rotation creates and renames.
func (t *Follower) concerns(name string) bool {
	return strings.HasPrefix(filepath.Base(name), filepath.Base(t.o.Path))
}
