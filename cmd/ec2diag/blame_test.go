package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/testkit"
)

// cgroup2 is where this machine mounts the unified hierarchy: /sys/fs/cgroup
// on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one (this CI's).
func cgroup2(t *testing.T) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		testkit.Need(t, false, "no mountinfo: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if fs := strings.Fields(pre); ok && len(fs) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return fs[4]
		}
	}
	testkit.Need(t, false, "no cgroup2 hierarchy mounted")
	return ""
}

// inCgroup runs argv in a cgroup made under the unified hierarchy at rel
// (as a container runtime or logind would), as its own session leader,
// and removes it all when the test ends.
func inCgroup(t *testing.T, rel string, argv ...string) *exec.Cmd {
	root := cgroup2(t)
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		testkit.Need(t, false, "cgroup2 is not writable here (root needed): %v", err)
	}
	// Started stopped (a shell that waits for a line), moved, then let go:
	// every process it starts is born in the cgroup.
	c := exec.Command("sh", "-c", "read go; exec "+strings.Join(argv, " "))
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	in, _ := c.StdinPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		c.Wait()
		// Innermost first; a cgroup empties a moment after its last
		// process is reaped.
		for d := dir; d != root && strings.HasPrefix(d, root); d = filepath.Dir(d) {
			for i := 0; i < 50; i++ {
				if err := os.Remove(d); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(c.Process.Pid)), 0); err != nil {
		testkit.Need(t, false, "cannot move a process into a cgroup here: %v", err)
	}
	fmt.Fprintln(in, "go")
	return c
}

// topOf waits for an incident listing a process of the session led by
// sid whose command line is cmdline, and returns it with the incident.
func (e *spikeEnv) topOf(sid int, cmdline string, timeout time.Duration) (incidentView, correlate.ProcUse) {
	var got correlate.ProcUse
	v := e.waitFor("listing "+cmdline, timeout, func(v incidentView) bool {
		for _, p := range v.Top {
			if p.Cmdline == cmdline && sessionOf(p.PID) == sid {
				got = p
				return true
			}
		}
		return false
	})
	return v, got
}

func sessionOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	var state string
	var ppid, pgrp, sid int
	fmt.Sscan(rest, &state, &ppid, &pgrp, &sid)
	return sid
}

// groupNamed finds the group in v's groups.
func groupNamed(v incidentView, name string) *correlate.GroupBlame {
	for i := range v.Groups {
		if v.Groups[i].Name == name {
			return &v.Groups[i]
		}
	}
	return nil
}

// A runaway process in a docker-style cgroup (systemd's cgroup driver:
// docker-<64 hex>.scope) is blamed as the container, with its command
// line: the real agent, real processes, a real cgroup made by the test.
// Whether the container is *the* cause depends on what else loads the
// machine running the test; that it is named as its group, with its
// share, does not.
func TestSpikeBlamesTheContainer(t *testing.T) {
	testkit.RequireRoot(t)
	id := strings.Repeat("3f2a", 16)
	e := startSpikeAgent(t)
	time.Sleep(2 * spikeInterval)
	c := inCgroup(t, fmt.Sprintf("ec2diag-test-%d.slice/docker-%s.scope", os.Getpid(), id),
		"sh -c 'yes from-the-container > /dev/null & yes from-the-container > /dev/null & wait'")
	v, p := e.topOf(c.Process.Pid, "yes from-the-container", 20*time.Second)
	if p.Group != "container 3f2a3f2a3f2a" || p.GroupKind != "container" {
		t.Errorf("the container's process is in group %q (%s), cgroup %q", p.Group, p.GroupKind, p.Cgroup)
	}
	if !strings.HasSuffix(p.Cgroup, "/docker-"+id+".scope") {
		t.Errorf("cgroup %q", p.Cgroup)
	}
	g := groupNamed(v, "container 3f2a3f2a3f2a")
	if g == nil || g.Processes < 1 || g.CPUShare <= 0 || g.Verdict == "" {
		t.Fatalf("groups %+v: no container group with a share", v.Groups)
	}
	if g.CPUShare >= 0.5 && !strings.HasPrefix(v.Cause, "container 3f2a3f2a3f2a (process yes pid ") {
		t.Errorf("the container used %.0f%% of the CPU but the cause is %q", 100*g.CPUShare, v.Cause)
	}
	t.Logf("cause %q; container group %s with %.0f%% of the CPU in %d processes", v.Cause, g.Verdict, 100*g.CPUShare, g.Processes)
}

