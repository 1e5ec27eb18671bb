package statedir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	base := t.TempDir()
	ok := filepath.Join(base, "ok")
	if err := Check(ok); err != nil {
		t.Fatalf("a new directory: %v", err)
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if err := Check(open); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("a 0777 directory: %v", err)
	}
	link := filepath.Join(base, "link")
	os.Symlink(ok, link)
	if err := Check(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a symlink: %v", err)
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o750)
		os.Chown(other, 65534, 65534)
		if err := Check(other); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("another user's directory: %v", err)
		}
	}
}

func TestLockIsOneAgentPerDirectory(t *testing.T) {
	dir := t.TempDir()
	release, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock(2) belongs to the open file: a second open in this process
	// conflicts as a second process would.
	if _, err := Lock(dir); err == nil || !strings.Contains(err.Error(), "in use by another ec2diag agent") ||
		!strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second lock: %v; want refused, naming this process", err)
	}
	release()
	again, err := Lock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}

func TestLockRefusesAPlantedLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere")
	writeTarget := []byte("keep")
	if err := os.WriteFile(target, writeTarget, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, LockName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); err == nil {
		t.Fatal("a symlink as the lock file was followed")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the link's target was written: %q", b)
	}
}
