// Package procinfo says what a process is, in the words people know it
// by: its command line (bounded, secrets redacted), its user, and what its
// cgroup means (a systemd service, a login session, a container). The
// flight recorder reads this once per process it names in an incident,
// never every sample: the files are small but a scan of hundreds of
// processes every few seconds is what the agent must not cost.
package procinfo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ec2diag/ec2diag/internal/redact"

	"github.com/ec2diag/ec2diag/internal/escape"
)

// MaxCmdline bounds a command line as reported (bytes, after redaction).
const MaxCmdline = 512

// readLimit bounds what is read of /proc/PID/cmdline: enough for
// MaxCmdline after redaction shortened it.
const readLimit = 4096

// Info is what an incident says about one process.
type Info struct {
	Cmdline  string `json:"cmdline,omitempty"`
	Redacted int    `json:"cmdline_redacted,omitempty"` // values hidden
	UID      int    `json:"uid"`
	User     string `json:"user,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
	Group    Group  `json:"group"`
}

// Group is what a cgroup path means.
type Group struct {
	// Kind: "service", "session", "container", "user-service", "system"
	// (another unit: init.scope, a slice), or "" when unknown.
	Kind string `json:"kind,omitempty"`
	// Name: the unit (etl.service, session-3.scope), or the container id.
	Name string `json:"name,omitempty"`
	// Container: the runtime ("docker", "containerd", "podman", "kubepods")
	// and, where its own files say it, the container's name.
	Runtime       string `json:"runtime,omitempty"`
	ContainerName string `json:"container_name,omitempty"`
	// Session: the login session's id; UID the owner of a user slice.
	Session string `json:"session,omitempty"`
	UID     int    `json:"slice_uid,omitempty"`
}

// Reader reads process information under injected roots.
type Reader struct {
	Proc string // the proc root
	// Root is the file system root for /etc/passwd and the container
	// runtimes' files ("/").
	Root  string
	users map[int]string
}

// Read returns what is known of pid. Missing files leave fields empty:
// the process may have exited, or the sandbox may hide them.
func (r *Reader) Read(pid int) Info {
	dir := filepath.Join(r.Proc, strconv.Itoa(pid))
	var in Info
	in.UID = -1
	if b, err := readBounded(filepath.Join(dir, "cmdline"), readLimit); err == nil {
		in.Cmdline, in.Redacted = Cmdline(b)
	}
	if b, err := readBounded(filepath.Join(dir, "status"), 8192); err == nil {
		in.UID = uidOf(b)
	}
	if in.UID >= 0 {
		in.User = r.user(in.UID)
	}
	if b, err := readBounded(filepath.Join(dir, "cgroup"), 8192); err == nil {
		in.Cgroup = CgroupPath(b)
		in.Group = Classify(in.Cgroup)
		if in.Group.Kind == "container" && in.Group.Runtime == "docker" {
			in.Group.ContainerName = r.dockerName(in.Group.Name)
		}
	}
	return in
}

// readBounded reads at most n bytes of a regular file, without blocking
// on anything else (a FIFO put where a /proc file should be).
func readBounded(path string, n int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscallNonblock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, os.ErrInvalid
	}
	buf := make([]byte, n)
	m := 0
	for m < n {
		k, err := f.Read(buf[m:])
		m += k
		if err != nil || k == 0 {
			break
		}
	}
	return buf[:m], nil
}

// Cmdline turns the NUL-separated /proc/PID/cmdline into one line:
// secrets redacted (internal/redact), control characters escaped, at most
// MaxCmdline bytes (cut on a character boundary, "..." appended).
func Cmdline(raw []byte) (string, int) {
	raw = bytes.TrimRight(raw, "\x00")
	if len(raw) == 0 {
		return "", 0 // a kernel thread, or a zombie
	}
	args := strings.Split(string(raw), "\x00")
	args, n := redact.Args(args)
	for i, a := range args {
		args[i] = escape.Control(a)
	}
	return escape.Truncate(strings.Join(args, " "), MaxCmdline), n
}

func uidOf(status []byte) int {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if f, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			fs := strings.Fields(f)
			if len(fs) > 0 {
				if u, err := strconv.Atoi(fs[0]); err == nil && u >= 0 {
					return u
				}
			}
		}
	}
	return -1
}

// user names uid from /etc/passwd (read once): the agent has no NSS
// (static binary), and a directory service's users stay numbers.
func (r *Reader) user(uid int) string {
	if r.users == nil {
		r.users = map[int]string{}
		if b, err := readBounded(filepath.Join(r.root(), "etc/passwd"), 1<<20); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Split(line, ":")
				if len(f) < 3 {
					continue
				}
				if u, err := strconv.Atoi(f[2]); err == nil {
					if _, dup := r.users[u]; !dup {
						r.users[u] = escape.Control(f[0])
					}
				}
			}
		}
	}
	return r.users[uid]
}

func (r *Reader) root() string {
	if r.Root == "" {
		return "/"
	}
	return r.Root
}

// dockerName reads the container's name from dockerd's own state
// (config.v2.json), without asking the daemon.
func (r *Reader) dockerName(id string) string {
	if len(id) != 64 {
		return ""
	}
	b, err := readBounded(filepath.Join(r.root(), "var/lib/docker/containers", id, "config.v2.json"), 1<<20)
	if err != nil {
		return ""
	}
	var c struct{ Name string }
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return escape.Control(strings.TrimPrefix(c.Name, "/"))
}

// CgroupPath is the unified (v2) path of /proc/PID/cgroup, or the
// name=systemd hierarchy's on a v1 host.
func CgroupPath(b []byte) string {
	var v1 string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
		if i := strings.Index(line, ":name=systemd:"); i >= 0 {
			v1 = line[i+len(":name=systemd:"):]
		}
	}
	return v1
}
