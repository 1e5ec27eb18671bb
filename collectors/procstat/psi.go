package procstat

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// PSI holds avg10 percentages from /proc/pressure/*. Missing files (a
// kernel without PSI) leave zeros and Available false.
type PSI struct {
	Available                 bool
	CPUSome, MemSome, MemFull float64
	IOSome, IOFull            float64
}

// ReadPSI reads the three pressure files under procRoot.
func ReadPSI(procRoot string, buf []byte) PSI {
	var p PSI
	read := func(name string) (some, full float64, ok bool) {
		f, err := os.Open(filepath.Join(procRoot, "pressure", name))
		if err != nil {
			return 0, 0, false
		}
		n, _ := f.Read(buf)
		f.Close()
		for _, line := range bytes.Split(buf[:n], []byte("\n")) {
			i := bytes.Index(line, []byte("avg10="))
			if i < 0 {
				continue
			}
			v := line[i+6:]
			if sp := bytes.IndexByte(v, ' '); sp >= 0 {
				v = v[:sp]
			}
			x, _ := strconv.ParseFloat(string(v), 64)
			if bytes.HasPrefix(line, []byte("some")) {
				some = x
			} else if bytes.HasPrefix(line, []byte("full")) {
				full = x
			}
		}
		return some, full, true
	}
	var ok1, ok2, ok3 bool
	p.CPUSome, _, ok1 = read("cpu")
	p.MemSome, p.MemFull, ok2 = read("memory")
	p.IOSome, p.IOFull, ok3 = read("io")
	p.Available = ok1 || ok2 || ok3
	return p
}

// WatchPSI registers a PSI trigger (e.g. "some 150000 2000000": 150 ms of
// stall in a 2 s window; unprivileged windows must be multiples of 2 s) on
// procRoot/pressure/resource and sends on wake each time it fires, so the
// sampler reacts at once instead of at its next tick. It returns false if
// triggers are not supported here.
func WatchPSI(ctx context.Context, procRoot, resource, trigger string, wake chan<- struct{}) bool {
	fd, err := unix.Open(filepath.Join(procRoot, "pressure", resource), unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	// Only procfs files take triggers: a plain file (a fixture tree)
	// accepts the write and then polls ready at once, for ever.
	var fs unix.Statfs_t
	if unix.Fstatfs(fd, &fs) != nil || fs.Type != unix.PROC_SUPER_MAGIC {
		unix.Close(fd)
		return false
	}
	if _, err := unix.Write(fd, append([]byte(trigger), 0)); err != nil {
		unix.Close(fd)
		return false
	}
	// The poll waits for ever (a timeout to look at ctx woke the agent
	// twice a second per trigger while idle); ctx's end is a write on a
	// pipe polled beside the trigger.
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		return false
	}
	// The write and the closing are ordered: a descriptor number written
	// to after its close may by then be another file's.
	var mu sync.Mutex
	closed := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			unix.Write(pipe[1], []byte{0})
		}
	})
	go func() {
		defer func() {
			stop()
			mu.Lock()
			closed = true
			unix.Close(fd)
			unix.Close(pipe[0])
			unix.Close(pipe[1])
			mu.Unlock()
		}()
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}, {Fd: int32(pipe[0]), Events: unix.POLLIN}}
		for ctx.Err() == nil {
			n, err := unix.Poll(fds, -1)
			if err != nil && err != unix.EINTR {
				return
			}
			if n > 0 && (fds[0].Revents&unix.POLLERR != 0 || fds[1].Revents != 0) {
				return
			}
			if n > 0 && fds[0].Revents&unix.POLLPRI != 0 {
				select {
				case wake <- struct{}{}:
				default:
				}
				time.Sleep(100 * time.Millisecond) // at most one event per window anyway
			}
		}
	}()
	return true
}
