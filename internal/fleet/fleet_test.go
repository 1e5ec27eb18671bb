package fleet

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence/store"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/evidence"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/ec2diag/ec2diag/internal/sink/cwlogs"
	"github.com/ec2diag/ec2diag/internal/testkit/fakelogs"
)

type nopEmitter struct{}

func (nopEmitter) Emit(context.Context, collectors.Record) error { return nil }
func (nopEmitter) Ready()                                        {}

type rec struct {
	kind     evidence.Kind
	incident string
	data     map[string]any
}

func verdict(cause, job string) map[string]any {
	v := map[string]any{"cause": cause, "summary": "s", "top_processes": []map[string]any{{"pid": 42, "comm": "burn"}}}
	if job != "" {
		v["jobs"] = []map[string]any{{"job": "idle", "verdict": "coincident"}, {"job": job, "verdict": "caused"}}
	}
	return map[string]any{"reasons": []string{"CPU 100% busy", "PSI cpu"}, "verdict": v}
}

// ship writes records to an instance's store and runs its real shipper
// until the stand-in has them: the events are the agent's own.
func ship(t *testing.T, fake *fakelogs.Server, cli *cloudwatchlogs.Client, instance, asg string, recs []rec) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, 16<<20, 2, store.Boot{ID: "boot"})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	for i, r := range recs {
		if _, err := st.Append(r.kind, r.incident, base.Add(time.Duration(i)*time.Second), r.data, false); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	before := len(fake.Events())
	sh := cwlogs.New(cwlogs.Options{StateDir: dir, Group: "/ec2diag", Stream: instance, InstanceID: instance, AutoScalingGroup: asg,
		API: cli, FlushEvery: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sh.Run(ctx, nopEmitter{}) }()
	for deadline := time.Now().Add(10 * time.Second); len(fake.Events()) < before+len(recs) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if got := len(fake.Events()) - before; got != len(recs) {
		t.Fatalf("%s: %d events shipped, want %d", instance, got, len(recs))
	}
}

func fleetEnv(t *testing.T) *Client {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": fakelogs.AccessKey, "AWS_SECRET_ACCESS_KEY": fakelogs.SecretKey, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"} {
		t.Setenv(k, v)
	}
	fake := fakelogs.Start(t, "")
	cfg, err := cwsink.AWSConfig(context.Background(), cwsink.ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cli := cwlogs.NewClient(cfg, fake.URL)
	ship(t, fake, cli, "i-aaaa", "web", []rec{
		{evidence.KindOnset, "A1", verdict("job backup.sh", "backup.sh")},
		{evidence.KindSnapshot, "A1", verdict("job backup.sh", "backup.sh")},
		{evidence.KindEnd, "A1", map[string]any{"verdict": verdict("job backup.sh", "backup.sh")["verdict"]}},
		{evidence.KindJobRun, "", map[string]any{"job": "backup.sh"}},
		{evidence.KindOnset, "A2", verdict("job backup.sh", "backup.sh")}, // never ended: the machine hung
	})
	ship(t, fake, cli, "i-bbbb", "batch", []rec{
		{evidence.KindOnset, "B1", verdict("process burn (pid 42)", "")},
		{evidence.KindEnd, "B1", map[string]any{"verdict": verdict("process burn (pid 42)", "")["verdict"]}},
	})
	ship(t, fake, cli, "i-cccc", "", []rec{
		{evidence.KindOnset, "C1", verdict("job report.sh", "report.sh")},
		{evidence.KindEnd, "C1", map[string]any{}},
	})
	// An event in the group that is not the agent's: a kind, nothing else.
	if _, err := cli.PutLogEvents(context.Background(), &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String("/ec2diag"), LogStreamName: aws.String("i-aaaa"),
		LogEvents: []types.InputLogEvent{{Timestamp: aws.Int64(time.Now().Add(-time.Hour).UnixMilli()), Message: aws.String(`{"kind":"onset"}`)}}}); err != nil {
		t.Fatal(err)
	}
	if fake.SigFailures() != 0 {
		t.Fatalf("%d requests failed SigV4", fake.SigFailures())
	}
	return &Client{API: cli, Group: "/ec2diag", Poll: 10 * time.Millisecond, Timeout: 10 * time.Second}
}

