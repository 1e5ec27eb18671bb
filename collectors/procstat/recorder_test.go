package procstat

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/incident"
)

// fakeProc is a /proc tree the test writes: the recorder's verdicts then
// depend only on what the fixture says, not on how busy the machine
// running the test is.
type fakeProc struct {
	t     *testing.T
	root  string
	btime int64
	busy  uint64 // cumulative jiffies of /proc/stat
	idle  uint64
	procs map[int]*fakeP
	avail int // MemAvailable, % of MemTotal
}

type fakeP struct {
	comm         string
	ppid, sid    int
	ticks        uint64
	rssPages     int64
	cgroup       string
	perTick      uint64 // ticks it burns per step
	startedTicks uint64
}

func newFakeProc(t *testing.T, uptime time.Duration) *fakeProc {
	f := &fakeProc{t: t, root: t.TempDir(), btime: time.Now().Add(-uptime).Unix(), procs: map[int]*fakeP{}, avail: 60}
	os.MkdirAll(filepath.Join(f.root, "pressure"), 0o755)
	return f
}

func (f *fakeProc) add(pid, ppid, sid int, comm, cgroup string, perTick uint64, rssMiB int64) {
	f.procs[pid] = &fakeP{comm: comm, ppid: ppid, sid: sid, perTick: perTick, rssPages: rssMiB << 20 / int64(os.Getpagesize()), cgroup: cgroup, startedTicks: 100}
}

// addJob adds a cron job's shell: a session leader started now, a child
// of parent.
func (f *fakeProc) addJob(pid, parent int, comm string, perTick uint64) {
	f.add(pid, parent, pid, comm, "/system.slice/cron.service", perTick, 1)
	f.procs[pid].startedTicks = uint64(time.Now().Unix()-f.btime) * 100
}

