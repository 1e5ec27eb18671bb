package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/hostfs"
	"github.com/ec2diag/ec2diag/internal/logging"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// lockMemory locks the agent's pages in RAM as they are touched
// (MCL_ONFAULT: nothing is faulted in up front, so RSS does not grow).
// Without it, the VM's thrash scenario evicted the agent's program text
// like everyone else's. Failure is not fatal: RLIMIT_MEMLOCK may be too
// low (outside the unit), or the kernel may refuse.
func lockMemory(log *zap.Logger) {
	err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
	if err == nil {
		log.Info("memory locked: the agent's pages stay resident when memory runs out", zap.String(logging.KeyEvent, "memory_lock"))
		return
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
	log.Warn("memory_lock: could not lock the agent's pages; it may stall when memory runs out",
		zap.Error(err), zap.Uint64("rlimit_memlock", lim.Cur), zap.String("hint", "the unit sets LimitMEMLOCK=infinity"))
}

// trimProgramPages gives back the program's pages that only start-up
// touched: the binary's text and read-only data are mapped 64 KiB at a time
// around each fault (the kernel's fault-around), so start-up alone (flags,
// config, package initialisers, the SDK's setup) leaves megabytes resident
// and, under mlockall, locked for good. The pages are unlocked, dropped
// from this process's page tables (MADV_DONTNEED: a read-only file
// mapping loses nothing, the page cache keeps the data) and locked again
// as they are touched: what the running agent uses comes back at once,
// without I/O while the kernel caches it. MADV_PAGEOUT would evict the
// cache too, but skips every page another process maps (a second agent, a
// CLI run of the same binary). It reports how much of the binary was
// resident before and after.
func trimProgramPages(locked bool) (before, after int64, err error) {
	exe, err := os.Readlink(hostfs.Self + "/exe")
	if err != nil {
		return 0, 0, err
	}
	maps, err := programMappings(exe)
	if err != nil {
		return 0, 0, err
	}
	before = residentOf(exe)
	if locked {
		if err := unix.Munlockall(); err != nil {
			return before, before, err
		}
		defer unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
	}
	for _, m := range maps {
		// Never the writable data: it holds the program's variables,
		// which MADV_DONTNEED would reset to the file's contents.
		if m.writable {
			continue
		}
		// By address: the range is the program's own mapping, not Go memory.
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); e != 0 && err == nil {
			err = e
		}
	}
	return before, residentOf(exe), err
}

type mapping struct {
	start, end uintptr
	writable   bool
}

// programMappings lists the mappings of the file exe in /proc/self/maps.
func programMappings(exe string) ([]mapping, error) {
	b, err := os.ReadFile(hostfs.Self + "/maps")
	if err != nil {
		return nil, err
	}
	var out []mapping
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[5] != exe {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		s, e1 := strconv.ParseUint(lo, 16, 64)
		e, e2 := strconv.ParseUint(hi, 16, 64)
		if !ok || e1 != nil || e2 != nil || e <= s {
			continue
		}
		out = append(out, mapping{start: uintptr(s), end: uintptr(e), writable: strings.Contains(f[1], "w")})
	}
	return out, nil
}

// residentOf sums the Rss of exe's mappings in /proc/self/smaps, in bytes.
func residentOf(exe string) int64 {
	b, err := os.ReadFile(hostfs.Self + "/smaps")
	if err != nil {
		return -1
	}
	var sum int64
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			in = len(f) >= 6 && f[5] == exe
		case in && len(f) >= 2 && f[0] == "Rss:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			sum += kb << 10
		}
	}
	return sum
}

// trimAfter is how long after start the program's pages are trimmed.
const trimAfter = 30 * time.Second
