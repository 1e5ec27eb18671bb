package ethtool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/ec2diag/ec2diag/internal/testkit"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread moved into network namespace ns.
func inNetns(t *testing.T, ns string, fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			return
		}
		fn()
	}()
	<-done
}

// The real ioctl path against a veth pair in a namespace the test owns.
func TestStatsOnVeth(t *testing.T) {
	testkit.RequireRoot(t)
	ip := testkit.RequireTool(t, "ip")
	ns := fmt.Sprintf("ec2diag-ethtool-%d", os.Getpid())
	run := func(args ...string) {
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	run("netns", "add", ns)
	defer exec.Command(ip, "netns", "del", ns).Run()
	run("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	run("-n", ns, "link", "set", "v0", "up")
	run("-n", ns, "link", "set", "v1", "up")
	inNetns(t, ns, func() {
		r, err := Open()
		if err != nil {
			t.Error(err)
			return
		}
		defer r.Close()
		st, err := r.Stats("v0")
		if err != nil {
			t.Errorf("Stats(v0): %v", err)
			return
		}
		names := map[string]bool{}
		for _, s := range st {
			if names[s.Name] {
				t.Errorf("duplicate name %q", s.Name)
			}
			names[s.Name] = true
		}
		if !names["peer_ifindex"] || len(st) < 3 {
			t.Errorf("veth stats %v: want peer_ifindex among them", st)
		}
		if _, err := r.Stats("nosuchif0"); !errors.Is(err, unix.ENODEV) {
			t.Errorf("missing interface: %v, want ENODEV", err)
		}
		if _, err := r.Stats("lo"); err == nil {
			// lo has no driver stats: either no error and none, or EOPNOTSUPP
		} else if !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("lo: %v", err)
		}
	})
	// The interface is not in this namespace: the socket's namespace counts.
	r, _ := Open()
	defer r.Close()
	if _, err := r.Stats("v0"); !errors.Is(err, unix.ENODEV) {
		t.Errorf("v0 seen from the host namespace: %v, want ENODEV", err)
	}
}
