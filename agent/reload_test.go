package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/nethealth"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/hostfs/hostfstest"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/testkit"
	"go.uber.org/zap"
)

// A reload keeps what the running components learned, and a rejected one
// changes nothing. The daemon is built as `run` builds it, on EC2 as far
// as IMDS goes (the real metadata mock, with an instance-stop event
// active), with an ENA interface in a fixture sysfs whose counter grows
// at every read, and the Prometheus endpoint on loopback. Before #24 a
// reload rebuilt all three: the notice was announced again, the first
// check after it had no counter deltas, and the endpoint's event counts
// started from zero.
func TestReloadKeepsWhatComponentsLearned(t *testing.T) {
	// The events poll honours the SDK's switch, which CI sets for every
	// test; this one points IMDS at the loopback mock.
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	aemm := testkit.StartAEMM(t, testkit.AEMMOptions{Args: []string{"events", "-o", "instance-stop", "-t", "active"}})
	h := hostfstest.New(t, time.Now().Add(-time.Hour))
	h.Step(3)
	enaFixture(t, filepath.Join(h.Dir, "sys"), "eth0", "0000:00:05.0")
	var bw atomic.Uint64
	ethtool := func() (nethealth.StatsFunc, func(), error) {
		return func(string) (map[string]uint64, error) {
			return map[string]uint64{"bw_in_allowance_exceeded": bw.Add(5), "total_resets": 0, "conntrack_allowance_available": 500000}, nil
		}, func() {}, nil
	}
	syslog := filepath.Join(h.Dir, "syslog")
	os.WriteFile(syslog, nil, 0o644)
	cfg := config.Default()
	cfg.StateDir = filepath.Join(h.Dir, "state")
	cfg.Syslog.Files = []string{syslog}
	cfg.Spikes.Console = ""
	cfg.MemoryLock, cfg.MemoryTrim = false, false
	cfg.CloudWatch.Enabled, cfg.Logs.Enabled = "false", "false"
	cfg.Host.Interval = config.Duration(50 * time.Millisecond) // nethealth checks every 6 samples
	cfg.IMDS.Endpoint = aemm
	cfg.IMDS.EventsInterval = config.Duration(50 * time.Millisecond)
	cfg.Sinks.Prometheus.Listen = "127.0.0.1:" + freePort(t)

	out := &testkit.Lines{}
	d, err := Build(context.Background(), cfg, Deps{Log: zap.NewNop(), Root: h.Root, Self: 99999, NoInotify: true, Ethtool: ethtool, Print: out,
		Identity: &imds.Identity{InstanceID: testkit.AEMMInstanceID, Region: testkit.AEMMRegion, InstanceType: "m5.large"}})
	if err != nil {
		t.Fatal(err)
	}
	next := cfg
	nt := &notes{}
	a := &Agent{Log: zap.NewNop(), Notify: nt, Mode: "test", Reload: func() (config.Config, error) { return next, nil }}
	hup := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, d, hup) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	readyCount := func() int { nt.mu.Lock(); defer nt.mu.Unlock(); return nt.ready }
	waitUntil(t, "the first READY", func() bool { return readyCount() == 1 })

	recs := func() []collectors.Record { return printed(t, out.String()) }
	count := func(rs []collectors.Record, src collectors.Source, kind collectors.Kind, typ collectors.Type) int {
		n := 0
		for _, r := range rs {
			if r.Source == src && r.Kind == kind && (typ == "" || r.Type == typ) {
				n++
			}
		}
		return n
	}
	const notice = collectors.Type("scheduled_event")
	waitUntil(t, "the notice and two ENA checks", func() bool {
		rs := recs()
		return count(rs, collectors.SourceIMDSEvents, collectors.KindEvent, notice) == 1 && count(rs, collectors.SourceNetHealth, collectors.KindSample, "") >= 2
	})
	oldAddr := d.prom.Addr()
	waitUntil(t, "the endpoint's count of the notice", func() bool {
		return strings.Contains(scrape(t, oldAddr), `ec2diag_events_total{type="scheduled_event"} 1`)
	})
	net0, imds0, prom0 := d.net, d.imdsEv, d.prom

	// A reload that changes the cadences and moves the endpoint.
	next.Host.Interval = config.Duration(60 * time.Millisecond)
	next.IMDS.EventsInterval = config.Duration(60 * time.Millisecond)
	next.Sinks.Prometheus.Listen = "127.0.0.1:" + freePort(t)
	seen := len(recs())
	hup <- struct{}{}
	waitUntil(t, "the reload", func() bool { return a.Stats().Reloads.Load() == 1 })
	if d.net != net0 || d.imdsEv != imds0 || d.prom != prom0 {
		t.Fatalf("the reload replaced a stateful component (nethealth %v, imdsevents %v, prometheus %v kept)", d.net == net0, d.imdsEv == imds0, d.prom == prom0)
	}
	var after []collectors.Record
	waitUntil(t, "5 IMDS polls and an ENA check after the reload", func() bool {
		after = recs()[seen:]
		return count(after, collectors.SourceIMDSEvents, collectors.KindSample, collectors.TypeIMDSEvents) >= 5 && count(after, collectors.SourceNetHealth, collectors.KindSample, "") >= 1
	})
	if n := count(after, collectors.SourceIMDSEvents, collectors.KindEvent, notice); n != 0 {
		t.Errorf("the notice was announced %d more times after the reload", n)
	}
	for _, r := range after {
		if r.Source == collectors.SourceNetHealth && r.Kind == collectors.KindSample {
			if r.Metrics["bw_in_allowance_exceeded"] <= 0 {
				t.Errorf("the first ENA check after the reload has no counter delta (history lost): %v", r.Metrics)
			}
			break
		}
	}
	newAddr := d.prom.Addr()
	if newAddr == oldAddr {
		t.Fatalf("the endpoint did not move: %s", newAddr)
	}
	if body := scrape(t, newAddr); !strings.Contains(body, `ec2diag_events_total{type="scheduled_event"} 1`) {
		t.Errorf("the endpoint's counts after the reload:\n%s", body)
	}
	if _, err := http.Get("http://" + oldAddr + "/metrics"); err == nil {
		t.Errorf("the old address %s still answers", oldAddr)
	}

	// A reload the config cannot take (a file sink in a directory that is
	// not there): nothing changes, nothing is restarted.
	good, pipe := next, d.Pipeline()
	next.Sinks.File.Path = filepath.Join(h.Dir, "no-such-dir", "events.jsonl")
	next.Host.Interval = config.Duration(time.Second)
	hup <- struct{}{}
	waitUntil(t, "the rejected reload's READY", func() bool { return readyCount() == 3 })
	if a.Stats().Reloads.Load() != 1 || d.Pipeline() != pipe || d.cfg.Host.Interval != good.Host.Interval || d.cfg.Sinks.File.Path != "" {
		t.Fatalf("a rejected reload changed the daemon: reloads %d, pipeline kept %v, interval %s", a.Stats().Reloads.Load(), d.Pipeline() == pipe, d.cfg.Host.Interval.D())
	}
	if d.prom.Addr() != newAddr || !strings.Contains(scrape(t, newAddr), "ec2diag_events_total") {
		t.Errorf("the endpoint moved or lost its counts after a rejected reload")
	}
	if _, err := os.Stat(filepath.Join(h.Dir, "no-such-dir")); err == nil {
		t.Errorf("the rejected reload created the file sink's directory")
	}
}

