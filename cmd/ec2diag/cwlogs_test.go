package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence/store"

	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/testkit"
)

// appendRecords writes job-run records to the store while no agent runs
// (as an earlier boot left them).
func appendRecords(t *testing.T, state string, n int, job string) {
	t.Helper()
	st, err := store.Open(state, 16<<20, 4, store.Boot{ID: "boot-earlier"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < n; i++ {
		if _, err := st.Append(evidence.KindJobRun, "", time.Now(), map[string]any{"job": job, "cpu_seconds": float64(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
}

// appendIncident writes an incident that blamed job, as the recorder does.
func appendIncident(t *testing.T, state, id, job string, ended bool) {
	t.Helper()
	st, err := store.Open(state, 16<<20, 4, store.Boot{ID: "boot-earlier"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := map[string]any{"cause": "job " + job, "jobs": []map[string]any{{"job": job, "verdict": "caused"}},
		"top_processes": []map[string]any{{"pid": 7, "comm": "y\n<0>PANIC"}}}
	st.Append(evidence.KindOnset, id, time.Now(), map[string]any{"reasons": []string{"CPU 100% busy"}, "verdict": v}, false)
	if ended {
		st.Append(evidence.KindEnd, id, time.Now().Add(time.Second), map[string]any{"verdict": v}, false)
	}
}

// The daemon ships the incident store to CloudWatch Logs through an
// outage with a kill -9: every record arrives once, in the instance's
// stream, in a group the agent made with the configured retention.
func TestCloudWatchLogsOutageWithKillDeliversEachRecordOnce(t *testing.T) {
	e := newCWEnv(t)
	appendRecords(t, e.state, 30, "before")
	e.logs.Stop()
	a := e.start()
	time.Sleep(3 * time.Second) // a few failed attempts
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.wait(t, 5*time.Second)
	appendRecords(t, e.state, 20, "between")
	appendIncident(t, e.state, "20261202T100000Z", "backup.sh", true)
	appendIncident(t, e.state, "20261202T110000Z", "backup.sh", false) // never ended: the machine hung
	if err := e.logs.Restart(); err != nil {
		t.Fatal(err)
	}
	b := e.start()
	count := func() map[string]int {
		out := map[string]int{}
		for _, ev := range e.logs.Events() {
			var m struct {
				Kind, Job string
				Seq       uint64
				Instance  string `json:"instance_id"`
				Data      string // the record, as JSON text
			}
			var d struct{ Job string }
			if err := json.Unmarshal([]byte(ev.Message), &m); err != nil || json.Unmarshal([]byte(m.Data), &d) != nil {
				t.Fatalf("event not JSON, or its data not a record: %.200q", ev.Message)
			}
			if m.Kind != string(evidence.KindJobRun) {
				continue // the agent's own records, if the machine spiked
			}
			if ev.Group != "/ec2diag" || ev.Stream != testkit.AEMMInstanceID || m.Instance != testkit.AEMMInstanceID || m.Job != d.Job {
				t.Fatalf("event %s/%s: %.300s", ev.Group, ev.Stream, ev.Message)
			}
			out[fmt.Sprintf("%s#%d", m.Job, m.Seq)]++
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(count()) < 50 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a duplicate would come now
	b.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.wait(t, 15*time.Second); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	got := count()
	if len(got) != 50 {
		t.Errorf("%d distinct records in CloudWatch Logs, want 50", len(got))
	}
	for k, n := range got {
		if n != 1 {
			t.Errorf("record %q delivered %d times", k, n)
		}
	}
	if g := e.logs.Groups(); g["/ec2diag"] != 30 {
		t.Errorf("log groups %v, want /ec2diag kept 30 days", g)
	}
	if e.logs.SigFailures() != 0 {
		t.Errorf("%d requests failed SigV4", e.logs.SigFailures())
	}
	if !strings.Contains(b.stderr.String(), "CloudWatch Logs /ec2diag/"+testkit.AEMMInstanceID) {
		t.Errorf("agent did not say where incidents go:\n%.3000s", b.stderr.String())
	}

	// What the agent shipped answers the fleet's questions, through the
	// SDK's standard endpoint variable.
	env := []string{"AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=" + e.logs.URL, "AWS_REGION=eu-west-1"}
	out, code := runCLI(t, env, "fleet", "incidents", "--since", "1d", "--format", "json")
	var res struct {
		Incidents []struct {
			Instance  string `json:"instance_id"`
			ID        string `json:"incident"`
			Ended     bool   `json:"ended"`
			BlamedJob string `json:"blamed_job"`
			Top       string `json:"top_process"`
		}
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || len(res.Incidents) != 2 {
		t.Fatalf("fleet incidents: exit %d, %v:\n%s", code, err, out)
	}
	for _, in := range res.Incidents {
		if in.Instance != testkit.AEMMInstanceID || in.BlamedJob != "backup.sh" || in.Ended != (in.ID == "20261202T100000Z") {
			t.Errorf("fleet incident %+v", in)
		}
	}
	out, code = runCLI(t, env, "fleet", "incidents")
	t.Logf("ec2diag fleet incidents:\n%s", out)
	if code != 0 || !strings.Contains(out, "UNFINISHED") || strings.Contains(out, "\n<0>") {
		t.Errorf("fleet incidents (text): exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, env, "fleet", "jobs", "--job", "backup.sh")
	if code != 0 || !regexp.MustCompile(`(?m)^backup\.sh\s+2\s+1\s*$`).MatchString(out) {
		t.Errorf("fleet jobs: exit %d:\n%s", code, out)
	}
	if _, code = runCLI(t, env, "fleet", "jobs", "--since", "yesterday"); code != exitUsage {
		t.Errorf("fleet jobs --since yesterday: exit %d, want %d", code, exitUsage)
	}
}