// step advances the fixture: every process burns its ticks, the host is
// busyPct busy over 2 CPUs x 500 jiffies.
func (f *fakeProc) step(busyPct uint64) {
	f.busy += 10 * busyPct
	f.idle += 10 * (100 - busyPct)
	w := func(name, s string) {
		p := filepath.Join(f.root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	w("stat", fmt.Sprintf("cpu  %d 0 0 %d 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\nbtime %d\n", f.busy, f.idle, f.btime))
	total := 1 << 20 // kB
	w("meminfo", fmt.Sprintf("MemTotal: %d kB\nMemFree: %d kB\nMemAvailable: %d kB\nBuffers: 0 kB\nCached: 0 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n", total, total*f.avail/100, total*f.avail/100))
	w("vmstat", "pgmajfault 10\noom_kill 0\nallocstall_normal 3\n")
	for pid, p := range f.procs {
		p.ticks += p.perTick
		w(fmt.Sprintf("%d/stat", pid), fmt.Sprintf("%d (%s) R %d %d %d 0 -1 0 0 0 0 0 %d 0 0 0 20 0 1 0 %d 1000 %d 0 0\n",
			pid, p.comm, p.ppid, p.sid, p.sid, p.ticks, p.startedTicks, p.rssPages))
		w(fmt.Sprintf("%d/cgroup", pid), "0::"+p.cgroup+"\n")
	}
}

type sink struct{ recs []collectors.Record }

func (s *sink) Emit(_ context.Context, r collectors.Record) error {
	s.recs = append(s.recs, r)
	return nil
}
func (s *sink) Ready() {}

func newTestRecorder(t *testing.T, f *fakeProc, self int) (*Recorder, *incident.Store, string) {
	store, err := incident.Open(t.TempDir(), 1<<20, 2, "test-boot")
	if err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(t.TempDir(), "console")
	os.WriteFile(console, nil, 0o644)
	r := NewRecorder(Options{ProcRoot: f.root, Interval: 5 * time.Second, FastInterval: time.Second, SnapshotEvery: time.Hour,
		JobWindow: 2 * time.Minute, Thresholds: correlate.DefaultThresholds(), Store: store, Console: console,
		BootGrace: 10 * time.Minute, Self: self})
	return r, store, console
}

func onsets(t *testing.T, dir string) []incident.Record {
	recs, _, err := incident.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []incident.Record
	for _, r := range recs {
		if r.Kind == incident.KindOnset {
			out = append(out, r)
		}
	}
	return out
}

// A boot is 100% CPU with the agent among the busiest: no incident, and
// once the boot is over the agent is still never the cause.
func TestBootIsNoIncidentAndAgentNeverTheCause(t *testing.T) {
	f := newFakeProc(t, time.Minute)
	f.add(1, 0, 1, "systemd", "/init.scope", 30, 10)
	f.add(224, 1, 224, "ec2diag", "/system.slice/ec2diag.service", 60, 16)
	f.add(300, 1, 300, "rsyslogd", "/system.slice/rsyslog.service", 10, 5)
	f.step(50)
	r, store, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		f.step(100)
		if err := r.sample(ctx, e, false); err != nil {
			t.Fatal(err)
		}
	}
	dir := store.Dir()
	if n := len(onsets(t, dir)); n != 0 {
		t.Fatalf("%d incidents during boot", n)
	}
	// systemd says the boot is done; after the settling time CPU counts.
	r.BootFinished(time.Now().Add(-bootSettle - time.Second))
	for i := 0; i < 2; i++ {
		f.step(100)
		r.sample(ctx, e, false)
	}
	ons := onsets(t, dir)
	if len(ons) != 1 {
		t.Fatalf("%d incidents after boot, want 1", len(ons))
	}
	if strings.Contains(string(ons[0].Data), `"cause":"process ec2diag`) || !strings.Contains(string(ons[0].Data), `"cause":"process systemd (pid 1)"`) {
		t.Errorf("onset verdict: %s", ons[0].Data)
	}
	if !strings.Contains(string(ons[0].Data), `"agent":true`) {
		t.Errorf("the agent is not listed as such: %s", ons[0].Data)
	}
}

// A memory spike ranks by resident memory, names a service's process by its
// unit, carries the kernel's counters, and its console line is escaped,
// kept open, and repeated when the verdict changes.
func TestMemorySpikeServiceAndConsole(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(400, 1, 400, "yes", "/user.slice/user-1000.slice/session-3.scope", 90, 1)
	f.add(500, 1, 500, "hog\n<0>PANIC", "/system.slice/runaway.service", 40, 900)
	f.step(50)
	r, store, console := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	f.step(50)
	r.sample(ctx, e, false)
	f.avail = 5
	f.step(100)
	r.sample(ctx, e, false)
	dir := store.Dir()
	ons := onsets(t, dir)
	if len(ons) != 1 {
		t.Fatalf("%d onsets, want 1", len(ons))
	}
	d := string(ons[0].Data)
	if !strings.Contains(d, `"cause":"service runaway.service (process hog\n\u003c0\u003ePANIC pid 500)"`) {
		t.Errorf("cause: %s", d)
	}
	if !strings.Contains(d, `"kernel":{"oom_kills":0,"major_faults":0,"alloc_stalls":0}`) {
		t.Errorf("no kernel counters: %s", d)
	}
	// The hog is OOM-killed; the next snapshot still names its service.
	delete(f.procs, 500)
	os.RemoveAll(filepath.Join(f.root, "500"))
	f.step(100)
	r.sample(ctx, e, false)
	r.snapshot(ctx, e, time.Now(), incident.KindSnapshot)
	if !strings.HasPrefix(r.verdict.Cause, "service runaway.service") {
		t.Errorf("after the hog exited: cause %q", r.verdict.Cause)
	}
	// The verdict changes (the hog gets a job name, say): a second line.
	r.lastConsole = time.Time{}
	r.det.Reasons = append(r.det.Reasons, "memory pressure (PSI full) 40%")
	r.snapshot(ctx, e, time.Now(), incident.KindSnapshot)
	r.snapshot(ctx, e, time.Now(), incident.KindSnapshot) // nothing new: no line
	b, _ := os.ReadFile(console)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "<2>ec2diag: spike ") || !strings.Contains(lines[1], " update (") {
		t.Fatalf("console lines: %q", lines)
	}
	if !strings.Contains(lines[0], `hog\x0a<0>PANIC`) {
		t.Errorf("process name not escaped on the console: %q", lines[0])
	}
}

