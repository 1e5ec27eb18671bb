package jsonl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ec2diag/ec2diag/collectors"
)

// A real full filesystem: a 256 KiB tmpfs (root only; skipped elsewhere).
func smallFS(t *testing.T) string {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): the ENOSPC test needs root", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func batch(from, n int) []collectors.Record {
	out := make([]collectors.Record, n)
	for i := range out {
		out[i] = collectors.Record{Kind: collectors.KindEvent, Source: "test", Type: fmt.Sprint("r", from+i), Dims: map[string]string{"pad": strings.Repeat("x", 200)}}
	}
	return out
}

// After ENOSPC the file is still whole lines, and once space is back the
// same sink writes again: every record is in the file exactly once. (A
// bufio.Writer kept its first error, so the sink never wrote again, and the
// short write stayed in the file with the next batch glued onto it.)
func TestFullDiskLeavesWholeLinesAndRecovers(t *testing.T) {
	dir := smallFS(t)
	s, err := Open(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	if err := s.Write(ctx, batch(0, 10)); err != nil {
		t.Fatal(err)
	}
	filler, _ := os.Create(filepath.Join(dir, "filler"))
	for {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	filler.Sync()
	// A few bytes are free at most: the next batch cannot fit.
	filler.Truncate(mustSize(t, filler) - 1000)
	if err := s.Write(ctx, batch(10, 20)); err == nil {
		t.Fatal("a 5 KB batch fitted in 1 KB")
	}
	lines := readLines(t, filepath.Join(dir, "events.jsonl"))
	if len(lines) != 10 {
		t.Fatalf("after ENOSPC the file has %d whole records, want the first 10 and no partial batch", len(lines))
	}
	filler.Close()
	os.Remove(filepath.Join(dir, "filler"))
	if err := s.Write(ctx, batch(10, 20)); err != nil {
		t.Fatalf("retry with space back: %v", err)
	}
	lines = readLines(t, filepath.Join(dir, "events.jsonl"))
	if len(lines) != 30 {
		t.Fatalf("%d records, want 30", len(lines))
	}
	for i, l := range lines {
		if l != fmt.Sprint("r", i) {
			t.Fatalf("record %d is %q", i, l)
		}
	}
}

func mustSize(t *testing.T, f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// readLines parses every line; a torn or glued one fails the test.
func readLines(t *testing.T, p string) []string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r collectors.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d is not a record (%v): %.80q", len(out)+1, err, sc.Text())
		}
		out = append(out, r.Type)
	}
	return out
}
