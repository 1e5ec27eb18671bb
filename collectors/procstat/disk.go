package procstat

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DiskStat is one block device's counters from /proc/diskstats.
type DiskStat struct {
	Name       string
	Completed  uint64 // reads + writes completed
	InFlight   uint64 // requests in progress now
	IOTicksMs  uint64 // time the device had requests in progress
	WeightedMs uint64 // time requests waited, summed over requests
}

// parseDiskstats parses /proc/diskstats: "major minor name reads merged
// sectors ms writes merged sectors ms inflight io_ms weighted_ms ...".
// Malformed lines are skipped.
func parseDiskstats(b []byte, keep func(name string) bool, out []DiskStat) []DiskStat {
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) < 14 {
			continue
		}
		name := string(f[2])
		if keep != nil && !keep(name) {
			continue
		}
		var v [11]uint64
		ok := true
		for i := range v {
			if v[i], ok = atou(f[3+i]); !ok {
				break
			}
		}
		if !ok {
			continue
		}
		out = append(out, DiskStat{Name: name, Completed: v[0] + v[4], InFlight: v[8], IOTicksMs: v[9], WeightedMs: v[10]})
	}
	return out
}

// DiskState is how a device did between two readings.
type DiskState struct {
	Device        string
	Volume        string // vol-... of an NVMe EBS volume
	InFlight      uint64
	BusyPct       float64 // time with requests in progress
	CompletedPerS float64
	LatencyMs     float64 // mean wait of a request completed
	// Stalled is how long the device has had requests in progress with
	// none completing, or each taking over stallLatency: what an EBS
	// volume out of burst credits or paused looks like from inside.
	Stalled time.Duration
}

// stallLatency is the mean wait per request above which a busy device
// counts as stalled although it completes some: a throttled volume at one
// request a second is not working, it is crawling.
const stallLatency = time.Second

// stallClear is how long a stalled disk must serve again before its stall
// ends: under a throttle a few small requests complete quickly now and
// then, and one such sample reset the stall's length twice in the VM's
// 90 s stall.
const stallClear = 3 * time.Second

// Disks watches the whole disks of a host (those in /sys/block, not
// partitions, loops or ram disks).
type Disks struct {
	Proc, Sys string
	prev      map[string]DiskStat
	at        time.Time
	since     map[string]time.Time // stall start, per device
	clear     map[string]time.Time // when a stalled device began to serve again
	vols      map[string]string
	buf       []byte
	cur       []DiskStat
}

// Observe reads the counters at now and returns each device's state since
// the last reading (none the first time).
func (d *Disks) Observe(now time.Time) []DiskState {
	if d.prev == nil {
		d.prev, d.since, d.clear, d.vols = map[string]DiskStat{}, map[string]time.Time{}, map[string]time.Time{}, map[string]string{}
	}
	b, err := readAll(filepath.Join(d.Proc, "diskstats"), &d.buf)
	if err != nil {
		return nil
	}
	d.cur = parseDiskstats(b, d.wholeDisk, d.cur[:0])
	dt := now.Sub(d.at)
	first := d.at.IsZero()
	d.at = now
	var out []DiskState
	for _, c := range d.cur {
		p, ok := d.prev[c.Name]
		d.prev[c.Name] = c
		if first || !ok || dt <= 0 || c.Completed < p.Completed || c.IOTicksMs < p.IOTicksMs {
			continue
		}
		st := DiskState{Device: c.Name, Volume: d.volume(c.Name), InFlight: c.InFlight}
		done := c.Completed - p.Completed
		st.BusyPct = min(100, 100*float64(c.IOTicksMs-p.IOTicksMs)/float64(dt.Milliseconds()))
		st.CompletedPerS = float64(done) / dt.Seconds()
		if done > 0 && c.WeightedMs >= p.WeightedMs {
			st.LatencyMs = float64(c.WeightedMs-p.WeightedMs) / float64(done)
		}
		stalled := c.InFlight > 0 && st.BusyPct >= 90 && (done == 0 || st.LatencyMs >= float64(stallLatency.Milliseconds()))
		switch {
		case stalled:
			if d.since[c.Name].IsZero() {
				d.since[c.Name] = now.Add(-dt) // it was so over the whole interval
			}
			delete(d.clear, c.Name)
			st.Stalled = now.Sub(d.since[c.Name])
		case !d.since[c.Name].IsZero():
			if d.clear[c.Name].IsZero() {
				d.clear[c.Name] = now.Add(-dt)
			}
			if now.Sub(d.clear[c.Name]) >= stallClear {
				delete(d.since, c.Name)
				delete(d.clear, c.Name)
			} else {
				st.Stalled = now.Sub(d.since[c.Name])
			}
		}
		out = append(out, st)
	}
	return out
}

func (d *Disks) wholeDisk(name string) bool {
	if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "zram") {
		return false
	}
	_, err := os.Stat(filepath.Join(d.Sys, "block", name))
	return err == nil
}

// volume is the EBS volume id of an NVMe device: its controller's serial
// is the id without its dash ("vol0123...").
func (d *Disks) volume(name string) string {
	if v, ok := d.vols[name]; ok {
		return v
	}
	v := ""
	if b, err := os.ReadFile(filepath.Join(d.Sys, "block", name, "device", "serial")); err == nil {
		s := strings.TrimSpace(string(b))
		if rest, ok := strings.CutPrefix(s, "vol"); ok && len(rest) >= 8 && len(rest) <= 32 && isHexString(rest) {
			v = "vol-" + rest
		}
	}
	d.vols[name] = v
	return v
}

func isHexString(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// readAll reads a pseudo-file whole into buf (grown as needed).
func readAll(path string, buf *[]byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := 0
	for {
		if n == len(*buf) {
			*buf = append(*buf, make([]byte, max(len(*buf), 4096))...)
		}
		m, err := f.Read((*buf)[n:])
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	return (*buf)[:n], nil
}

// Wchan reads where in the kernel pid waits ("" when /proc does not say:
// the agent may read it only for its own processes without ptrace rights,
// and the kernel then says "0").
func Wchan(procRoot string, pid int) string {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "wchan"))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if s == "" || s == "0" || len(s) > 64 {
		return ""
	}
	for _, c := range s {
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return s
}