// A CPU spike that turns into memory exhaustion is written again at once,
// not at the next regular snapshot: in the VM the machine hung 13 s after
// a CPU onset, and the store never said it was memory.
func TestSpikeThatTurnsToMemoryIsWrittenAtOnce(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(600, 1, 600, "hog", "/system.slice/cron.service", 100, 100)
	f.step(10)
	r, store, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	r.sample(ctx, e, false)
	for i := 0; i < 2; i++ {
		f.step(100)
		r.sample(ctx, e, false)
	}
	if len(onsets(t, store.Dir())) != 1 {
		t.Fatal("no CPU onset")
	}
	r.lastSnapshot = time.Now().Add(-minSnapshotGap) // as if 2 s had passed
	f.avail = 3
	f.step(100)
	r.sample(ctx, e, false)
	recs, _, _ := incident.ReadDir(store.Dir())
	last := recs[len(recs)-1]
	if last.Kind != incident.KindSnapshot || !strings.Contains(string(last.Data), "memory available 3.0%") {
		t.Fatalf("last record %s %s; want a snapshot saying memory", last.Kind, last.Data)
	}
}

// An end the log gives while the run's processes still run is not taken:
// in the VM a burner's run was paired with the session of debian-sa1
// (started the same second), which closed at once.
func TestLogEndWaitsForTheProcesses(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(650, 1, 650, "cron", "/system.slice/cron.service", 0, 1)
	f.addJob(700, 650, "sh", 0)
	f.add(701, 700, 700, "yes", "/system.slice/cron.service", 50, 1)
	f.step(10)
	r, _, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	r.JobStarted("run-1", "cpuburn.sh", 700, "", start)
	f.step(60)
	r.sample(ctx, e, false)
	wrongEnd := time.Now()
	r.JobEnded("run-1", wrongEnd)
	f.step(60)
	r.sample(ctx, e, false)
	j := r.sampler.Jobs()[0]
	if !j.Ended.IsZero() {
		t.Fatalf("run ended at the log's word while its processes ran: %v", j.Ended)
	}
	delete(f.procs, 700)
	delete(f.procs, 701)
	os.RemoveAll(filepath.Join(f.root, "700"))
	os.RemoveAll(filepath.Join(f.root, "701"))
	f.step(10)
	r.sample(ctx, e, false)
	// Seen alive after the log's end: that end was another run's, so the
	// sample that found the processes gone dates it.
	if !j.Ended.After(wrongEnd) {
		t.Errorf("ended %v; want after the wrong log end %v, once the processes were gone", j.Ended, wrongEnd)
	}
	// A right log end (after the last sample that saw the run) is taken.
	f.addJob(800, 650, "sh", 5)
	r.JobStarted("run-2", "quick.sh", 800, "", time.Now())
	f.step(10)
	r.sample(ctx, e, false)
	end := time.Now()
	r.JobEnded("run-2", end)
	delete(f.procs, 800)
	os.RemoveAll(filepath.Join(f.root, "800"))
	f.step(10)
	r.sample(ctx, e, false)
	for _, j := range r.sampler.Jobs() {
		if j.ID == "run-2" && !j.Ended.Equal(end) {
			t.Errorf("run-2 ended %v, want the log's %v", j.Ended, end)
		}
	}
}