func TestFleetIncidents(t *testing.T) {
	c := fleetEnv(t)
	ctx := context.Background()
	all, skipped, err := c.Incidents(ctx, Filter{Since: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Incident{}
	for _, in := range all {
		by[in.ID] = in
	}
	if len(all) != 4 || len(by) != 4 || skipped != 1 {
		t.Fatalf("incidents %+v (%d rows skipped), want A1 A2 B1 C1 and the foreign event skipped", all, skipped)
	}
	a1, a2, b1, c1 := by["A1"], by["A2"], by["B1"], by["C1"]
	if a1.Instance != "i-aaaa" || a1.ASG != "web" || !a1.Ended || a1.BlamedJob != "backup.sh" || a1.Records != 3 || a1.Reason != "CPU 100% busy; PSI cpu" ||
		a1.Top != "burn (pid 42)" || a1.Cause != "job backup.sh" || !a1.LastSeen.After(a1.Started) {
		t.Errorf("A1 %+v", a1)
	}
	if a2.Ended || a2.Records != 1 {
		t.Errorf("A2 (unfinished) %+v", a2)
	}
	if b1.BlamedJob != "" || b1.Cause != "process burn (pid 42)" || b1.ASG != "batch" {
		t.Errorf("B1 %+v", b1)
	}
	if c1.ASG != "" || c1.Cause != "job report.sh" || !c1.Ended {
		t.Errorf("C1 %+v", c1)
	}
	// Newest first.
	for i := 1; i < len(all); i++ {
		if all[i].Started.After(all[i-1].Started) {
			t.Errorf("not newest first: %v after %v", all[i].Started, all[i-1].Started)
		}
	}
	web, _, err := c.Incidents(ctx, Filter{Since: 7 * 24 * time.Hour, ASG: "web"})
	if err != nil || len(web) != 2 {
		t.Errorf("--asg web: %+v %v", web, err)
	}
	job, _, err := c.Incidents(ctx, Filter{Since: 7 * 24 * time.Hour, Job: "backup.sh"})
	if err != nil || len(job) != 2 || job[0].Instance != "i-aaaa" {
		t.Errorf("--job backup.sh: %+v %v", job, err)
	}
	none, _, err := c.Incidents(ctx, Filter{Since: 10 * time.Minute})
	if err != nil || len(none) != 0 {
		t.Errorf("--since 10m (all were an hour ago): %+v %v", none, err)
	}
}

func TestFleetJobs(t *testing.T) {
	c := fleetEnv(t)
	jobs, err := c.Jobs(context.Background(), Filter{Since: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0] != (JobCount{"backup.sh", 2, 1}) || jobs[1] != (JobCount{"report.sh", 1, 1}) {
		t.Errorf("jobs %+v", jobs)
	}
	// The dashboard's and the README's version, counted by Logs Insights.
	rows, err := c.Run(context.Background(), TopJobsQuery(Filter{}), time.Hour*2)
	if err != nil || len(rows) != 2 || rows[0]["blamed_job"] != "backup.sh" || rows[0]["incidents"] != "2" || rows[0]["instances"] != "1" {
		t.Errorf("TopJobsQuery: %v %v", rows, err)
	}
	rows, err = c.Run(context.Background(), IncidentsQuery(Filter{Instance: "i-bbbb"}), time.Hour*2)
	if err != nil || len(rows) != 1 || rows[0]["incident"] != "B1" {
		t.Errorf("IncidentsQuery for one instance: %v %v", rows, err)
	}
}

func TestQueryErrorsAreSaid(t *testing.T) {
	c := fleetEnv(t)
	c.Group = "/missing"
	if _, _, err := c.Incidents(context.Background(), Filter{Since: time.Hour}); err == nil {
		t.Error("query on a missing group succeeded")
	}
}

// The README's queries, for pasting into the console, are the ones the
// commands run.
func TestREADMEHasTheQueries(t *testing.T) {
	readme, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	indent := func(q string) string { return "    " + strings.ReplaceAll(q, "\n", "\n    ") }
	for name, q := range map[string]string{"incidents": IncidentsQuery(Filter{}), "top jobs": TopJobsQuery(Filter{})} {
		if !strings.Contains(string(readme), indent(q)) {
			t.Errorf("README lacks the %s query as it is now:\n%s", name, indent(q))
		}
	}
}
