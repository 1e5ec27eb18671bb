// Package hostfstest writes a host tree (proc/, sys/, etc/) that tests
// point the agent at instead of the running host: a scripted machine whose
// CPU counters, memory, pressure and processes move only when the test
// says, so what the agent decides depends on the script, not on how busy
// the machine running the test is.
package hostfstest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/hostfs"
)

// Host is a scripted machine under Dir.
type Host struct {
	T    testing.TB
	Dir  string
	Root hostfs.Root
	// Boot is when the machine booted (btime).
	Boot time.Time
	// CPUs is the number of CPUs; each Step is 5 s of them (500 jiffies
	// each).
	CPUs int
	// Cumulative jiffies of /proc/stat.
	Busy, Idle, IOWait, Steal uint64
	// StealPct is the share of every step the hypervisor withholds
	// (counted as steal, out of what would have been idle).
	StealPct uint64
	// MemAvailPct is MemAvailable as a % of MemTotal (1 GiB).
	MemAvailPct int
	// SwapTotalKB and SwapFreeKB fill /proc/meminfo's swap lines.
	SwapTotalKB, SwapFreeKB int
	// PSI avg10 figures of /proc/pressure.
	PSI PSI
	// VMStat lines of /proc/vmstat.
	VMStat map[string]uint64
	Procs  map[int]*Proc
	// Disks are the whole disks (/proc/diskstats, /sys/block).
	Disks map[string]*Disk
	// BootID is /proc/sys/kernel/random/boot_id.
	BootID  string
	gone    []int
	jiffies float64 // the fraction of a jiffy not yet counted
}

// Disk is a block device of the scripted host: while Busy, requests stay
// in flight and Rate of them complete a second.
type Disk struct {
	Serial   string // the NVMe controller's serial (vol... for EBS)
	InFlight uint64
	Busy     bool
	Rate     float64
	// counters
	completed, ioTicks, weighted float64
}

// PSI are the avg10 figures the pressure files say.
type PSI struct {
	CPUSome, MemSome, MemFull, IOSome, IOFull float64
}

// Proc is one process of the scripted host.
type Proc struct {
	PID, PPID, SID int
	Comm           string
	State          byte // 'R' by default
	Cgroup         string
	// Cmdline is the command line, NUL-joined on disk.
	Cmdline []string
	UID     int
	// PerStep is how many ticks it burns per Step; Ticks what it has used.
	PerStep, Ticks uint64
	RSSPages       int64
	// StartTicks is its start, in ticks after boot.
	StartTicks uint64
	Wchan      string
	acc        float64 // the fraction of a tick not yet counted
}

