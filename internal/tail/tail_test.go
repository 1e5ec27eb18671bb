package tail

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

type harness struct {
	t      *testing.T
	dir    string
	path   string
	state  string
	lines  chan Line
	cancel context.CancelFunc
	done   chan error
	f      *Follower
	w      *os.File // the writer's fd, like rsyslog's
	next   int      // next number to write
	seen   int      // next number expected
	atEnd  bool     // start at the end when there is no checkpoint
	// gate, when set, holds the handler (a starved or busy follower):
	// each batch waits to receive from it.
	gate    atomic.Pointer[chan struct{}]
	held    chan struct{} // told when a batch is held at the gate
	ckEvery time.Duration
	poll    time.Duration // 50 ms unless set
	log     *zap.Logger
}

func newHarness(t *testing.T) *harness {
	dir := t.TempDir()
	return &harness{t: t, dir: dir, path: filepath.Join(dir, "syslog"), state: filepath.Join(dir, "state"), next: 1, seen: 1}
}

func (h *harness) start() {
	h.t.Helper()
	h.lines = make(chan Line, 100000)
	if h.poll == 0 {
		h.poll = 50 * time.Millisecond
	}
	h.f = New(Options{Path: h.path, StateDir: h.state, FromStart: !h.atEnd, PollInterval: h.poll, RotateGrace: 200 * time.Millisecond, MaxLineBytes: 1024, CheckpointEvery: h.ckEvery, Log: h.log})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() {
		h.done <- h.f.Run(ctx, func(b []Line, ack func()) error {
			if g := h.gate.Load(); g != nil {
				select {
				case h.held <- struct{}{}:
				default:
				}
				select {
				case <-*g:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			for _, l := range b {
				l.Data = append([]byte(nil), l.Data...)
				h.lines <- l
			}
			ack()
			return nil
		})
	}()
	h.t.Cleanup(func() { h.stop() })
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil && err != context.Canceled {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

// open (re)opens the writer on path, creating it.
func (h *harness) open() {
	h.t.Helper()
	if h.w != nil {
		h.w.Close()
	}
	w, err := os.OpenFile(h.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	h.w = w
	h.t.Cleanup(func() { w.Close() })
}

func (h *harness) write(n int) {
	h.t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "line %d\n", h.next)
		h.next++
	}
	if _, err := h.w.WriteString(b.String()); err != nil {
		h.t.Fatal(err)
	}
}

// expectAll waits for every written line, exactly once and in order.
func (h *harness) expectAll() {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for h.seen < h.next {
		select {
		case l := <-h.lines:
			want := fmt.Sprintf("line %d", h.seen)
			if string(l.Data) != want {
				h.t.Fatalf("got %q (from %s@%d), want %q", l.Data, l.File, l.Offset, want)
			}
			h.seen++
		case <-deadline:
			h.t.Fatalf("timed out waiting for line %d (written up to %d)", h.seen, h.next-1)
		}
	}
	select {
	case l := <-h.lines:
		h.t.Fatalf("extra line %q after all %d were seen", l.Data, h.next-1)
	case <-time.After(300 * time.Millisecond):
	}
}

// starved runs fn while the follower is held inside its handler with a
// batch, then lets it go on.
func (h *harness) starved(fn func()) {
	h.t.Helper()
	gate := make(chan struct{})
	h.held = make(chan struct{}, 1)
	h.gate.Store(&gate)
	h.write(1)
	select {
	case <-h.held:
	case <-time.After(10 * time.Second):
		h.t.Fatal("the follower never took the batch")
	}
	fn()
	h.gate.Store(nil)
	close(gate)
}

// rotate renames the path the way rsyslog's logrotate does (shifting
// path.N to path.N+1 when shift), writes after to the old file (no HUP
// yet), then reopens the writer on a new file and writes more.
func (h *harness) rotate(shift bool, after, more int) {
	h.t.Helper()
	if shift {
		for n := 8; n >= 1; n-- {
			os.Rename(fmt.Sprintf("%s.%d", h.path, n), fmt.Sprintf("%s.%d", h.path, n+1))
		}
	}
	if err := os.Rename(h.path, h.path+".1"); err != nil {
		h.t.Fatal(err)
	}
	h.write(after)
	old := h.w
	h.w = nil
	h.open()
	old.Close()
	h.write(more)
}

func TestFollowerBehindSeveralRotationsReadsTheMiddleFiles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		shift     bool
		rotations int
		gaps      uint64
	}{
		{"logrotate, 2 rotations", true, 2, 0},
		{"logrotate, 4 rotations", true, 4, 0},
		// mv syslog syslog.1 twice: the file being read is unlinked; the
		// middle one is found by its time, and the gap is said.
		{"mv over the file being read", false, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.open()
			h.start()
			h.write(10)
			h.expectAll()
			h.starved(func() {
				h.write(200)
				for i := 0; i < tc.rotations; i++ {
					h.rotate(tc.shift, 3, 500)
				}
			})
			h.write(5)
			h.expectAll()
			if g := h.f.Stats.Gaps.Load(); g != tc.gaps {
				t.Errorf("gaps = %d, want %d", g, tc.gaps)
			}
		})
	}
}

func TestFollowShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(h *harness)
	}{
		{"append", func(h *harness) {
			h.open()
			h.start()
			h.write(10)
			h.expectAll()
			h.write(1000)
			h.expectAll()
		}},
		{"rename and create; old file still written until HUP", func(h *harness) {
			h.open()
			h.start()
			h.write(50)
			h.expectAll()
			os.Rename(h.path, h.path+".1")
			h.write(3) // rsyslog has not had its HUP yet
			old := h.w
			h.w = nil
			h.open()
			old.Close()
			h.write(20)
			h.expectAll()
			if h.f.Stats.Rotations.Load() != 1 {
				t.Errorf("rotations = %d, want 1", h.f.Stats.Rotations.Load())
			}
		}},
		{"copytruncate", func(h *harness) {
			h.open()
			h.start()
			h.write(30)
			h.expectAll()
			h.stopReading(func() {
				h.write(5) // not yet read when logrotate copies
				copyFile(h.t, h.path, h.path+".1")
				os.Truncate(h.path, 0)
			})
			h.write(7)
			h.expectAll()
		}},
		{"truncate", func(h *harness) {
			h.open()
			h.start()
			h.write(30)
			h.expectAll()
			os.Truncate(h.path, 0)
			time.Sleep(150 * time.Millisecond)
			h.write(4)
			h.expectAll()
		}},
		{"delete and re-create", func(h *harness) {
			h.open()
			h.start()
			h.write(10)
			h.expectAll()
			os.Remove(h.path)
			h.write(2) // still reaches the deleted inode
			h.w.Close()
			h.w = nil
			time.Sleep(150 * time.Millisecond)
			h.open()
			h.write(5)
			h.expectAll()
		}},
		{"file does not exist yet", func(h *harness) {
			h.start()
			time.Sleep(150 * time.Millisecond)
			h.open()
			h.write(5)
			h.expectAll()
		}},
		{"open error warns and retries", func(h *harness) {
			os.Symlink("loop", filepath.Join(h.dir, "loop"))
			os.Symlink("loop", h.path) // ELOOP: not ENOENT, a real open error
			h.start()
			time.Sleep(200 * time.Millisecond)
			if h.f.Stats.OpenErrors.Load() == 0 {
				t.Error("no open error counted")
			}
			os.Remove(h.path)
			h.open()
			h.write(3)
			h.expectAll()
		}},
		{"partial line waits for its newline", func(h *harness) {
			h.open()
			h.start()
			h.w.WriteString("line 1\nline ")
			time.Sleep(200 * time.Millisecond)
			h.w.WriteString("2\n")
			h.next = 3
			h.expectAll()
		}},
		{"NUL run after a crash", func(h *harness) {
			h.open()
			h.start()
			h.write(3)
			h.expectAll()
			h.w.Write(make([]byte, 4096))
			time.Sleep(100 * time.Millisecond)
			h.write(2)
			h.expectAll()
			if h.f.Stats.NULBytes.Load() != 4096 {
				t.Errorf("NUL bytes counted %d, want 4096", h.f.Stats.NULBytes.Load())
			}
		}},
		{"long line capped", func(h *harness) {
			h.open()
			h.start()
			h.write(1)
			h.w.WriteString(strings.Repeat("x", 5000) + "\n")
			h.expectAllBut(func(l Line) bool { return l.Truncated && len(l.Data) == 1024 })
			h.write(1)
			h.expectAll()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(newHarness(t)) })
	}
}

