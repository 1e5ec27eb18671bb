package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence"

	"github.com/ec2diag/ec2diag/internal/testkit"
)

func TestAppendReadTornRotate(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 600, 2, Boot{ID: "boot-a"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Append(evidence.KindOnset, "inc-1", time.Now(), map[string]int{"i": i}, true); err != nil {
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
	s, _ = Open(dir, 600, 2, Boot{ID: "boot-b"})
	for i := 0; i < 10; i++ {
		s.Append(evidence.KindSnapshot, "inc-2", time.Now(), map[string]string{"pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}, false)
	}
	s.Close()
	recs, _, _ = ReadDir(dir)
	names, _ := filepath.Glob(filepath.Join(dir, FileName+"*"))
	if len(names) > 3 {
		t.Errorf("%d files kept, want at most 3", len(names))
	}
	last := recs[len(recs)-1]
	if last.BootID != "boot-b" || last.Seq != 13 || last.Kind != evidence.KindSnapshot {
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

// A line over the record limit is damage to skip, not the end of the
// store: everything after it was hidden ("no incidents recorded"). A FIFO
// planted as a rotated file is passed over, not waited on.
func TestReadPastDamageAndFIFO(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 64<<20, 2, Boot{ID: "boot-a"})
	if err != nil {
		t.Fatal(err)
	}
	s.Append(evidence.KindOnset, "inc-1", time.Now(), map[string]int{"i": 1}, false)
	f, _ := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	f.Write(bytes.Repeat([]byte("x"), maxRecord+100))
	f.WriteString("\n")
	f.Close()
	s.Append(evidence.KindEnd, "inc-1", time.Now(), map[string]int{"i": 2}, false)
	s.Close()
	if err := syscall.Mkfifo(filepath.Join(dir, FileName+".1"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var recs []Record
	var bad int
	go func() { recs, bad, err = ReadDir(dir); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ReadDir hangs on a FIFO")
	}
	if err != nil || len(recs) != 2 || bad != 1 || recs[1].Kind != evidence.KindEnd {
		t.Fatalf("read %d records, %d bad, %v; want both records and 1 damaged line", len(recs), bad, err)
	}
}

// A link planted at the store's path is not followed (a root agent
// appended to whatever it pointed at).
func TestStoreDoesNotFollowALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, nil, 0o644)
	os.Symlink(victim, filepath.Join(dir, FileName))
	if s, err := Open(dir, 1<<20, 2, Boot{ID: "b"}); err == nil {
		s.Append(evidence.KindOnset, "x", time.Now(), 1, false)
		s.Close()
		t.Fatal("opened the store through a symlink")
	}
	if b, _ := os.ReadFile(victim); len(b) != 0 {
		t.Errorf("wrote %d bytes through the link", len(b))
	}
}

// After ENOSPC the next good record is readable: the short write used to
// stay in the file with the next record appended onto it, both failing
// their checksum as if torn by a crash.
func TestFullDiskLosesOnlyTheRecordThatDidNotFit(t *testing.T) {
	dir := testkit.SmallFS(t, "256k")
	s, err := Open(dir, 1<<20, 2, Boot{ID: "boot-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pad := map[string]string{"pad": strings.Repeat("x", 3000)}
	if _, err := s.Append(evidence.KindOnset, "inc-1", time.Now(), pad, true); err != nil {
		t.Fatal(err)
	}
	free := testkit.FillFS(t, dir, 1000)
	if _, err := s.Append(evidence.KindSnapshot, "inc-1", time.Now(), pad, true); err == nil {
		t.Fatal("a 3 KB record fitted in 1 KB")
	}
	free()
	if _, err := s.Append(evidence.KindEnd, "inc-1", time.Now(), pad, true); err != nil {
		t.Fatal(err)
	}
	recs, bad, err := ReadDir(dir)
	if err != nil || bad != 0 || len(recs) != 2 || recs[1].Kind != evidence.KindEnd || recs[1].Seq != 2 {
		t.Fatalf("read %d records, %d damaged, %v; want onset and end, none damaged, end numbered 2", len(recs), bad, err)
	}
}

// A rotation that cannot shift the files keeps writing the live file: it
// used to ignore the errors and rename the live file over .1, losing it.
func TestFailedRotationLosesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 400, 3, Boot{ID: "boot-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pad := map[string]string{"pad": strings.Repeat("x", 200)}
	for i := 0; i < 3; i++ { // one record each in live, .1 and .2
		s.Append(evidence.KindSnapshot, "inc-1", time.Now(), pad, false)
	}
	// .3 cannot be removed nor renamed over.
	os.MkdirAll(filepath.Join(dir, FileName+".3", "x"), 0o755)
	var rotErr *RotateError
	for i := 3; i < 6; i++ {
		if _, err := s.Append(evidence.KindSnapshot, "inc-1", time.Now(), pad, false); err != nil && !errors.As(err, &rotErr) {
			t.Fatal(err)
		}
	}
	if rotErr == nil {
		t.Error("the failed rotation was not reported")
	}
	recs, bad, _ := ReadDir(dir)
	if len(recs) != 6 || bad != 0 {
		t.Fatalf("read %d records (%d damaged), want all 6", len(recs), bad)
	}
}

// Whatever a crash or a hostile hand leaves in the store, the reader
// returns without panicking, and every record it returns passed its
// checksum.
func FuzzReadDir(f *testing.F) {
	dir := f.TempDir()
	s, _ := Open(dir, 1<<20, 2, Boot{ID: "b"})
	s.Append(evidence.KindOnset, "i", time.Unix(0, 0), map[string]int{"a": 1}, false)
	s.Close()
	good, _ := os.ReadFile(filepath.Join(dir, FileName))
	f.Add(good)
	f.Add(append(good[:len(good)/2:len(good)/2], good...))
	f.Add([]byte("00000000 {}\n\x00\x00\x00\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, FileName), b, 0o640)
		recs, bad, err := ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > bytes.Count(b, []byte("\n"))+1 || bad < 0 {
			t.Fatalf("%d records from %d lines", len(recs), bytes.Count(b, []byte("\n"))+1)
		}
	})
}
