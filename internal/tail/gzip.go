package tail

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
)

// openGzip opens a compressed rotation for one sequential read. Its
// identity is the fingerprint of its decompressed start, which is what the
// plain file had before logrotate compressed it.
func openGzip(name string) (*file, error) {
	fpr, err := newGzipReaderAt(name)
	if err != nil {
		return nil, err
	}
	fp, n, err := fingerprint(fpr, fpMax)
	fpr.Close()
	if err != nil {
		return nil, err
	}
	r, err := newGzipReaderAt(name)
	if err != nil {
		return nil, err
	}
	return &file{r: r, c: r, name: name, id: Identity{FP: fp, FPLen: n}, sealed: true}, nil
}

// gzipReaderAt serves ReadAt over a gzip stream for callers that read
// forward (the tailer does): a later offset skips ahead, an earlier one
// reopens the stream.
type gzipReaderAt struct {
	name string
	f    *os.File
	z    *gzip.Reader
	pos  int64
}

func newGzipReaderAt(name string) (*gzipReaderAt, error) {
	g := &gzipReaderAt{name: name}
	return g, g.reopen()
}

func (g *gzipReaderAt) reopen() error {
	g.Close()
	f, err := OpenRegular(g.name)
	if err != nil {
		return err
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", g.name, err)
	}
	g.f, g.z, g.pos = f, z, 0
	return nil
}

func (g *gzipReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < g.pos {
		if err := g.reopen(); err != nil {
			return 0, err
		}
	}
	if off > g.pos {
		n, err := io.CopyN(io.Discard, g.z, off-g.pos)
		g.pos += n
		if err != nil {
			return 0, err
		}
	}
	n, err := io.ReadFull(g.z, p)
	g.pos += int64(n)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

func (g *gzipReaderAt) Close() error {
	if g.f == nil {
		return nil
	}
	g.z.Close()
	err := g.f.Close()
	g.f, g.z = nil, nil
	return err
}
