// Package ethtool reads a network interface's driver statistics with the
// ETHTOOL_GSSET_INFO / GSTRINGS / GSTATS ioctls. ENA's allowance counters
// (bw_in_allowance_exceeded ...) exist only there, not in sysfs, and the
// ioctls need no capability. Statistics are read in the network namespace
// of the calling thread.
package ethtool

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	siocEthtool   = 0x8946
	cmdGSSetInfo  = 0x37
	cmdGStrings   = 0x1b
	cmdGStats     = 0x1d
	ethSSStats    = 1
	ethGStringLen = 32
)

// ErrCountChanged means the driver's statistics count changed twice while
// reading (queues reconfigured): try again next interval.
var ErrCountChanged = errors.New("ethtool statistics count changed while reading")

// ifreq is struct ifreq as the kernel copies it (40 bytes on 64-bit); a
// typed pointer keeps the buffer reachable for the GC.
type ifreq struct {
	name [16]byte
	data unsafe.Pointer
	_    [16]byte
}

// Stat is one named statistic, in driver order.
type Stat struct {
	Name  string
	Value uint64
}

// Reader keeps a socket and buffers between reads.
type Reader struct {
	fd int
}

// Open makes a socket in the calling thread's network namespace.
func Open() (*Reader, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ethtool socket: %w", err)
	}
	return &Reader{fd: fd}, nil
}

// Close closes the socket.
func (r *Reader) Close() error { return unix.Close(r.fd) }

func (r *Reader) ioctl(iface string, data unsafe.Pointer) error {
	var ifr ifreq
	if len(iface) >= len(ifr.name) {
		return fmt.Errorf("interface name %q too long", iface)
	}
	copy(ifr.name[:], iface)
	ifr.data = data
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(r.fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return errno
	}
	return nil
}

// Stats returns the interface's statistics. unix.ENODEV means no such
// interface in this namespace, unix.EOPNOTSUPP a driver without stats.
func (r *Reader) Stats(iface string) ([]Stat, error) {
	for attempt := 0; attempt < 2; attempt++ {
		n, err := r.count(iface)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		names, err := r.strings(iface, n)
		if errors.Is(err, ErrCountChanged) {
			continue
		}
		if err != nil {
			return nil, err
		}
		vals, err := r.values(iface, n)
		if errors.Is(err, ErrCountChanged) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out := make([]Stat, n)
		for i := range out {
			out[i] = Stat{Name: names[i], Value: vals[i]}
		}
		return out, nil
	}
	return nil, ErrCountChanged
}

func (r *Reader) count(iface string) (int, error) {
	// struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[]; }
	var buf struct {
		cmd, reserved uint32
		mask          uint64
		data          [1]uint32
	}
	buf.cmd, buf.mask = cmdGSSetInfo, 1<<ethSSStats
	if err := r.ioctl(iface, unsafe.Pointer(&buf)); err != nil {
		return 0, err
	}
	if buf.mask&(1<<ethSSStats) == 0 {
		return 0, nil
	}
	return int(buf.data[0]), nil
}

func (r *Reader) strings(iface string, n int) ([]string, error) {
	// struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }
	// with headroom: older kernels write the current count, not ours.
	room := 2*n + 64
	buf := make([]byte, 12+room*ethGStringLen)
	ne := nativeEndian()
	ne.PutUint32(buf[0:], cmdGStrings)
	ne.PutUint32(buf[4:], ethSSStats)
	ne.PutUint32(buf[8:], uint32(n))
	if err := r.ioctl(iface, unsafe.Pointer(&buf[0])); err != nil {
		return nil, err
	}
	if int(ne.Uint32(buf[8:])) != n {
		return nil, ErrCountChanged
	}
	names := make([]string, n)
	for i := range names {
		slot := buf[12+i*ethGStringLen : 12+(i+1)*ethGStringLen]
		if z := bytes.IndexByte(slot, 0); z >= 0 {
			slot = slot[:z]
		}
		names[i] = string(slot)
	}
	return names, nil
}

func (r *Reader) values(iface string, n int) ([]uint64, error) {
	// struct ethtool_stats { u32 cmd; u32 n_stats; u64 data[]; }
	room := 2*n + 64
	buf := make([]uint64, 1+room)
	hdr := (*[2]uint32)(unsafe.Pointer(&buf[0]))
	hdr[0], hdr[1] = cmdGStats, uint32(n)
	if err := r.ioctl(iface, unsafe.Pointer(&buf[0])); err != nil {
		return nil, err
	}
	if int(hdr[1]) != n {
		return nil, ErrCountChanged
	}
	return append([]uint64(nil), buf[1:1+n]...), nil
}
