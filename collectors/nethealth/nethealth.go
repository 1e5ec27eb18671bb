// Package nethealth checks ENA network interfaces and EFA devices the way
// `ip link` cannot: ENA's allowance counters (packets EC2 queued or dropped
// for exceeding bandwidth, PPS, conntrack or link-local allowances) from the
// driver's ethtool statistics, carrier flaps, resets and drops from sysfs;
// EFA port state and every hw_counter the device exposes. Counters are
// turned into per-interval deltas that survive counter resets.
package nethealth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// States, as in the JSON contract of `ec2diag health`.
const (
	OK       = "ok"
	Degraded = "degraded"
	Down     = "down"
	// Unknown: nothing could be read to judge by; not "ok".
	Unknown = "unknown"
)

// Device is one ENA interface or EFA device at one check.
type Device struct {
	Name    string             `json:"name"`
	Kind    string             `json:"kind"` // ena, efa
	State   string             `json:"state"`
	Reasons []string           `json:"reasons"`
	PCI     string             `json:"pci,omitempty"`
	Netdev  string             `json:"netdev,omitempty"` // EFA: the ENA interface of the same ENI
	Driver  string             `json:"driver_version,omitempty"`
	Figures map[string]float64 `json:"figures"` // gauges and sysfs values
	Deltas  map[string]uint64  `json:"deltas"`  // counter increase since the last check
	// Counters are the raw cumulative values, kept for evidence; the
	// checker reuses the map, so it is valid until the next Check.
	Counters map[string]uint64 `json:"counters"`
	// Unreadable lists attributes skipped this check (missing or garbage).
	Unreadable []string `json:"unreadable,omitempty"`
}

// StatsFunc reads an interface's ethtool statistics by name.
type StatsFunc func(iface string) (map[string]uint64, error)

// Checker keeps counter history between checks.
type Checker struct {
	SysRoot string    // the sys root
	Stats   StatsFunc // nil: no ethtool statistics
	// FullEvery: every FullEvery-th check reads everything (identity,
	// links, informational counters, every EFA counter); the checks in
	// between read only what health depends on and what is published.
	// 1 (or 0) reads everything every time, as `ec2diag health` does.
	FullEvery  int
	prev       map[string]map[string]uint64
	maxConn    map[string]uint64
	n          int
	full       bool
	names      map[string]string // class dir -> joined entry names at the last full check
	ids        map[string]ident
	enaVersion string
	efaNames   map[string][]string // hw_counters dir -> counter file names (hot only between full checks)
	efaAll     map[string][]string
	dirs       map[string]int // device directory -> O_PATH fd, reopened at full checks
	files      map[string]int // attribute path -> open fd, re-read with pread at offset 0
}

// ident is what does not change while a device exists: read at full
// checks only.
type ident struct {
	driver, pci string
	figures     map[string]float64
	netdev      string
	ports       []string
}

// NewChecker reads under sysRoot.
func NewChecker(sysRoot string, stats StatsFunc) *Checker {
	return &Checker{SysRoot: sysRoot, Stats: stats, prev: map[string]map[string]uint64{}, maxConn: map[string]uint64{},
		names: map[string]string{}, ids: map[string]ident{}, efaNames: map[string][]string{}, efaAll: map[string][]string{}, dirs: map[string]int{}, files: map[string]int{}}
}

// gauges are ethtool statistics that are levels, not counts.
var gauges = map[string]bool{"conntrack_allowance_available": true, "ena_srd_mode": true, "ena_srd_resource_utilization": true, "num_of_active_io_queues": true}

// Check reads every device once. Devices are sorted: ENA then EFA, by name.
func (c *Checker) Check() []Device {
	c.full = c.FullEvery <= 1 || c.n%c.FullEvery == 0
	c.n++
	if c.full {
		c.Close() // device directories are looked up afresh
	}
	var out []Device
	out = append(out, c.ena()...)
	out = append(out, c.efa()...)
	for i := range out {
		if d := &out[i]; d.State == OK && len(d.Counters) == 0 && len(d.Unreadable) > 0 {
			d.State = Unknown
			d.reason("no counter could be read (%d attributes unreadable): health unknown", len(d.Unreadable))
		}
	}
	return out
}

