package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes the data (not the mtime) of f: ~0.2 ms on ext4, the
// price of a record surviving a hang.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
