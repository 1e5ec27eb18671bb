// Package atomicfile replaces a file whole or not at all: the bytes go to
// a temporary file in the same directory, which is renamed over the
// target. A process killed at any point leaves the old file or the new
// one, never a torn one. Durability against power loss or a kernel hang
// (the temporary file's data and the directory entry fsynced) is a
// choice, because each fsync costs milliseconds on a busy disk and widens
// the window in which a kill makes a log position fall back.
package atomicfile

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
)

// Options say how a file is written.
type Options struct {
	// Durable fsyncs the data before the rename and the directory after.
	Durable bool
	// Perm is the new file's mode (default 0o640).
	Perm os.FileMode
	// MkdirAll makes the directory first (mode 0o750).
	MkdirAll bool
}

// Write replaces path with data.
func Write(path string, data []byte, o Options) error {
	return WriteFunc(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, o)
}

// WriteFunc replaces path with what write writes; if write fails, path is
// left as it was.
func WriteFunc(path string, write func(io.Writer) error, o Options) (err error) {
	dir := filepath.Dir(path)
	if o.MkdirAll {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	perm := o.Perm
	if perm == 0 {
		perm = 0o640
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if o.Durable {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if o.Durable {
		return SyncDir(dir)
	}
	return nil
}

// SyncDir fsyncs a directory, making the names created or renamed in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
