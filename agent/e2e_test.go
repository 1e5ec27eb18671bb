package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ec2diag/ec2diag/collectors/nethealth"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/store"
	"github.com/ec2diag/ec2diag/internal/hostfs/hostfstest"
	"go.uber.org/zap"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The whole agent, built as `ec2diag run` builds it (Build, then Run),
// over a scripted host tree and a syslog file, in fake time: a cron job
// starts (its CMD line in the log, its processes under cron in the tree),
// burns both CPUs for a minute and ends. The incident the agent recorded
// must be the golden one, byte for byte; the run takes a few seconds of
// wall time whatever the machine is doing, and sleeps nowhere.
func TestWholeAgentOnAFixtureHost(t *testing.T) {
	var view, console []byte
	synctest.Test(t, func(t *testing.T) {
		view, console = runFixtureIncident(t)
	})
	golden(t, "testdata/e2e/incident.json", view)
	golden(t, "testdata/e2e/console.txt", console)
}

// fixture is the whole agent over a scripted host, in a synctest bubble.
type fixture struct {
	t       *testing.T
	h       *hostfstest.Host
	cfg     config.Config
	syslog  string
	console string
	busy    uint64
	cancel  context.CancelFunc
	done    chan error
}

func startFixture(t *testing.T, edit func(*config.Config)) *fixture {
	now := time.Now() // the bubble's clock: 2000-01-01T00:00:00Z
	h := hostfstest.New(t, now.Add(-time.Hour))
	h.Add(&hostfstest.Proc{PID: 300, PPID: 1, Comm: "rsyslogd", Cgroup: "/system.slice/rsyslog.service", RSSPages: hostfstest.RSSMiB(4), PerStep: 2})
	h.Add(&hostfstest.Proc{PID: 650, PPID: 1, Comm: "cron", Cgroup: "/system.slice/cron.service", RSSPages: hostfstest.RSSMiB(2), Cmdline: []string{"/usr/sbin/cron", "-f"}})
	h.Step(3)
	f := &fixture{t: t, h: h, syslog: filepath.Join(h.Dir, "var/log/syslog"), console: filepath.Join(h.Dir, "dev/kmsg"), busy: 3}
	os.MkdirAll(filepath.Dir(f.syslog), 0o755)
	os.WriteFile(f.syslog, []byte(now.Add(-time.Minute).Format(time.RFC3339Nano)+" fixture systemd[1]: Startup finished in 3.2s.\n"), 0o644)
	os.WriteFile(f.console, nil, 0o644)
	cfg := config.Default()
	cfg.StateDir = filepath.Join(h.Dir, "state")
	cfg.Syslog.Files = []string{f.syslog}
	cfg.Syslog.FromStart = true
	cfg.Syslog.PollInterval = config.Duration(time.Second)
	cfg.Spikes.Console = f.console
	cfg.Sinks.File.Path = filepath.Join(h.Dir, "events.jsonl")
	cfg.MemoryLock, cfg.MemoryTrim = false, false
	if edit != nil {
		edit(&cfg)
	}
	f.cfg = cfg
	d, err := Build(context.Background(), cfg, Deps{Log: zap.NewNop(), Root: h.Root, Self: 99999, NoInotify: true, Ethtool: noEthtool})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- (&Agent{Log: zap.NewNop(), Notify: &notes{}, Mode: "local mode"}).Run(ctx, d, nil) }()
	// The host moves in quarter seconds, an eighth of a second off the
	// agent's timers (whole seconds, and 200 ms after a wake-up): at no
	// instant do the script and the agent both act, so the run is the
	// same every time. Whenever the agent samples, it reads the rates the
	// script says.
	time.Sleep(125 * time.Millisecond)
	return f
}

func (f *fixture) advance(dur time.Duration) {
	for end := time.Now().Add(dur); time.Now().Before(end); {
		time.Sleep(250 * time.Millisecond)
		f.h.StepFor(250*time.Millisecond, f.busy)
	}
}

func (f *fixture) log(lines ...string) {
	w, err := os.OpenFile(f.syslog, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer w.Close()
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		fmt.Fprintf(bw, "%s fixture %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000000-07:00"), l)
	}
	bw.Flush()
}

// stop stops the agent and returns the store's records.
func (f *fixture) stop() []evidence.Record {
	f.cancel()
	if err := <-f.done; err != nil {
		f.t.Fatal(err)
	}
	recs, bad, err := store.ReadDir(f.cfg.StateDir)
	if err != nil || bad != 0 {
		f.t.Fatalf("store: %v, %d damaged", err, bad)
	}
	return recs
}

func (f *fixture) views(recs []evidence.Record) []evidence.View {
	return evidence.Views(recs, f.h.BootID, f.h.Boot.Unix())
}

