package incident

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAppendReadTornRotate(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 600, 2, "boot-a")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Append(KindOnset, "inc-1", time.Now(), map[string]int{"i": i}, true); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// A torn last record, as a crash mid-write leaves it.
	f, _ := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`1234abcd {"kind":"onset","incid`)
	f.Close()
	recs, bad, err := ReadDir(dir)
	if err != nil || len(recs) != 3 || bad != 1 {
		t.Fatalf("read %d records, %d bad, %v; want 3 and 1 torn", len(recs), bad, err)
	}
	// Reopen: the next record must not glue onto the torn one; rotation
	// keeps the files bounded and the sequence continues.
	s, _ = Open(dir, 600, 2, "boot-b")
	for i := 0; i < 10; i++ {
		s.Append(KindSnapshot, "inc-2", time.Now(), map[string]string{"pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}, false)
	}
	s.Close()
	recs, _, _ = ReadDir(dir)
	names, _ := filepath.Glob(filepath.Join(dir, FileName+"*"))
	if len(names) > 3 {
		t.Errorf("%d files kept, want at most 3", len(names))
	}
	last := recs[len(recs)-1]
	if last.BootID != "boot-b" || last.Seq != 13 || last.Kind != KindSnapshot {
		t.Errorf("last record %+v", last)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Errorf("records out of order: %d after %d", recs[i].Seq, recs[i-1].Seq)
		}
	}
	// A flipped byte fails the checksum.
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	b[20] ^= 1
	os.WriteFile(filepath.Join(dir, FileName), b, 0o640)
	_, bad, _ = ReadDir(dir)
	if bad == 0 {
		t.Error("corrupted record not detected")
	}
}
