// Package store keeps the evidence: incident records (onset, snapshots,
// end) and job-run summaries appended to a file in the state directory,
// one JSON record per line behind its CRC-32C, fdatasync'ed when the record
// matters before a hang. A record written before a hard hang is readable
// after the reboot; a torn last record is detected and skipped. It reads
// nothing of the host: the boot it writes for is given.
package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one line of the store.
type Record = evidence.Record

// Boot identifies the boot records are written in.
type Boot struct {
	ID   string // /proc/sys/kernel/random/boot_id
	Time int64  // btime of /proc/stat, unix seconds
}

// Store appends records; safe for concurrent use.
type Store struct {
	dir      string
	maxBytes int64
	keep     int
	mu       sync.Mutex
	f        *os.File
	size     int64
	seq      uint64
	bootID   string
	bootTime int64
	torn     bool // the last write left bytes that could not be cut back
}

// FileName is the live file; rotated ones are FileName.1, .2 ...
const FileName = "incidents.jsonl"

// Open opens (creating) the store in dir. maxBytes bounds the live file;
// keep rotated files are kept.
func Open(dir string, maxBytes int64, keep int, boot Boot) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, maxBytes: maxBytes, keep: keep, bootID: boot.ID, bootTime: boot.Time}
	if err := s.open(); err != nil {
		return nil, err
	}
	// Continue the sequence after what is on disk.
	recs, _, _ := ReadDir(dir)
	for _, r := range recs {
		s.seq = max(s.seq, r.Seq)
	}
	return s, nil
}

func (s *Store) open() error {
	// O_NOFOLLOW: a root agent appended to any file through a link
	// planted at this path.
	f, err := os.OpenFile(filepath.Join(s.dir, FileName), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return fmt.Errorf("open incident store: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	// A torn last record must not glue onto the next one.
	if fi.Size() > 0 {
		b := make([]byte, 1)
		if r, err := os.Open(f.Name()); err == nil {
			r.ReadAt(b, fi.Size()-1)
			r.Close()
			if b[0] != '\n' {
				f.Write([]byte("\n"))
			}
		}
	}
	s.f, s.size = f, fi.Size()
	return nil
}

// Append writes one record; sync makes it durable before returning.
func (s *Store) Append(kind evidence.Kind, incident string, t time.Time, data any, sync bool) (Record, error) {
	raw, ok := data.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			return Record{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	r := Record{Kind: kind, Incident: incident, Time: t.UTC(), BootID: s.bootID, BootTime: s.bootTime, Seq: s.seq, Data: raw}
	body, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	line := make([]byte, 0, len(body)+10)
	line = append(line, fmt.Sprintf("%08x ", crc32.Checksum(body, castagnoli))...)
	line = append(append(line, body...), '\n')
	var rotErr error
	if s.size+int64(len(line)) > s.maxBytes && s.size > 0 {
		// A failed rotation keeps the record in the live file: a file over
		// its bound is better than evidence lost.
		rotErr = s.rotate()
	}
	if s.torn {
		// The last write's bytes could not be cut back: start on a new
		// line, so only that one record fails its checksum.
		line = append([]byte{'\n'}, line...)
	}
	n, err := s.f.Write(line)
	if err != nil {
		// ENOSPC: cut the short write back, or the next record glued onto
		// it and both failed their checksum ("torn by a crash").
		if n > 0 {
			if terr := s.f.Truncate(s.size); terr != nil {
				s.torn, s.size = true, s.size+int64(n)
			}
		}
		s.seq-- // not written: the next record takes its number
		return r, err
	}
	s.torn = false
	s.size += int64(len(line))
	if sync {
		if err := fdatasync(s.f); err != nil {
			return r, err
		}
	}
	if rotErr != nil {
		return r, &RotateError{Err: rotErr}
	}
	return r, nil
}

// SetLimits changes the live file's bound and the rotated files kept,
// from the next record on (a reload).
func (s *Store) SetLimits(maxBytes int64, keep int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxBytes, s.keep = maxBytes, keep
}

// RotateError says the store could not rotate; the record was still
// written, to the live file.
type RotateError struct{ Err error }

func (e *RotateError) Error() string {
	return "rotate incident store (the record was kept in the live file): " + e.Err.Error()
}
func (e *RotateError) Unwrap() error { return e.Err }

// rotate shifts the files and opens a new live one. An error leaves the
// current live file open for writing.
func (s *Store) rotate() error {
	base := filepath.Join(s.dir, FileName)
	notGone := func(err error) bool { return err != nil && !errors.Is(err, fs.ErrNotExist) }
	if err := os.Remove(fmt.Sprintf("%s.%d", base, s.keep)); notGone(err) {
		return err
	}
	for i := s.keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", base, i), fmt.Sprintf("%s.%d", base, i+1)); notGone(err) {
			return err
		}
	}
	if err := os.Rename(base, base+".1"); err != nil {
		return err
	}
	old := s.f
	if err := s.open(); err != nil {
		// The renamed file is still open: keep writing there, where
		// ReadDir still finds it.
		return err
	}
	old.Close()
	return nil
}

// Close closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}

// ReadDir reads every file of the store, oldest first, skipping records
// whose checksum or JSON is bad (a torn write), which it counts.
func ReadDir(dir string) ([]Record, int, error) {
	names, _ := filepath.Glob(filepath.Join(dir, FileName+".*"))
	sort.Slice(names, func(i, j int) bool { return suffixN(names[i]) > suffixN(names[j]) })
	names = append(names, filepath.Join(dir, FileName))
	var out []Record
	bad := 0
	found := false
	for _, n := range names {
		// Regular files only, never blocking: a FIFO planted at the
		// path hung `ec2diag incidents`.
		f, err := os.OpenFile(n, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
			f.Close()
			continue
		}
		found = true
		// Not bufio.Scanner: it stops at the first line over its limit,
		// and everything after a damaged line was hidden.
		rd := bufio.NewReaderSize(f, 64<<10)
		for {
			line, err := readLine(rd, maxRecord)
			if line == nil && err != nil {
				break
			}
			if len(line) == 0 {
				continue
			}
			r, ok := parseLine(line)
			if !ok {
				bad++
				continue
			}
			out = append(out, r)
		}
		f.Close()
	}
	if !found {
		return nil, 0, fmt.Errorf("no incident store in %s", dir)
	}
	return out, bad, nil
}

// maxRecord bounds one record; a longer line is damage, skipped.
const maxRecord = 16 << 20

// readLine returns the next line without its newline; a line longer than
// max is consumed and returned as a single byte that fails the checksum,
// so it counts as damaged. It returns nil with the error at the end.
func readLine(rd *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	over := false
	for {
		frag, err := rd.ReadSlice('\n')
		if !over {
			if len(line)+len(frag) > max+1 {
				over, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if over {
			return []byte{'!'}, nil
		}
		if len(line) == 0 && err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(line, []byte("\n")), nil
	}
}

func parseLine(line []byte) (Record, bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp != 8 {
		return Record{}, false
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil || uint32(want) != crc32.Checksum(line[9:], castagnoli) {
		return Record{}, false
	}
	var r Record
	if json.Unmarshal(line[9:], &r) != nil {
		return Record{}, false
	}
	return r, true
}

func suffixN(name string) int {
	n, _ := strconv.Atoi(filepath.Ext(name)[1:])
	return n
}

// Dir is the directory the store writes in.
func (s *Store) Dir() string { return s.dir }

// ParseLine parses one store line (checksum, then JSON), for readers that
// follow the store themselves (the CloudWatch Logs shipper).
func ParseLine(line []byte) (Record, bool) { return parseLine(line) }
