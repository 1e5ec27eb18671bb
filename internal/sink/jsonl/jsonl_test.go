package jsonl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/testkit"
)

func batch(from, n int) []collectors.Record {
	out := make([]collectors.Record, n)
	for i := range out {
		out[i] = collectors.Record{Kind: collectors.KindEvent, Source: "test", Type: collectors.Type(fmt.Sprint("r", from+i)), Dims: map[string]string{"pad": strings.Repeat("x", 200)}}
	}
	return out
}

// After ENOSPC the file is still whole lines, and once space is back the
// same sink writes again: every record is in the file exactly once. (A
// bufio.Writer kept its first error, so the sink never wrote again, and the
// short write stayed in the file with the next batch glued onto it.)
func TestFullDiskLeavesWholeLinesAndRecovers(t *testing.T) {
	dir := testkit.SmallFS(t, "256k")
	s, err := Open(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	if err := s.Write(ctx, batch(0, 10)); err != nil {
		t.Fatal(err)
	}
	free := testkit.FillFS(t, dir, 1000) // the next batch cannot fit
	if err := s.Write(ctx, batch(10, 20)); err == nil {
		t.Fatal("a 5 KB batch fitted in 1 KB")
	}
	lines := readLines(t, filepath.Join(dir, "events.jsonl"))
	if len(lines) != 10 {
		t.Fatalf("after ENOSPC the file has %d whole records, want the first 10 and no partial batch", len(lines))
	}
	free()
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
		out = append(out, string(r.Type))
	}
	return out
}