// cronJob starts a cron job: cron forks, logs CMD, and the job's shell
// starts a burner.
func (f *fixture) cronJob(pid int, script, command string, rssMiB int64) {
	start := f.h.StartedAt(time.Now())
	f.h.Add(&hostfstest.Proc{PID: pid, PPID: 650, Comm: "sh", Cgroup: "/system.slice/cron.service", StartTicks: start, RSSPages: hostfstest.RSSMiB(1),
		Cmdline: []string{"/bin/sh", "-c", command}})
	f.h.Add(&hostfstest.Proc{PID: pid + 1, PPID: pid, SID: pid, Comm: script, Cgroup: "/system.slice/cron.service", StartTicks: start, RSSPages: hostfstest.RSSMiB(rssMiB),
		PerStep: 990, Cmdline: append([]string{"/bin/bash"}, strings.Fields(command)...)})
	f.h.Write()
	f.log(fmt.Sprintf("CRON[%d]: (root) CMD (%s)", pid, command))
}

func (f *fixture) endJob(pid int) {
	f.h.Remove(pid + 1)
	f.h.Remove(pid)
}

func runFixtureIncident(t *testing.T) (view, consoleOut []byte) {
	f := startFixture(t, nil)
	f.advance(20 * time.Second)
	f.cronJob(4242, "run.sh", "/opt/etl/run.sh --password=S3cret", 300)
	f.busy = 100
	f.advance(60 * time.Second)
	f.endJob(4242)
	f.busy = 3
	f.advance(30 * time.Second)
	views := f.views(f.stop())
	if len(views) != 1 {
		t.Fatalf("%d incidents, want 1: %+v", len(views), views)
	}
	if b, _ := json.Marshal(views); bytes.Contains(b, []byte("S3cret")) {
		t.Errorf("the password on the job's command line reached the store: %s", b)
	}
	view, _ = json.MarshalIndent(views[0], "", "  ")
	consoleOut, _ = os.ReadFile(f.console)
	return append(view, '\n'), consoleOut
}

// Anyone can write job lines: 520 CRON lines with 8 KiB commands before a
// spike made each incident record 24.8 MB and the store unreadable, and
// 600 lines of 60 KiB rotated an earlier incident out of the store. Here
// an incident, then both floods, then a second incident: both incidents
// are in the store, readable, every record within its budget, the
// refuted runs counted rather than carried, no secret kept.
func TestFloodOfJobLinesBloatsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startFixture(t, nil)
		f.advance(10 * time.Second)
		f.cronJob(4242, "first.sh", "/opt/first.sh", 50)
		f.busy = 100
		f.advance(30 * time.Second)
		f.endJob(4242)
		f.busy = 3
		f.advance(30 * time.Second)
		big := strings.Repeat("x", 8<<10-200)
		var lines []string
		for i := 0; i < 520; i++ {
			// pids that are not cron's children, or not there at all
			lines = append(lines, fmt.Sprintf("CRON[%d]: (root) CMD (/opt/%d.sh --password=S3cret %s)", 300+(i%2)*20000, i, big))
		}
		f.log(lines...)
		f.advance(10 * time.Second)
		huge := strings.Repeat("y", 60<<10)
		lines = lines[:0]
		for i := 0; i < 600; i++ {
			lines = append(lines, fmt.Sprintf("CRON[%d]: (root) CMD (/opt/h%d.sh %s)", 30000+i, i, huge))
		}
		f.log(lines...)
		f.advance(10 * time.Second)
		f.cronJob(5252, "second.sh", "/opt/second.sh", 50)
		f.busy = 100
		f.advance(30 * time.Second)
		recs := f.stop()
		views := f.views(recs)
		if len(views) != 2 || views[0].Cause != "job first.sh" || views[1].Cause != "job second.sh" {
			for _, v := range views {
				t.Logf("incident %s: %s", v.ID, v.Cause)
			}
			t.Fatalf("%d incidents; want both, blamed on their jobs", len(views))
		}
		var size int64
		for _, r := range recs {
			size += int64(len(r.Data))
			if len(r.Data) > evidence.MaxRecordBytes {
				t.Errorf("a %s record of %d bytes, over the %d budget", r.Kind, len(r.Data), evidence.MaxRecordBytes)
			}
			if bytes.Contains(r.Data, []byte("S3cret")) {
				t.Fatalf("a secret from a job line is in the store: %.300s", r.Data)
			}
		}
		if size > 2<<20 {
			t.Errorf("the store holds %d bytes of records after the floods", size)
		}
		t.Logf("%d records, %d bytes of payload; second incident lists %d runs, left out %v", len(recs), size, len(views[1].Jobs), views[1].Top != nil)
	})
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -run %s -update rewrites it):\n%s", path, t.Name(), diffLines(string(want), string(got)))
	}
}

// diffLines shows the lines of got that differ from want.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, a, c)
		}
	}
	return b.String()
}

func noEthtool() (nethealth.StatsFunc, func(), error) {
	return nil, func() {}, fmt.Errorf("no ethtool on a fixture")
}
