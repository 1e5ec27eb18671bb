package logsource

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"

	"github.com/ec2diag/ec2diag/internal/atomicfile"

	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/syslog"
	"github.com/ec2diag/ec2diag/internal/tail"
	"go.uber.org/zap"
)

// journalReader follows the journal through `journalctl -o json --follow`,
// resuming after the persisted cursor. journalctl is on every systemd host
// and needs no cgo, unlike sd-journal bindings.
type journalReader struct {
	o     Options
	log   *zap.Logger
	lines atomic.Uint64
	bad   atomic.Uint64

	// received counts entries from the current journalctl --follow; the
	// stall probe compares it with the journal's own progress.
	received atomic.Uint64
	lastCur  atomic.Value // string: cursor of the newest entry received
	stalls   atomic.Uint64
	gaps     atomic.Uint64 // cursors journalctl rejected
	starts   int
	polling  bool
	since    time.Time // resume here when a rejected cursor was dropped

	mu        sync.Mutex
	pending   []*jpending
	committed string
	dirty     bool
	lastSave  time.Time

	started   chan struct{} // see Source.Started
	startOnce sync.Once
}

func (j *journalReader) markStarted() { j.startOnce.Do(func() { close(j.started) }) }

type jpending struct {
	cursor string
	done   bool
}

// JournalEntry is the part of `journalctl -o json` the agent reads.
type JournalEntry struct {
	Cursor     string          `json:"__CURSOR"`
	Realtime   string          `json:"__REALTIME_TIMESTAMP"`
	Hostname   string          `json:"_HOSTNAME"`
	Identifier string          `json:"SYSLOG_IDENTIFIER"`
	SyslogPID  string          `json:"SYSLOG_PID"`
	PID        string          `json:"_PID"`
	Comm       string          `json:"_COMM"`
	Transport  string          `json:"_TRANSPORT"`
	Message    json.RawMessage `json:"MESSAGE"`
}

// ParseJournalJSON decodes one line of `journalctl -o json` into an Entry.
// MESSAGE may be a string, an array of bytes (non-UTF-8 data) or null.
func ParseJournalJSON(b []byte) (Entry, error) {
	var je JournalEntry
	if err := json.Unmarshal(b, &je); err != nil {
		return Entry{}, err
	}
	var e Entry
	e.Cursor = je.Cursor
	e.Raw = tail.Line{Data: b, File: "journal"}
	us, err := strconv.ParseInt(je.Realtime, 10, 64)
	if err != nil {
		return e, fmt.Errorf("bad __REALTIME_TIMESTAMP %q", je.Realtime)
	}
	e.Line.Time = time.UnixMicro(us)
	e.Line.Host = []byte(je.Hostname)
	prog := je.Identifier
	if prog == "" {
		prog = je.Comm
	}
	e.Line.Program = []byte(prog)
	pid := je.SyslogPID
	if pid == "" {
		pid = je.PID
	}
	e.Line.PID, _ = strconv.Atoi(pid)
	// What the journal itself saw, not what the line says: a process can
	// claim "systemd[1]:" in its tag, not _PID=1.
	e.Origin.Known = true
	e.Origin.PID, _ = strconv.Atoi(je.PID)
	e.Origin.Comm, e.Origin.Transport = je.Comm, je.Transport
	switch {
	case len(je.Message) == 0 || string(je.Message) == "null":
	case je.Message[0] == '"':
		var s string
		if err := json.Unmarshal(je.Message, &s); err != nil {
			return e, err
		}
		e.Line.Message = []byte(s)
	case je.Message[0] == '[':
		var bs []byte
		var ints []int
		if err := json.Unmarshal(je.Message, &ints); err != nil {
			return e, fmt.Errorf("MESSAGE: %w", err)
		}
		for _, v := range ints {
			bs = append(bs, byte(v))
		}
		e.Line.Message = bs
	default:
		return e, fmt.Errorf("MESSAGE of unexpected JSON type")
	}
	e.Line.Format = syslog.FormatRFC3339
	e.Line.Parsed = true
	return e, nil
}

// cursorTime is the realtime a journal cursor names (its t= field, hex
// microseconds), or zero.
func cursorTime(c string) time.Time {
	for _, f := range strings.Split(c, ";") {
		if v, ok := strings.CutPrefix(f, "t="); ok {
			if us, err := strconv.ParseUint(v, 16, 63); err == nil && us > 0 {
				return time.UnixMicro(int64(us))
			}
		}
	}
	return time.Time{}
}

