package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit"
	"github.com/ec2diag/ec2diag/internal/testkit/fakecw"
	"github.com/ec2diag/ec2diag/internal/testkit/fakeec2"
	"github.com/ec2diag/ec2diag/internal/testkit/fakelogs"
)

// cwEnv runs the agent as on an instance: identity and role credentials
// from the real amazon-ec2-metadata-mock (IMDSv2 only) on loopback, and
// CloudWatch at the wire-exact fake. Period 1 s scales a minute-based
// scenario down to seconds.
type cwEnv struct {
	t      *testing.T
	fake   *fakecw.Server
	logs   *fakelogs.Server
	aemm   string
	cfg    string
	state  string
	agents []*child
}

func newCWEnv(t *testing.T) *cwEnv { return newCWEnvArgs(t, nil, "") }

func newCWEnvArgs(t *testing.T, aemmArgs []string, extra string) *cwEnv {
	dir := t.TempDir()
	e := &cwEnv{t: t, fake: fakecw.Start(t, ""), logs: fakelogs.Start(t, ""), state: filepath.Join(dir, "state"), cfg: filepath.Join(dir, "config.yaml")}
	e.aemm = testkit.StartAEMM(t, testkit.AEMMOptions{AccessKey: fakecw.AccessKey, SecretKey: fakecw.SecretKey, Token: "role-session-token", Args: aemmArgs})
	syslog := filepath.Join(dir, "syslog")
	writeFile(t, syslog, "")
	writeFile(t, e.cfg, fmt.Sprintf(`%shost:
  interval: 250ms
syslog:
  source: files
  files: [%s]
cloudwatch:
  namespace: EC2DiagE2E
  endpoint: %s
  period: 1s
  request_timeout: 2s
  dimensions: [InstanceType]
cloudwatch_logs:
  endpoint: %s
  flush_interval: 1s
  request_timeout: 2s
%s`, noConsole, syslog, e.fake.URL, e.logs.URL, extra))
	return e
}