// A process started from an SSH login is blamed as the session of who
// logged in from where: the login is sshd's line in the log, tied to the
// process by the logging pid being its ancestor, as on a real host; the
// processes sit in a logind-style session scope.
func TestSpikeBlamesTheSSHSession(t *testing.T) {
	testkit.RequireRoot(t)
	e := startSpikeAgent(t)
	time.Sleep(2 * spikeInterval)
	// The session leader plays the privileged sshd that logs the login:
	// a shell whose binary is named sshd (the agent checks the logging
	// pid's name, user and cgroup).
	c := inCgroup(t, fmt.Sprintf("ec2diag-test-%d.slice/user-1000.slice/session-77.scope", os.Getpid()),
		sshdShell(t)+" -c 'yes from-the-session > /dev/null & yes from-the-session > /dev/null & wait'")
	e.logLine(fmt.Sprintf("sshd[%d]: Accepted publickey for ubuntu from 10.0.0.5 port 50514 ssh2: ED25519 SHA256:x", c.Process.Pid))
	v, p := e.topOf(c.Process.Pid, "yes from-the-session", 20*time.Second)
	const name = "session of ubuntu from 10.0.0.5"
	if p.Group != name || p.Login != "ubuntu@10.0.0.5" {
		t.Errorf("the session's process: group %q, login %q, cgroup %q", p.Group, p.Login, p.Cgroup)
	}
	g := groupNamed(v, name)
	if g == nil || g.CPUShare <= 0 {
		t.Fatalf("groups %+v: no session group with a share", v.Groups)
	}
	if g.CPUShare >= 0.5 && !strings.HasPrefix(v.Cause, name+" (process yes pid ") {
		t.Errorf("the session used %.0f%% of the CPU but the cause is %q", 100*g.CPUShare, v.Cause)
	}
	t.Logf("cause %q; session group %s with %.0f%% of the CPU", v.Cause, g.Verdict, 100*g.CPUShare)
}

// sshdShell is a copy of /bin/sh named sshd: a process running it has the
// comm of OpenSSH's privileged process.
func sshdShell(t *testing.T) string {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "sshd")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Anyone can log "sshd[PID]: Accepted publickey for root from 6.6.6.6":
// with the pid of a service's runaway, it renamed the runaway "session
// of root from 6.6.6.6". The logging pid must be sshd's, run by root, in
// sshd's service or a session: this one is not, and the service keeps the
// blame.
func TestForgedSSHLineDoesNotMoveBlame(t *testing.T) {
	testkit.RequireRoot(t)
	e := startSpikeAgent(t)
	time.Sleep(2 * spikeInterval)
	unit := fmt.Sprintf("ec2diag-forged-%d.service", os.Getpid())
	c := inCgroup(t, fmt.Sprintf("ec2diag-test-%d.slice/%s", os.Getpid(), unit),
		"sh -c 'yes from-the-service > /dev/null & yes from-the-service > /dev/null & wait'")
	e.logLine(fmt.Sprintf("sshd[%d]: Accepted publickey for root from 6.6.6.6 port 22 ssh2", c.Process.Pid))
	time.Sleep(spikeInterval) // the line is read before the spike
	v, p := e.topOf(c.Process.Pid, "yes from-the-service", 20*time.Second)
	if p.Login != "" || strings.Contains(p.Group, "6.6.6.6") || strings.Contains(v.Cause, "6.6.6.6") {
		t.Fatalf("a forged sshd line renamed the service's process: group %q, login %q, cause %q", p.Group, p.Login, v.Cause)
	}
	if p.Group != "service "+unit {
		t.Errorf("the service's process is in group %q, want service %s", p.Group, unit)
	}
}

// Anyone can log "systemd[1]: Starting rt-nightly.service...", and a
// user's manager (or a container's systemd) runs units of any name: a
// runaway in a user's rt-nightly.service is not the system timer job
// rt-nightly. The unit's processes are those of the system manager's
// unit, matched by the cgroup's whole path.
func TestForgedUnitStartDoesNotClaimAUsersUnit(t *testing.T) {
	testkit.RequireRoot(t)
	e := startSpikeAgent(t)
	time.Sleep(2 * spikeInterval)
	e.logLine("systemd[1]: Starting rt-nightly.service - nightly report...")
	c := inCgroup(t, fmt.Sprintf("ec2diag-test-%d.slice/user-1000.slice/user@1000.service/app.slice/rt-nightly.service", os.Getpid()),
		"sh -c 'yes from-the-user > /dev/null & yes from-the-user > /dev/null & wait'")
	v, p := e.topOf(c.Process.Pid, "yes from-the-user", 20*time.Second)
	if p.Job != "" || strings.HasPrefix(v.Cause, "job rt-nightly") {
		t.Fatalf("the user's unit was taken for the system's: job %q, cause %q", p.Job, v.Cause)
	}
	if p.Group != "user service rt-nightly.service" {
		t.Errorf("group %q, want the user's service", p.Group)
	}
}