func driverOf(dir string) string {
	l, err := os.Readlink(filepath.Join(dir, "device", "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

func pciOf(dir string) string {
	l, err := os.Readlink(filepath.Join(dir, "device"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// Close releases the descriptors the checker holds.
func (c *Checker) Close() {
	for _, m := range []map[string]int{c.files, c.dirs} {
		for k, fd := range m {
			unix.Close(fd)
			delete(m, k)
		}
	}
}

// read reads dir/rel. Between full checks it keeps the attribute open
// and re-reads it with one pread at offset 0 (sysfs regenerates the value
// for every read from the start) instead of open, read and close through
// the class symlinks each time: the syscalls were most of a check's cost.
// A descriptor gone stale (the device was removed, or replaced under the
// same name) is dropped and the path opened afresh.
func (c *Checker) read(dir, rel string) (string, error) {
	key := dir + "/" + rel
	if fd, ok := c.files[key]; ok {
		var buf [256]byte
		n, err := unix.Pread(fd, buf[:], 0)
		if err == nil {
			return strings.TrimSpace(string(buf[:n])), nil
		}
		unix.Close(fd)
		delete(c.files, key)
	}
	dfd, ok := c.dirs[dir]
	if !ok {
		var err error
		dfd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return readString(key)
		}
		c.dirs[dir] = dfd
	}
	fd, err := unix.Openat(dfd, rel, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", &fs.PathError{Op: "open", Path: key, Err: err}
	}
	var buf [256]byte
	n, err := unix.Pread(fd, buf[:], 0)
	if err != nil {
		unix.Close(fd)
		return "", &fs.PathError{Op: "read", Path: key, Err: err}
	}
	c.files[key] = fd
	return strings.TrimSpace(string(buf[:n])), nil
}

func (c *Checker) readUint(dir, rel string) (uint64, error) {
	s, err := c.read(dir, rel)
	if err != nil {
		return 0, err
	}
	return parseUint(s)
}

func parseUint(s string) (uint64, error) {
	if strings.HasPrefix(s, "0x") {
		return strconv.ParseUint(s[2:], 16, 64)
	}
	return strconv.ParseUint(s, 10, 64)
}

// readUint reads a decimal (or 0x hex) sysfs value.
func readUint(path string) (uint64, error) {
	s, err := readString(path)
	if err != nil {
		return 0, err
	}
	return parseUint(s)
}

// readString reads a small sysfs attribute with one open, one read and one
// close: os.ReadFile's fstat and fcntl doubled the cost of a check, and
// sysfs sizes are meaningless anyway.
func readString(path string) (string, error) {
	return readStringAt(unix.AT_FDCWD, path)
}

func readStringAt(dirfd int, path string) (string, error) {
	fd, err := unix.Openat(dirfd, path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var buf [256]byte
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil {
		return "", &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return strings.TrimSpace(string(buf[:max(n, 0)])), nil
}

// absent reports errors that mean "this attribute is not available here"
// (ENA's speed is EINVAL; carrier is EINVAL while admin-down).
func absent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}

// delta turns cumulative counters into increases since the last check. A
// lower value means a reset (driver reload, device reset, a read while
// admin-down): no delta for that counter this time, never a negative one.
func (c *Checker) delta(dev string, cur map[string]uint64, d *Device) {
	prev, seen := c.prev[dev]
	d.Deltas = map[string]uint64{}
	resets := 0
	if prev == nil {
		prev = map[string]uint64{}
	}
	for k, v := range cur {
		if gauges[k] {
			d.Figures[k] = float64(v)
			continue
		}
		p, ok := prev[k]
		prev[k] = v
		switch {
		case !seen || !ok:
		case v >= p:
			if v > p {
				d.Deltas[k] = v - p
			}
		default:
			resets++
		}
	}
	if resets > 0 {
		d.Figures["counter_resets"] = float64(resets)
	}
	// Counters read only at full checks keep their last value. The map is
	// the checker's own: valid until the next Check (copying ~200
	// per-queue counters per interface per check cost more than reading).
	c.prev[dev] = prev
	d.Counters = prev
}

// entries lists a class directory; a change in the list forces a full
// check of it, so a new device is identified at once.
func (c *Checker) entries(dir string) []os.DirEntry {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var b strings.Builder
	for _, e := range ents {
		b.WriteString(e.Name() + "/")
	}
	if c.names[dir] != b.String() {
		c.names[dir] = b.String()
		c.full = true
	}
	return ents
}

func (d *Device) reason(format string, args ...any) {
	d.Reasons = append(d.Reasons, fmt.Sprintf(format, args...))
}

func (d *Device) worsen(s string) {
	if s == Down || d.State == OK {
		d.State = s
	}
}

func sortedKeys(m map[string]uint64) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
