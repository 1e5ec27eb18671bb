package procstat

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// openat opens a NUL-terminated path relative to dfd without the string
// conversion unix.Openat would allocate for.
func openat(dfd int, path []byte) (int, error) {
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(dfd), uintptr(unsafe.Pointer(&path[0])), uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}
