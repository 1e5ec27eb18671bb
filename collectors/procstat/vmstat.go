package procstat

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// Kernel is the kernel's side of a memory story, from /proc/vmstat:
// cumulative since boot; an incident keeps the growth since onset.
type Kernel struct {
	OOMKills    uint64 `json:"oom_kills"`
	MajorFaults uint64 `json:"major_faults"` // pgmajfault: pages read back in, program text among them
	AllocStalls uint64 `json:"alloc_stalls"` // allocstall_*: allocations that had to reclaim directly
	Available   bool   `json:"-"`
}

// Since returns the growth from base (a counter that went down is 0).
func (k Kernel) Since(base Kernel) Kernel {
	d := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return Kernel{OOMKills: d(k.OOMKills, base.OOMKills), MajorFaults: d(k.MajorFaults, base.MajorFaults),
		AllocStalls: d(k.AllocStalls, base.AllocStalls), Available: k.Available && base.Available}
}

// ReadKernel reads /proc/vmstat under procRoot into buf (grown if short);
// unknown or malformed lines are skipped.
func ReadKernel(procRoot string, buf *[]byte) Kernel {
	var k Kernel
	f, err := os.Open(filepath.Join(procRoot, "vmstat"))
	if err != nil {
		return k
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
	k.Available = n > 0
	for _, line := range bytes.Split((*buf)[:n], []byte("\n")) {
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			continue
		}
		key := line[:sp]
		v, err := strconv.ParseUint(string(line[sp+1:]), 10, 64)
		if err != nil {
			continue
		}
		switch {
		case bytes.Equal(key, []byte("oom_kill")):
			k.OOMKills = v
		case bytes.Equal(key, []byte("pgmajfault")):
			k.MajorFaults = v
		case bytes.HasPrefix(key, []byte("allocstall")):
			k.AllocStalls += v
		}
	}
	return k
}
