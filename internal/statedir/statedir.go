// Package statedir checks the agent's state directory before anything is
// written in it: the agent (often root) must not follow a link another
// user planted there, nor keep its evidence where others can change it.
package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Check creates dir (0750) if missing, then refuses it unless it is a real
// directory (not a symlink), owned by this user or root, and not writable
// by group or others.
func Check(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("state directory %s is a symbolic link: give its real path", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return fmt.Errorf("state directory %s belongs to uid %d, not to this user (uid %d): another user could plant files the agent then trusts", dir, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("state directory %s is writable by others (mode %04o): chmod go-w it, or use a directory of your own", dir, perm)
	}
	return nil
}

// LockName is the file in the state directory an agent holds locked for
// as long as it runs.
const LockName = "agent.lock"

// Lock takes the state directory for this process: two agents on one
// directory would read the same syslog checkpoint (each line handled
// twice), append to one incident store and say every spike twice on the
// console. A second `ec2diag run` by hand beside the service is the usual
// way to get there. The lock is flock(2) on LockName, which the kernel
// drops when the process dies however it dies, so a crash or kill -9
// leaves nothing to clean up; the file holds the holder's pid for the
// error message. It does not block: the caller is refused at once.
func Lock(dir string) (release func(), err error) {
	p := filepath.Join(dir, LockName)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "another process"
			b := make([]byte, 32)
			if n, _ := f.ReadAt(b, 0); n > 0 {
				if pid, e := strconv.Atoi(strings.TrimSpace(string(b[:n]))); e == nil && pid > 0 {
					holder = fmt.Sprintf("process %d", pid)
				}
			}
			return nil, fmt.Errorf("state directory %s is in use by another ec2diag agent (%s holds %s): one agent per state directory; give this one its own --state-dir", dir, holder, p)
		}
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	// The pid is only for the message above; a failure to write it
	// changes nothing about the lock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
