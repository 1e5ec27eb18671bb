package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/store"
	"github.com/ec2diag/ec2diag/internal/hostfs/hostfstest"
	"go.uber.org/zap"
)

// The kernel's last words in pstore are recorded at the next start, once,
// as the boot the agent last ran in: a restart in the same boot, or the
// boot after, records nothing more.
func TestPanicOfTheBootBeforeIsRecordedOnce(t *testing.T) {
	bootA := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	h := hostfstest.New(t, bootA)
	h.BootID = "aaaaaaaa-0000-0000-0000-000000000000"
	h.Write()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(h.Dir, "state")
	cfg.Syslog.Files = []string{filepath.Join(h.Dir, "var/log/syslog")}
	cfg.Spikes.Console = filepath.Join(h.Dir, "dev/kmsg")
	cfg.MemoryLock, cfg.MemoryTrim = false, false
	start := func() {
		t.Helper()
		d, err := Build(context.Background(), cfg, Deps{Log: zap.NewNop(), Root: h.Root, Self: 99999, NoInotify: true, Ethtool: noEthtool})
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
	start() // boot A: nothing to find

	// A panics; B boots with its dump in pstore.
	dump := "Panic#1 Part1\n<6>[  100.000000] Uhhuh. NMI received for unknown reason 30 on CPU 1.\n<0>[  100.000100] Kernel panic - not syncing: NMI: Not continuing\n<4>[  100.000200] CPU: 1 PID: 812 Comm: yes Not tainted 6.1.0-50-cloud-amd64 #1\n"
	if err := os.MkdirAll(filepath.Join(h.Dir, "sys/fs/pstore"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "sys/fs/pstore/dmesg-ramoops-0"), []byte(dump), 0o444); err != nil {
		t.Fatal(err)
	}
	h.BootID, h.Boot = "bbbbbbbb-0000-0000-0000-000000000000", bootA.Add(time.Hour)
	h.Write()
	start()
	start() // restarted within B
	h.BootID, h.Boot = "cccccccc-0000-0000-0000-000000000000", bootA.Add(90*time.Minute)
	h.Write()
	start() // C: the dump is still there (nothing deleted it)

	recs, _, err := store.ReadDir(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	var crashes []evidence.Crash
	for _, r := range recs {
		if r.Kind == evidence.KindCrash {
			c, err := r.DecodeCrash()
			if err != nil {
				t.Fatal(err)
			}
			crashes = append(crashes, c)
		}
	}
	if len(crashes) != 1 {
		t.Fatalf("%d crash records, want 1", len(crashes))
	}
	c := crashes[0]
	if c.BootID != "aaaaaaaa-0000-0000-0000-000000000000" || !c.NMI || c.Task != "PID 812 (yes)" {
		t.Errorf("crash: %+v", c)
	}
	if want := bootA.Add(100 * time.Second); c.Time.Sub(want).Abs() > time.Second {
		t.Errorf("crash at %s, want boot A + 100 s = %s", c.Time, want)
	}
	vs := evidence.Views(recs, h.BootID, h.Boot.Unix())
	if len(vs) != 1 || vs[0].Boot != -2 {
		t.Errorf("views at boot C: %+v; want the crash as boot -2", vs)
	}
}
