// Package hostfs names where the host's pseudo-filesystems and files are:
// /proc, /sys and the root the rest is found under (/etc/passwd, the
// container runtimes' state, /var/crash). Every reader takes a Root, so a
// test points the whole agent at a fixture tree, and the agent can run
// in a container with the host's trees mounted elsewhere (the procfs FS
// pattern). Default is the only place the real paths are written.
package hostfs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Root locates the host's trees.
type Root struct {
	// Proc is where procfs is mounted ("/proc").
	Proc string
	// Sys is where sysfs is mounted ("/sys").
	Sys string
	// FS is the host's root directory ("/"): /etc/passwd, /var/lib/docker,
	// /var/crash, /sys/fs/pstore are looked up under it.
	FS string
	// Dev is where device nodes are ("/dev").
	Dev string
}

// Self is the agent's own process in procfs: always the real one, whatever
// root the host is read from.
const Self = "/proc/self"

// Default is the running host.
func Default() Root { return Root{Proc: "/proc", Sys: "/sys", FS: "/", Dev: "/dev"} }

// At is a fixture tree laid out like a host: dir/proc, dir/sys, dir/dev
// and dir itself as the root.
func At(dir string) Root {
	return Root{Proc: filepath.Join(dir, "proc"), Sys: filepath.Join(dir, "sys"), FS: dir, Dev: filepath.Join(dir, "dev")}
}

// OrDefault fills the empty fields of r from Default: a zero Root is the
// running host.
func (r Root) OrDefault() Root {
	d := Default()
	if r.Proc == "" {
		r.Proc = d.Proc
	}
	if r.Sys == "" {
		r.Sys = d.Sys
	}
	if r.FS == "" {
		r.FS = d.FS
	}
	if r.Dev == "" {
		r.Dev = d.Dev
	}
	return r
}

// ProcPath joins elem under the proc root.
func (r Root) ProcPath(elem ...string) string {
	return filepath.Join(append([]string{r.OrDefault().Proc}, elem...)...)
}

// SysPath joins elem under the sys root.
func (r Root) SysPath(elem ...string) string {
	return filepath.Join(append([]string{r.OrDefault().Sys}, elem...)...)
}

// Path joins an absolute host path (such as "/etc/passwd") under the root.
func (r Root) Path(abs string) string { return filepath.Join(r.OrDefault().FS, abs) }

// DevPath joins elem under the device directory.
func (r Root) DevPath(elem ...string) string {
	return filepath.Join(append([]string{r.OrDefault().Dev}, elem...)...)
}

// Validate says which tree is missing or not a directory: a typo in a
// configured root is an error at start, not empty figures for ever.
func (r Root) Validate() error {
	r = r.OrDefault()
	for _, p := range []struct{ name, dir string }{{"proc", r.Proc}, {"sys", r.Sys}, {"root", r.FS}} {
		st, err := os.Stat(p.dir)
		if err != nil {
			return fmt.Errorf("host %s root: %w", p.name, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("host %s root %s: not a directory", p.name, p.dir)
		}
	}
	return nil
}

// BootID reads the kernel's boot id, which tells records of this boot from
// those of the boot that hung ("unknown" when unreadable).
func (r Root) BootID() string {
	b, err := os.ReadFile(r.ProcPath("sys/kernel/random/boot_id"))
	if err != nil {
		return "unknown"
	}
	return string(bytes.TrimSpace(b))
}

// BootTime reads btime from /proc/stat: the boot's start in unix seconds,
// 0 if unreadable.
func (r Root) BootTime() int64 {
	b, err := os.ReadFile(r.ProcPath("stat"))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			n, _ := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n
		}
	}
	return 0
}
