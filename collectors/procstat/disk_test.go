package procstat

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseDiskstats(t *testing.T) {
	b := []byte(`   8       0 sda 100 0 800 50 200 0 1600 70 3 500 120 0 0 0 0
 259       0 nvme1n1 10 0 80 5 20 0 160 7 0 60 12
   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0
 bad line
 259       1 nvme1n1p1 x 0 80 5 20 0 160 7 0 60 12 0 0 0 0
`)
	got := parseDiskstats(b, nil, nil)
	if len(got) != 3 || got[0] != (DiskStat{Name: "sda", Completed: 300, InFlight: 3, IOTicksMs: 500, WeightedMs: 120}) || got[1].Name != "nvme1n1" {
		t.Fatalf("parsed %+v", got)
	}
}

// A disk with requests in flight that completes none, or each after more
// than a second, is stalled from the first interval that says so; the
// EBS volume id comes from the NVMe serial.
func TestDiskStall(t *testing.T) {
	dir := t.TempDir()
	w := func(name, s string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(s), 0o644)
	}
	w("sys/block/nvme1n1/device/serial", "vol0123456789abcdef0\n")
	d := &Disks{Proc: filepath.Join(dir, "proc"), Sys: filepath.Join(dir, "sys")}
	t0 := time.Unix(1_800_000_000, 0)
	line := func(completed, inflight, ticks, weighted int) string {
		return "259 0 nvme1n1 " + itoa(completed) + " 0 0 0 0 0 0 0 " + itoa(inflight) + " " + itoa(ticks) + " " + itoa(weighted) + "\n"
	}
	w("proc/diskstats", line(100, 0, 1000, 1000))
	d.Observe(t0)
	w("proc/diskstats", line(500, 1, 2000, 3000)) // busy, working
	if s := d.Observe(t0.Add(5 * time.Second)); len(s) != 1 || s[0].Stalled != 0 || s[0].CompletedPerS != 80 || s[0].Volume != "vol-0123456789abcdef0" {
		t.Fatalf("working disk: %+v", s)
	}
	w("proc/diskstats", line(500, 4, 7000, 23000)) // nothing completed in 5 s
	w("proc/diskstats", line(500, 4, 7000, 23000))
	if s := d.Observe(t0.Add(10 * time.Second)); s[0].Stalled != 5*time.Second || s[0].InFlight != 4 {
		t.Fatalf("stalled disk: %+v", s)
	}
	w("proc/diskstats", line(503, 4, 12000, 43000)) // 3 done, each waited ~6.7 s
	if s := d.Observe(t0.Add(15 * time.Second)); s[0].Stalled != 10*time.Second || s[0].LatencyMs < 6000 {
		t.Fatalf("crawling disk: %+v", s)
	}
	// One second of quick completions (a throttle lets small requests
	// through) does not end the stall: its length goes on.
	w("proc/diskstats", line(520, 4, 13000, 43400))
	if s := d.Observe(t0.Add(16 * time.Second)); s[0].Stalled != 11*time.Second {
		t.Fatalf("a blip ended the stall: %+v", s)
	}
	w("proc/diskstats", line(520, 4, 14000, 47400))
	if s := d.Observe(t0.Add(17 * time.Second)); s[0].Stalled != 12*time.Second {
		t.Fatalf("stalled again after the blip: %+v", s)
	}
	w("proc/diskstats", line(900, 0, 14500, 47900))
	if s := d.Observe(t0.Add(22 * time.Second)); s[0].Stalled != 0 {
		t.Fatalf("recovered disk: %+v", s)
	}
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func FuzzParseDiskstats(f *testing.F) {
	f.Add([]byte("259 0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n"))
	f.Add([]byte("8 0 sda 18446744073709551615 0 0 0 0 0 0 0 1 1 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, d := range parseDiskstats(b, nil, nil) {
			if d.Name == "" {
				t.Fatalf("a device without a name from %q", b)
			}
		}
	})
}
