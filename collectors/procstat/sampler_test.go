package procstat

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit"

	"github.com/ec2diag/ec2diag/internal/hostfs"
	"golang.org/x/sys/unix"
)

// use returns pid's CPU seconds in ps (0 when absent).
func use(ps []ProcUse, pid int) float64 {
	for _, p := range ps {
		if p.PID == pid {
			return p.CPUSec
		}
	}
	return 0
}

// orphanScenario makes this test process a subreaper, starts yes under a
// shell, lets the sampler watch it burn CPU for a second, then orphans
// and kills it as `how` says, reaps it here, and returns what the next
// tick charges to this process (the reaper) and in total, and what yes
// was seen to use.
func orphanScenario(t *testing.T, how string) (reaper, total, yes float64) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		testkit.Need(t, false, "cannot become a subreaper: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	sh := exec.Command("sh", "-c", "yes > /dev/null & echo $!; "+map[string]string{"parent exits first": "exit 0", "killed together": "wait"}[how])
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := sh.StdoutPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	yesPID, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("yes pid %q: %v", line, err)
	}
	defer syscall.Kill(yesPID, syscall.SIGKILL)
	if how == "parent exits first" {
		sh.Wait() // yes is now this process's child
	}
	s := NewSampler(hostfs.Default(), nil)
	s.Tick(time.Now(), nil)
	// Until yes has been seen using a second's CPU, not for a second: on
	// a busy machine it gets less than a core.
	for i := 0; i < 50 && yes < 1; i++ {
		time.Sleep(200 * time.Millisecond)
		ps, _ := s.Tick(time.Now(), nil)
		yes += use(ps, yesPID)
	}
	if how == "killed together" {
		syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		sh.Wait()
	} else {
		syscall.Kill(yesPID, syscall.SIGKILL)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(yesPID, &ws, 0, nil); err != nil {
		t.Fatalf("reaping yes (pid %d) here: %v", yesPID, err)
	}
	time.Sleep(100 * time.Millisecond)
	ps, total := s.Tick(time.Now(), nil)
	return use(ps, os.Getpid()), total, yes
}

// A reaper is not charged with the CPU of children it adopted and reaped:
// their use was counted while they ran. Both ways a process gets
// orphaned: its parent exits first (the sampler saw the new parent), or
// parent and child die together (as when a job's process group is killed).
func TestReaperIsNotChargedForOrphansItReaped(t *testing.T) {
	for _, how := range []string{"parent exits first", "killed together"} {
		t.Run(how, func(t *testing.T) {
			reaper, total, yes := orphanScenario(t, how)
			if yes < 0.5 {
				t.Fatalf("yes was seen using %.2f s in 10 s; the scenario did not run", yes)
			}
			if reaper > 0.3 || total > 0.5 {
				t.Errorf("after reaping yes (seen using %.2f s), the reaper was charged %.2f s and the tick %.2f s in total", yes, reaper, total)
			}
		})
	}
}

// A parent's cutime growth from children too short-lived to be seen is
// still counted: that is how a job of many small processes shows up.
func TestUnseenShortChildrenCountForTheirParent(t *testing.T) {
	sh := exec.Command("sh", "-c", "read x; for i in 1 2 3 4 5 6 7 8; do timeout 0.15 yes > /dev/null; done")
	in, _ := sh.StdinPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sh.Process.Kill(); sh.Wait() }()
	s := NewSampler(hostfs.Default(), nil)
	s.Tick(time.Now(), nil)
	var before, after Proc
	s.scanner.ReadOne(sh.Process.Pid, &before)
	in.Write([]byte("go\n"))
	var got, seen float64
	for i := 0; i < 8; i++ {
		time.Sleep(250 * time.Millisecond)
		ps, _ := s.Tick(time.Now(), nil)
		got += use(ps, sh.Process.Pid)
		for _, p := range ps {
			if p.PPID == sh.Process.Pid {
				seen += p.CPUSec
			}
		}
		s.scanner.ReadOne(sh.Process.Pid, &after)
	}
	// Each yes lives 0.15 s, mostly between scans; some are seen, and
	// those are counted as themselves. What the kernel says the shell's
	// children used (its cutime growth) must be on the shell or on the
	// children seen: none of it lost. On a busy machine the children get
	// less than a core; the share is what holds.
	children := float64(after.CUTime+after.CSTime-before.CUTime-before.CSTime) / clkTck
	if children < 0.1 {
		t.Fatalf("the children used %.2f s by the kernel's account: the scenario did not run", children)
	}
	if got+seen < 0.7*children {
		t.Errorf("the shell was charged %.2f s and its children seen %.2f s of the %.2f s the kernel says they used", got, seen, children)
	}
}

