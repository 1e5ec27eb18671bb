package dashboard

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/ec2diag/ec2diag/internal/metrics"
)

// Every metric the dashboard shows is one the agent publishes, and every
// published metric appears somewhere (a renamed metric would leave an
// empty graph and no error).
func TestDashboardMatchesCatalogue(t *testing.T) {
	pub := map[string]bool{}
	for _, s := range metrics.Catalogue() {
		pub[s.Name] = true
	}
	used := map[string]bool{}
	for _, n := range MetricNames() {
		used[n] = true
		if !pub[n] && !strings.HasPrefix(n, "ENA") && !strings.HasPrefix(n, "EFA") {
			t.Errorf("dashboard shows %s, which the agent does not publish", n)
		}
	}
	for n := range pub {
		if std := map[string]bool{"KernelLockups": true, "InstanceNotices": true, "NICUnhealthy": true, "NICAllowanceExceeded": true, "AgentErrors": true}; std[n] {
			continue // the standard set's folds: on the standard dashboard
		}
		if !used[n] && n != "RCUStalls" && n != "ENADriverEvents" && n != "CPUUser" && n != "CPUSystem" && n != "MemoryUsed" && n != "SwapUsed" {
			t.Errorf("%s is published but not on the dashboard", n)
		}
	}
}

// The standard dashboard shows every metric of the standard set.
func TestStandardDashboardMatchesStandardSet(t *testing.T) {
	used := map[string]bool{}
	for _, n := range StandardMetricNames() {
		used[n] = true
	}
	for _, s := range metrics.Standard() {
		if !used[s.Name] {
			t.Errorf("%s is in the standard set but not on the standard dashboard", s.Name)
		}
	}
	b, err := Body(Options{Namespace: "EC2Diag", Region: "eu-west-1", InstanceID: "i-0123456789abcdef0", FleetJobs: []string{"backup"}})
	if err != nil || !strings.Contains(b, `SEARCH('{EC2Diag,Job} (MetricName=\"JobRuns\")', 'Sum', 60)`) {
		t.Errorf("fleet job widget missing: %v\n%s", err, b)
	}
}

func TestBodyIsValidAndScoped(t *testing.T) {
	b, err := Body(Options{Namespace: "EC2Diag", Region: "eu-west-1", ASG: "web", ExtraDims: []string{"AutoScalingGroupName", "InstanceType"}, Detailed: true})
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Widgets []struct {
			Type       string
			Properties map[string]any
		}
	}
	if err := json.Unmarshal([]byte(b), &d); err != nil || len(d.Widgets) < 10 {
		t.Fatalf("body: %v, %d widgets", err, len(d.Widgets))
	}
	re := regexp.MustCompile(`^SEARCH\('\{EC2Diag,InstanceId,InstanceType,AutoScalingGroupName(,Job|,Interface)?\} AutoScalingGroupName="web" \(MetricName="[A-Za-z]+"( OR MetricName="[A-Za-z]+")*\)', '(Average|Sum|Maximum|Minimum)', 60\)$`)
	for _, w := range d.Widgets {
		if w.Type != "metric" {
			continue
		}
		m, ok := w.Properties["metrics"].([]any)[0].([]any)[0].(map[string]any)
		if !ok {
			continue // AWS/EC2's StatusCheckFailed, a plain metric
		}
		if !re.MatchString(m["expression"].(string)) {
			t.Errorf("expression %s", m["expression"])
		}
	}
	if _, err := Body(Options{Namespace: "EC2Diag", Region: "eu-west-1"}); err == nil {
		t.Error("no scope accepted")
	}
}

// Beside the agent's figures: EC2's StatusCheckFailed, the reboot alarm's
// state (when the account is known) and the Logs Insights widgets, scoped
// to the instance.
func TestEC2AndLogsWidgets(t *testing.T) {
	b, err := Body(Options{Namespace: "EC2Diag", Region: "eu-west-1", InstanceID: "i-0123456789abcdef0", LogGroup: "/ec2diag", AccountID: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Widgets []struct {
			Type       string
			Properties map[string]any
		}
	}
	if err := json.Unmarshal([]byte(b), &d); err != nil {
		t.Fatal(err)
	}
	var status, alarm, logs int
	for _, w := range d.Widgets {
		switch w.Type {
		case "metric":
			if m, ok := w.Properties["metrics"].([]any)[0].([]any); ok && m[0] == "AWS/EC2" {
				if m[1] != "StatusCheckFailed" || m[3] != "i-0123456789abcdef0" {
					t.Errorf("status widget %v", m)
				}
				status++
			}
		case "alarm":
			if a := w.Properties["alarms"].([]any); a[0] != "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:ec2diag-reboot-i-0123456789abcdef0" {
				t.Errorf("alarm widget %v", a)
			}
			alarm++
		case "log":
			q := w.Properties["query"].(string)
			if !strings.HasPrefix(q, "SOURCE '/ec2diag' | filter ") || !strings.Contains(q, `instance_id = "i-0123456789abcdef0"`) || w.Properties["region"] != "eu-west-1" {
				t.Errorf("log widget query %s", q)
			}
			logs++
		}
	}
	if status != 1 || alarm != 1 || logs != 2 {
		t.Errorf("%d status, %d alarm, %d log widgets; want 1, 1, 2", status, alarm, logs)
	}
	b, _ = Body(Options{Namespace: "EC2Diag", Region: "eu-west-1", ASG: "web"})
	if strings.Contains(b, `"type": "log"`) || strings.Contains(b, `"type": "alarm"`) || !regexp.MustCompile(`"StatusCheckFailed",\s+"AutoScalingGroupName",\s+"web"`).MatchString(b) {
		t.Errorf("ASG body without logs or account:\n%s", b)
	}
}
