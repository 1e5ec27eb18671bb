package flightrec

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/collectors/procstat"
	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/hostfs/hostfstest"
)

// start is the fake clock's first reading in every test.
var start = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

// kept is what the recorder wrote through Evidence, in order.
type kept struct {
	kind evidence.Kind
	id   string
	t    time.Time
	d    evidence.Incident
	run  *evidence.JobRun
}

type memEvidence struct{ recs []kept }

func (m *memEvidence) Incident(kind evidence.Kind, id string, t time.Time, d *evidence.Incident) error {
	m.recs = append(m.recs, kept{kind: kind, id: id, t: t, d: *d})
	return nil
}

func (m *memEvidence) JobRun(t time.Time, d *evidence.JobRun) error {
	c := *d
	m.recs = append(m.recs, kept{kind: evidence.KindJobRun, t: t, run: &c})
	return nil
}

func (m *memEvidence) of(kind evidence.Kind) []kept {
	var out []kept
	for _, k := range m.recs {
		if k.kind == kind {
			out = append(out, k)
		}
	}
	return out
}

// json is the record as the store would keep it.
func (k kept) json(t *testing.T) string {
	b, err := evidence.EncodeIncident(&k.d, 0)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type sink struct{ recs []collectors.Record }

func (s *sink) Emit(_ context.Context, r collectors.Record) error {
	s.recs = append(s.recs, r)
	return nil
}
func (s *sink) Ready() {}

// rig is a recorder over a scripted host and a fake clock.
type rig struct {
	t   *testing.T
	h   *hostfstest.Host
	clk *clock.Fake
	r   *Recorder
	ev  *memEvidence
	e   *sink
}

func newRig(t *testing.T, uptime time.Duration, self int) *rig {
	h := hostfstest.New(t, start.Add(-uptime))
	clk := clock.NewFake(start)
	ev := &memEvidence{}
	r := New(Options{Root: h.Root, Clock: clk, Interval: 5 * time.Second, FastInterval: time.Second, SnapshotEvery: time.Hour,
		JobWindow: 2 * time.Minute, Thresholds: correlate.DefaultThresholds(), Evidence: ev, BootGrace: 10 * time.Minute, Self: self, NoPSITriggers: true})
	return &rig{t: t, h: h, clk: clk, r: r, ev: ev, e: &sink{}}
}

// step moves the host and the clock on by one 5 s sample at busy% CPU,
// and takes the sample.
func (g *rig) step(busy uint64) {
	g.t.Helper()
	g.stepBy(5*time.Second, busy)
}

func (g *rig) stepBy(d time.Duration, busy uint64) {
	g.t.Helper()
	g.clk.Advance(d)
	g.h.Step(busy)
	if err := g.r.Sample(context.Background(), g.e, false); err != nil {
		g.t.Fatal(err)
	}
}

// job logs a cron run of job by pid, started now.
func (g *rig) job(job string, pid int) *jobs.Run {
	run := &jobs.Run{Job: job, Source: "cron", PID: pid, Host: "h", Start: g.clk.Now()}
	g.r.JobStarted(run)
	return run
}

// addJob adds a cron job's shell: a session leader started now, a child
// of parent.
func (g *rig) addJob(pid, parent int, comm string, perStep uint64) *hostfstest.Proc {
	return g.h.Add(&hostfstest.Proc{PID: pid, PPID: parent, SID: pid, Comm: comm, Cgroup: "/system.slice/cron.service", PerStep: perStep,
		RSSPages: hostfstest.RSSMiB(1), StartTicks: g.h.StartedAt(g.clk.Now())})
}

func (g *rig) add(pid, ppid int, comm, cgroup string, perStep uint64, rssMiB int64) *hostfstest.Proc {
	return g.h.Add(&hostfstest.Proc{PID: pid, PPID: ppid, SID: pid, Comm: comm, Cgroup: cgroup, PerStep: perStep, RSSPages: hostfstest.RSSMiB(rssMiB)})
}

func (g *rig) run(job string) procstat.JobRun {
	g.t.Helper()
	for _, j := range g.r.Runs() {
		if j.Job == job {
			return j
		}
	}
	g.t.Fatalf("no run of %s among %+v", job, g.r.Runs())
	return procstat.JobRun{}
}

// A boot is 100% CPU with the agent among the busiest: no incident, and
// once the boot is over the agent is still never the cause.
func TestBootIsNoIncidentAndAgentNeverTheCause(t *testing.T) {
	g := newRig(t, time.Minute, 224)
	g.h.Procs[1].PerStep = 300
	g.add(224, 1, "ec2diag", "/system.slice/ec2diag.service", 600, 16)
	g.add(300, 1, "rsyslogd", "/system.slice/rsyslog.service", 100, 5)
	g.step(50)
	for i := 0; i < 5; i++ {
		g.step(100)
	}
	if n := len(g.ev.of(evidence.KindOnset)); n != 0 {
		t.Fatalf("%d incidents during boot", n)
	}
	// systemd says the boot is done; after the settling time CPU counts.
	g.r.BootFinished(g.clk.Now().Add(-bootSettle - time.Second))
	g.step(100)
	g.step(100)
	ons := g.ev.of(evidence.KindOnset)
	if len(ons) != 1 {
		t.Fatalf("%d incidents after boot, want 1", len(ons))
	}
	d := ons[0].json(t)
	if strings.Contains(d, `"cause":"process ec2diag`) || !strings.Contains(d, `"cause":"process systemd (pid 1: /sbin/init)"`) {
		t.Errorf("onset verdict: %s", d)
	}
	if !strings.Contains(d, `"agent":true`) {
		t.Errorf("the agent is not listed as such: %s", d)
	}
}

// A memory spike ranks by resident memory, names a service's process by its
// unit (still after the process was OOM-killed), and carries the kernel's
// counters.
func TestMemorySpikeNamesTheServiceAndKeepsIt(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(400, 1, "yes", "/user.slice/user-1000.slice/session-3.scope", 900, 1)
	g.add(500, 1, "hog\n<0>PANIC", "/system.slice/runaway.service", 400, 900)
	g.step(50)
	g.step(50)
	g.h.MemAvailPct = 5
	g.h.VMStat["oom_kill"] = 2
	g.step(100)
	ons := g.ev.of(evidence.KindOnset)
	if len(ons) != 1 {
		t.Fatalf("%d onsets, want 1", len(ons))
	}
	d := ons[0].json(t)
	if !strings.Contains(d, `"cause":"service runaway.service (process hog\n\u003c0\u003ePANIC pid 500: hog\\x0a\u003c0\u003ePANIC)"`) {
		t.Errorf("cause: %s", d)
	}
	if !strings.Contains(d, `"kernel":{"oom_kills":0,"major_faults":0,"alloc_stalls":0}`) {
		t.Errorf("no kernel counters: %s", d)
	}
	// The hog is OOM-killed; the next snapshot still names its service.
	g.h.Remove(500)
	g.h.VMStat["oom_kill"] = 3
	g.stepBy(memorySnapshotEvery, 100)
	snaps := g.ev.of(evidence.KindSnapshot)
	if len(snaps) == 0 || !strings.HasPrefix(snaps[len(snaps)-1].d.Verdict.Cause, "service runaway.service") {
		t.Fatalf("after the hog exited: snapshots %d, cause %q", len(snaps), g.r.Verdict().Cause)
	}
	if k := snaps[len(snaps)-1].d.Kernel; k == nil || k.OOMKills != 1 {
		t.Errorf("kernel counters since onset: %+v, want 1 OOM kill", k)
	}
}

// A CPU spike that turns into memory exhaustion is written again at once,
// not at the next regular snapshot: in the VM the machine hung 13 s after
// a CPU onset, and the store never said it was memory.
func TestSpikeThatTurnsToMemoryIsWrittenAtOnce(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(600, 1, "hog", "/system.slice/cron.service", 1000, 100)
	g.step(10)
	g.step(100)
	g.step(100)
	if len(g.ev.of(evidence.KindOnset)) != 1 {
		t.Fatal("no CPU onset")
	}
	g.h.MemAvailPct = 3
	g.stepBy(minSnapshotGap, 100)
	last := g.ev.recs[len(g.ev.recs)-1]
	if last.kind != evidence.KindSnapshot || !strings.Contains(last.json(t), "memory available 3.0%") {
		t.Fatalf("last record %s %s; want a snapshot saying memory", last.kind, last.json(t))
	}
	if kinds := last.d.ReasonKinds; len(kinds) != 2 || kinds[0] != correlate.ReasonCPU || kinds[1] != correlate.ReasonMemAvailable {
		t.Errorf("reason kinds %v, want cpu and memory_available", kinds)
	}
}

// An end the log gives while the run's processes still run is not taken:
// in the VM a burner's run was paired with the session of debian-sa1
// (started the same second), which closed at once.
func TestLogEndWaitsForTheProcesses(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(650, 1, "cron", "/system.slice/cron.service", 0, 1)
	g.addJob(700, 650, "sh", 0)
	g.h.Add(&hostfstest.Proc{PID: 701, PPID: 700, SID: 700, Comm: "yes", Cgroup: "/system.slice/cron.service", PerStep: 500})
	g.h.Write()
	run := g.job("cpuburn.sh", 700)
	g.step(60)
	wrongEnd := g.clk.Now()
	g.r.JobEnded(run.Key(), wrongEnd)
	g.step(60)
	if j := g.run("cpuburn.sh"); !j.Ended.IsZero() {
		t.Fatalf("run ended at the log's word while its processes ran: %v", j.Ended)
	}
	g.h.Remove(700)
	g.h.Remove(701)
	g.step(10)
	// Seen alive after the log's end: that end was another run's, so the
	// sample that found the processes gone dates it.
	if j := g.run("cpuburn.sh"); !j.Ended.After(wrongEnd) {
		t.Errorf("ended %v; want after the wrong log end %v, once the processes were gone", j.Ended, wrongEnd)
	}
	// A right log end (after the last sample that saw the run) is taken.
	g.addJob(800, 650, "sh", 5)
	run2 := g.job("quick.sh", 800)
	g.step(10)
	end := g.clk.Now().Add(time.Second)
	g.r.JobEnded(run2.Key(), end)
	g.h.Remove(800)
	g.step(10)
	if j := g.run("quick.sh"); !j.Ended.Equal(end) {
		t.Errorf("quick.sh ended %v, want the log's %v", j.Ended, end)
	}
}

// While memory is short the evidence is written every few seconds, not
// every SnapshotEvery: a thrash hangs the machine within seconds.
func TestMemorySpikeSnapshotsOften(t *testing.T) {
	g := newRig(t, time.Hour, 224) // SnapshotEvery: an hour
	g.add(600, 1, "hog", "/system.slice/x.service", 100, 900)
	g.step(10)
	g.h.MemAvailPct = 4
	g.stepBy(time.Second, 20) // onset
	n := len(g.ev.recs)
	g.stepBy(time.Second, 20)
	if len(g.ev.recs) != n {
		t.Fatalf("a snapshot a second after onset")
	}
	g.stepBy(memorySnapshotEvery, 20)
	if len(g.ev.recs) != n+1 {
		t.Errorf("no snapshot %s into a memory spike (records %d -> %d)", memorySnapshotEvery, n, len(g.ev.recs))
	}
}

// Anyone can log "CRON[pid]: (root) CMD (backup.sh)": a run the process
// table does not confirm gets none of the named pid's processes and is
// never the cause. Here the line names a busy process that started long
// before it (a victim), one that started with it but under no cron daemon
// (logger's own child), and one that does not exist.
func TestForgedCronLineIsNeverTheCause(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(300, 1, "postgres", "/system.slice/postgresql.service", 900, 50)
	g.add(650, 1, "cron", "/system.slice/cron.service", 0, 1)
	g.add(660, 1, "bash", "/user.slice/user-1000.slice/session-3.scope", 0, 1)
	g.addJob(700, 660, "sh", 0)
	g.h.Write()
	g.r.JobStarted(&jobs.Run{Job: "victim.sh", Source: "cron", PID: 300, Start: g.clk.Now()})
	g.r.JobStarted(&jobs.Run{Job: "child.sh", Source: "cron", PID: 700, Start: g.clk.Now()})
	g.r.JobStarted(&jobs.Run{Job: "none.sh", Source: "cron", PID: 4242, Start: g.clk.Now()})
	for i := 0; i < 6; i++ {
		g.step(95)
	}
	for _, j := range g.r.Runs() {
		if (j.Job == "none.sh") != (j.Unchecked != "") || (j.Job != "none.sh") != (j.Unverified != "") {
			t.Errorf("run %s: unverified %q, unchecked %q", j.Job, j.Unverified, j.Unchecked)
		}
	}
	v := g.r.Verdict()
	if v.Cause == "" || strings.Contains(v.Cause, ".sh") {
		t.Fatalf("cause %q: a forged line was blamed", v.Cause)
	}
	if !strings.Contains(v.Cause, "postgres") {
		t.Errorf("cause %q, want the busy process", v.Cause)
	}
	for _, b := range v.Jobs {
		if want := map[bool]correlate.Judgement{true: correlate.Coincident, false: correlate.Unverified}[b.Job == "none.sh"]; b.Verdict != want {
			t.Errorf("run %s: verdict %q, want %s", b.Job, b.Verdict, want)
		}
	}
	for _, p := range v.Top {
		if p.Job != "" {
			t.Errorf("process %d attributed to forged job %s", p.PID, p.Job)
		}
	}
	// The real thing (a session leader under cron, started with the line)
	// is verified.
	g.addJob(800, 650, "sh", 0)
	g.job("real.sh", 800)
	g.step(10)
	if j := g.run("real.sh"); j.Unverified != "" {
		t.Errorf("a real cron job was not verified: %s", j.Unverified)
	}
}

// A flood of start lines costs bounded memory: at most MaxJobs runs are
// tracked, and the rest are counted.
func TestJobFloodIsBounded(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	for i := 0; i < 20000; i++ {
		g.r.JobStarted(&jobs.Run{Job: "backup.sh", Source: "cron", PID: 5000 + i, Start: g.clk.Now()})
	}
	g.step(10)
	if n := len(g.r.Runs()); n > procstat.MaxJobs {
		t.Fatalf("%d runs tracked, want at most %d", n, procstat.MaxJobs)
	}
	if g.r.Stats().Dropped == 0 {
		t.Error("the flood was not counted")
	}
}

// While the host is calm and no job run is open, processes are scanned at
// most every CalmProcessInterval; a sample that is not calm, a job run and
// an early wake-up scan at once, and a spike that starts from calm still
// names its hog with the CPU it used since the last scan.
func TestCalmHostScansProcessesLessOften(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	o := g.r.o
	o.CalmProcessInterval = time.Hour
	g.r.Update(o)
	g.add(650, 1, "cron", "/system.slice/cron.service", 0, 1)
	hog := g.add(800, 1, "hog", "/system.slice/runaway.service", 0, 50)
	want := func(scans, skipped uint64, when string) {
		t.Helper()
		if s := g.r.Stats(); s.Scans != scans || s.ScansSkipped != skipped {
			t.Fatalf("%s: %d scans, %d skipped; want %d, %d", when, s.Scans, s.ScansSkipped, scans, skipped)
		}
	}
	for i := 0; i < 4; i++ {
		g.step(10)
	}
	want(1, 3, "calm")
	if err := g.r.Sample(context.Background(), g.e, true); err != nil {
		t.Fatal(err)
	}
	want(2, 3, "woken early")
	g.step(80) // above cpu_low: not calm
	want(3, 3, "busy")
	g.step(10)
	want(3, 4, "calm again")
	g.addJob(700, 650, "sh", 0)
	g.job("nightly", 700)
	for i := 0; i < 3; i++ {
		g.step(10)
	}
	want(6, 4, "job run open")
	g.h.Remove(700)
	g.step(10) // the run ends: nothing of it is left
	if j := g.run("nightly"); j.Ended.IsZero() {
		t.Fatalf("the run did not end: %+v", j)
	}
	g.step(10)
	want(7, 5, "after the run")
	// A spike from calm: the hog starts burning between two calm samples.
	hog.PerStep = 950
	g.step(100)
	g.step(100)
	want(9, 5, "spike")
	ons := g.ev.of(evidence.KindOnset)
	if len(ons) != 1 || !strings.Contains(ons[0].json(t), `"cause":"service runaway.service (process hog pid 800: hog)"`) {
		t.Fatalf("onsets %d: %+v", len(ons), ons)
	}
}

// A CPU spike made by a container's process and a login session's: the
// cause names the container with the command line (its secret redacted),
// and the groups rank container, session and service by their share.
func TestSpikeBlamesGroups(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	id := strings.Repeat("3f2a", 16)
	pg := g.add(900, 1, "postgres", "/system.slice/docker-"+id+".scope", 700, 400)
	pg.Cmdline = []string{"postgres", "-D", "/var/lib/pg", "--password=hunter2"}
	sh := g.add(950, 1, "bash", "/user.slice/user-1000.slice/session-3.scope", 200, 5)
	sh.Cmdline = []string{"bash", "burn.sh"}
	g.add(960, 1, "python3", "/system.slice/etl.service", 50, 50)
	g.step(10)
	g.step(100)
	g.step(100)
	ons := g.ev.of(evidence.KindOnset)
	if len(ons) != 1 {
		t.Fatalf("%d onsets", len(ons))
	}
	d := ons[0].json(t)
	if !strings.Contains(d, `"cause":"container 3f2a3f2a3f2a (process postgres pid 900: postgres -D /var/lib/pg --password=***)"`) {
		t.Errorf("cause: %s", d)
	}
	if strings.Contains(d, "hunter2") {
		t.Errorf("the secret is in the record: %s", d)
	}
	v := g.r.Verdict()
	if len(v.Groups) != 3 || v.Groups[0].Kind != "container" || v.Groups[0].Verdict != correlate.Caused ||
		v.Groups[1].Name != "session 3" || v.Groups[1].Verdict != correlate.Contributed || v.Groups[2].Name != "service etl.service" || v.Groups[2].Verdict != correlate.Coincident {
		t.Errorf("groups: %+v", v.Groups)
	}
	if p := v.Top[0]; p.Group != "container 3f2a3f2a3f2a" || p.CmdlineRedacted != 1 || p.Cgroup != "/system.slice/docker-"+id+".scope" || p.Started.IsZero() {
		t.Errorf("top process: %+v", p)
	}
}

// Every onset, snapshot and end record carries the samples and kernel
// events the ones before it do not: together they are the incident's
// timeline from before onset to its end, each sample once, and what
// reached the disk before a hang is the timeline up to then.
func TestRecordsCarryTheTimeline(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(500, 1, "hog", "/system.slice/runaway.service", 400, 900)
	g.step(20)
	samples := 1
	g.r.KernelEvent(jobs.KernelEvent{Time: start.Add(-time.Hour), Type: "hung_task", PID: 7, Comm: "long-ago"}) // before the window: not kept
	step := func(busy uint64) {
		g.step(busy)
		samples++
	}
	step(20)
	step(20)
	g.r.KernelEvent(jobs.KernelEvent{Time: g.clk.Now(), Type: "oom_kill", PID: 450, Comm: "victim"})
	g.h.MemAvailPct = 5
	step(100) // onset
	g.r.KernelEvent(jobs.KernelEvent{Time: g.clk.Now(), Type: "hung_task", PID: 451, Comm: "jbd2/nvme0n1p1"})
	step(100)
	g.h.MemAvailPct = 60
	for i := 0; i < 4 && g.r.ID() != ""; i++ {
		step(10)
	}
	if g.r.ID() != "" {
		t.Fatal("the spike did not end")
	}
	seen := map[time.Time]bool{}
	var kinds, events []string
	for _, rec := range g.ev.recs {
		if !rec.kind.OfIncident() {
			continue
		}
		kinds = append(kinds, fmt.Sprintf("%s:%d", rec.kind, len(rec.d.Samples)))
		for _, s := range rec.d.Samples {
			if seen[s.Time] {
				t.Errorf("sample %s in two records", s.Time)
			}
			seen[s.Time] = true
			if s.MemAvail == nil {
				t.Errorf("sample %s lost memory available", s.Time)
			}
		}
		for _, ev := range rec.d.Events {
			events = append(events, ev.Type+" "+ev.Comm)
		}
	}
	if len(seen) != samples {
		t.Errorf("records hold %d samples of %d taken (%v)", len(seen), samples, kinds)
	}
	if strings.Join(events, ",") != "oom_kill victim,hung_task jbd2/nvme0n1p1" {
		t.Errorf("events recorded: %q", events)
	}
	if len(kinds) < 3 || kinds[0] != "onset:4" || !strings.HasPrefix(kinds[len(kinds)-1], "end:") {
		t.Errorf("records: %v (the onset should hold the 4 samples up to it, the last be the end)", kinds)
	}
}

// A process started from an SSH login is blamed as that session, named by
// who logged in from where (auth.log's sshd line, tied by the logging
// sshd's pid being an ancestor); a login whose pid was reused by a later
// process names nothing.
func TestSpikeBlamesTheSSHSession(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(800, 1, "sshd", "/user.slice/user-1000.slice/session-3.scope", 0, 5)
	g.h.Add(&hostfstest.Proc{PID: 801, PPID: 800, SID: 801, Comm: "bash", Cgroup: "/user.slice/user-1000.slice/session-3.scope"})
	g.h.Add(&hostfstest.Proc{PID: 802, PPID: 801, SID: 801, Comm: "burn", Cgroup: "/user.slice/user-1000.slice/session-3.scope", PerStep: 900,
		Cmdline: []string{"./burn", "--hard"}, RSSPages: hostfstest.RSSMiB(20)})
	g.add(900, 1, "sshd", "/system.slice/ssh.service", 0, 5)
	g.h.Add(&hostfstest.Proc{PID: 901, PPID: 900, SID: 901, Comm: "python3", Cgroup: "/system.slice/ssh.service", PerStep: 50})
	g.r.SSHLogin(jobs.Login{PID: 800, User: "ubuntu", Addr: "10.0.0.5", Time: g.clk.Now()})
	// pid 900's login was logged before pid 900 started: an older sshd's.
	g.r.SSHLogin(jobs.Login{PID: 900, User: "admin", Addr: "192.0.2.9", Time: g.h.Boot.Add(-time.Minute)})
	g.step(10)
	g.step(100)
	g.step(100)
	v := g.r.Verdict()
	if v.Cause != "session of ubuntu from 10.0.0.5 (process burn pid 802: ./burn --hard)" {
		t.Errorf("cause %q", v.Cause)
	}
	if len(v.Groups) == 0 || v.Groups[0].Name != "session of ubuntu from 10.0.0.5" || v.Groups[0].Verdict != correlate.Caused {
		t.Errorf("groups %+v", v.Groups)
	}
	for _, p := range v.Top {
		if p.PID == 901 && (p.Login != "" || strings.Contains(p.Group, "admin")) {
			t.Errorf("a reused pid's login named pid 901: %+v", p)
		}
		if p.PID == 802 && p.Login != "ubuntu@10.0.0.5" {
			t.Errorf("login of 802: %q", p.Login)
		}
	}
}

// A memory spike blames what grew, not what was big all along: a
// database's steady buffers beside a leaking service. The growth is
// measured from the samples before onset.
func TestMemorySpikeBlamesWhatGrew(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(600, 1, "postgres", "/system.slice/postgresql.service", 50, 600)
	leak := g.add(700, 1, "leak", "/system.slice/etl.service", 50, 50)
	g.step(20)
	for _, rss := range []int64{50, 150, 250} {
		leak.RSSPages = hostfstest.RSSMiB(rss)
		g.step(20)
	}
	leak.RSSPages = hostfstest.RSSMiB(450)
	g.h.MemAvailPct = 3
	g.step(30) // onset: memory
	ons := g.ev.of(evidence.KindOnset)
	if len(ons) != 1 {
		t.Fatalf("%d onsets", len(ons))
	}
	var d struct {
		Verdict correlate.Verdict `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(ons[0].json(t)), &d); err != nil {
		t.Fatal(err)
	}
	v := d.Verdict
	if !strings.HasPrefix(v.Cause, "service etl.service (process leak pid 700") {
		t.Errorf("cause %q", v.Cause)
	}
	if len(v.Top) < 2 || v.Top[0].PID != 700 || v.Top[0].RSSGrowth != 400<<20 || v.Top[1].PID != 600 || v.Top[1].RSSGrowth != 0 {
		t.Errorf("top: %+v", v.Top)
	}
	for _, g := range v.Groups {
		want := map[string]correlate.Judgement{"service etl.service": correlate.Caused, "service postgresql.service": correlate.Coincident}[g.Name]
		if want != "" && g.Verdict != want {
			t.Errorf("group %s %s, want %s (growth share %.2f, memory share %.2f)", g.Name, g.Verdict, want, g.GrowthShare, g.MemShare)
		}
	}
	if !strings.Contains(v.Summary, "grew 400 MiB") {
		t.Errorf("summary %q", v.Summary)
	}
}

// Cron logs CMD just before the job's process calls setsid(): a line read
// in between names a child of cron that is not yet a session leader. That
// run is checked again at the next scans, not refuted (on the emulated
// VM the thrash job lost its processes so), and one whose process never
// becomes a leader (cron's intermediate child, named by a forged line) is
// refuted in the end.
func TestCronLineReadBeforeSetsidIsCheckedAgain(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(650, 1, "cron", "/system.slice/cron.service", 0, 1)
	real := g.addJob(700, 650, "cron", 0)
	real.SID = 650 // forked, logged CMD, not yet setsid()
	middle := g.addJob(710, 650, "cron", 0)
	middle.SID = 650 // cron's intermediate child: never a leader
	g.h.Write()
	g.job("thrash.sh", 700)
	g.job("backup.sh", 710)
	g.step(10)
	real.SID, real.Comm, real.PerStep = 700, "hog", 900
	g.h.Add(&hostfstest.Proc{PID: 720, PPID: 700, SID: 700, Comm: "hog-worker", Cgroup: "/system.slice/cron.service", PerStep: 900})
	for i := 0; i < procstat.EarlyScans+2; i++ {
		g.step(95)
	}
	if j := g.run("thrash.sh"); j.Unverified != "" || j.Unchecked != "" || !j.Ended.IsZero() || j.CPUSec == 0 {
		t.Errorf("the job read before its setsid() was not confirmed: unverified %q, unchecked %q, ended %v, CPU %v", j.Unverified, j.Unchecked, j.Ended, j.CPUSec)
	}
	if j := g.run("backup.sh"); !strings.Contains(j.Unverified, "did not become a session leader") {
		t.Errorf("cron's intermediate child named by a line: unverified %q, want refuted", j.Unverified)
	}
	if !strings.Contains(g.r.Verdict().Cause, "thrash.sh") {
		t.Errorf("cause %q, want the job", g.r.Verdict().Cause)
	}
}

// Update takes new thresholds from the next sample on and keeps the
// incident in progress: a reload used to lose it (reported after the next
// boot as a hang).
func TestUpdateKeepsTheIncident(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(600, 1, "hog", "/system.slice/x.service", 1000, 10)
	g.step(10)
	g.step(100)
	g.step(100)
	id := g.r.ID()
	if id == "" {
		t.Fatal("no incident")
	}
	o := g.r.o
	o.Thresholds.CPUHigh, o.Thresholds.CPULow = 99, 98
	g.r.Update(o)
	g.step(100)
	if g.r.ID() != id || g.r.det.T.CPUHigh != 99 {
		t.Fatalf("after Update: incident %q (was %q), threshold %v", g.r.ID(), id, g.r.det.T.CPUHigh)
	}
	for i := 0; i < 3; i++ {
		g.step(90) // under the new low mark: it ends
	}
	if ends := g.ev.of(evidence.KindEnd); len(ends) != 1 || ends[0].id != id {
		t.Fatalf("end records %+v; want the incident's", ends)
	}
}

// Kernel events from a syslog file are checked against the kernel's own
// counters: an OOM kill counts only while /proc/vmstat has room for it, a
// hung task only if its task is blocked; anything else says it is the log
// line's word only. One the journal says the kernel logged is taken.
func TestKernelLinesAreCheckedAgainstTheKernel(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(600, 1, "hog", "/system.slice/x.service", 100, 900)
	blocked := g.add(700, 1, "jbd2/nvme0n1p1", "/system.slice/x.service", 0, 1)
	blocked.State = 'D'
	g.h.VMStat["oom_kill"] = 1
	g.step(10)
	now := g.clk.Now()
	g.r.KernelEvent(jobs.KernelEvent{Time: now, Type: jobs.TypeOOMKill, PID: 4242, Comm: "java"})           // the kernel's one kill
	g.r.KernelEvent(jobs.KernelEvent{Time: now, Type: jobs.TypeOOMKill, PID: 4242, Comm: "java"})           // its second line
	g.r.KernelEvent(jobs.KernelEvent{Time: now, Type: jobs.TypeOOMKill, PID: 4343, Comm: "forged"})         // a second kill vmstat never saw
	g.r.KernelEvent(jobs.KernelEvent{Time: now, Type: jobs.TypeHungTask, PID: 700, Comm: "jbd2/nvme0n1p1"}) // blocked: confirmed
	g.r.KernelEvent(jobs.KernelEvent{Time: now, Type: jobs.TypeHungTask, PID: 600, Comm: "hog"})            // running: not
	g.r.KernelEvent(jobs.KernelEvent{Time: now, Type: jobs.TypeSoftLockup, PID: 0, Comm: "x"})
	g.r.KernelEvent(jobs.KernelEvent{Time: now, Type: jobs.TypeSoftLockup, PID: 0, Comm: "y", FromKernel: true})
	g.h.MemAvailPct = 3
	g.step(10) // onset: the events are the incident's
	ons := g.ev.of(evidence.KindOnset)
	if len(ons) != 1 {
		t.Fatalf("%d onsets", len(ons))
	}
	var got []string
	for _, e := range ons[0].d.Events {
		got = append(got, fmt.Sprintf("%s %d %v", e.Type, e.PID, e.Unverified == ""))
	}
	want := "oom_kill 4242 true,oom_kill 4242 true,oom_kill 4343 false,hung_task 700 true,hung_task 600 false,soft_lockup 0 false,soft_lockup 0 true"
	if strings.Join(got, ",") != want {
		t.Errorf("events (type pid confirmed) %q,\nwant %q", got, want)
	}
	for _, e := range ons[0].d.Events {
		if e.PID == 4343 && !strings.Contains(e.Unverified, "oom_kill") {
			t.Errorf("the unconfirmed kill does not say why: %q", e.Unverified)
		}
	}
}

// An SSH login line counts only when the logging pid is sshd's: run by
// root, in sshd's service or a session; a line naming any other process
// renames nothing.
func TestSSHLoginNeedsARealSSHD(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	hog := g.add(500, 1, "hog", "/system.slice/runaway.service", 900, 20)
	hog.Cmdline = []string{"hog"}
	g.add(800, 1, "sshd", "/user.slice/user-1000.slice/session-3.scope", 0, 5).UID = 1000 // not root
	g.h.Add(&hostfstest.Proc{PID: 801, PPID: 800, SID: 801, Comm: "burn", Cgroup: "/user.slice/user-1000.slice/session-3.scope", PerStep: 50})
	g.h.Write()
	g.r.SSHLogin(jobs.Login{PID: 500, User: "root", Addr: "6.6.6.6", Time: g.clk.Now()})
	g.r.SSHLogin(jobs.Login{PID: 800, User: "root", Addr: "6.6.6.7", Time: g.clk.Now()})
	g.step(10)
	g.step(100)
	g.step(100)
	v := g.r.Verdict()
	if v.Cause != "service runaway.service (process hog pid 500: hog)" {
		t.Errorf("cause %q", v.Cause)
	}
	for _, p := range v.Top {
		if p.Login != "" {
			t.Errorf("process %d named by a login that was not sshd's: %+v", p.PID, p)
		}
	}
	if g.r.Stats().LoginsRefused != 2 {
		t.Errorf("%d login lines refused, want 2", g.r.Stats().LoginsRefused)
	}
}

// A disk that stops completing is a spike of its own, though the CPU is
// idle and memory free (what an EBS volume out of burst credits, or
// stalled, looks like from inside): the verdict names the disk with its
// volume id, and blames the job whose process waits on it, by its time
// in D state, with where it waits.
func TestStalledDiskIsASpikeBlamedOnTheWaiter(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	o := g.r.o
	o.Thresholds.IOStallFor = 10 * time.Second
	g.r.Update(o)
	g.h.Disks["nvme1n1"] = &hostfstest.Disk{Serial: "vol0abcdef0123456789", Rate: 50}
	g.add(650, 1, "cron", "/system.slice/cron.service", 0, 1)
	g.add(300, 1, "postgres", "/system.slice/postgresql.service", 30, 200)
	g.step(5)
	g.addJob(700, 650, "sh", 0)
	dd := g.h.Add(&hostfstest.Proc{PID: 701, PPID: 700, SID: 700, Comm: "dd", Cgroup: "/system.slice/cron.service", PerStep: 2,
		Cmdline: []string{"dd", "if=/dev/zero", "of=/data/x", "oflag=direct"}, StartTicks: g.h.StartedAt(g.clk.Now())})
	g.job("backup.sh", 700)
	// The filesystem's journal thread waits on the disk longest, on dd's
	// behalf: a kernel thread is listed, never the cause.
	g.add(2, 0, "kthreadd", "/", 0, 0)
	jbd2 := g.add(150, 2, "jbd2/nvme1n1-8", "/", 0, 0)
	jbd2.State = 'D'
	g.step(5)
	// The volume stalls: requests stay in flight, none completes; dd waits.
	dk := g.h.Disks["nvme1n1"]
	dk.Busy, dk.InFlight, dk.Rate = true, 2, 0
	dd.State, dd.PerStep = 'D', 0
	g.h.PSI.IOSome, g.h.PSI.IOFull = 95, 40
	for i := 0; i < 4; i++ {
		g.step(5)
	}
	ons := g.ev.of(evidence.KindOnset)
	if len(ons) != 1 {
		t.Fatalf("%d onsets for a stalled disk; want 1", len(ons))
	}
	d := ons[0].d
	if !correlate.Has(correlate.ReasonKindsOf(d.ReasonKinds), correlate.ReasonIOStall) {
		t.Errorf("reasons %v: no disk stall", d.Reasons)
	}
	v := g.r.Verdict()
	if v.Cause != "job backup.sh" || v.Disk == nil || v.Disk.Volume != "vol-0abcdef0123456789" || v.Disk.InFlight != 2 {
		t.Errorf("cause %q, disk %+v", v.Cause, v.Disk)
	}
	if len(v.Top) < 2 || v.Top[0].PID != 150 || !v.Top[0].Kernel || v.Top[0].IOShare != 0 || v.Top[1].PID != 701 || v.Top[1].DStateSec < 5 || v.Top[1].IOShare != 1 {
		t.Errorf("top processes %+v; want jbd2 (kernel, no share) then dd, all of the waiting", v.Top)
	}
	if !strings.Contains(v.Summary, "disk nvme1n1 (vol-0abcdef0123456789)") || !strings.Contains(v.Summary, "waited") {
		t.Errorf("summary %q", v.Summary)
	}
	if s := ons[0].d.Samples; len(s) == 0 || s[len(s)-1].IOStalled < 10 || s[len(s)-1].PSIIOSome != 95 {
		t.Errorf("the timeline lacks the stall: %+v", s[len(s)-1])
	}
}

// CPU withheld by the hypervisor is a spike though the guest's own busy
// share is low: the cause is the hypervisor, and on a burstable instance
// the summary asks whether its CPU credits ran out.
func TestWithheldCPUIsTheHypervisors(t *testing.T) {
	for _, c := range []struct {
		typ, want string
	}{{"t3.micro", "t3.micro is burstable: CPU credits exhausted?"}, {"m5.large", "m5.large is not burstable"}} {
		g := newRig(t, time.Hour, 224)
		o := g.r.o
		o.Thresholds.CPUStealHigh, o.InstanceType = 30, c.typ
		g.r.Update(o)
		g.r.o.InstanceType = c.typ // set at New in the daemon
		g.add(300, 1, "nginx", "/system.slice/nginx.service", 100, 50)
		g.step(10)
		g.h.StealPct = 70
		for i := 0; i < 3; i++ {
			g.step(20)
		}
		v := g.r.Verdict()
		if v.Cause != "CPU withheld by the hypervisor (steal 70%)" || v.Steal == nil || !strings.Contains(v.Summary, c.want) {
			t.Errorf("%s: cause %q, summary %q", c.typ, v.Cause, v.Summary)
		}
	}
}

// The Stalled figure, which the liveness alarm watches, is 0 while calm
// and on a busy CPU alone, and 1 once a disk stall has lasted
// StalledAfter.
func TestStalledFigure(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	o := g.r.o
	o.Thresholds.IOStallFor, o.StalledAfter = 10*time.Second, 30*time.Second
	g.r.Update(o)
	g.h.Disks["vda"] = &hostfstest.Disk{Rate: 10}
	g.add(300, 1, "yes", "/system.slice/x.service", 1000, 1)
	last := func() float64 {
		for i := len(g.e.recs) - 1; i >= 0; i-- {
			if r := g.e.recs[i]; r.Type == collectors.TypeHost {
				return r.Metrics["stalled"]
			}
		}
		t.Fatal("no host sample")
		return -1
	}
	for i := 0; i < 10; i++ {
		g.step(100) // a busy CPU for 50 s: a spike, not a stall
	}
	if last() != 0 {
		t.Fatal("a busy CPU made the host stalled")
	}
	g.h.Disks["vda"].Busy, g.h.Disks["vda"].InFlight, g.h.Disks["vda"].Rate = true, 1, 0
	var got []float64
	for i := 0; i < 10; i++ {
		g.step(10)
		got = append(got, last())
	}
	if got[0] != 0 || got[len(got)-1] != 1 {
		t.Errorf("Stalled over a disk stall: %v; want 0 first, 1 after 30 s", got)
	}
}

// An agent started after the boot finished (installed on a running
// machine) never reads systemd's "Startup finished": the run-level record
// in utmp ends the boot rule all the same.
func TestBootEndsAtTheRunLevelInUtmp(t *testing.T) {
	g := newRig(t, 2*time.Minute, 224)
	g.add(400, 1, "yes", "/user.slice/user-0.slice/session-1.scope", 900, 1)
	g.step(100)
	g.step(100)
	g.step(100)
	if n := len(g.ev.of(evidence.KindOnset)); n != 0 {
		t.Fatalf("%d incidents while booting with no word of the boot's end", n)
	}
	// systemd-update-utmp wrote the run level a minute after boot.
	rec := make([]byte, 384)
	binary.LittleEndian.PutUint16(rec[0:], 1)
	binary.LittleEndian.PutUint32(rec[340:], uint32(g.h.Boot.Add(time.Minute).Unix()))
	g.h.WriteFile("run/utmp", string(rec))
	g.step(100)
	g.step(100)
	g.step(100)
	if n := len(g.ev.of(evidence.KindOnset)); n != 1 {
		t.Fatalf("%d incidents once utmp says the boot is over, want 1", n)
	}
}

// systemd logs the agent's own start like any unit's: that run holds the
// agent's processes and is never a candidate, even when the agent's
// memory is a large part of a small machine's busiest processes.
func TestTheAgentsOwnUnitIsNoCandidate(t *testing.T) {
	g := newRig(t, time.Hour, 224)
	g.add(224, 1, "ec2diag", "/system.slice/ec2diag.service", 10, 40)
	g.r.JobStarted(&jobs.Run{Job: "ec2diag", Source: "systemd", Unit: "ec2diag.service", Host: "h", Start: g.clk.Now()})
	g.step(5)
	g.add(650, 1, "cron", "/system.slice/cron.service", 0, 1)
	g.addJob(700, 650, "burn.sh", 900)
	g.job("burn.sh", 700)
	for i := 0; i < 4; i++ {
		g.step(100)
	}
	v := g.r.Verdict()
	if v.Cause != "job burn.sh" {
		t.Errorf("cause %q", v.Cause)
	}
	for _, j := range v.Jobs {
		if j.Job == "ec2diag" {
			t.Errorf("the agent's own unit is a candidate: %+v", j)
		}
	}
}