// expectAllBut is expectAll where one extra line matching ok is expected
// right after the numbered ones written so far.
func (h *harness) expectAllBut(ok func(Line) bool) {
	h.t.Helper()
	h.expectUpTo()
	select {
	case l := <-h.lines:
		if !ok(l) {
			h.t.Fatalf("unexpected line %q (truncated=%v len=%d)", l.Data, l.Truncated, len(l.Data))
		}
	case <-time.After(5 * time.Second):
		h.t.Fatal("the special line never came")
	}
}

func (h *harness) expectUpTo() {
	deadline := time.After(10 * time.Second)
	for h.seen < h.next {
		select {
		case l := <-h.lines:
			if want := fmt.Sprintf("line %d", h.seen); string(l.Data) != want {
				h.t.Fatalf("got %q, want %q", l.Data, want)
			}
			h.seen++
		case <-deadline:
			h.t.Fatalf("timed out waiting for line %d", h.seen)
		}
	}
}

// stopReading runs fn while the follower is stopped, then restarts it: the
// changes happen "while the agent is down".
func (h *harness) stopReading(fn func()) {
	h.stop()
	fn()
	h.start()
}

func gzipFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	z.Write(b)
	z.Close()
	if err := os.WriteFile(to, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(from)
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResume(t *testing.T) {
	for _, tc := range []struct {
		name string
		down func(h *harness) // what happens while the follower is stopped
	}{
		{"plain restart", func(h *harness) { h.write(5) }},
		{"rotated while down", func(h *harness) {
			h.write(5)
			os.Rename(h.path, h.path+".1")
			h.open()
			h.write(5)
		}},
		{"rotated, old one compressed away", func(h *harness) {
			os.Rename(h.path, h.path+".1.gz")
			h.open()
			h.write(5)
		}},
		{"rotated twice while down, older one gzipped", func(h *harness) {
			h.write(5)
			os.Rename(h.path, h.path+".1")
			h.open()
			h.write(5)
			gzipFile(h.t, h.path+".1", h.path+".2.gz")
			os.Rename(h.path, h.path+".1")
			h.open()
			h.write(5)
		}},
		{"copytruncated while down", func(h *harness) {
			h.write(5)
			copyFile(h.t, h.path, h.path+".1")
			os.Truncate(h.path, 0)
			h.write(3)
		}},
		{"inode reused with new content", func(h *harness) {
			os.Truncate(h.path, 0)
			h.write(3)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.open()
			h.write(10)
			h.start()
			h.expectAll()
			h.stop()
			tc.down(h)
			h.start()
			h.write(4)
			h.expectAll()
		})
	}
}

// After kill -9 at most the batch in flight may be read again: the
// position is written after every acknowledged batch, whatever the fsync
// interval (it used to be written once per checkpoint_interval, and a kill
// re-read up to 1,242 lines).
func TestPositionWrittenAfterEveryBatch(t *testing.T) {
	h := newHarness(t)
	h.ckEvery = time.Hour
	h.open()
	h.start()
	for round := 0; round < 3; round++ {
		h.write(20)
		h.expectAll()
		fi, _ := os.Stat(h.path)
		deadline := time.Now().Add(5 * time.Second)
		for {
			ck, err := loadCheckpoint(h.state, h.path)
			if err == nil && ck != nil && ck.Offset == fi.Size() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: checkpoint %+v, want offset %d", round, ck, fi.Size())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestStartAtEndWithoutCheckpoint(t *testing.T) {
	h := newHarness(t)
	h.open()
	h.write(10)
	h.w.WriteString("half a li")
	h.seen = 11
	h.atEnd = true
	h.start()
	time.Sleep(100 * time.Millisecond)
	h.w.WriteString("ne\n")
	select {
	case l := <-h.lines:
		if string(l.Data) != "half a line" {
			t.Errorf("first line %q, want the line in progress at start, whole", l.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing read")
	}
}

// Acks may come late and out of the handler's call order; the checkpoint
// must only cover batches whose acks all arrived.
func TestCheckpointOnlyAfterAck(t *testing.T) {
	h := newHarness(t)
	h.open()
	h.write(3)
	var acks []func()
	got := make(chan int, 10)
	f := New(Options{Path: h.path, StateDir: h.state, FromStart: true, PollInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- f.Run(ctx, func(b []Line, ack func()) error {
			acks = append(acks, ack)
			got <- len(b)
			return nil
		})
	}()
	<-got
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	if ck, _ := loadCheckpoint(h.state, h.path); ck != nil && ck.Offset != 0 {
		t.Fatalf("checkpoint at %d before any ack; want 0", ck.Offset)
	}
	acks[0]()
	f.save(true)
	ck, _ := loadCheckpoint(h.state, h.path)
	if ck == nil || ck.Offset != int64(len("line 1\nline 2\nline 3\n")) {
		t.Fatalf("checkpoint after ack: %+v", ck)
	}
}

// A file followed from empty whose lines all arrive in one batch must
// still be checkpointed with their fingerprint: an empty one cannot find
// the file's copy after a copytruncate while the agent is down.
func TestCheckpointGetsFingerprintOfFileFollowedFromEmpty(t *testing.T) {
	h := newHarness(t)
	h.open()
	h.start()
	time.Sleep(200 * time.Millisecond) // the follower has the empty file open
	h.write(30)                        // one write: one batch
	h.expectAll()
	h.stop()
	ck, err := loadCheckpoint(h.state, h.path)
	if err != nil || ck == nil {
		t.Fatalf("checkpoint: %v %v", ck, err)
	}
	if ck.ID.FPLen == 0 {
		t.Fatalf("checkpoint at offset %d kept an empty fingerprint", ck.Offset)
	}
}

// A first start (no checkpoint, following from the end) persists its
// position as soon as it has one: killed before its first batch, a
// restart must resume there, not at an end that has moved on.
func TestFirstPositionIsPersistedBeforeAnyLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "syslog")
	if err := os.WriteFile(p, []byte("old line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := New(Options{Path: p, StateDir: filepath.Join(dir, "state"), PollInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, func(_ []Line, ack func()) error { ack(); return nil }) }()
	defer func() { cancel(); <-done }()
	select {
	case <-f.Started():
	case <-time.After(5 * time.Second):
		t.Fatal("never started")
	}
	ck, err := loadCheckpoint(filepath.Join(dir, "state"), p)
	if err != nil || ck == nil || ck.Offset != int64(len("old line\n")) {
		t.Fatalf("checkpoint at start: %+v, %v; want one at offset %d", ck, err, len("old line\n"))
	}
}

// A log path that is a FIFO, or a link to /dev/zero, is not followed: the
// follower blocked in open() (SIGTERM ignored) or read zeros forever. It
// must keep answering cancellation and deliver nothing.
func TestNonRegularPathsAreNotFollowed(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	os.Symlink("/dev/zero", zero)
	for _, p := range []string{fifo, zero} {
		if f, err := OpenRegular(p); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			f.Close()
			t.Errorf("OpenRegular(%s): %v", p, err)
		}
		f := New(Options{Path: p, StateDir: filepath.Join(dir, "state"), FromStart: true, PollInterval: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var lines int
		go func() {
			done <- f.Run(ctx, func(b []Line, ack func()) error { lines += len(b); ack(); return nil })
		}()
		time.Sleep(300 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the follower ignores cancellation", p)
		}
		if lines != 0 {
			t.Errorf("%s: %d lines delivered", p, lines)
		}
	}
}

// A line of many buffers is one warning and one truncated line.
func TestLongLineWarnsOnce(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	dir := t.TempDir()
	p := filepath.Join(dir, "syslog")
	os.WriteFile(p, []byte("a\n"+strings.Repeat("x", 5*readBuf)+"\nb\n"), 0o644)
	f := New(Options{Path: p, StateDir: filepath.Join(dir, "st"), FromStart: true, MaxLineBytes: 1024, Log: zap.New(core)})
	ctx, cancel := context.WithCancel(context.Background())
	var got []string
	f.Run(ctx, func(b []Line, ack func()) error {
		for _, l := range b {
			got = append(got, string(l.Data[:min(3, len(l.Data))]))
			if string(l.Data) == "b" {
				cancel()
			}
		}
		ack()
		return nil
	})
	if n := logs.FilterMessageSnippet("line longer").Len(); n != 1 || f.Stats.Truncated.Load() != 1 {
		t.Errorf("%d warnings, %d truncated lines; want 1 each", n, f.Stats.Truncated.Load())
	}
	if fmt.Sprint(got) != "[a xxx b]" {
		t.Errorf("lines %v", got)
	}
}

// flakyReader fails its reads while fail is set, as a disk with a bad
// sector does.
type flakyReader struct {
	r    io.ReaderAt
	fail *atomic.Bool
}

func (f flakyReader) ReadAt(p []byte, off int64) (int, error) {
	if off > 0 && f.fail.Load() {
		return 0, syscall.EIO
	}
	return f.r.ReadAt(p, off)
}

// A read error is said once, counted, and retried from the same offset:
// it used to stop that file for good with nothing in the log.
func TestReadErrorIsRetriedNotFatal(t *testing.T) {
	var fail atomic.Bool
	openFile = func(name string) (*file, error) {
		f, err := openFileReal(name)
		if err == nil {
			f.r = flakyReader{r: f.r, fail: &fail}
		}
		return f, err
	}
	defer func() { openFile = openFileReal }()
	core, logs := observer.New(zap.InfoLevel)
	h := newHarness(t)
	h.log = zap.New(core)
	h.open()
	h.start()
	h.write(5)
	h.expectAll()
	fail.Store(true)
	h.write(5)
	time.Sleep(300 * time.Millisecond)
	h.write(5)
	time.Sleep(300 * time.Millisecond)
	fail.Store(false)
	h.expectAll()
	if n := logs.FilterMessageSnippet("cannot read log file").Len(); n != 1 {
		t.Errorf("%d warnings for one error, want 1", n)
	}
	if h.f.Stats.ReadErrors.Load() < 2 {
		t.Errorf("read errors counted %d, want every failed attempt", h.f.Stats.ReadErrors.Load())
	}
	if logs.FilterMessageSnippet("readable again").Len() != 1 {
		t.Error("recovery not said")
	}
}

// Writes to other files in the log's directory (rsyslog writes auth.log
// and kern.log beside syslog) do not wake the follower; its own file and
// its rotation still reach it at once, through inotify alone (no poll).
func TestOtherFilesInTheDirectoryDoNotWake(t *testing.T) {
	h := newHarness(t)
	h.poll = time.Hour
	h.open()
	h.start()
	h.write(1)
	h.expectAll()
	other, err := os.OpenFile(filepath.Join(h.dir, "auth.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	w0 := h.f.Stats.Wakes.Load()
	// Apart, so that inotify does not merge them into one event.
	for i := 0; i < 100; i++ {
		fmt.Fprintf(other, "sshd[%d]: line %d\n", i, i)
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if w := h.f.Stats.Wakes.Load() - w0; w > 5 {
		t.Errorf("100 writes to auth.log woke the follower of syslog %d times", w)
	}
	h.write(3)
	h.expectAll()
	h.rotate(true, 2, 2)
	h.expectAll()
}

// An error from the handler stops the follower on every path, the rotation
// path too: the partial last line of a rotated file is handed on when the
// follower moves to the new file, and its error used to be dropped (the
// follower went on, and the line's consequences were lost without a word).
func TestHandlerErrorOnTheRotationPathStopsTheFollower(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "syslog")
	os.WriteFile(path, []byte("a\nboom-partial"), 0o644)
	f := New(Options{Path: path, StateDir: filepath.Join(dir, "state"), FromStart: true, PollInterval: 20 * time.Millisecond, RotateGrace: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	boom := fmt.Errorf("sink refused the line")
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- f.Run(ctx, func(b []Line, ack func()) error {
			for _, l := range b {
				got = append(got, string(l.Data))
				if strings.HasPrefix(string(l.Data), "boom") {
					return boom
				}
			}
			ack()
			return nil
		})
	}()
	<-f.Started()
	time.Sleep(100 * time.Millisecond)
	os.Rename(path, path+".1")
	os.WriteFile(path, []byte("b\n"), 0o644)
	select {
	case err := <-done:
		if err != boom {
			t.Fatalf("Run returned %v, want the handler's error", err)
		}
	case <-ctx.Done():
		t.Fatalf("the follower went on after its handler failed (lines %q)", got)
	}
	if strings.Join(got, ",") != "a,boom-partial" {
		t.Errorf("lines handed on %q; want the follower to stop at the failing one", got)
	}
}
