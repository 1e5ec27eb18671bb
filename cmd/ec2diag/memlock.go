package main

import (
	"github.com/ec2diag/ec2diag/internal/logging"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// lockMemory locks the agent's pages in RAM as they are touched
// (MCL_ONFAULT: nothing is faulted in up front, so RSS does not grow).
// Without it, the VM's thrash scenario evicted the agent's program text
// like everyone else's. Failure is not fatal: RLIMIT_MEMLOCK may be too
// low (outside the unit), or the kernel may refuse.
func lockMemory(log *zap.Logger) {
	err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
	if err == nil {
		log.Info("memory locked: the agent's pages stay resident when memory runs out", zap.String(logging.KeyEvent, "memory_lock"))
		return
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
	log.Warn("memory_lock: could not lock the agent's pages; it may stall when memory runs out",
		zap.Error(err), zap.Uint64("rlimit_memlock", lim.Cur), zap.String("hint", "the unit sets LimitMEMLOCK=infinity"))
}