// While memory is short the evidence is written every few seconds, not
// every SnapshotEvery: a thrash hangs the machine within seconds.
func TestMemorySpikeSnapshotsOften(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(600, 1, 600, "hog", "/system.slice/x.service", 10, 900)
	f.step(10)
	r, store, _ := newTestRecorder(t, f, 224) // SnapshotEvery: an hour
	e := &sink{}
	ctx := context.Background()
	r.sample(ctx, e, false)
	f.avail = 4
	f.step(20)
	r.sample(ctx, e, false) // onset
	count := func() int {
		recs, _, _ := incident.ReadDir(store.Dir())
		return len(recs)
	}
	n := count()
	r.lastSnapshot = time.Now().Add(-memorySnapshotEvery)
	f.step(20)
	r.sample(ctx, e, false)
	if count() != n+1 {
		t.Errorf("no snapshot %s into a memory spike (records %d -> %d)", memorySnapshotEvery, n, count())
	}
}

// Anyone can log "CRON[pid]: (root) CMD (backup.sh)": a run the process
// table does not confirm gets none of the named pid's processes and is
// never the cause. Here the line names a busy process that started long
// before it (a victim), one that started with it but under no cron daemon
// (logger's own child), and one that does not exist.
func TestForgedCronLineIsNeverTheCause(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(300, 1, 300, "postgres", "/system.slice/postgresql.service", 90, 50)
	f.add(650, 1, 650, "cron", "/system.slice/cron.service", 0, 1)
	f.add(660, 1, 660, "bash", "/user.slice/user-1000.slice/session-3.scope", 0, 1)
	f.addJob(700, 660, "sh", 0)
	f.step(10)
	r, _, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	now := time.Now()
	r.JobStarted("forged-victim", "backup.sh", 300, "", now)
	r.JobStarted("forged-child", "backup.sh", 700, "", now)
	r.JobStarted("forged-none", "backup.sh", 4242, "", now)
	for i := 0; i < 6; i++ {
		f.step(95)
		r.sample(ctx, e, false)
	}
	for _, j := range r.sampler.Jobs() {
		if (j.ID == "forged-none") != (j.Unchecked != "") || (j.ID != "forged-none") != (j.Unverified != "") {
			t.Errorf("run %s: unverified %q, unchecked %q", j.ID, j.Unverified, j.Unchecked)
		}
	}
	if r.verdict.Cause == "" || strings.Contains(r.verdict.Cause, "backup.sh") {
		t.Fatalf("cause %q: a forged line was blamed", r.verdict.Cause)
	}
	if !strings.Contains(r.verdict.Cause, "postgres") {
		t.Errorf("cause %q, want the busy process", r.verdict.Cause)
	}
	for _, b := range r.verdict.Jobs {
		if want := map[bool]string{true: "coincident", false: "unverified"}[b.ID == "forged-none"]; b.Verdict != want {
			t.Errorf("run %s: verdict %q, want %s", b.ID, b.Verdict, want)
		}
	}
	for _, p := range r.verdict.Top {
		if p.Job != "" {
			t.Errorf("process %d attributed to forged job %s", p.PID, p.Job)
		}
	}
	// The real thing (a session leader under cron, started with the line)
	// is verified.
	f.addJob(800, 650, "sh", 0)
	f.step(10)
	r.JobStarted("real", "backup.sh", 800, "", time.Now())
	r.sample(ctx, e, false)
	for _, j := range r.sampler.Jobs() {
		if j.ID == "real" && j.Unverified != "" {
			t.Errorf("a real cron job was not verified: %s", j.Unverified)
		}
	}
}

// A flood of start lines costs bounded memory: at most MaxJobs runs are
// tracked, and the rest are counted.
func TestJobFloodIsBounded(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.step(10)
	r, _, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	for i := 0; i < 20000; i++ {
		r.JobStarted(fmt.Sprint("f", i), "backup.sh", 5000+i, "", time.Now())
	}
	r.sample(context.Background(), e, false)
	if n := len(r.sampler.Jobs()); n > MaxJobs {
		t.Fatalf("%d runs tracked, want at most %d", n, MaxJobs)
	}
	if r.pendingDropped == 0 {
		t.Error("the flood was not counted")
	}
}

