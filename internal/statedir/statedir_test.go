package statedir

import (
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
