// Package console says an incident on the serial console: one short line
// to the kernel log at KERN_CRIT, which reaches the console EC2 keeps ("Get
// system log") even when the disk never got the data. It writes to a
// character device and never waits on a disk.
package console

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"golang.org/x/sys/unix"
)

// MaxLine bounds one console line: the serial port at 115200 baud writes
// about 11 KB/s, and the kernel truncates longer kmsg writes anyway.
const MaxLine = 400

// minGap is the least time between two lines: well inside the kernel's
// rate limit for /dev/kmsg writers.
const minGap = 5 * time.Second

// Console writes incident lines to Path (the kernel log device).
type Console struct {
	// Path is the device ("" disables the console). When the process's
	// stdout or stderr already is /dev/kmsg (the unit opens it for the
	// unprivileged agent), that descriptor is used instead.
	Path  string
	Clock clock.Clock

	mu   sync.Mutex
	f    *os.File
	last time.Time
	id   string // the incident the last line was about
	said string // what the last line said, to repeat only news
}

// Say writes a line for record kind of incident id when it is news: at
// onset, and at a snapshot only when the verdict or the kinds of reason
// changed (a memory hang becomes clear after the onset), at most one line
// every few seconds.
func (c *Console) Say(kind evidence.Kind, id string, d *evidence.Incident) error {
	if c == nil || c.Path == "" || kind == evidence.KindEnd || kind == evidence.KindJobRun {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := clock.Or(c.Clock).Now()
	if id != c.id {
		c.id, c.said = id, ""
	}
	kinds := make([]string, len(d.ReasonKinds))
	for i, k := range d.ReasonKinds {
		kinds[i] = string(k)
	}
	// The same kinds in another order (the larger figure first) are no
	// news: a disk stall and its I/O pressure swapped places six times in
	// the VM's 90 s stall, a console line each time.
	sort.Strings(kinds)
	said := d.Verdict.Cause + "|" + strings.Join(kinds, ",")
	if said == c.said || now.Sub(c.last) < minGap {
		return nil
	}
	update := ""
	if c.said != "" {
		update = " update"
	}
	line := "<2>" + escape.Control(fmt.Sprintf("ec2diag: spike %s%s (%s): cause %s", id, update, strings.Join(d.Reasons, ", "), d.Verdict.Cause))
	line = escape.Truncate(line, MaxLine)
	if err := c.open(); err != nil {
		return err
	}
	c.last, c.said = now, said
	if _, err := c.f.Write([]byte(line + "\n")); err != nil {
		return fmt.Errorf("console notice: %w", err)
	}
	return nil
}

// Line is what Say writes for an incident at onset, for tests and docs.
func Line(id string, reasons []correlate.Reason, cause string) string {
	return escape.Truncate("<2>"+escape.Control(fmt.Sprintf("ec2diag: spike %s (%s): cause %s", id, strings.Join(correlate.Strings(reasons), ", "), cause)), MaxLine)
}

func (c *Console) open() error {
	if c.f != nil {
		return nil
	}
	if fd := kmsgFd(); fd >= 0 {
		// The unit has systemd open /dev/kmsg (root-only) as our stdout
		// before it drops privileges: the only way an unprivileged agent
		// can reach the console. Kept for the life of the console: a File
		// dropped to the GC closes its descriptor.
		c.f = os.NewFile(uintptr(fd), "kmsg")
		return nil
	}
	f, err := os.OpenFile(c.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("console notice: %w", err)
	}
	c.f = f
	return nil
}

// kmsgFd returns the standard descriptor (stdout, else stderr) that is
// /dev/kmsg (char device 1:11), or -1. The unit uses stdout; stderr is
// what earlier units used.
func kmsgFd() int {
	for _, fd := range []int{1, 2} {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR &&
			unix.Major(uint64(st.Rdev)) == 1 && unix.Minor(uint64(st.Rdev)) == 11 {
			return fd
		}
	}
	return -1
}