// New makes an empty host booted at boot, with PID 1.
func New(t testing.TB, boot time.Time) *Host {
	dir := t.TempDir()
	h := &Host{T: t, Dir: dir, Root: hostfs.At(dir), Boot: boot, CPUs: 2, MemAvailPct: 60, Procs: map[int]*Proc{}, Disks: map[string]*Disk{},
		VMStat: map[string]uint64{"pgmajfault": 10, "oom_kill": 0, "allocstall_normal": 3}, BootID: "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7"}
	for _, d := range []string{"proc/pressure", "proc/sys/kernel/random", "sys/class/net", "etc", "dev"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	h.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n")
	h.Add(&Proc{PID: 1, PPID: 0, SID: 1, Comm: "systemd", Cgroup: "/init.scope", RSSPages: 2560, Cmdline: []string{"/sbin/init"}})
	h.Write()
	return h
}

// Add adds p (started at boot unless StartTicks is set) and returns it.
func (h *Host) Add(p *Proc) *Proc {
	if p.StartTicks == 0 {
		p.StartTicks = 100
	}
	if p.SID == 0 {
		p.SID = p.PID
	}
	if p.Cgroup == "" {
		p.Cgroup = "/system.slice/" + p.Comm + ".service"
	}
	if len(p.Cmdline) == 0 {
		p.Cmdline = []string{p.Comm}
	}
	h.Procs[p.PID] = p
	return p
}

// StartedAt is the start, in ticks after boot, of a process started at t.
func (h *Host) StartedAt(t time.Time) uint64 {
	return uint64(t.Sub(h.Boot) / (10 * time.Millisecond))
}

// RSSMiB converts MiB to pages.
func RSSMiB(mib int64) int64 { return mib << 20 / int64(os.Getpagesize()) }

// Remove ends process pid (its directory goes at the next Write).
func (h *Host) Remove(pid int) {
	delete(h.Procs, pid)
	h.gone = append(h.gone, pid)
}

// Step advances the host by one 5-second sample: every process burns its
// PerStep ticks, and the CPUs are busyPct busy.
func (h *Host) Step(busyPct uint64) { h.StepFor(5*time.Second, busyPct) }

// StepFor advances the host by d: the CPUs are busyPct busy, and every
// process burns its PerStep ticks per 5 s pro rata (fractions carried to
// the next step), so a host stepped in small slices reads the same rates
// to whoever samples it, whenever.
func (h *Host) StepFor(d time.Duration, busyPct uint64) {
	h.jiffies += float64(h.CPUs) * 100 * d.Seconds()
	whole := uint64(h.jiffies)
	h.jiffies -= float64(whole)
	busy := whole * busyPct / 100
	steal := min(whole*h.StealPct/100, whole-busy)
	h.Busy += busy
	h.Steal += steal
	h.Idle += whole - busy - steal
	for _, dk := range h.Disks {
		if dk.Busy {
			dk.ioTicks += float64(d.Milliseconds())
			dk.weighted += float64(dk.InFlight) * float64(d.Milliseconds())
		}
		dk.completed += dk.Rate * d.Seconds()
	}
	for _, p := range h.Procs {
		p.acc += float64(p.PerStep) * d.Seconds() / 5
		n := uint64(p.acc)
		p.acc -= float64(n)
		p.Ticks += n
	}
	h.Write()
}

// Write writes the tree as the host is now.
func (h *Host) Write() {
	total := 1 << 20 // kB
	h.write("proc/stat", fmt.Sprintf("cpu  %d 0 0 %d %d 0 0 %d 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\nbtime %d\n", h.Busy, h.Idle, h.IOWait, h.Steal, h.Boot.Unix()))
	h.write("proc/meminfo", fmt.Sprintf("MemTotal: %d kB\nMemFree: %d kB\nMemAvailable: %d kB\nBuffers: 0 kB\nCached: 0 kB\nSwapTotal: %d kB\nSwapFree: %d kB\n",
		total, total*h.MemAvailPct/100, total*h.MemAvailPct/100, h.SwapTotalKB, h.SwapFreeKB))
	keys := make([]string, 0, len(h.VMStat))
	for k := range h.VMStat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var vm strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&vm, "%s %d\n", k, h.VMStat[k])
	}
	h.write("proc/vmstat", vm.String())
	p := h.PSI
	h.write("proc/pressure/cpu", fmt.Sprintf("some avg10=%.2f avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", p.CPUSome))
	h.write("proc/pressure/memory", fmt.Sprintf("some avg10=%.2f avg60=0.00 avg300=0.00 total=0\nfull avg10=%.2f avg60=0.00 avg300=0.00 total=0\n", p.MemSome, p.MemFull))
	h.write("proc/pressure/io", fmt.Sprintf("some avg10=%.2f avg60=0.00 avg300=0.00 total=0\nfull avg10=%.2f avg60=0.00 avg300=0.00 total=0\n", p.IOSome, p.IOFull))
	h.write("proc/sys/kernel/random/boot_id", h.BootID+"\n")
	var ds strings.Builder
	names := make([]string, 0, len(h.Disks))
	for n := range h.Disks {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		dk := h.Disks[n]
		c := uint64(dk.completed)
		fmt.Fprintf(&ds, "%4d %7d %s %d 0 %d %d %d 0 %d %d %d %d %d 0 0 0 0\n", 259, i, n, c/2, c, 0, c-c/2, c, 0, dk.InFlight, uint64(dk.ioTicks), uint64(dk.weighted))
		h.write("sys/block/"+n+"/size", "1000\n")
		if dk.Serial != "" {
			h.write("sys/block/"+n+"/device/serial", dk.Serial+"\n")
		}
	}
	h.write("proc/diskstats", ds.String())
	for _, pid := range h.gone {
		os.RemoveAll(filepath.Join(h.Dir, "proc", fmt.Sprint(pid)))
	}
	h.gone = nil
	for pid, p := range h.Procs {
		st := p.State
		if st == 0 {
			st = 'R'
		}
		h.write(fmt.Sprintf("proc/%d/stat", pid), fmt.Sprintf("%d (%s) %c %d %d %d 0 -1 0 0 0 0 0 %d 0 0 0 20 0 1 0 %d 1000 %d 0 0\n",
			pid, p.Comm, st, p.PPID, p.SID, p.SID, p.Ticks, p.StartTicks, p.RSSPages))
		h.write(fmt.Sprintf("proc/%d/cgroup", pid), "0::"+p.Cgroup+"\n")
		h.write(fmt.Sprintf("proc/%d/cmdline", pid), strings.Join(p.Cmdline, "\x00")+"\x00")
		h.write(fmt.Sprintf("proc/%d/status", pid), fmt.Sprintf("Name:\t%s\nUid:\t%d\t%d\t%d\t%d\n", p.Comm, p.UID, p.UID, p.UID, p.UID))
		h.write(fmt.Sprintf("proc/%d/wchan", pid), p.Wchan)
		h.write(fmt.Sprintf("proc/%d/comm", pid), p.Comm+"\n")
	}
}

func (h *Host) write(name, s string) {
	p := filepath.Join(h.Dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		h.T.Fatal(err)
	}
}

// WriteFile writes any file of the tree (a sysfs attribute, say).
func (h *Host) WriteFile(name, s string) { h.write(name, s) }
