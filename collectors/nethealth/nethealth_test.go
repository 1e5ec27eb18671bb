package nethealth

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ec2diag/ec2diag/internal/testkit"
)

// tree builds a sysfs-like fixture: real directories, relative symlinks as
// the kernel makes them, and PCI names with ':' (which Go module zips
// reject, so fixtures are made at test time).
type tree struct {
	t    testing.TB
	root string
}

func newTree(t testing.TB) *tree { return &tree{t: t, root: t.TempDir()} }

func (f *tree) file(rel, content string) {
	p := filepath.Join(f.root, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *tree) link(rel, target string) {
	p := filepath.Join(f.root, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
}

func (f *tree) pci(bdf, driver string) string {
	dev := "devices/pci0000:00/" + bdf
	os.MkdirAll(filepath.Join(f.root, "bus/pci/drivers", driver), 0o755)
	f.link(dev+"/driver", "../../../bus/pci/drivers/"+driver)
	f.file(dev+"/vendor", "0x1d0f")
	f.file(dev+"/numa_node", "0")
	return dev
}

// ena adds a healthy ENA interface.
func (f *tree) ena(name, bdf, mac string) {
	dev := f.pci(bdf, "ena")
	nd := dev + "/net/" + name
	f.link("class/net/"+name, "../../"+nd)
	f.link(nd+"/device", "../../../"+bdf)
	for k, v := range map[string]string{"operstate": "up", "carrier": "1", "flags": "0x1003", "mtu": "9001", "address": mac,
		"carrier_changes": "2", "carrier_down_count": "1", "carrier_up_count": "1", "speed": ""} {
		f.file(nd+"/"+k, v)
	}
	for _, s := range []string{"rx_errors", "tx_errors", "rx_dropped", "tx_dropped", "rx_over_errors", "rx_packets", "tx_packets", "rx_bytes", "tx_bytes"} {
		f.file(nd+"/statistics/"+s, "0")
	}
	os.MkdirAll(filepath.Join(f.root, nd, "queues/tx-0"), 0o755)
	os.MkdirAll(filepath.Join(f.root, nd, "queues/tx-1"), 0o755)
}

func (f *tree) set(iface, attr, v string) {
	p, _ := filepath.EvalSymlinks(filepath.Join(f.root, "class/net", iface))
	f.file(strings.TrimPrefix(p, f.root+"/")+"/"+attr, v)
}

// efa adds an EFA device whose GID encodes mac.
func (f *tree) efa(name, bdf, mac string) {
	dev := f.pci(bdf, "efa")
	ib := dev + "/infiniband/" + name
	f.link("class/infiniband/"+name, "../../"+ib)
	f.link(ib+"/device", "../../../"+bdf)
	f.file(ib+"/ports/1/state", "4: ACTIVE")
	f.file(ib+"/ports/1/phys_state", "5: LinkUp")
	f.file(ib+"/ports/1/rate", "100 Gb/sec (4X EDR)")
	hw := []byte{0, 0, 0, 0, 0, 0}
	fmt.Sscanf(mac, "%x:%x:%x:%x:%x:%x", &hw[0], &hw[1], &hw[2], &hw[3], &hw[4], &hw[5])
	f.file(ib+"/ports/1/gids/0", fmt.Sprintf("fe80:0000:0000:0000:%02x%02x:%02xff:fe%02x:%02x%02x", hw[0]^2, hw[1], hw[2], hw[3], hw[4], hw[5]))
	for _, c := range []string{"tx_bytes", "tx_pkts", "rx_bytes", "rx_pkts", "rx_drops", "rdma_read_wr_err", "retrans_pkts"} {
		f.file(ib+"/ports/1/hw_counters/"+c, "0")
	}
	f.file(ib+"/ports/1/hw_counters/lifespan", "10")
	for _, c := range []string{"submitted_cmds", "completed_cmds", "cmds_err", "keep_alive_rcvd", "a_counter_nobody_knows"} {
		f.file(ib+"/hw_counters/"+c, "0")
	}
}

func (f *tree) efaSet(name, rel, v string) {
	p, _ := filepath.EvalSymlinks(filepath.Join(f.root, "class/infiniband", name))
	f.file(strings.TrimPrefix(p, f.root+"/")+"/"+rel, v)
}

// stats is a captured-statistics stand-in for the ethtool ioctl.
type stats map[string]map[string]uint64

func (s stats) read(iface string) (map[string]uint64, error) {
	m, ok := s[iface]
	if !ok {
		return nil, fmt.Errorf("no such device")
	}
	out := map[string]uint64{}
	for k, v := range m {
		out[k] = v
	}
	return out, nil
}

func enaStats() map[string]uint64 {
	return map[string]uint64{"total_resets": 0, "reset_fail": 0, "tx_timeout": 0, "bw_in_allowance_exceeded": 100, "bw_out_allowance_exceeded": 0,
		"pps_allowance_exceeded": 0, "conntrack_allowance_exceeded": 0, "linklocal_allowance_exceeded": 0, "conntrack_allowance_available": 500000,
		"queue_0_tx_cnt": 10, "queue_0_rx_cnt": 10}
}

func byName(ds []Device, name string) Device {
	for _, d := range ds {
		if d.Name == name {
			return d
		}
	}
	return Device{}
}

func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(f *tree, s stats)
		dev     string
		state   string
		reasons []string
	}{
		{"two healthy ENA", func(f *tree, s stats) {}, "ens5", OK, nil},
		{"allowance counters rising", func(f *tree, s stats) {
			s["ens5"]["bw_in_allowance_exceeded"] += 5
			s["ens5"]["pps_allowance_exceeded"] += 3
		}, "ens5", Degraded, []string{"bw_in_allowance_exceeded rose by 5", "pps_allowance_exceeded rose by 3"}},
		{"carrier flapping", func(f *tree, s stats) { f.set("ens5", "carrier_down_count", "3") }, "ens5", Degraded, []string{"carrier went down 2 times"}},
		{"no carrier", func(f *tree, s stats) { f.set("ens5", "carrier", "0"); f.set("ens5", "operstate", "down") }, "ens5", Down, []string{"operstate down", "no carrier"}},
		{"admin down", func(f *tree, s stats) { f.set("ens6", "flags", "0x1002") }, "ens6", Down, []string{"administratively down"}},
		{"drops rising", func(f *tree, s stats) { f.set("ens5", "statistics/rx_dropped", "7") }, "ens5", Degraded, []string{"drops or errors rising: rx_dropped"}},
		{"conntrack nearly exhausted", func(f *tree, s stats) { s["ens5"]["conntrack_allowance_available"] = 1000 }, "ens5", Degraded, []string{"connection tracking nearly exhausted"}},
		{"counter reset is no spike", func(f *tree, s stats) { s["ens5"]["bw_in_allowance_exceeded"] = 2 }, "ens5", OK, nil},
		{"device reset", func(f *tree, s stats) { s["ens5"]["total_resets"] = 1; f.set("ens5", "carrier_down_count", "2") }, "ens5", Degraded, []string{"total_resets rose by 1"}},
		{"garbage and missing files", func(f *tree, s stats) {
			f.set("ens5", "carrier_changes", "lots")
			p, _ := filepath.EvalSymlinks(filepath.Join(f.root, "class/net/ens5"))
			os.Remove(p + "/statistics/tx_errors")
		}, "ens5", OK, nil},
		{"EFA port down", func(f *tree, s stats) { f.efaSet("rdmap0s6", "ports/1/state", "1: DOWN") }, "rdmap0s6", Down, []string{`port 1 state "1: DOWN"`}},
		{"EFA rx_drops rising", func(f *tree, s stats) { f.efaSet("rdmap0s6", "ports/1/hw_counters/rx_drops", "7") }, "rdmap0s6", Degraded, []string{"rx_drops rose by 7"}},
		{"EFA garbage counter", func(f *tree, s stats) { f.efaSet("rdmap0s6", "hw_counters/cmds_err", "x") }, "rdmap0s6", OK, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTree(t)
			f.ena("ens5", "0000:00:05.0", "0a:1b:2c:3d:4e:5f")
			f.ena("ens6", "0000:00:06.0", "0a:1b:2c:3d:4e:60")
			f.efa("rdmap0s6", "0000:00:06.1", "0a:1b:2c:3d:4e:60")
			os.MkdirAll(filepath.Join(f.root, "class/net/lo"), 0o755) // virtual: no device link
			s := stats{"ens5": enaStats(), "ens6": enaStats()}
			c := NewChecker(f.root, s.read)
			first := c.Check()
			if len(first) != 3 {
				t.Fatalf("found %d devices, want ens5, ens6, rdmap0s6: %+v", len(first), first)
			}
			for _, d := range first {
				if d.State != OK {
					t.Fatalf("first check %s = %s %v, want ok", d.Name, d.State, d.Reasons)
				}
			}
			tc.change(f, s)
			d := byName(c.Check(), tc.dev)
			if d.State != tc.state {
				t.Errorf("%s state %s (%v), want %s", tc.dev, d.State, d.Reasons, tc.state)
			}
			all := strings.Join(d.Reasons, "; ")
			for _, r := range tc.reasons {
				if !strings.Contains(all, r) {
					t.Errorf("reasons %q lack %q", all, r)
				}
			}
			if tc.reasons == nil && len(d.Reasons) != 0 {
				t.Errorf("unexpected reasons %v", d.Reasons)
			}
		})
	}
}

