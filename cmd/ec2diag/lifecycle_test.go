package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit"
	"golang.org/x/sys/unix"
)

var binDir string

// noConsole keeps tests from writing spike notices into this machine's
// kernel log (the default console is /dev/kmsg).
const noConsole = "spikes:\n  console: \"\"\n"

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "ec2diag-bin")
	if err != nil {
		panic(err)
	}
	binDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// bin builds the agent once per test binary.
func bin(t *testing.T) string {
	t.Helper()
	p := filepath.Join(binDir, "ec2diag")
	if _, err := os.Stat(p); err != nil {
		testkit.Build(t, binDir)
	}
	return p
}

type child struct {
	cmd    *exec.Cmd
	stderr *testkit.Lines
	stdout *testkit.Lines
	done   chan error
}

// startAgent runs `ec2diag run` with env added to a clean environment that
// can never reach the real IMDS.
func startAgent(t *testing.T, binary string, env []string, args ...string) *child {
	t.Helper()
	return startAgentWith(t, binary, env, nil, args...)
}

// startAgentWith lets the caller adjust the command (stderr) before start.
func startAgentWith(t *testing.T, binary string, env []string, adjust func(*exec.Cmd), args ...string) *child {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"run"}, args...)...)
	// Every AWS API a test does not point at a stand-in goes to a closed
	// loopback port (the SDK's AWS_ENDPOINT_URL), never to AWS: the daemon's
	// instance checks called the real EC2 endpoint.
	cmd.Env = append([]string{"AWS_EC2_METADATA_DISABLED=true", "AWS_ENDPOINT_URL=http://127.0.0.1:1", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	if v := os.Getenv("GORACE"); v != "" { // see testkit.Build
		cmd.Env = append(cmd.Env, "GORACE="+v)
	}
	c := &child{cmd: cmd, stderr: &testkit.Lines{}, stdout: &testkit.Lines{}, done: make(chan error, 1)}
	cmd.Stderr, cmd.Stdout = c.stderr, c.stdout
	if adjust != nil {
		adjust(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("agent stderr:\n%s", c.stderr.String())
		}
	})
	return c
}

