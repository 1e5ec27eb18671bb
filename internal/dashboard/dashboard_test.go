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
		m := w.Properties["metrics"].([]any)[0].([]any)[0].(map[string]any)
		if !re.MatchString(m["expression"].(string)) {
			t.Errorf("expression %s", m["expression"])
		}
	}
	if _, err := Body(Options{Namespace: "EC2Diag", Region: "eu-west-1"}); err == nil {
		t.Error("no scope accepted")
	}
}