func (j *journalReader) cursorFile() string { return filepath.Join(j.o.StateDir, "journal.cursor") }

func (j *journalReader) run(ctx context.Context, h Handler) error {
	if b, err := os.ReadFile(j.cursorFile()); err == nil {
		j.committed = strings.TrimSpace(string(b))
	}
	defer j.save(true)
	backoff := time.Second
	for {
		err := j.follow(ctx, h)
		j.markStarted() // a journal that cannot be read must not hold up readiness
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errStalled) {
			j.polling = true // from now on: read to the end, wait, repeat
			continue
		}
		if errors.Is(err, errBadCursor) {
			// A cursor journalctl cannot seek to (a damaged state file)
			// wedged the source for good: every restart used it again.
			// Resume at the cursor's own time if it has one (lines of that
			// second may come twice), else at the journal's end (lines since
			// the cursor are missed: said and counted).
			j.mu.Lock()
			bad := j.committed
			j.since = cursorTime(bad)
			j.committed, j.dirty = "", true
			j.mu.Unlock()
			j.gaps.Add(1)
			j.log.Warn("journalctl rejected the saved cursor; starting again without it", zap.String(tail.KeyEvent, "tail_gap"),
				zap.String("cursor", escape.Control(bad)), zap.Time("resume_since", j.since), zap.Bool("lines_may_be_missing", j.since.IsZero()))
			continue
		}
		if errors.Is(err, errPolled) {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(j.probeInterval()):
			}
			continue
		}
		j.log.Warn("journalctl ended; restarting", zap.Error(err), zap.Duration("after", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		if backoff < time.Minute {
			backoff *= 2
		}
	}
}

func (j *journalReader) follow(ctx context.Context, h Handler) error {
	args := []string{"-o", "json", "--no-pager"}
	if !j.polling {
		args = append(args, "--follow")
	}
	j.mu.Lock()
	cur := j.committed
	j.mu.Unlock()
	if cur == "" && !j.o.FromStart && j.since.IsZero() {
		// Start at a cursor, not at "--lines 0": a follower restarted
		// later (after a stall or a crash) must resume exactly here.
		if base, err := j.newestCursor(ctx); err == nil {
			cur = base
			j.mu.Lock()
			j.committed, j.dirty = base, true
			j.mu.Unlock()
		}
	}
	// --no-tail undoes --lines: with both, journalctl replays the whole
	// journal (seen in a real journald: every boot unit became a job run).
	switch {
	case cur != "":
		args = append(args, "--after-cursor", cur, "--no-tail")
	case !j.since.IsZero():
		args = append(args, "--since", fmt.Sprintf("@%d", j.since.Unix()), "--no-tail")
	case j.o.FromStart:
		args = append(args, "--no-tail")
	default:
		args = append(args, "--lines", "0")
	}
	args = append(args, j.o.JournalArgs...)
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	// journalctl must not inherit NOTIFY_SOCKET (NotifyAccess=main).
	cmd.Env = withoutEnv(os.Environ(), "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start journalctl: %w", err)
	}
	j.markStarted()
	if j.starts++; j.starts == 1 {
		j.log.Info("reading the journal (no syslog file)", zap.String(tail.KeyEvent, "source_journal"), zap.String("after_cursor", cur))
	} else {
		j.log.Debug("journalctl restarted", zap.String("after_cursor", cur))
	}
	j.received.Store(0)
	j.lastCur.Store(cur)
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	stalled := make(chan struct{})
	if !j.polling {
		go j.probe(probeCtx, cmd, stalled)
	}
	r := bufio.NewReaderSize(out, 256<<10)
	batch := make([]Entry, 0, 64)
	var last string
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// An entry bigger than the buffer: skip it whole, counted.
			j.bad.Add(1)
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		if len(line) > 0 && err == nil {
			e, perr := ParseJournalJSON(line[:len(line)-1])
			if perr != nil {
				j.bad.Add(1)
			} else {
				j.lines.Add(1)
				j.received.Add(1)
				e.Raw.Data = append([]byte(nil), e.Raw.Data...)
				batch = append(batch, e)
				last = e.Cursor
			}
		}
		if len(batch) > 0 && (r.Buffered() == 0 || len(batch) == cap(batch) || err != nil) {
			j.lastCur.Store(last)
			if herr := j.hand(batch, last, h); herr != nil {
				cmd.Process.Kill()
				cmd.Wait()
				return herr
			}
			batch = batch[:0]
			j.save(false)
		}
		if err != nil {
			werr := cmd.Wait()
			select {
			case <-stalled:
				return errStalled
			default:
			}
			if j.polling && werr == nil {
				return errPolled
			}
			if cur != "" && strings.Contains(stderr.String(), "Failed to seek to cursor") {
				return errBadCursor
			}
			if werr == nil {
				werr = fmt.Errorf("journalctl exited: %s", strings.TrimSpace(stderr.String()))
			} else if msg := strings.TrimSpace(stderr.String()); msg != "" {
				werr = fmt.Errorf("%w: %s", werr, escape.Control(msg))
			}
			return werr
		}
	}
}

