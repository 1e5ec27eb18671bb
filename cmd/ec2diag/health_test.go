package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A fixture sysfs with one EFA device whose port is down: the command must
// say so in JSON and exit 1 (scripts and SSM Run Command rely on it).
func TestHealthCommand(t *testing.T) {
	root := t.TempDir()
	mk := func(rel, content string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content+"\n"), 0o644)
	}
	ln := func(rel, target string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.Symlink(target, p)
	}
	os.MkdirAll(filepath.Join(root, "bus/pci/drivers/efa"), 0o755)
	dev := "devices/pci0000:00/0000:00:06.1"
	ln(dev+"/driver", "../../../bus/pci/drivers/efa")
	ln("class/infiniband/rdmap0s6", "../../"+dev+"/infiniband/rdmap0s6")
	ln(dev+"/infiniband/rdmap0s6/device", "../../../0000:00:06.1")
	mk(dev+"/infiniband/rdmap0s6/ports/1/state", "1: DOWN")
	mk(dev+"/infiniband/rdmap0s6/ports/1/phys_state", "5: LinkUp")
	mk(dev+"/infiniband/rdmap0s6/ports/1/hw_counters/rx_drops", "3")

	out, err := exec.Command(bin(t), "health", "--sysfs-root", root, "--format", "json", "--interval", "10ms").Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("health with a down port: %v, want exit status 1", err)
	}
	var d struct {
		Name, Kind, State string
		Reasons           []string
		Counters          map[string]uint64
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("JSON %q: %v", out, err)
	}
	if d.Name != "rdmap0s6" || d.Kind != "efa" || d.State != "down" || !strings.Contains(strings.Join(d.Reasons, ";"), `state "1: DOWN"`) || d.Counters["rx_drops"] != 3 {
		t.Errorf("device %+v", d)
	}
	out, err = exec.Command(bin(t), "health", "--sysfs-root", t.TempDir(), "--interval", "10ms").Output()
	if err != nil || !strings.Contains(string(out), "no ENA interfaces or EFA devices") {
		t.Errorf("no devices: %v %q, want exit 0 and a plain statement", err, out)
	}
}

// A FIFO in the sysfs tree (a fixture, a hostile --sysfs-root) is read
// without blocking: health used to hang on it for ever.
func TestHealthDoesNotHangOnAFIFO(t *testing.T) {
	root := t.TempDir()
	dev := filepath.Join(root, "devices/pci0000:00/0000:00:05.0")
	os.MkdirAll(filepath.Join(dev, "net/ens5/statistics"), 0o755)
	os.MkdirAll(filepath.Join(root, "bus/pci/drivers/ena"), 0o755)
	os.MkdirAll(filepath.Join(root, "class/net"), 0o755)
	os.Symlink("../../../bus/pci/drivers/ena", filepath.Join(dev, "driver"))
	os.Symlink("../../devices/pci0000:00/0000:00:05.0/net/ens5", filepath.Join(root, "class/net/ens5"))
	os.Symlink("../../../0000:00:05.0", filepath.Join(dev, "net/ens5/device"))
	for _, a := range []string{"operstate", "carrier", "mtu", "statistics/rx_errors"} {
		if err := syscall.Mkfifo(filepath.Join(dev, "net/ens5", a), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := exec.Command(bin(t), "health", "--sysfs-root", root, "--format", "json", "--interval", "10ms")
	done := make(chan error, 1)
	var out []byte
	go func() {
		var err error
		out, err = c.Output()
		done <- err
	}()
	select {
	case <-done:
		t.Logf("health on FIFOs: %s", out)
	case <-time.After(15 * time.Second):
		c.Process.Kill()
		t.Fatal("health hung on a FIFO in the sysfs tree")
	}
}
