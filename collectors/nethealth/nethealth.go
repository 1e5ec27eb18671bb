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
	// Counters are the raw cumulative values, kept for evidence.
	Counters map[string]uint64 `json:"counters"`
	// Unreadable lists attributes skipped this check (missing or garbage).
	Unreadable []string `json:"unreadable,omitempty"`
}

// StatsFunc reads an interface's ethtool statistics by name.
type StatsFunc func(iface string) (map[string]uint64, error)

// Checker keeps counter history between checks.
type Checker struct {
	SysRoot string    // "/sys"
	Stats   StatsFunc // nil: no ethtool statistics
	prev    map[string]map[string]uint64
	maxConn map[string]uint64
}

// NewChecker reads under sysRoot.
func NewChecker(sysRoot string, stats StatsFunc) *Checker {
	return &Checker{SysRoot: sysRoot, Stats: stats, prev: map[string]map[string]uint64{}, maxConn: map[string]uint64{}}
}

// gauges are ethtool statistics that are levels, not counts.
var gauges = map[string]bool{"conntrack_allowance_available": true, "ena_srd_mode": true, "ena_srd_resource_utilization": true, "num_of_active_io_queues": true}

// Check reads every device once. Devices are sorted: ENA then EFA, by name.
func (c *Checker) Check() []Device {
	var out []Device
	out = append(out, c.ena()...)
	out = append(out, c.efa()...)
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

// readUint reads a decimal (or 0x hex) sysfs value.
func readUint(path string) (uint64, error) {
	s, err := readString(path)
	if err != nil {
		return 0, err
	}
	if strings.HasPrefix(s, "0x") {
		return strconv.ParseUint(s[2:], 16, 64)
	}
	return strconv.ParseUint(s, 10, 64)
}

// readString reads a small sysfs attribute with one open, one read and one
// close: os.ReadFile's fstat and fcntl doubled the cost of a check, and
// sysfs sizes are meaningless anyway.
func readString(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
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
	for k, v := range cur {
		if gauges[k] {
			d.Figures[k] = float64(v)
			continue
		}
		p, ok := prev[k]
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
	c.prev[dev] = cur
	d.Counters = cur
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