// While the host is calm and no job run is open, processes are scanned at
// most every CalmProcessInterval; a sample that is not calm, a job run and
// an early wake-up scan at once, and a spike that starts from calm still
// names its hog with the CPU it used since the last scan.
func TestCalmHostScansProcessesLessOften(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(650, 1, 650, "cron", "/system.slice/cron.service", 0, 1)
	f.add(800, 1, 800, "hog", "/system.slice/runaway.service", 0, 50)
	f.step(10)
	r, store, _ := newTestRecorder(t, f, 224)
	r.o.CalmProcessInterval = time.Hour
	e := &sink{}
	ctx := context.Background()
	want := func(scans, skipped uint64, when string) {
		t.Helper()
		if r.Scans != scans || r.ScansSkipped != skipped {
			t.Fatalf("%s: %d scans, %d skipped; want %d, %d", when, r.Scans, r.ScansSkipped, scans, skipped)
		}
	}
	for i := 0; i < 4; i++ {
		f.step(10)
		r.sample(ctx, e, false)
	}
	want(1, 3, "calm")
	r.sample(ctx, e, true)
	want(2, 3, "woken early")
	f.step(80) // above cpu_low: not calm
	r.sample(ctx, e, false)
	want(3, 3, "busy")
	f.step(10)
	r.sample(ctx, e, false)
	want(3, 4, "calm again")
	f.addJob(700, 650, "sh", 0)
	r.JobStarted("run-1", "nightly", 700, "", time.Now())
	for i := 0; i < 3; i++ {
		f.step(10)
		r.sample(ctx, e, false)
	}
	want(6, 4, "job run open")
	delete(f.procs, 700)
	os.RemoveAll(filepath.Join(f.root, "700"))
	f.step(10)
	r.sample(ctx, e, false) // the run ends: nothing of it is left
	if j := r.sampler.Jobs(); len(j) == 0 || j[0].Ended.IsZero() {
		t.Fatalf("the run did not end: %+v", j)
	}
	f.step(10)
	r.sample(ctx, e, false)
	want(7, 5, "after the run")
	// A spike from calm: the hog starts burning between two calm samples.
	f.procs[800].perTick = 95
	for i := 0; i < 2; i++ {
		f.step(100)
		r.sample(ctx, e, false)
	}
	want(9, 5, "spike")
	ons := onsets(t, store.Dir())
	if len(ons) != 1 || !strings.Contains(string(ons[0].Data), `"cause":"service runaway.service (process hog pid 800)"`) {
		t.Fatalf("onsets %d: %+v", len(ons), ons)
	}
}