func (c *child) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("agent did not exit within %s", timeout)
		return nil
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLifecycleNotifyReloadStop(t *testing.T) {
	b := bin(t)
	ns := testkit.ListenNotify(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, "host:\n  interval: 100ms\n"+noConsole)
	c := startAgent(t, b, []string{"NOTIFY_SOCKET=" + ns.Path, "WATCHDOG_USEC=400000"},
		"--config", cfg, "--state-dir", filepath.Join(dir, "state"), "--log-format", "json")

	ready, _ := ns.Expect(t, "READY=1", 10*time.Second)
	if ready.PID != c.cmd.Process.Pid {
		t.Errorf("READY=1 from pid %d, want the agent's pid %d", ready.PID, c.cmd.Process.Pid)
	}
	st, _ := ns.Expect(t, "STATUS=", 5*time.Second)
	if !strings.Contains(st.State, "local mode") || !strings.Contains(st.State, "sampling every 100ms") {
		t.Errorf("STATUS %q: want the mode and what it runs", st.State)
	}
	var pings []time.Time
	for len(pings) < 3 {
		n, _ := ns.Expect(t, "WATCHDOG=1", 5*time.Second)
		pings = append(pings, n.At)
	}
	if gap := pings[2].Sub(pings[1]); gap < 100*time.Millisecond || gap > 1500*time.Millisecond {
		t.Errorf("watchdog pings %s apart; want about half of WATCHDOG_USEC (200ms)", gap)
	}

	// A bad edit: rejected with file:line:key, and the agent keeps running.
	writeFile(t, cfg, "host:\n  interval: 100ms\nlog:\n  levle: debug\n"+noConsole)
	c.cmd.Process.Signal(syscall.SIGHUP)
	rl, _ := ns.Expect(t, "RELOADING=1", 5*time.Second)
	if !strings.Contains(rl.State, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING datagram %q lacks MONOTONIC_USEC", rl.State)
	}
	ns.Expect(t, "READY=1", 5*time.Second)
	want := fmt.Sprintf("%s:4:3: log.levle: unknown key", cfg)
	if !c.stderr.WaitFor(want, 5*time.Second) || !c.stderr.WaitFor("config reload rejected", time.Second) {
		t.Errorf("log lacks the rejected reload naming %q", want)
	}
	if strings.Contains(c.stderr.String(), "agent.(*Agent)") {
		t.Errorf("a rejected reload logged a stack trace: %s", c.stderr.String())
	}
	ns.Expect(t, "WATCHDOG=1", 5*time.Second) // still alive on the old config

	// A good edit takes effect.
	writeFile(t, cfg, "host:\n  interval: 100ms\nlog:\n  level: debug\n"+noConsole)
	c.cmd.Process.Signal(syscall.SIGHUP)
	ns.Expect(t, "RELOADING=1", 5*time.Second)
	ns.Expect(t, "READY=1", 5*time.Second)
	if !c.stderr.WaitFor(`"config reloaded"`, 5*time.Second) {
		t.Error("no 'config reloaded' in the log")
	}

	c.cmd.Process.Signal(syscall.SIGTERM)
	ns.Expect(t, "STOPPING=1", 5*time.Second)
	if err := c.wait(t, 15*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}

// A sink that blocks (here a FIFO nobody drains) stalls the pipeline; the
// agent must then stop pinging the watchdog so systemd restarts it, resume
// when the sink unblocks, and still exit within shutdown_timeout.
func TestWatchdogStopsWhenPipelineStalls(t *testing.T) {
	b := bin(t)
	ns := testkit.ListenNotify(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "sink.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	rfd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, fmt.Sprintf("host:\n  interval: 100ms\nsinks:\n  file:\n    path: %s\nshutdown_timeout: 1s\n", fifo)+noConsole)
	c := startAgent(t, b, []string{"NOTIFY_SOCKET=" + ns.Path, "WATCHDOG_USEC=400000"},
		"--config", cfg, "--state-dir", filepath.Join(dir, "state"))
	ns.Expect(t, "READY=1", 10*time.Second)
	ns.Expect(t, "WATCHDOG=1", 5*time.Second)
	ns.Expect(t, "WATCHDOG=1", 5*time.Second)

	// Fill the pipe from our side so the agent's next write blocks.
	wfd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(wfd)
	junk := make([]byte, 4096)
	for {
		if _, err := unix.Write(wfd, junk); err != nil {
			break
		}
	}
	ns.Drain(1 * time.Second) // let in-flight pings settle
	if got := ns.Drain(2 * time.Second); countState(got, "WATCHDOG=1") > 0 {
		t.Fatalf("agent kept pinging the watchdog with its pipeline stalled: %v", got)
	}

	// Unblock: drain the pipe, and the pings come back.
	go func() {
		buf := make([]byte, 65536)
		for i := 0; i < 400; i++ {
			unix.Read(rfd, buf)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	ns.Expect(t, "WATCHDOG=1", 5*time.Second)

	// Stall again and stop: shutdown is bounded even with a stuck sink.
	for {
		if _, err := unix.Write(wfd, junk); err != nil {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.wait(t, 10*time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown with a stuck sink took %s; want about shutdown_timeout (1s)", took)
	}
}

func countState(ns []testkit.Notify, s string) int {
	n := 0
	for _, x := range ns {
		if strings.Contains(x.State, s) {
			n++
		}
	}
	return n
}

func TestNoNotifySocketRunsQuietly(t *testing.T) {
	b := bin(t)
	dir := t.TempDir()
	c := startAgent(t, b, nil, "--state-dir", filepath.Join(dir, "state"), "--config", filepath.Join(dir, "none.yaml"))
	// An explicit config that does not exist is a usage error, exit 2.
	err := c.wait(t, 10*time.Second)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("missing explicit config: exit %v, want status 2", err)
	}
	quiet := filepath.Join(dir, "quiet.yaml")
	writeFile(t, quiet, noConsole)
	c2 := startAgent(t, b, nil, "--state-dir", filepath.Join(dir, "state"), "--log-format", "console", "--config", quiet)
	if !c2.stderr.WaitFor("running in local mode", 10*time.Second) {
		t.Fatal("no local-mode notice")
	}
	if n := c2.stderr.CountLines("running in local mode"); n != 1 {
		t.Errorf("local-mode notice %d times, want once", n)
	}
	c2.cmd.Process.Signal(syscall.SIGINT)
	if err := c2.wait(t, 15*time.Second); err != nil {
		t.Errorf("exit after SIGINT: %v", err)
	}
}

func TestConfigCheck(t *testing.T) {
	b := bin(t)
	out, err := exec.Command(b, "config", "check", filepath.Join(testkit.ModuleRoot(t), "packaging", "config.yaml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": ok") {
		t.Errorf("config check of the shipped config: %v %s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "host:\n  interval: soon\nsinks:\n  summary_interval: 1ms\n")
	out, err = exec.Command(b, "config", "check", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("config check of a bad file: %v, want exit status 2", err)
	}
	want := bad + `:2:13: host.interval: want a duration like "30s", got "soon"`
	if !strings.Contains(string(out), want) {
		t.Errorf("config check output\n%s\nwant %q", out, want)
	}
}

// A second agent on a state directory in use (an `ec2diag run` by hand
// beside the service) is refused at once, naming the holder; once the
// first dies, even by SIGKILL, the directory is free again.
func TestSecondAgentOnAStateDirectoryIsRefused(t *testing.T) {
	b := bin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, "host:\n  interval: 100ms\n"+noConsole)
	state := filepath.Join(dir, "state")
	ns := testkit.ListenNotify(t)
	first := startAgent(t, b, []string{"NOTIFY_SOCKET=" + ns.Path}, "--config", cfg, "--state-dir", state)
	ns.Expect(t, "READY=1", 10*time.Second)

	second := startAgent(t, b, nil, "--config", cfg, "--state-dir", state)
	err := second.wait(t, 10*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Fatalf("second agent: %v; want exit status %d", err, exitFailure)
	}
	if want := fmt.Sprintf("in use by another ec2diag agent (process %d", first.cmd.Process.Pid); !strings.Contains(second.stderr.String(), want) {
		t.Errorf("second agent's stderr lacks %q:\n%s", want, second.stderr.String())
	}
	select {
	case err := <-first.done:
		t.Fatalf("the first agent exited: %v", err)
	default:
	}

	first.cmd.Process.Signal(syscall.SIGKILL)
	first.wait(t, 10*time.Second)
	ns2 := testkit.ListenNotify(t)
	startAgent(t, b, []string{"NOTIFY_SOCKET=" + ns2.Path}, "--config", cfg, "--state-dir", state)
	ns2.Expect(t, "READY=1", 10*time.Second)
}
