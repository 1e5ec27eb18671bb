// Package logsource reads syslog lines from files (through internal/tail,
// checkpointed) or, where there is no syslog file, from the journal
// (through journalctl, cursor persisted), parses them, and hands batches on
// with an ack that advances the checkpoint. The agent and `ec2diag tail`
// use it alike, so what the command shows is what the agent sees.
package logsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/syslog"
	"github.com/ec2diag/ec2diag/internal/tail"
	"go.uber.org/zap"
)

// Entry is a line as read and as parsed. Byte views in Raw.Data and
// Line.Host/Program/Message alias buffers valid only during the handler.
type Entry struct {
	Raw  tail.Line
	Line syslog.Line
	// Cursor is the journal cursor for journal entries.
	Cursor string
	// Origin is who logged the entry, when a trusted source says so (the
	// journal); unknown for file lines.
	Origin syslog.Origin
}

// Handler receives each batch and must call ack once (possibly later)
// when the batch's consequences were handed on. Files are read
// concurrently: the handler must be safe for that.
type Handler func(batch []Entry, ack func()) error

// Options configure a Source.
type Options struct {
	Files []string
	// Journal reads the journal instead of Files.
	Journal bool
	// JournalArgs are extra journalctl arguments (tests pass --file or
	// --directory to read a journal they made).
	JournalArgs []string
	// JournalProbe is how often the journal reader checks that
	// journalctl --follow is still waking up (default 10 s); see journal.go.
	JournalProbe time.Duration
	StateDir     string
	FromStart    bool
	Location     *time.Location // for traditional timestamps; nil = local
	// CheckpointEvery is how often the position, written after every
	// batch, is also fsynced (default 1 s).
	CheckpointEvery time.Duration
	PollInterval    time.Duration
	MaxLineBytes    int
	Log             *zap.Logger
	// Clock dates what has no date of its own (the year of traditional
	// timestamps); nil is the system clock.
	Clock clock.Clock
	// NoInotify polls the files only (tail.Options.NoInotify).
	NoInotify bool
}

// Source follows the configured files or the journal.
type Source struct {
	o         Options
	followers []*tail.Follower
	journal   *journalReader
	unparsed  atomic.Uint64
}

// New builds a source; nothing is opened until Run.
func New(o Options) *Source {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	s := &Source{o: o}
	if o.Journal {
		s.journal = &journalReader{o: o, log: o.Log, started: make(chan struct{})}
		return s
	}
	for _, f := range o.Files {
		s.followers = append(s.followers, tail.New(tail.Options{
			Path: f, StateDir: o.StateDir, FromStart: o.FromStart, MaxLineBytes: o.MaxLineBytes,
			PollInterval: o.PollInterval, CheckpointEvery: o.CheckpointEvery, Log: o.Log, Clock: o.Clock, NoInotify: o.NoInotify,
		}))
	}
	return s
}

// Journal reports whether the source reads the journal (not files).
func (s *Source) Journal() bool { return s.journal != nil }

// Stats sums the followers' counters.
type Stats struct {
	Lines, Bytes, Unparsed, Truncated, NULBytes, Rotations, Truncations, Gaps, OpenErrors uint64
}

// Stats returns cumulative counters across files.
func (s *Source) Stats() Stats {
	var st Stats
	for _, f := range s.followers {
		st.Lines += f.Stats.Lines.Load()
		st.Bytes += f.Stats.Bytes.Load()
		st.Truncated += f.Stats.Truncated.Load()
		st.NULBytes += f.Stats.NULBytes.Load()
		st.Rotations += f.Stats.Rotations.Load()
		st.Truncations += f.Stats.Truncations.Load()
		st.Gaps += f.Stats.Gaps.Load()
		st.OpenErrors += f.Stats.OpenErrors.Load()
	}
	if s.journal != nil {
		st.Lines += s.journal.lines.Load()
		st.Gaps += s.journal.gaps.Load()
		st.Unparsed += s.journal.bad.Load()
	}
	st.Unparsed += s.unparsed.Load()
	return st
}

// Started is closed once every file (or the journal) has its starting
// position, so that nothing written after it can be missed; Run must be
// running or have run.
func (s *Source) Started() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		if s.journal != nil {
			<-s.journal.started
		}
		for _, f := range s.followers {
			<-f.Started()
		}
		close(ch)
	}()
	return ch
}

// Run follows until ctx is done.
func (s *Source) Run(ctx context.Context, h Handler) error {
	if s.journal != nil {
		return s.journal.run(ctx, h)
	}
	// One follower that stops must not leave the source half-running
	// (the others went on and the stopped file was never said): stop them
	// all and return its error, so the collector is restarted.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(s.followers))
	for i, f := range s.followers {
		wg.Add(1)
		go func(path string, f *tail.Follower) {
			defer wg.Done()
			defer func() {
				if ctx.Err() == nil {
					cancel()
				}
			}()
			p := &syslog.Parser{Location: s.o.Location, Anchor: anchor(path, clock.Or(s.o.Clock).Now())}
			entries := make([]Entry, 0, 64)
			err := f.Run(ctx, func(b []tail.Line, ack func()) error {
				entries = entries[:0]
				for _, l := range b {
					var e Entry
					e.Raw = l
					p.Parse(l.Data, &e.Line)
					if !e.Line.Parsed {
						s.unparsed.Add(1)
					}
					entries = append(entries, e)
				}
				return h(entries, ack)
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%s: %w", path, err)
			}
			errs <- err
		}(s.o.Files[i], f)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}

// anchor is the time the year of traditional timestamps is inferred from:
// the file's mtime when it exists (an old file read later), else now.
func anchor(path string, now time.Time) time.Time {
	if fi, err := os.Stat(path); err == nil && now.Sub(fi.ModTime()) > time.Hour {
		return fi.ModTime()
	}
	return now
}
