package tail

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// file is a file being read: a plain file (which may still grow) or a
// compressed rotation (sealed: read once, start to end).
type file struct {
	r        io.ReaderAt
	c        io.Closer
	osf      *os.File // nil for compressed files
	name     string
	id       Identity
	off      int64 // file offset of buf[0]
	buf      []byte
	skipping bool // inside an over-long line
	grew     time.Time
	sealed   bool
	fpBuf    [fpMax]byte // for sameStart, so the read path does not allocate
}

// sameStart says whether the file still starts with the bytes its identity
// fingerprinted (id.matches without an allocation per read).
func (fl *file) sameStart() bool {
	if fl.id.FPLen == 0 {
		return true
	}
	fp, n, err := fingerprintInto(fl.r, fl.fpBuf[:fl.id.FPLen])
	return err == nil && n == fl.id.FPLen && fp == fl.id.FP
}

func (fl *file) close() {
	if fl != nil && fl.c != nil {
		fl.c.Close()
	}
}

func statID(fi os.FileInfo) (uint64, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// OpenRegular opens name for reading only if it is a regular file, and
// never blocks: a log path that is a FIFO blocked open() forever (SIGTERM
// ignored), and one that links to /dev/zero was read forever.
func OpenRegular(name string) (*os.File, error) {
	f, _, err := openRegular(name)
	return f, err
}

// openRegular is OpenRegular that also returns the file's stat, which the
// follower needs for the file's identity.
func openRegular(name string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file (%s): not followed", name, fi.Mode().Type())
	}
	return f, fi, nil
}

// open opens a file for the follower, dated as having grown now (a
// rotated file gets its grace period from when it was found).
func (t *Follower) open(name string) (*file, error) {
	f, err := openFile(name)
	if err == nil {
		f.grew = t.clk.Now()
	}
	return f, err
}

// openFile opens a file to read; a variable so that a test can make reads
// fail, which a regular file on a healthy disk never does.
var openFile = openFileReal

func openFileReal(name string) (*file, error) {
	if isCompressed(name) {
		return openGzip(name)
	}
	f, fi, err := openRegular(name)
	if err != nil {
		return nil, err
	}
	dev, ino := statID(fi)
	fp, n, err := fingerprint(f, fpMax)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &file{r: f, c: f, osf: f, name: name, id: Identity{Dev: dev, Ino: ino, FP: fp, FPLen: n}}, nil
}

func isCompressed(name string) bool { return strings.HasSuffix(name, ".gz") }

// size is the current size of a plain file; -1 for compressed ones.
func (fl *file) size() int64 {
	if fl.osf == nil {
		return -1
	}
	fi, err := fl.osf.Stat()
	if err != nil {
		return -1
	}
	return fi.Size()
}
