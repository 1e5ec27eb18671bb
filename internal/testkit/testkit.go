// Package testkit holds helpers shared by tests that drive the real binary:
// building it, a notify socket that proves the sender's pid, and a journald
// native-protocol listener.
package testkit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ModuleRoot finds the directory holding go.mod above the test's directory.
func ModuleRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// Build compiles ./cmd/ec2diag into dir with extra go build args.
func Build(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out := filepath.Join(dir, "ec2diag")
	// EC2DIAG_TEST_BUILDFLAGS (e.g. "-race") builds the agent the
	// end-to-end tests run differently; with GORACE=halt_on_error=1 a race
	// in the agent fails the test that hit it.
	args = append(strings.Fields(os.Getenv("EC2DIAG_TEST_BUILDFLAGS")), args...)
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, args...), "./cmd/ec2diag")...)
	cmd.Dir = ModuleRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// Notify is one sd_notify datagram with the sender's pid from SCM_CREDENTIALS.
type Notify struct {
	PID   int
	State string
	At    time.Time
}

// NotifySocket is a unixgram socket standing in for systemd's.
type NotifySocket struct {
	Path string
	C    chan Notify
	conn *net.UnixConn
}

// ListenNotify binds a notify socket in a temp dir with SO_PASSCRED on.
func ListenNotify(t testing.TB) *NotifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := conn.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	ns := &NotifySocket{Path: path, C: make(chan Notify, 1024), conn: conn}
	go func() {
		buf, oob := make([]byte, 65536), make([]byte, 1024)
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			pid := -1
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if cred, err := unix.ParseUnixCredentials(&m); err == nil {
						pid = int(cred.Pid)
					}
				}
			}
			ns.C <- Notify{PID: pid, State: string(buf[:n]), At: time.Now()}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return ns
}

// Expect waits for a datagram containing want, skipping others; it fails
// the test after timeout. Skipped datagrams are returned for inspection.
func (ns *NotifySocket) Expect(t testing.TB, want string, timeout time.Duration) (Notify, []Notify) {
	t.Helper()
	var skipped []Notify
	deadline := time.After(timeout)
	for {
		select {
		case n := <-ns.C:
			if strings.Contains(n.State, want) {
				return n, skipped
			}
			skipped = append(skipped, n)
		case <-deadline:
			t.Fatalf("no %q from the agent within %s; saw %v", want, timeout, skipped)
			return Notify{}, skipped
		}
	}
}

// Drain returns what arrived within d.
func (ns *NotifySocket) Drain(d time.Duration) []Notify {
	var got []Notify
	deadline := time.After(d)
	for {
		select {
		case n := <-ns.C:
			got = append(got, n)
		case <-deadline:
			return got
		}
	}
}

// Entry is one journald native-protocol message as fields.
type Entry map[string]string

// ParseNative decodes journald's native protocol: KEY=value lines, or
// KEY\n<uint64 LE length><bytes>\n for values with newlines.
func ParseNative(b []byte) (Entry, bool) {
	e := Entry{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return e, false
		}
		line := b[:nl]
		if eq := bytes.IndexByte(line, '='); eq >= 0 {
			e[string(line[:eq])] = string(line[eq+1:])
			b = b[nl+1:]
			continue
		}
		key := string(line)
		b = b[nl+1:]
		if len(b) < 8 {
			return e, false
		}
		n := binary.LittleEndian.Uint64(b[:8])
		b = b[8:]
		if uint64(len(b)) < n+1 {
			return e, false
		}
		e[key] = string(b[:n])
		b = b[n+1:]
	}
	return e, true
}

// Journal is a unixgram socket standing in for journald's.
type Journal struct {
	mu      sync.Mutex
	entries []Entry
	bad     int
}

// ListenJournal binds path and collects entries until the test ends.
func ListenJournal(t testing.TB, path string) *Journal {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	j := &Journal{}
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			e, ok := ParseNative(buf[:n])
			j.mu.Lock()
			if ok {
				j.entries = append(j.entries, e)
			} else {
				j.bad++
			}
			j.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return j
}

// Find waits up to timeout for an entry matching all of want.
func (j *Journal) Find(want map[string]string, timeout time.Duration) (Entry, bool) {
	deadline := time.Now().Add(timeout)
	for {
		j.mu.Lock()
		for _, e := range j.entries {
			ok := true
			for k, v := range want {
				if e[k] != v {
					ok = false
					break
				}
			}
			if ok {
				j.mu.Unlock()
				return e, true
			}
		}
		j.mu.Unlock()
		if time.Now().After(deadline) {
			return nil, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Bad counts datagrams that did not parse.
func (j *Journal) Bad() int { j.mu.Lock(); defer j.mu.Unlock(); return j.bad }

// Lines is a goroutine-safe buffer for a child's stderr or stdout.
type Lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Lines) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.Write(p) }

// String returns everything written so far.
func (l *Lines) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }

// WaitFor polls until s appears or timeout passes.
func (l *Lines) WaitFor(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(l.String(), s) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return strings.Contains(l.String(), s)
}

// CountLines counts lines containing s.
func (l *Lines) CountLines(s string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// SmallFS mounts a tmpfs of the given size (like "256k") on a fresh
// directory, for tests of a real full disk; it skips where mounting is not
// allowed (not root).
func SmallFS(t testing.TB, size string) string {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): the full-disk test needs root", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// FillFS fills the filesystem holding dir until about leave bytes are
// free, and returns a func that frees the space again.
func FillFS(t testing.TB, dir string, leave int64) func() {
	p := filepath.Join(dir, ".filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	fi, _ := f.Stat()
	f.Truncate(max(0, fi.Size()-leave))
	f.Close()
	return func() { os.Remove(p) }
}
