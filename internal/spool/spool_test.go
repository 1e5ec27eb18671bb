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

// A spool file is read back after a crash, a disk error or an older
// version: whatever its bytes, Read returns datums or an error, never
// panics, and what it accepts survives another round through the spool.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`[{"name":"X","unit":"Count","dims":[{"name":"InstanceId","value":"i-1"}],"time":"2026-11-27T00:00:00Z","value":1}]`))
	f.Add([]byte(`[{"name":"Y","unit":"Percent","dims":[],"time":"2026-11-27T00:01:00Z","stats":{"count":3,"sum":6,"min":1,"max":3}}]`))
	f.Add([]byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"value":1e400}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		s, err := Open(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		const name = "00000000000000000001-00000001.batch"
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
		ds, err := s.Read(name)
		if err != nil || len(ds) == 0 {
			return
		}
		if err := s.Put(ds); err != nil {
			t.Fatalf("a batch read back could not be spooled again: %v", err)
		}
		es, _ := s.List()
		again, err := s.Read(es[len(es)-1].Name)
		if err != nil || len(again) != len(ds) {
			t.Fatalf("round trip: %d datums, then %d, %v", len(ds), len(again), err)
		}
		for i := range ds {
			if ds[i].Key() != again[i].Key() {
				t.Fatalf("datum %d changed: %q -> %q", i, ds[i].Key(), again[i].Key())
			}
		}
	})
}
