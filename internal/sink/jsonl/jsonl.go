// Package jsonl is a local sink writing one JSON object per record, to a
// file (appended) or to stdout for `ec2diag run --print`.
package jsonl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/ec2diag/ec2diag/collectors"
)

// Sink writes records as JSON lines. Writes are synchronous: a destination
// that blocks (a full pipe, a hung disk) stalls the pipeline on purpose,
// which the agent's watchdog then reports to systemd.
//
// A batch is written with one write call; when that fails (ENOSPC) the
// file is cut back to where the batch began, so the file stays whole lines
// and the agent's retry of the batch neither duplicates nor glues records.
// (A bufio.Writer used to keep its first error for ever: after one full
// disk the sink never wrote again.)
type Sink struct {
	name string
	w    io.Writer
	f    *os.File // set for files, which can be cut back
	c    io.Closer
	buf  bytes.Buffer
	enc  *json.Encoder
}

// Open appends to path, creating it 0640 (never through a symlink).
func Open(path string) (*Sink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open file sink: %w", err)
	}
	s := New("file:"+path, f, f)
	s.f = f
	return s, nil
}

// New writes to w; c (may be nil) is closed by Close.
func New(name string, w io.Writer, c io.Closer) *Sink {
	s := &Sink{name: name, w: w, c: c}
	s.enc = json.NewEncoder(&s.buf)
	return s
}

func (s *Sink) Name() string { return s.name }

func (s *Sink) Write(_ context.Context, batch []collectors.Record) error {
	s.buf.Reset()
	for i := range batch {
		if err := s.enc.Encode(&batch[i]); err != nil {
			return err
		}
	}
	var start int64 = -1
	if s.f != nil {
		if fi, err := s.f.Stat(); err == nil {
			start = fi.Size()
		}
	}
	n, err := s.w.Write(s.buf.Bytes())
	if err != nil && n > 0 && start >= 0 {
		if terr := s.f.Truncate(start); terr != nil {
			return fmt.Errorf("%w (and cutting back the partial batch failed: %v)", err, terr)
		}
	}
	if s.buf.Cap() > 1<<20 {
		s.buf = bytes.Buffer{} // do not keep a burst's buffer
		s.enc = json.NewEncoder(&s.buf)
	}
	return err
}

func (s *Sink) Close(context.Context) error {
	if s.c != nil {
		return s.c.Close()
	}
	return nil
}
