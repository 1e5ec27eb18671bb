package procinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ec2diag/ec2diag/internal/redact"

	"github.com/ec2diag/ec2diag/internal/testkit"
)

// The redaction procinfo applies to argv (internal/redact has the corpus).
func TestRedact(t *testing.T) {
	for _, c := range []struct {
		in, want string
		n        int
	}{
		{"python3 /opt/etl/run.py --full", "python3 /opt/etl/run.py --full", 0},
		{"mysql --password=hunter2 -h db", "mysql --password=*** -h db", 1},
		{"env AWS_SECRET_ACCESS_KEY=abc/def AWS_REGION=eu-west-1 aws s3 ls", "env AWS_SECRET_ACCESS_KEY=*** AWS_REGION=eu-west-1 aws s3 ls", 1},
		{"curl -H x --token abcdef https://h/", "curl -H x --token *** https://h/", 1},
		{"app token=xyz api_key=k1 --api-key=k2 --client-secret s", "app token=*** api_key=*** --api-key=*** --client-secret ***", 4},
		{"psql postgres://etl:s3cr3t@db:5432/x", "psql postgres://etl:***@db:5432/x", 1},
		{"app --passwd= --token --verbose", "app --passwd= --token --verbose", 0}, // nothing to hide
		{"ssh -p 2222 host", "ssh -p 2222 host", 0},                               // -p is a port here
		{"java -Dkeystore.password=pw -jar x.jar", "java -Dkeystore.password=*** -jar x.jar", 1},
		{"app --keyfile=/etc/k --monkey=1", "app --keyfile=/etc/k --monkey=1", 0},
	} {
		got, n := redact.Args(strings.Fields(c.in))
		if s := strings.Join(got, " "); s != c.want || n != c.n {
			t.Errorf("Redact(%q) = %q, %d; want %q, %d", c.in, s, n, c.want, c.n)
		}
	}
}

func TestCmdline(t *testing.T) {
	s, n := Cmdline([]byte("sh\x00-c\x00echo hi\n\x1b[31m --password=x\x00"))
	if s != `sh -c echo hi\x0a\x1b[31m --password=***` || n != 1 {
		// a shell's -c string: what follows a secret's name is hidden up to its end
		t.Errorf("got %q %d", s, n)
	}
	long := strings.Repeat("é", 600)
	s, _ = Cmdline([]byte("x\x00" + long))
	if len(s) > MaxCmdline || !strings.HasSuffix(s, "...") || !utf8.ValidString(s) {
		t.Errorf("long cmdline: %d bytes, valid %v", len(s), utf8.ValidString(s))
	}
	if s, _ := Cmdline(nil); s != "" {
		t.Errorf("empty: %q", s)
	}
}

func TestClassify(t *testing.T) {
	id := strings.Repeat("3f2a", 16)
	for _, c := range []struct {
		path string
		want string
		kind string
	}{
		{"/system.slice/etl.service", "service etl.service", "service"},
		{"/user.slice/user-1000.slice/session-3.scope", "session 3", "session"},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/burn.service", "user service burn.service", "user-service"},
		{"/system.slice/docker-" + id + ".scope", "container 3f2a3f2a3f2a", "container"},
		{"/docker/" + id, "container 3f2a3f2a3f2a", "container"},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-" + id + ".scope", "container 3f2a3f2a3f2a", "container"},
		{"/machine.slice/libpod-" + id + ".scope/container", "container 3f2a3f2a3f2a", "container"},
		{"/init.scope", "init.scope", "system"},
		{"/", "", ""},
		{"/system.slice/" + id, "", ""}, // a bare id outside a runtime's tree
	} {
		g := Classify(c.path)
		if g.String() != c.want || g.Kind != c.kind {
			t.Errorf("Classify(%q) = %+v (%q), want %q", c.path, g, g.String(), c.want)
		}
	}
	if g := Classify("/user.slice/user-1000.slice/session-3.scope"); g.UID != 1000 || g.Session != "3" {
		t.Errorf("session: %+v", g)
	}
}

// A fixture /proc and root: the cmdline redacted, the user from passwd,
// the container's name from dockerd's files.
func TestReadFixture(t *testing.T) {
	proc, root := t.TempDir(), t.TempDir()
	id := strings.Repeat("ab", 32)
	w := func(p, s string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(s), 0o644)
	}
	w(filepath.Join(proc, "42/cmdline"), "postgres\x00-c\x00password=x\x00")
	w(filepath.Join(proc, "42/status"), "Name:\tpostgres\nUid:\t999\t999\t999\t999\n")
	w(filepath.Join(proc, "42/cgroup"), "0::/system.slice/docker-"+id+".scope\n")
	w(filepath.Join(root, "etc/passwd"), "root:x:0:0::/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n")
	w(filepath.Join(root, "var/lib/docker/containers", id, "config.v2.json"), `{"Name":"/db-main","ID":"`+id+`"}`)
	r := &Reader{Proc: proc, Root: root}
	in := r.Read(42)
	if in.Cmdline != "postgres -c password=***" || in.Redacted != 1 || in.User != "postgres" || in.UID != 999 ||
		in.Group.String() != "container abababababab (db-main)" {
		t.Errorf("%+v", in)
	}
	if in := r.Read(7); in.Cmdline != "" || in.UID != -1 {
		t.Errorf("a gone process: %+v", in)
	}
}

