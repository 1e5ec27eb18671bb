package grafana

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ec2diag/ec2diag/internal/metrics"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	gd "github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

var update = flag.Bool("update", false, "rewrite docs/grafana from the code")

var grafanaFiles = map[string]func() ([]byte, error){
	"ec2diag-cloudwatch.json": GrafanaCloudWatch,
	"ec2diag-prometheus.json": GrafanaPrometheus,
}

// The shipped files are what the code generates (go test
// ./internal/dashboard/grafana -update rewrites them), so they follow the
// catalogue.
func TestGrafanaFilesAreCurrent(t *testing.T) {
	for name, gen := range grafanaFiles {
		b, err := gen()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b = append(b, '\n')
		path := filepath.Join("..", "..", "..", "docs", "grafana", name)
		if *update {
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		old, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(old, b) {
			t.Errorf("%s is not what the code generates (err %v): run go test ./internal/dashboard/grafana -update", path, err)
		}
	}
}

// Each file reads back as a Grafana dashboard (the SDK's own decoder, with
// its panel and query plugins), every panel has a query and a place, and
// every panel's ids are unique within it.
func TestGrafanaDashboardsDecode(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	for name, gen := range grafanaFiles {
		b, _ := gen()
		var d gd.Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(d.Panels) < 8 {
			t.Fatalf("%s: %d panels", name, len(d.Panels))
		}
		for _, p := range d.Panels {
			if p.Panel == nil || p.Panel.GridPos == nil || len(p.Panel.Targets) == 0 {
				t.Fatalf("%s: panel without a place or a query: %+v", name, p)
			}
		}
		var raw struct {
			Panels []struct {
				Title   string
				Targets []struct{ RefID string }
			}
		}
		json.Unmarshal(b, &raw)
		for _, p := range raw.Panels {
			seen := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || seen[tg.RefID] {
					t.Errorf("%s: panel %q: refId %q empty or repeated", name, p.Title, tg.RefID)
				}
				seen[tg.RefID] = true
			}
		}
	}
}

// Every CloudWatch metric the Grafana dashboard asks for is one the agent
// publishes at its defaults (the catalogue's standard and fleet sets), and
// every one of those is on it.
func TestGrafanaCloudWatchShowsTheStandardSet(t *testing.T) {
	b, _ := GrafanaCloudWatch()
	var got []string
	for _, m := range regexp.MustCompile(`"metricName": "([A-Za-z]+)"`).FindAllSubmatch(b, -1) {
		got = append(got, string(m[1]))
	}
	var want []string
	for _, s := range metrics.Standard() {
		want = append(want, s.Name)
	}
	for _, s := range metrics.Catalogue() {
		if s.Fleet {
			want = append(want, s.Name)
		}
	}
	want = append(want, "StatusCheckFailed")
	for _, n := range got {
		if !slices.Contains(want, n) {
			t.Errorf("the dashboard asks for %s, which the default set does not publish", n)
		}
	}
	for _, n := range want {
		if !slices.Contains(got, n) {
			t.Errorf("%s is published but on no panel", n)
		}
	}
}

// Every catalogue metric of the Prometheus panels has a query, and the
// metrics without one are those the endpoint does not carry.
func TestPromQueryCoversThePanels(t *testing.T) {
	missing := map[string]bool{}
	for _, w := range promWidgets() {
		for _, n := range w.Names {
			if _, ok := metrics.PromQuery(n, "", "5m"); !ok {
				missing[n] = true
			}
		}
	}
	var ks []string
	for k := range missing {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	if got := strings.Join(ks, ","); got != "AgentErrors,CorrelatedSpikes" {
		t.Errorf("no Prometheus query for %s", got)
	}
}
