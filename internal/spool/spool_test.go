package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/metrics"
)

func TestBatchesRoundTripCompressedAndOldPlainOnesStillRead(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	v := 42.0
	var ds []metrics.Datum
	for i := 0; i < 100; i++ {
		ds = append(ds, metrics.Datum{Name: "CPUBusy", Unit: "Percent", Time: time.Unix(int64(i*60), 0).UTC(), Value: &v,
			Dims: []metrics.Dim{{Name: "InstanceId", Value: "i-0123456789abcdef0"}}})
	}
	if err := s.Put(ds); err != nil {
		t.Fatal(err)
	}
	es, _ := s.List()
	if len(es) != 1 || es[0].Size > 2000 {
		t.Fatalf("batches %+v: want one, compressed well under the ~10 KB of JSON", es)
	}
	got, err := s.Read(es[0].Name)
	if err != nil || len(got) != 100 || *got[99].Value != 42 || !got[99].Time.Equal(ds[99].Time) {
		t.Fatalf("read back %d datums, %v", len(got), err)
	}
	// A batch written by a version that stored plain JSON.
	os.WriteFile(filepath.Join(dir, "00000000000000000001-00000001.batch"), []byte(`[{"name":"X","unit":"Count","dims":[],"time":"2026-11-27T00:00:00Z","value":1}]`), 0o640)
	old, err := s.Read("00000000000000000001-00000001.batch")
	if err != nil || len(old) != 1 || old[0].Name != "X" {
		t.Errorf("plain JSON batch: %v %v", old, err)
	}
	// Temp files a crash left behind are removed at open.
	os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("x"), 0o640)
	if _, err := Open(dir, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-123")); !os.IsNotExist(err) {
		t.Error("temp file left after Open")
	}
}
