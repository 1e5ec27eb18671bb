package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ec2diag/ec2diag/internal/testkit/fakecw"
)

// runCLI runs an ec2diag subcommand with the fake's static test keys and
// no IMDS, as an operator's shell would be set up off EC2.
func runCLI(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin(t), args...)
	dir := t.TempDir()
	cmd.Env = append([]string{"AWS_EC2_METADATA_DISABLED=true", "AWS_ENDPOINT_URL=http://127.0.0.1:1", "HOME=" + dir, "PATH=/usr/bin:/bin",
		"AWS_ACCESS_KEY_ID=" + fakecw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + fakecw.SecretKey,
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none")}, env...)
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
		out = append(out, ee.Stderr...)
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// The installed alarm is the one users define in Terraform, field by
// field, as CloudWatch decoded it from the wire.
func TestAlarmInstallIsTheTerraformAlarmAndIdempotent(t *testing.T) {
	fake := fakecw.Start(t, "")
	env := []string{"AWS_ENDPOINT_URL_CLOUDWATCH=" + fake.URL}
	args := []string{"alarm", "install", "--instance-id", "i-0123456789abcdef0", "--region", "eu-west-1"}
	out, code := runCLI(t, env, args...)
	if code != 0 || !strings.Contains(out, "ec2diag-reboot-i-0123456789abcdef0: created") {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	a := fake.Alarms()["ec2diag-reboot-i-0123456789abcdef0"]
	if a == nil {
		t.Fatalf("no alarm stored: %v", fake.Alarms())
	}
	want := map[string]any{
		"Namespace": "AWS/EC2", "MetricName": "StatusCheckFailed", "Statistic": "Maximum",
		"Period": uint64(300), "EvaluationPeriods": uint64(1), "Threshold": 1.0,
		"ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
		"AlarmActions": []any{"arn:aws:automate:eu-west-1:ec2:reboot"}, "ActionsEnabled": true,
		"Dimensions": []any{map[any]any{"Name": "InstanceId", "Value": "i-0123456789abcdef0"}},
	}
	for k, v := range want {
		if got := a[k]; !reflect.DeepEqual(norm(got), norm(v)) {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}
	// The liveness alarm beside it: the agent's Stalled figure, missing
	// data breaching, 3 of 5 one-minute periods.
	l := fake.Alarms()["ec2diag-stalled-i-0123456789abcdef0"]
	wantLive := map[string]any{
		"Namespace": "EC2Diag", "MetricName": "Stalled", "Statistic": "Maximum",
		"Period": uint64(60), "EvaluationPeriods": uint64(5), "DatapointsToAlarm": uint64(3), "Threshold": 1.0,
		"ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "breaching",
		"AlarmActions": []any{"arn:aws:automate:eu-west-1:ec2:reboot"}, "ActionsEnabled": true,
		"Dimensions": []any{map[any]any{"Name": "InstanceId", "Value": "i-0123456789abcdef0"}},
	}
	for k, v := range wantLive {
		if got := l[k]; !reflect.DeepEqual(norm(got), norm(v)) {
			t.Errorf("liveness alarm: %s = %#v, want %#v", k, got, v)
		}
	}
	out, code = runCLI(t, env, args...)
	if code != 0 || strings.Count(out, ": unchanged") != 2 || fake.AlarmPuts() != 2 {
		t.Fatalf("second install: exit %d, %d puts\n%s", code, fake.AlarmPuts(), out)
	}

	st, code := runCLI(t, env, "alarm", "status", "--instance-id", "i-0123456789abcdef0", "--region", "eu-west-1", "--format", "json")
	var s struct {
		Alarms []struct {
			State   string `json:"state"`
			Matches bool   `json:"matches_config"`
		} `json:"alarms"`
	}
	if err := json.Unmarshal([]byte(st), &s); err != nil || code != 0 || len(s.Alarms) != 2 || s.Alarms[0].State != "INSUFFICIENT_DATA" || !s.Alarms[0].Matches || !s.Alarms[1].Matches {
		t.Fatalf("status: exit %d, %v\n%s", code, err, st)
	}
	fake.SetAlarmState("ec2diag-reboot-i-0123456789abcdef0", "ALARM")
	st, _ = runCLI(t, env, "alarm", "status", "--instance-id", "i-0123456789abcdef0", "--region", "eu-west-1")
	if !strings.Contains(st, "ec2diag-reboot-i-0123456789abcdef0       ALARM") {
		t.Errorf("status after the alarm fired:\n%s", st)
	}

	// --recover replaces the single alarm's configuration with AWS's pair
	// and adds the recover alarm.
	out, code = runCLI(t, env, "alarm", "install", "--recover", "--sns-topic", "arn:aws:sns:eu-west-1:123456789012:ops", "--instance-id", "i-0123456789abcdef0", "--region", "eu-west-1")
	if code != 0 || !strings.Contains(out, "ec2diag-reboot-i-0123456789abcdef0: updated") || !strings.Contains(out, "ec2diag-recover-i-0123456789abcdef0: created") {
		t.Fatalf("install --recover: exit %d\n%s", code, out)
	}
	rec := fake.Alarms()["ec2diag-recover-i-0123456789abcdef0"]
	if rec["MetricName"] != "StatusCheckFailed_System" || norm(rec["EvaluationPeriods"]) != norm(uint64(2)) ||
		!reflect.DeepEqual(rec["AlarmActions"], []any{"arn:aws:automate:eu-west-1:ec2:recover", "arn:aws:sns:eu-west-1:123456789012:ops"}) {
		t.Errorf("recover alarm: %v", rec)
	}
	if _, _, _, sig, _ := fake.Counts(); sig != 0 {
		t.Errorf("%d requests failed SigV4", sig)
	}
}

func norm(v any) string { b, _ := json.Marshal(fix(v)); return string(b) }

func fix(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := map[string]any{}
		for k, e := range x {
			m[k.(string)] = fix(e)
		}
		return m
	case []any:
		// A copy: x is the fake server's own, which it reads while serving
		// (the race detector caught the in-place version).
		out := make([]any, len(x))
		for i := range x {
			out[i] = fix(x[i])
		}
		return out
	}
	return v
}

func TestAlarmDryRunOffEC2(t *testing.T) {
	out, code := runCLI(t, nil, "alarm", "install", "--dry-run", "--format", "json", "--instance-id", "i-0abc", "--region", "us-east-1")
	var d struct {
		Requests  []map[string]any `json:"requests"`
		Terraform string           `json:"terraform"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 || len(d.Requests) != 2 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	for _, k := range []string{"AlarmName", "Namespace", "MetricName", "Dimensions", "Statistic", "Period", "EvaluationPeriods", "Threshold",
		"ComparisonOperator", "TreatMissingData", "AlarmActions", "ActionsEnabled"} {
		if _, ok := d.Requests[0][k]; !ok {
			t.Errorf("dry-run JSON lacks %s", k)
		}
	}
	if !strings.Contains(d.Terraform, `alarm_actions       = ["arn:aws:automate:us-east-1:ec2:reboot"]`) {
		t.Errorf("terraform:\n%s", d.Terraform)
	}
	if _, code := runCLI(t, nil, "alarm", "install", "--dry-run"); code != 2 {
		t.Errorf("dry run off EC2 without --instance-id: exit %d, want 2", code)
	}
}

func TestDashboardPut(t *testing.T) {
	fake := fakecw.Start(t, "")
	out, code := runCLI(t, []string{"AWS_ENDPOINT_URL_CLOUDWATCH=" + fake.URL}, "dashboard", "--instance-id", "i-0abc", "--region", "eu-west-1", "--put", "ec2diag-i-0abc")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	body := fake.Dashboards()["ec2diag-i-0abc"]
	if !strings.Contains(body, `InstanceId=\"i-0abc\"`) || !strings.Contains(body, "NICAllowanceExceeded") {
		t.Errorf("stored body:\n%s", body)
	}
	printed, code := runCLI(t, nil, "dashboard", "--asg", "web", "--region", "eu-west-1")
	if code != 0 || !strings.Contains(printed, `AutoScalingGroupName=\"web\"`) {
		t.Errorf("fleet body: exit %d\n%s", code, printed)
	}
}

// A failure at run time (AWS not reachable, or refusing) is exit status 1;
// 2 is for bad usage, which scripts tell apart. The SDK's own logger wrote
// raw lines to stderr; nothing but ec2diag's error line is there now.
// Unusable names are refused before any call: an ASG name that would
// break out of the dashboard's search expression, a dashboard name
// PutDashboard would not take.
func TestRuntimeFailuresExitOneAndBadNamesTwo(t *testing.T) {
	closed := "http://127.0.0.1:1"
	env := []string{"AWS_ENDPOINT_URL_CLOUDWATCH=" + closed, "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=" + closed, "AWS_MAX_ATTEMPTS=1"}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"alarm", "status", "--instance-id", "i-0123456789abcdef0", "--region", "eu-west-1"}, 1},
		{[]string{"alarm", "install", "--instance-id", "i-0123456789abcdef0", "--region", "eu-west-1"}, 1},
		{[]string{"dashboard", "--instance-id", "i-0123456789abcdef0", "--region", "eu-west-1", "--put", "ec2diag"}, 1},
		{[]string{"fleet", "incidents", "--region", "eu-west-1"}, 1},
		{[]string{"dashboard", "--asg", "prod'x", "--region", "eu-west-1"}, 2},
		{[]string{"dashboard", "--instance-id", "i-0123456789abcdef0", "--region", "eu-west-1", "--put", "my board"}, 2},
	} {
		out, code := runCLI(t, env, c.args...)
		if code != c.code {
			t.Errorf("ec2diag %s: exit %d, want %d\n%s", strings.Join(c.args, " "), code, c.code, out)
		}
		if strings.Contains(out, "SDK ") {
			t.Errorf("ec2diag %s: the SDK's own log reached stderr:\n%s", strings.Join(c.args, " "), out)
		}
	}
}
