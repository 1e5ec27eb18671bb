package agent

import (
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

func runFixtureIncident(t *testing.T) (view, consoleOut []byte) {
	now := time.Now() // the bubble's clock: 2000-01-01T00:00:00Z
	h := hostfstest.New(t, now.Add(-time.Hour))
	h.Add(&hostfstest.Proc{PID: 300, PPID: 1, Comm: "rsyslogd", Cgroup: "/system.slice/rsyslog.service", RSSPages: hostfstest.RSSMiB(4), PerStep: 2})
	h.Add(&hostfstest.Proc{PID: 650, PPID: 1, Comm: "cron", Cgroup: "/system.slice/cron.service", RSSPages: hostfstest.RSSMiB(2), Cmdline: []string{"/usr/sbin/cron", "-f"}})
	h.Step(3)
	syslog := filepath.Join(h.Dir, "var/log/syslog")
	os.MkdirAll(filepath.Dir(syslog), 0o755)
	os.WriteFile(syslog, []byte(now.Add(-time.Minute).Format(time.RFC3339Nano)+" fixture systemd[1]: Startup finished in 3.2s.\n"), 0o644)
	consolePath := filepath.Join(h.Dir, "dev/kmsg")
	os.WriteFile(consolePath, nil, 0o644)

	cfg := config.Default()
	cfg.StateDir = filepath.Join(h.Dir, "state")
	cfg.Syslog.Files = []string{syslog}
	cfg.Syslog.FromStart = true
	cfg.Syslog.PollInterval = config.Duration(time.Second)
	cfg.Spikes.Console = consolePath
	cfg.Sinks.File.Path = filepath.Join(h.Dir, "events.jsonl")
	cfg.MemoryLock, cfg.MemoryTrim = false, false
	noEthtool := func() (nethealth.StatsFunc, func(), error) {
		return nil, func() {}, fmt.Errorf("no ethtool on a fixture")
	}
	d, err := Build(context.Background(), cfg, Deps{Log: zap.NewNop(), Root: h.Root, Self: 99999, NoInotify: true, Ethtool: noEthtool})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Agent{Log: zap.NewNop(), Notify: &notes{}, Mode: "local mode"}).Run(ctx, d, nil) }()

	// The host moves in quarter seconds, an eighth of a second off the
	// agent's timers (whole seconds, and 200 ms after a wake-up): at no
	// instant do the script and the agent both act, so the run is the
	// same every time. Whenever the agent samples, it reads the rates the
	// script says.
	time.Sleep(125 * time.Millisecond)
	busy := uint64(3)
	advance := func(dur time.Duration) {
		for end := time.Now().Add(dur); time.Now().Before(end); {
			time.Sleep(250 * time.Millisecond)
			h.StepFor(250*time.Millisecond, busy)
		}
	}
	appendLog := func(line string) {
		f, err := os.OpenFile(syslog, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "%s fixture %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000000-07:00"), line)
		f.Close()
	}
	advance(20 * time.Second)
	// cron forks, logs CMD, and the job's shell starts a burner.
	start := h.StartedAt(time.Now())
	h.Add(&hostfstest.Proc{PID: 4242, PPID: 650, Comm: "sh", Cgroup: "/system.slice/cron.service", StartTicks: start, RSSPages: hostfstest.RSSMiB(1),
		Cmdline: []string{"/bin/sh", "-c", "/opt/etl/run.sh --password=S3cret"}})
	h.Add(&hostfstest.Proc{PID: 4243, PPID: 4242, SID: 4242, Comm: "run.sh", Cgroup: "/system.slice/cron.service", StartTicks: start, RSSPages: hostfstest.RSSMiB(300),
		PerStep: 990, Cmdline: []string{"/bin/bash", "/opt/etl/run.sh", "--password=S3cret"}})
	h.Write()
	appendLog("CRON[4242]: (root) CMD (/opt/etl/run.sh --password=S3cret)")
	busy = 100
	advance(60 * time.Second)
	// The job ends; the host calms down.
	h.Remove(4243)
	h.Remove(4242)
	busy = 3
	advance(30 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	recs, bad, err := store.ReadDir(cfg.StateDir)
	if err != nil || bad != 0 {
		t.Fatalf("store: %v, %d damaged", err, bad)
	}
	views := evidence.Views(recs, h.BootID, h.Boot.Unix())
	if len(views) != 1 {
		t.Fatalf("%d incidents, want 1: %+v", len(views), views)
	}
	if b, _ := json.Marshal(views); bytes.Contains(b, []byte("S3cret")) {
		t.Errorf("the password on the job's command line reached the store: %s", b)
	}
	view, _ = json.MarshalIndent(views[0], "", "  ")
	consoleOut, _ = os.ReadFile(consolePath)
	return append(view, '\n'), consoleOut
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
