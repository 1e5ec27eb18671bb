package prom

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
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

// Idle connections are capped: 1,005 of them once exhausted the agent's
// descriptors. Past MaxConns the agent holds no more sockets, and a
// scrape still gets through once one is freed.
func TestIdleConnectionsAreCapped(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	fds := func() int { es, _ := os.ReadDir("/proc/self/fd"); return len(es) }
	before := fds()
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	// Our 200 client ends plus at most MaxConns accepted server ends.
	if got := fds() - before; got > 200+MaxConns+2 {
		t.Errorf("%d descriptors for 200 idle connections; want at most %d", got, 200+MaxConns+2)
	}
	for _, c := range conns {
		c.Close()
	}
	// The server frees a slot when it reads its connection's EOF, on its
	// own goroutine: a scrape sent at once can still find the 16 taken
	// and be shed (EOF), as the clean-clone CI run saw under load. A
	// scraper tries again; within 5 s one must get through, or a slot
	// leaked.
	cl := &http.Client{Timeout: 5 * time.Second}
	for end := time.Now().Add(5 * time.Second); ; {
		var resp *http.Response
		if resp, err = cl.Get("http://" + s.Addr() + "/metrics"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(end) {
			t.Fatalf("no scrape got through within 5 s of the flood: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// 300 connections that never send a request do not keep a scraper out:
// the excess is closed as it is accepted, and the slots they hold are
// freed after the header timeout. In the kernel's backlog they used to
// take their turns, and /metrics timed out for 30 s.
func TestSlowConnectionsAreShedNotQueued(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	cl := &http.Client{Timeout: 8 * time.Second}
	var last error
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := cl.Get("http://" + s.Addr() + "/metrics")
		if err == nil {
			resp.Body.Close()
			return
		}
		last = err
	}
	t.Fatalf("no scrape got through while 300 idle connections stayed open: %v", last)
}
