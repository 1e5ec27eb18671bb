package prom

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
)

func TestServesLatestFiguresOnLoopback(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	now := time.Now()
	s.Write(context.Background(), []collectors.Record{
		{Time: now, Kind: collectors.KindSample, Source: "host", Metrics: map[string]float64{"cpu_busy_pct": 10}},
		{Time: now, Kind: collectors.KindSample, Source: "host", Metrics: map[string]float64{"cpu_busy_pct": 42.5}},
		{Time: now, Kind: collectors.KindSample, Source: "nethealth", Dims: map[string]string{"iface": "ens5", "kind": "ena"}, Metrics: map[string]float64{"healthy": 1}},
		{Time: now, Kind: collectors.KindEvent, Type: "spike"},
		{Time: now, Kind: collectors.KindEvent, Type: "spike"},
	})
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"# TYPE ec2diag_host_cpu_busy_pct gauge\nec2diag_host_cpu_busy_pct 42.5\n",
		`ec2diag_nethealth_healthy{interface="ens5",kind="ena"} 1`, "# TYPE ec2diag_events_total counter", `ec2diag_events_total{type="spike"} 2`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("missing %q in:\n%s", want, b)
		}
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, a := range []string{"0.0.0.0:9465", ":9465", "10.0.0.1:9465"} {
		if _, err := Listen(a); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Listen(%q) = %v, want a loopback error", a, err)
		}
	}
}
