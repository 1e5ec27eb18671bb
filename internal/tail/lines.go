package tail

import (
	"bytes"
	"context"
	"io"

	"go.uber.org/zap"
)

// drain reads what fl has beyond its buffer and hands complete lines on.
// It reports whether any bytes were read.
func (t *Follower) drain(ctx context.Context, fl *file, h Handler) (bool, error) {
	if cap(fl.buf) == 0 {
		fl.buf = make([]byte, 0, readBuf)
	}
	got := false
	for {
		if len(fl.buf) == cap(fl.buf) {
			// No newline in a full buffer: cap the line.
			if err := t.emitLong(ctx, fl, h); err != nil {
				return got, err
			}
		}
		space := fl.buf[len(fl.buf):cap(fl.buf)]
		n, err := fl.r.ReadAt(space, fl.off+int64(len(fl.buf)))
		if n > 0 && fl.osf != nil && !fl.sameStart() {
			// Truncated (copytruncate) and written again while we were
			// still catching up: what was just read is the new content at
			// an old offset. Drop it; atEOF sees the changed start and
			// reads the rest of the old content from logrotate's copy.
			return got, nil
		}
		if n > 0 {
			got = true
			fl.grew = t.clk.Now()
			fl.buf = fl.buf[:len(fl.buf)+n]
			t.Stats.Bytes.Add(uint64(n))
			if err := t.deliver(ctx, fl, h); err != nil {
				return got, err
			}
		}
		if err == io.EOF || (n == 0 && err == nil) {
			return got, nil
		}
		if err != nil {
			return got, &readError{off: fl.off + int64(len(fl.buf)), err: err}
		}
	}
}

// readError is a failed read of the file (as opposed to the handler's
// error, which stops the follower).
type readError struct {
	off int64
	err error
}

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// readBuf is the per-file read buffer: large reads make catching up on a
// big file cheap; it is allocated only while a file is open.
const readBuf = 1 << 20

// batchMax bounds one handler call.
const batchMax = 4096

func (t *Follower) deliver(ctx context.Context, fl *file, h Handler) error {
	lines := t.lines[:0] // reused: the handler may not keep the slice
	start := 0
	for {
		i := bytes.IndexByte(fl.buf[start:], '\n')
		if i < 0 {
			break
		}
		raw, at := fl.buf[start:start+i], start
		start += i + 1
		if fl.skipping {
			fl.skipping = false
			continue
		}
		nuls := 0
		for nuls < len(raw) && raw[nuls] == 0 {
			nuls++
		}
		if nuls > 0 {
			t.Stats.NULBytes.Add(uint64(nuls))
			if nuls == len(raw) {
				continue
			}
		}
		data := raw[nuls:]
		truncated := false
		if len(data) > t.o.MaxLineBytes {
			data, truncated = data[:t.o.MaxLineBytes], true
			t.Stats.Truncated.Add(1)
		}
		lines = append(lines, Line{Data: data, File: fl.name, Offset: fl.off + int64(at+nuls), Truncated: truncated, NULs: nuls})
		if len(lines) == batchMax {
			if err := t.hand(ctx, fl, lines, fl.off+int64(start), h); err != nil {
				return err
			}
			t.kick()
			lines = lines[:0]
		}
	}
	// A run of NULs with no newline yet is crash padding: drop it now rather
	// than hold it as a line.
	for start < len(fl.buf) && fl.buf[start] == 0 && !fl.skipping {
		start++
		t.Stats.NULBytes.Add(1)
	}
	if len(lines) > 0 || start > 0 {
		if err := t.hand(ctx, fl, lines, fl.off+int64(start), h); err != nil {
			return err
		}
		t.kick() // keep the checkpoint close behind during a burst
	}
	t.lines = lines[:0]
	fl.off += int64(start)
	fl.buf = fl.buf[:copy(fl.buf, fl.buf[start:])]
	return nil
}

// emitLong hands on the start of a line that filled the buffer and skips
// the rest of it.
func (t *Follower) emitLong(ctx context.Context, fl *file, h Handler) error {
	n := len(fl.buf)
	var err error
	if !fl.skipping {
		// Once per line, not once per buffer (a 50 MB line said it 47 times).
		t.Stats.Truncated.Add(1)
		t.log.Warn("line longer than the buffer; keeping its start", zap.Int("max_line_bytes", t.o.MaxLineBytes), zap.Int64("offset", fl.off))
		keep := fl.buf[:min(t.o.MaxLineBytes, n)]
		err = t.hand(ctx, fl, []Line{{Data: keep, File: fl.name, Offset: fl.off, Truncated: true}}, fl.off+int64(n), h)
	}
	fl.skipping = true
	fl.off += int64(n)
	fl.buf = fl.buf[:0]
	return err
}

// finish hands on a last line without newline, flagged Partial.
func (t *Follower) finish(ctx context.Context, fl *file, h Handler) error {
	data := bytes.TrimLeft(fl.buf, "\x00")
	var err error
	if len(data) > 0 && !fl.skipping {
		err = t.hand(ctx, fl, []Line{{Data: data, File: fl.name, Offset: fl.off + int64(len(fl.buf)-len(data)), Partial: true}}, fl.off+int64(len(fl.buf)), h)
	}
	fl.off += int64(len(fl.buf))
	fl.buf = fl.buf[:0]
	return err
}