// enaFixture makes sysfs entries of a healthy ENA interface under root.
func enaFixture(t *testing.T, root, name, bdf string) {
	t.Helper()
	file := func(rel, content string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(rel, target string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	dev := "devices/pci0000:00/" + bdf
	os.MkdirAll(filepath.Join(root, "bus/pci/drivers/ena"), 0o755)
	link(dev+"/driver", "../../../bus/pci/drivers/ena")
	file(dev+"/vendor", "0x1d0f")
	file(dev+"/numa_node", "0")
	nd := dev + "/net/" + name
	link("class/net/"+name, "../../"+nd)
	link(nd+"/device", "../../../"+bdf)
	for k, v := range map[string]string{"operstate": "up", "carrier": "1", "flags": "0x1003", "mtu": "9001", "address": "02:00:00:00:00:01",
		"carrier_changes": "2", "carrier_down_count": "1", "carrier_up_count": "1", "speed": ""} {
		file(nd+"/"+k, v)
	}
	for _, s := range []string{"rx_errors", "tx_errors", "rx_dropped", "tx_dropped", "rx_over_errors", "rx_packets", "tx_packets", "rx_bytes", "tx_bytes"} {
		file(nd+"/statistics/"+s, "0")
	}
	os.MkdirAll(filepath.Join(root, nd, "queues/tx-0"), 0o755)
}

// printed decodes the records `run --print` wrote, skipping a last line
// still being written.
func printed(t *testing.T, s string) []collectors.Record {
	var out []collectors.Record
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r collectors.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

func scrape(t *testing.T, addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// freePort is a loopback port nobody listens on now.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// waitUntil polls cond until it holds, failing after 30 s: what it waits
// for is an event, never an amount of time.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