func TestEFAFiguresAndMapping(t *testing.T) {
	f := newTree(t)
	f.ena("ens6", "0000:00:06.0", "0a:1b:2c:3d:4e:60")
	f.efa("rdmap0s6", "0000:00:06.1", "0a:1b:2c:3d:4e:60")
	d := byName(NewChecker(f.root, nil).Check(), "rdmap0s6")
	if d.Netdev != "ens6" || d.PCI != "0000:00:06.1" || d.Figures["rate_gbps"] != 100 {
		t.Errorf("EFA %+v", d)
	}
	if _, ok := d.Counters["a_counter_nobody_knows"]; !ok {
		t.Error("unknown hw_counter dropped")
	}
	if _, ok := d.Counters["lifespan"]; ok {
		t.Error("lifespan is not a counter")
	}
}

func TestNoDevices(t *testing.T) {
	if ds := NewChecker(t.TempDir(), nil).Check(); len(ds) != 0 {
		t.Errorf("empty sysfs: %v", ds)
	}
}

// BenchmarkCheck is the daemon's steady state (a full read every 10th
// check); BenchmarkCheckFull reads everything every time, as `ec2diag
// health` does and as every check did before: the baseline for the ratio.
func BenchmarkCheck(b *testing.B)     { benchCheck(b, 10) }
func BenchmarkCheckFull(b *testing.B) { benchCheck(b, 1) }

