package tail

import (
	"encoding/json"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/atomicfile"
)

// fpMax is how many leading bytes identify a file's content. Inode numbers
// are reused after delete; the fingerprint tells a new file from the old.
const fpMax = 256

var crcTable = crc64.MakeTable(crc64.ECMA)

// Identity names one file's content regardless of its path.
type Identity struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	FP    uint64 `json:"fp"`     // crc64 of the first FPLen bytes
	FPLen int    `json:"fp_len"` // grows to fpMax as the file does
}

// Checkpoint is the position of the last fully handled line.
type Checkpoint struct {
	Path    string    `json:"path"` // the followed path
	File    string    `json:"file"` // where the file was when last read (path.1 while draining)
	ID      Identity  `json:"id"`
	Offset  int64     `json:"offset"`
	Updated time.Time `json:"updated"`
}

// fingerprint hashes up to n leading bytes of f.
func fingerprint(f io.ReaderAt, n int) (uint64, int, error) {
	return fingerprintInto(f, make([]byte, n))
}

// fingerprintInto is fingerprint reading into buf (len(buf) bytes), for
// callers on the read path that keep a buffer rather than allocate one.
func fingerprintInto(f io.ReaderAt, buf []byte) (uint64, int, error) {
	got, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return 0, 0, err
	}
	return crc64.Checksum(buf[:got], crcTable), got, nil
}

// matches says whether f starts with the bytes id fingerprinted.
func (id Identity) matches(f io.ReaderAt) bool {
	if id.FPLen == 0 {
		return true
	}
	fp, n, err := fingerprint(f, id.FPLen)
	return err == nil && n == id.FPLen && fp == id.FP
}

func checkpointPath(stateDir, path string) string {
	name := strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(strings.TrimPrefix(path, "/"))
	return filepath.Join(stateDir, "tail", name+".json")
}

func loadCheckpoint(stateDir, path string) (*Checkpoint, error) {
	b, err := os.ReadFile(checkpointPath(stateDir, path))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", checkpointPath(stateDir, path), err)
	}
	return &c, nil
}

// saveCheckpoint writes atomically (temp file, rename), so a crash leaves
// the old or the new checkpoint, never a torn one. A process kill cannot
// lose a renamed file; only a power loss or kernel hang can, so the fsyncs
// that guard against those run only when durable is set (they widen the
// window in which a kill makes lines be read again).
func saveCheckpoint(stateDir string, c Checkpoint, durable bool) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return atomicfile.Write(checkpointPath(stateDir, c.Path), b, atomicfile.Options{Durable: durable, MkdirAll: true})
}
