package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/ec2diag/ec2diag/collectors/kcrash"
	"github.com/ec2diag/ec2diag/internal/atomicfile"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/logging"
	"go.uber.org/zap"
)

// crashStateFile remembers, across boots, the boot the agent last started
// in (a crash found at this start is that boot's) and the dumps already
// recorded (systemd-pstore leaves them in /var/lib/systemd/pstore).
const crashStateFile = "kcrash.json"

// maxSeen bounds the remembered dumps; the oldest are forgotten first.
const maxSeen = 256

type crashState struct {
	BootID   string   `json:"boot_id"`
	BootTime int64    `json:"boot_time"`
	Seen     []string `json:"dumps_seen"`
}

// recordCrashes looks, once per start, for what the kernel left of a crash
// of an earlier boot, and keeps it as a kernel_crash record: a panicked
// machine (EC2's diagnostic interrupt among the ways) wrote nothing to the
// journal, and this is where `incidents --boot -1` finds its last words.
func (s *Daemon) recordCrashes() {
	log := s.d.Log.Named("kcrash")
	path := filepath.Join(s.cfg.StateDir, crashStateFile)
	var st crashState
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			log.Warn("crash state unreadable; starting afresh", zap.String(logging.KeyFile, path), zap.Error(err))
			st = crashState{}
		}
	}
	curID, curTime := s.d.Root.BootID(), s.d.Root.BootTime()
	prevID, prevTime := st.BootID, st.BootTime
	if evidence.SameBoot(prevID, prevTime, curID, curTime) {
		prevID, prevTime = "", 0 // a restart within this boot: no boot before known
	}
	seen := map[string]bool{}
	for _, k := range st.Seen {
		seen[k] = true
	}
	dumps, skipped := kcrash.Find(s.d.Root, s.cfg.StateDir)
	for _, sk := range skipped {
		log.Warn("a crash dump could not be read", zap.String(logging.KeyEvent, "kernel_crash_unreadable"), zap.String("dump", escape.Control(sk)))
	}
	var fresh []kcrash.Dump
	for _, d := range dumps {
		if !seen[d.Key] {
			fresh = append(fresh, d)
			st.Seen = append(st.Seen, d.Key)
		}
	}
	if len(fresh) > 0 {
		c := kcrash.Parse(fresh, prevTime)
		c.BootID, c.BootTime = prevID, prevTime
		if err := s.keeper.Crash(s.d.Clock.Now(), &c); err != nil {
			log.Error("crash not recorded", zap.Error(err))
			return
		}
		// On disk before it counts as seen: else a crash right now
		// would lose it for good.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.keeper.Flush(ctx)
		cancel()
		if err != nil {
			log.Error("crash record not on disk yet; looked for again at the next start", zap.Error(err))
			return
		}
		log.Error("an earlier boot ended in a kernel "+c.Kind, zap.String(logging.KeyEvent, "kernel_crash"),
			zap.String("reason", c.Reason), zap.String("task", c.Task), zap.Bool("nmi", c.NMI),
			zap.Time("crashed_at", c.Time), zap.String("crashed_boot_id", prevID), zap.Strings("dumps", c.Files))
	}
	// Recorded or seen before: the copies made for this start are done.
	if err := kcrash.Forget(dumps); err != nil {
		log.Warn("crash dump copies not removed", zap.Error(err))
	}
	if n := len(st.Seen); n > maxSeen {
		st.Seen = st.Seen[n-maxSeen:]
	}
	st.BootID, st.BootTime = curID, curTime
	b, _ := json.Marshal(st)
	if err := atomicfile.Write(path, b, atomicfile.Options{Durable: true}); err != nil {
		log.Warn("crash state not saved", zap.String(logging.KeyFile, path), zap.Error(err))
	}
}