// A CPU spike made by a container's process and a login session's: the
// cause names the container with the command line (its secret redacted),
// and the groups rank container, session and service by their share.
func TestSpikeBlamesGroups(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	id := strings.Repeat("3f2a", 16)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(900, 1, 900, "postgres", "/system.slice/docker-"+id+".scope", 70, 400)
	f.add(950, 1, 950, "bash", "/user.slice/user-1000.slice/session-3.scope", 20, 5)
	f.add(960, 1, 960, "python3", "/system.slice/etl.service", 5, 50)
	f.step(10)
	os.WriteFile(filepath.Join(f.root, "900/cmdline"), []byte("postgres\x00-D\x00/var/lib/pg\x00--password=hunter2\x00"), 0o644)
	os.WriteFile(filepath.Join(f.root, "950/cmdline"), []byte("bash\x00burn.sh\x00"), 0o644)
	r, store, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	r.sample(ctx, e, false)
	for i := 0; i < 2; i++ {
		f.step(100)
		r.sample(ctx, e, false)
	}
	ons := onsets(t, store.Dir())
	if len(ons) != 1 {
		t.Fatalf("%d onsets", len(ons))
	}
	d := string(ons[0].Data)
	if !strings.Contains(d, `"cause":"container 3f2a3f2a3f2a (process postgres pid 900: postgres -D /var/lib/pg --password=***)"`) {
		t.Errorf("cause: %s", d)
	}
	if strings.Contains(d, "hunter2") {
		t.Errorf("the secret is in the record: %s", d)
	}
	v := r.verdict
	if len(v.Groups) != 3 || v.Groups[0].Kind != "container" || v.Groups[0].Verdict != "caused" ||
		v.Groups[1].Name != "session 3" || v.Groups[1].Verdict != "contributed" || v.Groups[2].Name != "service etl.service" || v.Groups[2].Verdict != "coincident" {
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
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(500, 1, 500, "hog", "/system.slice/runaway.service", 40, 900)
	f.step(20)
	r, store, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	r.KernelEvent(incident.Event{Time: old, Type: "hung_task", PID: 7, Comm: "long-ago"}) // before the window: not kept
	samples := 0
	step := func(busy uint64) {
		f.step(busy)
		if err := r.sample(ctx, e, false); err != nil {
			t.Fatal(err)
		}
		samples++
	}
	step(20)
	step(20)
	r.KernelEvent(incident.Event{Time: time.Now(), Type: "oom_kill", PID: 450, Comm: "victim"})
	f.avail = 5
	step(100) // onset
	r.KernelEvent(incident.Event{Time: time.Now(), Type: "hung_task", PID: 451, Comm: "jbd2/nvme0n1p1"})
	step(100)
	r.snapshot(ctx, e, time.Now(), incident.KindSnapshot)
	f.avail = 60
	for i := 0; i < 4 && r.incident != ""; i++ {
		step(10)
	}
	if r.incident != "" {
		t.Fatal("the spike did not end")
	}
	recs, _, err := incident.ReadDir(store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Time]bool{}
	var kinds, events []string
	for _, rec := range recs {
		if rec.Incident == "" {
			continue
		}
		var d struct {
			Samples []incident.Sample `json:"samples"`
			Events  []incident.Event  `json:"events"`
		}
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, fmt.Sprintf("%s:%d", rec.Kind, len(d.Samples)))
		for _, s := range d.Samples {
			if seen[s.Time] {
				t.Errorf("sample %s in two records", s.Time)
			}
			seen[s.Time] = true
			if s.MemAvail == nil {
				t.Errorf("sample %s lost memory available", s.Time)
			}
		}
		for _, ev := range d.Events {
			events = append(events, ev.Type+" "+ev.Comm)
		}
	}
	if len(seen) != samples {
		t.Errorf("records hold %d samples of %d taken (%v)", len(seen), samples, kinds)
	}
	if strings.Join(events, ",") != "oom_kill victim,hung_task jbd2/nvme0n1p1" {
		t.Errorf("events recorded: %q", events)
	}
	if len(kinds) < 3 || !strings.HasPrefix(kinds[0], "onset:3") {
		t.Errorf("records: %v (the onset should hold the 3 samples up to it)", kinds)
	}
}