func benchCheck(b *testing.B, fullEvery int) {
	f := &tree{t: &testing.T{}, root: b.TempDir()}
	s := stats{}
	for i := 0; i < 8; i++ {
		name := fmt.Sprintf("ens%d", 5+i)
		f.ena(name, fmt.Sprintf("0000:00:%02x.0", 5+i), fmt.Sprintf("0a:1b:2c:3d:4e:%02x", i))
		st := enaStats()
		for q := 0; q < 32; q++ { // a large instance's per-queue counters
			for _, k := range []string{"tx_cnt", "tx_bytes", "rx_cnt", "rx_bytes", "tx_queue_stop", "rx_page_alloc_fail"} {
				st[fmt.Sprintf("queue_%d_%s", q, k)] = uint64(q)
			}
		}
		s[name] = st
	}
	for i := 0; i < 4; i++ {
		f.efa(fmt.Sprintf("rdmap%ds0", i), fmt.Sprintf("0000:%02x:00.0", 16+i), fmt.Sprintf("0a:1b:2c:3d:4f:%02x", i))
	}
	c := NewChecker(f.root, s.read)
	c.FullEvery = fullEvery
	c.Check()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := len(c.Check()); n != 12 {
			b.Fatalf("%d devices", n)
		}
	}
}

// BenchmarkAttrSysfs and BenchmarkAttrFixture price one attribute read on
// real sysfs and on the fixture's filesystem, to judge BenchmarkCheck.
func BenchmarkAttrSysfs(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := readUint("/sys/class/net/lo/mtu"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAttrFixture(b *testing.B) {
	p := filepath.Join(b.TempDir(), "mtu")
	os.WriteFile(p, []byte("65536\n"), 0o644)
	for i := 0; i < b.N; i++ {
		if _, err := readUint(p); err != nil {
			b.Fatal(err)
		}
	}
}

// The held-descriptor path rests on sysfs producing a fresh value for
// every read from offset 0: checked on the real sysfs with traffic this
// test sends over loopback.
func TestHeldSysfsAttributeReadsFresh(t *testing.T) {
	c := NewChecker("/sys", nil)
	defer c.Close()
	const dir, attr = "/sys/class/net/lo", "statistics/tx_packets"
	v1, err := c.readUint(dir, attr)
	if err != nil {
		testkit.Need(t, false, "no loopback statistics here: %v", err)
	}
	if _, ok := c.files[dir+"/"+attr]; !ok {
		t.Fatal("attribute not held open")
	}
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("udp", ln.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 20; i++ {
		conn.Write([]byte("x"))
	}
	v2, err := c.readUint(dir, attr)
	if err != nil {
		t.Fatal(err)
	}
	if v2 < v1+20 {
		t.Errorf("tx_packets through the held descriptor: %d -> %d after 20 packets", v1, v2)
	}
}

// BenchmarkAttrSysfsHeld is BenchmarkAttrSysfs through a held descriptor.
func BenchmarkAttrSysfsHeld(b *testing.B) {
	c := NewChecker("/sys", nil)
	defer c.Close()
	for i := 0; i < b.N; i++ {
		if _, err := c.readUint("/sys/class/net/lo", "mtu"); err != nil {
			b.Fatal(err)
		}
	}
}

// sysfs values are outside input too (odd drivers, a kernel that changes a
// format, a half-written fixture): whatever an attribute holds, a check
// reports every device with a valid state and never panics.
func FuzzSysfsValues(f *testing.F) {
	f.Add("1", "0x1003", "4: ACTIVE", "100 Gb/sec (4X EDR)", "fe80:0000:0000:0000:081b:2cff:fe3d:4e60", "7")
	f.Add("", "", "", "", "", "")
	f.Add("lots", "0x", ":", "Gb/sec", "fe80::", "-1")
	f.Add("18446744073709551616", "0xffffffffffffffffff", "4", "1e400 Gb/sec", "zz:zz", "\x00\xff")
	f.Fuzz(func(t *testing.T, carrier, flags, state, rate, gid, counter string) {
		tr := newTree(t)
		tr.ena("ens5", "0000:00:05.0", "0a:1b:2c:3d:4e:5f")
		tr.ena("ens6", "0000:00:06.0", "0a:1b:2c:3d:4e:60")
		tr.efa("rdmap0s6", "0000:00:06.1", "0a:1b:2c:3d:4e:60")
		s := stats{"ens5": enaStats(), "ens6": enaStats()}
		c := NewChecker(tr.root, s.read)
		c.Check()
		tr.set("ens5", "carrier", carrier)
		tr.set("ens5", "flags", flags)
		tr.set("ens5", "mtu", counter)
		tr.set("ens5", "statistics/rx_dropped", counter)
		tr.set("ens6", "carrier_down_count", counter)
		tr.efaSet("rdmap0s6", "ports/1/state", state)
		tr.efaSet("rdmap0s6", "ports/1/rate", rate)
		tr.efaSet("rdmap0s6", "ports/1/gids/0", gid)
		tr.efaSet("rdmap0s6", "ports/1/hw_counters/rx_drops", counter)
		tr.efaSet("rdmap0s6", "hw_counters/cmds_err", counter)
		for i := 0; i < 2; i++ {
			ds := c.Check()
			if len(ds) != 3 {
				t.Fatalf("check %d found %d devices, want 3", i, len(ds))
			}
			for _, d := range ds {
				if d.State != OK && d.State != Degraded && d.State != Down {
					t.Fatalf("%s: state %q", d.Name, d.State)
				}
			}
		}
		c.Close()
	})
}

// A device none of whose counters can be read is "unknown", not "ok": the
// health command said ok and exited 0 for it.
func TestUnreadableDeviceIsUnknown(t *testing.T) {
	f := newTree(t)
	f.ena("ens5", "0000:00:05.0", "0a:1b:2c:3d:4e:50")
	p, _ := filepath.EvalSymlinks(filepath.Join(f.root, "class/net/ens5"))
	for _, s := range []string{"rx_errors", "tx_errors", "rx_dropped", "tx_dropped", "rx_over_errors", "rx_packets", "tx_packets", "rx_bytes", "tx_bytes"} {
		os.WriteFile(filepath.Join(p, "statistics", s), []byte("garbage\n"), 0o644)
	}
	for _, s := range []string{"carrier_changes", "carrier_down_count", "carrier_up_count"} {
		os.WriteFile(filepath.Join(p, s), []byte("\x00\n"), 0o644)
	}
	d := byName(NewChecker(f.root, stats{}.read).Check(), "ens5")
	if d.State != Unknown || !strings.Contains(strings.Join(d.Reasons, ";"), "no counter could be read") {
		t.Errorf("all counters unreadable: state %q reasons %v counters %v", d.State, d.Reasons, d.Counters)
	}
	// One readable counter is something to judge by.
	f.set("ens5", "statistics/rx_packets", "5")
	if d := byName(NewChecker(f.root, stats{}.read).Check(), "ens5"); d.State == Unknown {
		t.Errorf("with a readable counter: %q %v", d.State, d.Reasons)
	}
}
