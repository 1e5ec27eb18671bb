// Package statedir checks the agent's state directory before anything is
// written in it: the agent (often root) must not follow a link another
// user planted there, nor keep its evidence where others can change it.
package statedir

import (
	"fmt"
	"os"
	"syscall"
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
