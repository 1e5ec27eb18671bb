package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors/nethealth"
)

// The Prometheus dashboard's queries name series the agent's endpoint
// really serves: a real agent (IMDS stand-in, so the notice and check
// collectors run too) is scraped, and every series name the shipped JSON
// asks for must be in the scrape, except the per-interface ones (no ENA
// here), which must be fields the nethealth collector publishes, and
// those of host figures the machine may lack (swap).
func TestGrafanaPrometheusDashboardMatchesTheEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := newCWEnvArgs(t, nil, fmt.Sprintf("imds:\n  events_interval: 1s\nsinks:\n  prometheus:\n    listen: %s\n", addr))
	e.start()
	syslog := filepath.Join(filepath.Dir(e.cfg), "syslog")
	oom := func() {
		f, _ := os.OpenFile(syslog, os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "%s h kernel: Out of memory: Killed process 4242 (java) anon-rss:5kB\n", time.Now().UTC().Format(time.RFC3339))
		f.Close()
	}

	dash, err := os.ReadFile("../../docs/grafana/ec2diag-prometheus.json")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range regexp.MustCompile(`(ec2diag_[a-z0-9_]+)`).FindAllStringSubmatch(string(dash), -1) {
		if !slices.Contains(want, m[1]) {
			want = append(want, m[1])
		}
	}
	// {__name__=~"ec2diag_imdsevents_(a|b)"}: each alternative.
	for _, m := range regexp.MustCompile(`__name__=~\\"(ec2diag_[a-z_]+)_\(([a-z_|]+)\)\\"`).FindAllStringSubmatch(string(dash), -1) {
		for _, alt := range strings.Split(m[2], "|") {
			want = append(want, m[1]+"_"+alt)
		}
	}
	var scrape string
	missing := func() []string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return []string{err.Error()}
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		scrape = string(b)
		var out []string
		for _, n := range want {
			switch {
			case strings.HasSuffix(n, "_"): // a regex's stem
			case strings.HasPrefix(n, "ec2diag_nethealth_"):
				if f := strings.TrimPrefix(n, "ec2diag_nethealth_"); !slices.Contains(nethealth.Fields(), f) {
					out = append(out, n+" (not a nethealth field)")
				}
			case n == "ec2diag_host_swap_used_pct" && !hasSwap():
			case !regexp.MustCompile(`(?m)^` + n + `[{ ]`).MatchString(scrape):
				out = append(out, n)
			}
		}
		return out
	}
	deadline := time.Now().Add(20 * time.Second)
	m := missing()
	for (len(m) > 0 || !strings.Contains(scrape, `type="oom_kill"`)) && time.Now().Before(deadline) {
		if strings.Contains(scrape, "ec2diag_host_") && !strings.Contains(scrape, `type="oom_kill"`) {
			oom() // the agent is reading the log now: a line for the events counter
		}
		time.Sleep(500 * time.Millisecond)
		m = missing()
	}
	if len(m) > 0 {
		t.Fatalf("the dashboard asks for series the endpoint does not serve: %v\nscrape:\n%s", m, scrape)
	}
	if !strings.Contains(scrape, `ec2diag_events_total{type="oom_kill"}`) {
		t.Errorf("the OOM kill is not counted under the type the dashboard asks for:\n%s", scrape)
	}
	if len(want) < 15 {
		t.Fatalf("only %d series names found in the dashboard: %v", len(want), want)
	}
}

func hasSwap() bool {
	b, _ := os.ReadFile("/proc/swaps")
	return strings.Count(string(b), "\n") > 1
}