// A parent that waits for a child the sampler watched is not charged again
// for it in the scan where the child disappears.
func TestParentNotChargedTwiceForAWatchedChild(t *testing.T) {
	sh := exec.Command("sh", "-c", "read x; timeout 1 yes > /dev/null; read y")
	in, _ := sh.StdinPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sh.Process.Kill(); sh.Wait() }()
	s := NewSampler(hostfs.Default(), nil)
	s.Tick(time.Now(), nil)
	in.Write([]byte("go\n"))
	var shell, total float64
	for i := 0; i < 8; i++ {
		time.Sleep(200 * time.Millisecond)
		ps, tot := s.Tick(time.Now(), nil)
		shell += use(ps, sh.Process.Pid)
		total += tot
	}
	if shell > 0.3 {
		t.Errorf("the shell was charged %.2f s for a yes the sampler saw run (total %.2f s)", shell, total)
	}
}

// A short job does most of its work between two scans and is gone by the
// second: its CPU then shows only in its reaper's cutime (the cron child
// that forked it). It belongs to the job, not to the reaper.
func TestJobThatEndsBetweenScansKeepsItsCPU(t *testing.T) {
	// The outer shell plays cron's child: it forks the job (its own
	// session, like cron's grandchild), waits for it, and lives on.
	sh := exec.Command("sh", "-c", `setsid sh -c 'echo $$; read x; timeout 1 yes > /dev/null'; sleep 30`)
	in, _ := sh.StdinPipe()
	out, _ := sh.StdoutPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sh.Process.Kill(); sh.Wait() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	jobPID, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("job pid %q: %v", line, err)
	}
	s := NewSampler(hostfs.Default(), nil)
	s.TrustedParents = []string{"sh"} // the outer shell plays cron's child
	run := &JobRun{ID: "r1", Job: "burn", PID: jobPID, Start: time.Now()}
	s.AddJob(run)
	s.Tick(time.Now(), nil)
	time.Sleep(100 * time.Millisecond)
	ps, _ := s.Tick(time.Now(), nil) // sees the job's shell, idle
	if use(ps, jobPID) > 0.1 || !containsPID(ps, jobPID) {
		t.Fatalf("job shell %d not seen idle before the work", jobPID)
	}
	var before, after Proc
	s.scanner.ReadOne(sh.Process.Pid, &before)
	in.Write([]byte("go\n"))
	// The job burns for a second and is reaped by the outer shell; the
	// kernel's own account of what it used is the shell's cutime growth.
	// That figure, not a wall-clock second, is what it must be charged:
	// on a busy machine it gets less than a core.
	for i := 0; i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		if !s.scanner.ReadOne(jobPID, &Proc{}) {
			break
		}
	}
	ps, total := s.Tick(time.Now(), nil)
	if containsPID(ps, jobPID) {
		t.Fatal("the job is still running; the scenario needs it gone")
	}
	s.scanner.ReadOne(sh.Process.Pid, &after)
	used := float64(after.CUTime+after.CSTime-before.CUTime-before.CSTime) / clkTck
	if used < 0.05 {
		t.Fatalf("the job used %.2f s by the kernel's account: the scenario did not run", used)
	}
	if run.CPUSec < 0.8*used || use(ps, sh.Process.Pid) > 0.2*used+0.05 {
		t.Errorf("job charged %.2f s, its reaper %.2f s (tick total %.2f s) of the %.2f s the kernel says the job used; want it on the job",
			run.CPUSec, use(ps, sh.Process.Pid), total, used)
	}
}

func containsPID(ps []ProcUse, pid int) bool {
	for _, p := range ps {
		if p.PID == pid {
			return true
		}
	}
	return false
}

// A process started after three years of uptime (1e10 ticks) has a start
// time three years after boot, not one wrapped around int64.
func TestStartTimeAfterYearsOfUptime(t *testing.T) {
	s := &Sampler{bootTime: time.Unix(1_600_000_000, 0)}
	got := s.StartTime(10_000_000_050)
	if want := time.Unix(1_600_000_000+100_000_000, 500_000_000); !got.Equal(want) {
		t.Errorf("start %v, want %v", got, want)
	}
}