// A real process: its command line and the cgroup the kernel says.
func TestReadRealProcess(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30; :", "sh", "--token", "abc")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := &Reader{Proc: "/proc", Root: "/"}
	want := "sh -c sleep 30; : sh --token ***"
	var in Info
	for i := 0; i < 100 && in.Cmdline != want; i++ { // until it has exec'd
		in = r.Read(cmd.Process.Pid)
		time.Sleep(10 * time.Millisecond)
	}
	if in.Cmdline != want || in.UID != os.Getuid() {
		t.Errorf("%+v", in)
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if in.Cgroup != CgroupPath(b) {
		t.Errorf("cgroup %q, /proc says %q", in.Cgroup, b)
	}
}

func FuzzCmdline(f *testing.F) {
	f.Add([]byte("mysql\x00--password=x\x00-h\x00db"))
	f.Add([]byte("a\x00--token\x00b\x00postgres://u:p@h/"))
	f.Add([]byte{0xff, 0, 0x1b, '\n'})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, n := Cmdline(b)
		if len(s) > MaxCmdline || n < 0 {
			t.Fatalf("%d bytes, %d", len(s), n)
		}
		for _, c := range s {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("control character in %q", s)
			}
		}
	})
}

func FuzzClassify(f *testing.F) {
	f.Add("/system.slice/docker-" + strings.Repeat("a", 64) + ".scope")
	f.Add("/user.slice/user-1000.slice/session-3.scope")
	f.Fuzz(func(t *testing.T, p string) {
		_ = Classify(p).String()
	})
}

// A real process in real cgroups named as docker and systemd name them
// (cgroup v2, writable as root): each is classified as its group.
func TestReadRealCgroups(t *testing.T) {
	base := cgroup2Root(t)
	id := strings.Repeat("5e", 32)
	for _, c := range []struct{ rel, want string }{
		{"docker/" + id, "container 5e5e5e5e5e5e"},
		{"ec2diag-test.slice/etl-test.service", "service etl-test.service"},
		{"user.slice/user-1000.slice/session-77.scope", "session 77"},
	} {
		dir := filepath.Join(base, c.rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			testkit.Need(t, false, "cgroup v2 not writable here (root needed): %v", err)
		}
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			cmd.Process.Kill()
			testkit.Need(t, false, "cannot move a process into %s: %v", dir, err)
		}
		in := (&Reader{Proc: "/proc", Root: "/"}).Read(cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		if in.Group.String() != c.want || !strings.HasSuffix(in.Cgroup, c.rel) {
			t.Errorf("in %s: %+v (%q), want %q", c.rel, in, in.Group.String(), c.want)
		}
	}
	for _, rel := range []string{"docker/" + id, "docker", "ec2diag-test.slice/etl-test.service", "ec2diag-test.slice",
		"user.slice/user-1000.slice/session-77.scope", "user.slice/user-1000.slice", "user.slice", ""} {
		os.Remove(filepath.Join(base, rel))
	}
}

// cgroup2Root finds where the unified hierarchy is mounted: /sys/fs/cgroup
// on a v2 host, /sys/fs/cgroup/unified on a hybrid one. Tests create their
// groups under a subtree of their own.
func cgroup2Root(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, " - cgroup2 "); i >= 0 {
			f := strings.Fields(line[:i])
			if len(f) >= 5 {
				return filepath.Join(f[4], "ec2diag-procinfo-test")
			}
		}
	}
	testkit.Need(t, false, "no cgroup2 mount")
	return ""
}

// A unit's processes are the system manager's unit's only: the same name
// under a user's manager or a container's systemd is not it.
func TestSystemUnit(t *testing.T) {
	for path, want := range map[string]string{
		"/system.slice/rt-nightly.service":                                                           "rt-nightly.service",
		"/system.slice/rt-nightly.service/worker":                                                    "rt-nightly.service",
		"/system.slice/batch.slice/rt-nightly.service":                                               "rt-nightly.service",
		"/user.slice/user-1000.slice/user@1000.service/app.slice/rt-nightly.service":                 "",
		"/system.slice/docker-" + strings.Repeat("a", 64) + ".scope/system.slice/rt-nightly.service": "docker-" + strings.Repeat("a", 64) + ".scope",
		"/machine.slice/libpod-x.scope/rt-nightly.service":                                           "",
		"/rt-nightly.service": "",
		"":                    "",
	} {
		if got := SystemUnit(path); got != want {
			t.Errorf("SystemUnit(%q) = %q, want %q", path, got, want)
		}
	}
}
