package testkit

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of a program the test needs. Outside CI a
// missing tool skips the test; in CI (CI=true, where .ci/run installs it)
// it fails, so a broken install step cannot hide behind skips.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(dir + "/" + name); err == nil {
			return dir + "/" + name
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed; .ci/run should install it", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}

// RequireRoot skips (fails in CI) when not root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root, which CI has")
	}
	t.Skip("needs root")
}

// Need skips the test (fails it in CI) when what it needs is missing
// here: a writable cgroup2 hierarchy, a subreaper, Chromium. In CI
// (CI=true, which .ci/run sets) the machine is set up for every test, so
// a missing piece is a broken setup, not a reason to pass quietly.
func Need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("needed here, and CI should provide it: "+format, args...)
	}
	t.Skipf(format, args...)
}
