// Package jsonl is a local sink writing one JSON object per record, to a
// file (appended) or to stdout for `ec2diag run --print`.
package jsonl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/ec2diag/ec2diag/collectors"
)

// Sink writes records as JSON lines. Writes are synchronous: a destination
// that blocks (a full pipe, a hung disk) stalls the pipeline on purpose,
// which the agent's watchdog then reports to systemd.
type Sink struct {
	name string
	w    *bufio.Writer
	c    io.Closer
	enc  *json.Encoder
}

// Open appends to path, creating it 0640.
func Open(path string) (*Sink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open file sink: %w", err)
	}
	return New("file:"+path, f, f), nil
}

// New writes to w; c (may be nil) is closed by Close.
func New(name string, w io.Writer, c io.Closer) *Sink {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &Sink{name: name, w: bw, c: c, enc: json.NewEncoder(bw)}
}

func (s *Sink) Name() string { return s.name }

func (s *Sink) Write(_ context.Context, batch []collectors.Record) error {
	for i := range batch {
		if err := s.enc.Encode(&batch[i]); err != nil {
			return err
		}
	}
	return s.w.Flush()
}

func (s *Sink) Close(context.Context) error {
	err := s.w.Flush()
	if s.c != nil {
		if cerr := s.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