var (
	errBadCursor = errors.New("journalctl rejected the saved cursor")
	errStalled   = errors.New("journalctl --follow stopped waking up")
	errPolled    = errors.New("journal read to the end")
)

func (j *journalReader) probeInterval() time.Duration {
	if j.o.JournalProbe > 0 {
		return j.o.JournalProbe
	}
	return 10 * time.Second
}

// probe guards against journalctl --follow that no longer wakes up. Seen
// under the hardened unit in a systemd-nspawn container (cgroup v1):
// with ProtectKernelTunables= or ProtectControlGroups=, journalctl's
// inotify wait never returned although the journal grew and reading it
// worked, and the follower did not even print the backlog it was started
// with. Every JournalProbe it asks journalctl for the newest entry's
// cursor; if at the last probe the follower was behind the journal and
// has received nothing since, it kills the follower and the reader
// switches to polling: journalctl without --follow from the saved cursor,
// every JournalProbe. Where --follow works this costs one short
// journalctl run per probe and never fires.
func (j *journalReader) probe(ctx context.Context, follower *exec.Cmd, stalled chan<- struct{}) {
	iv := j.probeInterval()
	behind := false
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(iv):
		}
		newest, err := j.newestCursor(ctx)
		if err != nil {
			continue
		}
		got := j.received.Load()
		if behind && got == seen {
			if j.stalls.Add(1) == 1 {
				j.log.Warn("journalctl --follow is not waking up; polling the journal every probe interval instead",
					zap.Duration("probe_interval", iv), zap.String("hint", "seen with ProtectKernelTunables=/ProtectControlGroups= in some containers"))
			}
			close(stalled)
			follower.Process.Kill()
			return
		}
		last, _ := j.lastCur.Load().(string)
		behind, seen = newest != last, got
	}
}

func (j *journalReader) newestCursor(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	args := append([]string{"-n", "1", "-o", "json", "--no-pager", "--output-fields=__CURSOR"}, j.o.JournalArgs...)
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	cmd.Env = withoutEnv(os.Environ(), "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	var e struct {
		Cursor string `json:"__CURSOR"`
	}
	if err := json.Unmarshal(out, &e); err != nil || e.Cursor == "" {
		return "", fmt.Errorf("no cursor from journalctl -n 1")
	}
	return e.Cursor, nil
}

func (j *journalReader) hand(batch []Entry, cursor string, h Handler) error {
	p := &jpending{cursor: cursor}
	j.mu.Lock()
	j.pending = append(j.pending, p)
	j.mu.Unlock()
	var once sync.Once
	return h(batch, func() {
		once.Do(func() {
			j.mu.Lock()
			p.done = true
			for len(j.pending) > 0 && j.pending[0].done {
				j.committed = j.pending[0].cursor
				j.dirty = true
				j.pending = j.pending[1:]
			}
			j.mu.Unlock()
		})
	})
}

func (j *journalReader) save(force bool) {
	j.mu.Lock()
	if !j.dirty {
		j.mu.Unlock()
		return
	}
	// Written after every batch (a kill -9 re-reads at most the batch in
	// flight), fsynced once per CheckpointEvery (what a power loss costs).
	every := j.o.CheckpointEvery
	if every <= 0 {
		every = time.Second
	}
	c := j.committed
	now := clock.Or(j.o.Clock).Now()
	durable := force || now.Sub(j.lastSave) >= every
	j.dirty = false
	if durable {
		j.lastSave = now
	}
	j.mu.Unlock()
	if err := atomicfile.Write(j.cursorFile(), []byte(c+"\n"), atomicfile.Options{Durable: durable, MkdirAll: true}); err != nil {
		j.log.Warn("cannot write journal cursor", zap.Error(err))
	}
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
