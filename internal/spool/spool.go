// Package spool keeps metric batches on disk until CloudWatch has taken
// them: one file per batch, written atomically (temp file, fsync, rename,
// fsync of the directory), so a batch survives restarts, kill -9 and power
// loss, and is either wholly there or not at all. The size is capped; when
// full, the oldest batches go first and are counted.
package spool

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ec2diag/ec2diag/internal/clock"

	"github.com/ec2diag/ec2diag/internal/atomicfile"

	"github.com/ec2diag/ec2diag/internal/metrics"
	"golang.org/x/sys/unix"
)

// Spool is a directory of batch files named so that lexical order is the
// order they were written in.
type Spool struct {
	dir string
	max int64
	// Clock names the batches in time order; nil is the system clock.
	Clock clock.Clock

	mu      sync.Mutex
	seq     uint64
	dropped atomic.Int64 // datums dropped because the spool was full or a file unreadable
}

// Entry is one batch on disk.
type Entry struct {
	Name string
	Size int64
}

const suffix = ".batch"

// Open creates dir if needed and removes temp files a crash left behind
// (they were never renamed into place, so they hold nothing promised).
func Open(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, ".*tmp-*")) // this version's and older ones'
	for _, t := range tmps {
		os.Remove(t)
	}
	return &Spool{dir: dir, max: maxBytes}, nil
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Put stores one batch durably and then enforces the size cap.
func (s *Spool) Put(ds []metrics.Datum) error {
	if len(ds) == 0 {
		return nil
	}
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("%020d-%08d%s", clock.Or(s.Clock).Now().UnixNano(), s.seq, suffix)
	s.mu.Unlock()
	if err := s.write(name, ds); err != nil {
		return err
	}
	s.enforce(name)
	return nil
}

// Replace rewrites a batch with what is left of it (after part was sent),
// or removes it when nothing is left. This is the "marked sent" step.
func (s *Spool) Replace(name string, left []metrics.Datum) error {
	if len(left) == 0 {
		return s.Remove(name)
	}
	return s.write(name, left)
}

// Remove deletes a batch durably.
func (s *Spool) Remove(name string) error {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return s.syncDir()
}

// List returns the batches, oldest first.
func (s *Spool) List() ([]Entry, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []Entry
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), suffix) || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, Entry{Name: de.Name(), Size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Read returns a batch. A file that does not decode (a disk error; the
// atomic rename rules out torn writes) is an error: the caller drops it
// and counts it.
func (s *Spool) Read(name string) ([]metrics.Datum, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err == nil {
			b, err = io.ReadAll(zr)
		}
		if err != nil {
			return nil, fmt.Errorf("spool: batch %s is corrupt: %w", name, err)
		}
	}
	var ds []metrics.Datum
	if err := json.Unmarshal(b, &ds); err != nil {
		return nil, fmt.Errorf("spool: batch %s is corrupt: %w", name, err)
	}
	return ds, nil
}

// Size is the bytes on disk in batches.
func (s *Spool) Size() int64 {
	es, _ := s.List()
	var n int64
	for _, e := range es {
		n += e.Size
	}
	return n
}

// Dropped returns and resets the count of datums dropped by the spool.
func (s *Spool) Dropped() int64 { return s.dropped.Swap(0) }

// Drop removes a batch that cannot be used and counts its datums.
func (s *Spool) Drop(name string, datums int) {
	s.dropped.Add(int64(datums))
	s.Remove(name)
}

// Lock takes the drain lock, so that two pipelines (an old and a new one
// around a reload) never send the same batch. It does not block.
func (s *Spool) Lock() (unlock func(), ok bool) {
	f, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, false
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, true
}

// enforce drops the oldest batches while the spool is over its cap; the
// newest batch (just written) is kept even if alone it is over.
func (s *Spool) enforce(keep string) {
	if s.max <= 0 {
		return
	}
	es, err := s.List()
	if err != nil {
		return
	}
	var total int64
	for _, e := range es {
		total += e.Size
	}
	for _, e := range es {
		if total <= s.max || e.Name == keep {
			break
		}
		n := 0
		if ds, err := s.Read(e.Name); err == nil {
			n = len(ds)
		}
		s.Drop(e.Name, n)
		total -= e.Size
	}
}

// write stores a batch as gzipped JSON: a minute of default data is
// ~10 KB of JSON and ~1 KB compressed, which is what lets the size cap
// hold the 14 days CloudWatch still accepts. (Read also takes plain JSON.)
func (s *Spool) write(name string, ds []metrics.Datum) error {
	raw, err := json.Marshal(ds)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var zb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zb, gzip.BestSpeed)
	zw.Write(raw)
	zw.Close()
	if err := atomicfile.Write(filepath.Join(s.dir, name), zb.Bytes(), atomicfile.Options{Durable: true}); err != nil {
		return fmt.Errorf("spool: write batch: %w", err)
	}
	return nil
}

func (s *Spool) syncDir() error {
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return fmt.Errorf("spool: fsync dir: %w", err)
	}
	return nil
}