func (e *cwEnv) start(env ...string) *child {
	c := startAgent(e.t, bin(e.t), append([]string{"AWS_EC2_METADATA_DISABLED=false", "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + e.aemm}, env...),
		"--config", e.cfg, "--state-dir", e.state, "--log-format", "json")
	e.agents = append(e.agents, c)
	return c
}

// seconds returns the CPUBusy timestamps CloudWatch holds, as Unix seconds.
func (e *cwEnv) seconds() []int64 {
	var out []int64
	for _, d := range e.fake.Datums() {
		if d.Name == "CPUBusy" {
			out = append(out, d.Time.Unix())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (e *cwEnv) waitDatums(n int, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(e.seconds()) < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("only %d CPUBusy datums reached CloudWatch, want %d", len(e.seconds()), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func spoolFiles(t *testing.T, state string) int {
	es, _ := filepath.Glob(filepath.Join(state, "spool", "*.batch"))
	return len(es)
}

// An outage with a kill -9 in the middle: every period the agent
// aggregated before the kill and after the restart reaches CloudWatch
// once the endpoint is back, none twice, signed with the role's
// credentials from IMDS.
func TestCloudWatchOutageWithKillLosesNothing(t *testing.T) {
	e := newCWEnv(t)
	a := e.start()
	e.waitDatums(3, 20*time.Second)
	if !strings.Contains(a.stderr.String(), `"credentials_source":"EC2RoleProvider"`) {
		t.Errorf("agent did not report role credentials:\n%s", a.stderr.String())
	}

	outage := time.Now()
	e.fake.Stop()
	time.Sleep(4 * time.Second)
	if spoolFiles(t, e.state) == 0 {
		t.Fatal("nothing spooled during the outage")
	}
	killed := time.Now()
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.wait(t, 5*time.Second)
	held := spoolFiles(t, e.state)

	time.Sleep(time.Second)
	restarted := time.Now()
	b := e.start()
	time.Sleep(3 * time.Second)
	if n := spoolFiles(t, e.state); n <= held {
		t.Errorf("restarted agent spooled nothing new during the outage (%d -> %d batches)", held, n)
	}
	if err := e.fake.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for spoolFiles(t, e.state) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	b.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.wait(t, 15*time.Second); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	if n := spoolFiles(t, e.state); n != 0 {
		t.Errorf("%d batches left in the spool after the endpoint came back and a clean stop", n)
	}

	if d := e.fake.Duplicates(); len(d) > 0 {
		t.Errorf("datapoints received twice: %v", d)
	}
	got := map[int64]bool{}
	for _, s := range e.seconds() {
		got[s] = true
	}
	// Every second from just after the outage began until shortly before
	// the kill, and from shortly after the restart until the end, must be
	// there. The period open at the kill is lost by design (kept in memory
	// until it closes: at most one period).
	var missing []string
	check := func(from, to time.Time, what string) {
		for s := from.Unix(); s <= to.Unix(); s++ {
			if !got[s] {
				missing = append(missing, fmt.Sprintf("%s+%ds", what, s-from.Unix()))
			}
		}
	}
	check(outage.Add(-time.Second), killed.Add(-2*time.Second), "outage")
	check(restarted.Add(2*time.Second), back.Add(2*time.Second), "restart")
	if len(missing) > 0 {
		t.Errorf("periods lost: %v", missing)
	}
	for _, d := range e.fake.Datums() {
		if d.Name == "CPUBusy" && (d.Dims != "InstanceId="+testkit.AEMMInstanceID+",InstanceType=m5.large" || d.Resolution != 1) {
			t.Fatalf("CPUBusy datum dims %q resolution %d", d.Dims, d.Resolution)
		}
	}
	_, _, _, sig, _ := e.fake.Counts()
	if sig != 0 {
		t.Errorf("%d requests failed signature verification", sig)
	}
	t.Logf("%d CPUBusy periods stored; outage %s, kill at +%s", len(got), back.Sub(outage).Round(time.Second), killed.Sub(outage).Round(time.Second))
}

// The SDK's standard endpoint variable works as well as the config key.
func TestCloudWatchEndpointFromSDKVariable(t *testing.T) {
	e := newCWEnv(t)
	data, _ := os.ReadFile(e.cfg)
	writeFile(t, e.cfg, strings.Replace(string(data), "  endpoint: "+e.fake.URL+"\n", "", 1))
	startAgent(t, bin(t), []string{"AWS_EC2_METADATA_DISABLED=false", "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + e.aemm, "AWS_ENDPOINT_URL_CLOUDWATCH=" + e.fake.URL},
		"--config", e.cfg, "--state-dir", e.state, "--log-format", "json")
	e.waitDatums(2, 20*time.Second)
}

// On an instance the daemon also watches IMDS notices and runs the
// hygiene checks: a spot interruption notice is logged once, with its
// deadline, and both reach CloudWatch as figures.
func TestDaemonReportsSpotNoticeAndChecks(t *testing.T) {
	ec2 := fakeec2.Start(t, fakeec2.Instance{ID: testkit.AEMMInstanceID, ImageID: testkit.AEMMImageID, ImageOwnerID: "999988887777",
		ImagePublic: true, AllowedImages: "disabled", HTTPTokens: "optional", HopLimit: 1})
	e := newCWEnvArgs(t, []string{"spot", "-d", "2", "-a", "terminate", "--rebalance-delay-sec", "3600"}, "imds:\n  events_interval: 1s\nsinks:\n  summary_interval: 1s\n")
	a := e.start("AWS_ENDPOINT_URL_EC2=" + ec2.URL)
	deadline := time.Now().Add(20 * time.Second)
	have := func(name string, v float64) bool {
		for _, d := range e.fake.Datums() {
			if d.Name == name && d.Stats != nil && *d.Stats.Maximum == v {
				return true
			}
		}
		return false
	}
	// The standard set folds the notices into InstanceNotices.
	for !(have("InstanceNotices", 1) && have("InstanceCheckFailures", 2)) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !have("InstanceNotices", 1) || !have("InstanceCheckFailures", 2) {
		t.Fatalf("CloudWatch lacks InstanceNotices=1 (the spot notice) or InstanceCheckFailures=2 (whoAMI + IMDSv1)")
	}
	for !strings.Contains(a.stderr.String(), `"ec2diag_event":"cloudwatch_summary"`) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	log := a.stderr.String()
	if !strings.Contains(log, `"ec2diag_event":"cloudwatch_summary"`) || !strings.Contains(log, `"metrics_last_hour":`) {
		t.Errorf("no publishing summary in the journal:\n%s", log)
	}
	if n := strings.Count(log, "spot interruption notice: the instance will be terminated"); n != 1 {
		t.Errorf("spot notice logged %d times, want once:\n%s", n, log)
	}
	if !strings.Contains(log, "ami-provenance: fail") || !strings.Contains(log, "imdsv2-required: fail") {
		t.Errorf("check failures not in the log:\n%s", log)
	}
}

// The liveness alarm reboots when the Stalled figure goes missing: the
// agent enables its actions when it starts and disables them when it is
// stopped on purpose, so a shutdown, an upgrade or a removal never
// reboots the instance; a kill (or a hang) leaves them on. The figure is
// published every period, 0 on a calm host.
func TestLivenessAlarmFollowsTheAgent(t *testing.T) {
	e := newCWEnv(t)
	a := e.start()
	deadline := time.Now().Add(15 * time.Second)
	for len(e.fake.ActionCalls()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stalled := func() []float64 {
		var v []float64
		for _, d := range e.fake.Datums() {
			switch {
			case d.Name != "Stalled":
			case d.Stats != nil && d.Stats.Maximum != nil:
				v = append(v, *d.Stats.Maximum)
			case d.Value != nil:
				v = append(v, *d.Value)
			}
		}
		return v
	}
	for len(stalled()) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	if err := a.wait(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	calls := e.fake.ActionCalls()
	name := "ec2diag-stalled-" + testkit.AEMMInstanceID
	if len(calls) != 2 || calls[0] != (fakecw.ActionCall{Name: name, Enabled: true}) || calls[1] != (fakecw.ActionCall{Name: name, Enabled: false}) {
		t.Fatalf("alarm action calls %+v; want enable at start, disable at stop", calls)
	}
	if v := stalled(); len(v) < 2 || v[0] != 0 {
		t.Errorf("Stalled datums %v; want 0s, one a period", v)
	}
	// Killed (what a hang or a crash looks like): nothing is disabled.
	b := e.start()
	for len(e.fake.ActionCalls()) < 3 && time.Now().Before(deadline.Add(15*time.Second)) {
		time.Sleep(100 * time.Millisecond)
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	b.wait(t, 5*time.Second)
	if calls := e.fake.ActionCalls(); len(calls) != 3 || !calls[2].Enabled {
		t.Errorf("after a kill: calls %+v; want the actions left enabled", calls)
	}
	// Removed while dead: the package's removal script disables them.
	out, code := runCLI(t, []string{"AWS_EC2_METADATA_DISABLED=false", "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + e.aemm}, "--config", e.cfg, "alarm", "liveness", "off")
	if calls := e.fake.ActionCalls(); code != 0 || len(calls) != 4 || calls[3] != (fakecw.ActionCall{Name: name, Enabled: false}) {
		t.Errorf("alarm liveness off: exit %d, %s; calls %+v", code, out, calls)
	}
}
