package utmp

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func record(typ int16, sec int32, line string) []byte {
	b := make([]byte, recordSize)
	binary.LittleEndian.PutUint16(b[offType:], uint16(typ))
	copy(b[8:40], line)
	binary.LittleEndian.PutUint32(b[offSec:], uint32(sec))
	return b
}

// A boot record, the run level, a login: the run level's time is read.
func TestRunLevelTime(t *testing.T) {
	p := filepath.Join(t.TempDir(), "utmp")
	var b []byte
	b = append(b, record(2, 1796495700, "~")...)     // BOOT_TIME
	b = append(b, record(1, 1796495760, "~")...)     // RUN_LVL
	b = append(b, record(7, 1796495800, "pts/0")...) // USER_PROCESS
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := RunLevelTime(p)
	if err != nil || !got.Equal(time.Unix(1796495760, 0)) {
		t.Fatalf("RunLevelTime = %v, %v", got, err)
	}
	if err := os.WriteFile(p, b[:recordSize], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := RunLevelTime(p); err != ErrNoRunLevel {
		t.Errorf("boot record only: %v, want ErrNoRunLevel", err)
	}
	if err := os.WriteFile(p, b[:recordSize+100], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := RunLevelTime(p); err == nil {
		t.Errorf("a cut record read as fine")
	}
}
