package procstat

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/hostfs"
	"github.com/shirou/gopsutil/v3/process"
)

// spawn starts n sleeping processes so scans see a busy host's table.
func spawn(b *testing.B, n int) {
	if s := os.Getenv("EC2DIAG_BENCH_PROCS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	var cmds []*exec.Cmd
	for i := 0; i < n; i++ {
		c := exec.Command("sleep", "600")
		if err := c.Start(); err != nil {
			b.Fatalf("spawn %d: %v", i, err)
		}
		cmds = append(cmds, c)
	}
	b.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGKILL)
			c.Wait()
		}
	})
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTick is one sampling tick of the agent's process table.
func BenchmarkTick(b *testing.B) {
	spawn(b, 2000)
	s := NewSampler(hostfs.Default(), nil)
	buf := make([]ProcUse, 0, 4096)
	s.Tick(time.Now(), buf[:0])
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		buf, _ = s.Tick(time.Now(), buf[:0])
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(len(buf)), "procs")
}

// BenchmarkNaiveGopsutil is the baseline: every process's times and
// memory through gopsutil, as a straightforward agent would.
func BenchmarkNaiveGopsutil(b *testing.B) {
	spawn(b, 2000)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	n := 0
	for i := 0; i < b.N; i++ {
		ps, _ := process.Processes()
		n = len(ps)
		for _, p := range ps {
			p.Times()
			p.MemoryInfo()
			p.Ppid()
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(n), "procs")
}

func TestParseStat(t *testing.T) {
	s := NewScanner("/proc")
	var p Proc
	line := []byte("4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 5 0 123 45 6 7 20 0 1 0 98765 1000000 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")
	if !s.parseStat(line, &p) {
		t.Fatal("not parsed")
	}
	if p.PID != 4242 || p.Comm != "my (odd) prog" || p.PPID != 1 || p.SID != 4242 || p.UTime != 123 || p.STime != 45 || p.CUTime != 6 || p.CSTime != 7 || p.Start != 98765 || p.RSSPages != 256 || p.MajFlt != 5 {
		t.Errorf("parsed %+v", p)
	}
	for _, bad := range []string{"", "x", "1 (a", "1 (a) S", "abc (a) S 1 2 3"} {
		if s.parseStat([]byte(bad), &p) {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 5 0 123 45 6 7 20 0 1 0 98765 1000000 256 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Proc
		NewScanner("/proc").parseStat(b, &p)
	})
}

// The scanner agrees with gopsutil on a live process (ourselves).
func TestScanMatchesGopsutil(t *testing.T) {
	me := os.Getpid()
	var got *Proc
	NewScanner("/proc").Scan(func(p *Proc) {
		if p.PID == me {
			c := *p
			got = &c
		}
	})
	if got == nil {
		t.Fatal("own pid not scanned")
	}
	gp, _ := process.NewProcess(int32(me))
	ppid, _ := gp.Ppid()
	name, _ := gp.Name()
	if got.PPID != int(ppid) || got.Comm != name {
		t.Errorf("scan %+v, gopsutil ppid %d name %q", got, ppid, name)
	}
}