// A process started from an SSH login is blamed as that session, named by
// who logged in from where (auth.log's sshd line, tied by the logging
// sshd's pid being an ancestor); a login whose pid was reused by a later
// process names nothing.
func TestSpikeBlamesTheSSHSession(t *testing.T) {
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(800, 1, 800, "sshd", "/user.slice/user-1000.slice/session-3.scope", 0, 5)
	f.add(801, 800, 801, "bash", "/user.slice/user-1000.slice/session-3.scope", 0, 5)
	f.add(802, 801, 801, "burn", "/user.slice/user-1000.slice/session-3.scope", 90, 20)
	f.add(900, 1, 900, "sshd", "/system.slice/ssh.service", 0, 5)
	f.add(901, 900, 901, "python3", "/system.slice/ssh.service", 5, 5)
	f.step(10)
	os.WriteFile(filepath.Join(f.root, "802/cmdline"), []byte("./burn\x00--hard\x00"), 0o644)
	r, _, _ := newTestRecorder(t, f, 224)
	r.SSHLogin(800, "ubuntu", "10.0.0.5", time.Now())
	// pid 900's login was logged before pid 900 started: an older sshd's.
	r.SSHLogin(900, "admin", "192.0.2.9", time.Unix(f.btime, 0).Add(-time.Minute))
	e := &sink{}
	ctx := context.Background()
	r.sample(ctx, e, false)
	for i := 0; i < 2; i++ {
		f.step(100)
		r.sample(ctx, e, false)
	}
	v := r.verdict
	if v.Cause != "session of ubuntu from 10.0.0.5 (process burn pid 802: ./burn --hard)" {
		t.Errorf("cause %q", v.Cause)
	}
	if len(v.Groups) == 0 || v.Groups[0].Name != "session of ubuntu from 10.0.0.5" || v.Groups[0].Verdict != "caused" {
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
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(600, 1, 600, "postgres", "/system.slice/postgresql.service", 5, 600)
	f.add(700, 1, 700, "leak", "/system.slice/etl.service", 5, 50)
	f.step(20)
	r, store, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	step := func(busy uint64) {
		f.step(busy)
		if err := r.sample(ctx, e, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, rss := range []int64{50, 150, 250} {
		f.procs[700].rssPages = rss << 20 / int64(os.Getpagesize())
		step(20)
	}
	// The samples above were taken in a millisecond; move them to where
	// a 5 s interval would have put them, before the onset's second.
	for i := range r.ring {
		r.ring[i].t = r.ring[i].t.Add(-time.Duration(len(r.ring)-i) * 5 * time.Second)
	}
	f.procs[700].rssPages = 450 << 20 / int64(os.Getpagesize())
	f.avail = 3
	step(30) // onset: memory
	ons := onsets(t, store.Dir())
	if len(ons) != 1 {
		t.Fatalf("%d onsets", len(ons))
	}
	var d struct {
		Verdict correlate.Verdict `json:"verdict"`
	}
	if err := json.Unmarshal(ons[0].Data, &d); err != nil {
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
		want := map[string]string{"service etl.service": "caused", "service postgresql.service": "coincident"}[g.Name]
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
	f := newFakeProc(t, time.Hour)
	f.add(1, 0, 1, "systemd", "/init.scope", 0, 10)
	f.add(650, 1, 650, "cron", "/system.slice/cron.service", 0, 1)
	f.addJob(700, 650, "cron", 0)
	f.procs[700].sid = 650 // forked, logged CMD, not yet setsid()
	f.addJob(710, 650, "cron", 0)
	f.procs[710].sid = 650 // cron's intermediate child: never a leader
	f.step(10)
	r, _, _ := newTestRecorder(t, f, 224)
	e := &sink{}
	ctx := context.Background()
	r.JobStarted("real", "thrash.sh", 700, "", time.Now())
	r.JobStarted("middle", "backup.sh", 710, "", time.Now())
	r.sample(ctx, e, false)
	f.procs[700].sid = 700
	f.procs[700].comm = "hog"
	f.procs[700].perTick = 90
	f.add(720, 700, 700, "hog-worker", "/system.slice/cron.service", 90, 5)
	for i := 0; i < earlyScans+2; i++ {
		f.step(95)
		r.sample(ctx, e, false)
	}
	for _, j := range r.sampler.Jobs() {
		switch j.ID {
		case "real":
			if j.Unverified != "" || j.Unchecked != "" || !j.Ended.IsZero() {
				t.Errorf("the job read before its setsid() was not confirmed: unverified %q, unchecked %q, ended %v", j.Unverified, j.Unchecked, j.Ended)
			}
			if j.CPUSec == 0 {
				t.Errorf("the confirmed job was charged no CPU")
			}
		case "middle":
			if !strings.Contains(j.Unverified, "did not become a session leader") {
				t.Errorf("cron's intermediate child named by a line: unverified %q, want refuted", j.Unverified)
			}
		}
	}
	if !strings.Contains(r.verdict.Cause, "thrash.sh") {
		t.Errorf("cause %q, want the job", r.verdict.Cause)
	}
}
