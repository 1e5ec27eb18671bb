package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit"
)

// The real Debian cron daemon runs a real job; rsyslog writes what cron
// logs to a file; the agent, tailing that file, reports the run with its
// start and end, and `ec2diag analyze` finds it in the file afterwards.
// cron runs in its own mount namespace with its own /etc/cron.d,
// /etc/crontab, spool, /run and /dev/log, so the host's cron jobs never
// run. Slow: cron starts jobs on the minute (skipped with -short).
func TestRealCronJobRunDetected(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for cron's next minute")
	}
	testkit.RequireRoot(t)
	cron := testkit.RequireTool(t, "cron")
	rsyslogd := testkit.RequireTool(t, "rsyslogd")
	unshare := testkit.RequireTool(t, "unshare")
	b := bin(t)
	dir, err := os.MkdirTemp("", "ec2diag-cron") // short: socket path limit
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	sock, logf := filepath.Join(dir, "log.sock"), filepath.Join(dir, "syslog")
	os.MkdirAll(filepath.Join(dir, "work"), 0o755)
	writeFile(t, logf, "")
	writeFile(t, filepath.Join(dir, "rsyslog.conf"), fmt.Sprintf(`global(workDirectory="%s/work")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="%s" RateLimit.Interval="0")
*.* action(type="omfile" file="%s" template="RSYSLOG_FileFormat")
`, dir, sock, logf))
	rs := exec.Command(rsyslogd, "-n", "-f", filepath.Join(dir, "rsyslog.conf"), "-i", filepath.Join(dir, "rsyslog.pid"))
	rs.Stderr = os.Stderr
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { rs.Process.Kill(); rs.Wait() }()
	waitFor(t, func() bool { _, err := os.Stat(sock); return err == nil }, "rsyslog socket")

	// The agent follows the file from the start, printing its records.
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, fmt.Sprintf("%shost:\n  interval: 500ms\nsyslog:\n  source: files\n  files: [%s]\n  from_start: true\n  poll_interval: 100ms\n", noConsole, logf))
	agent := startAgent(t, b, nil, "--config", cfg, "--state-dir", state, "--log-format", "json", "--print")

	probe := filepath.Join(dir, "ec2diag-cron-probe")
	writeFile(t, probe, "#!/bin/sh\necho working\nsleep 3\n")
	os.Chmod(probe, 0o755)
	// In the namespace: private cron tables, spool and /run; a /dev whose
	// log socket is rsyslog's; Debian cron at -L 3 (start and end lines).
	script := fmt.Sprintf(`set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /etc/cron.d
printf '* * * * * root %[1]s\n' > /etc/cron.d/ec2diag-test
chmod 0644 /etc/cron.d/ec2diag-test
touch %[2]s/crontab && mount --bind %[2]s/crontab /etc/crontab
mount -t tmpfs tmpfs /var/spool/cron && mkdir -m 1730 /var/spool/cron/crontabs
mount -t tmpfs tmpfs /run
mkdir %[2]s/olddev && mount --bind /dev %[2]s/olddev
mount -t tmpfs -o mode=0755 tmpfs /dev
for n in null zero urandom random tty; do touch /dev/$n; mount --bind %[2]s/olddev/$n /dev/$n; done
ln -s %[3]s /dev/log
exec %[4]s -f -L 3
`, probe, dir, sock, cron)
	cr := exec.Command(unshare, "-m", "sh", "-c", script)
	cr.Stdout, cr.Stderr = os.Stderr, os.Stderr
	if err := cr.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cr.Process.Kill(); cr.Wait() }()

	// Until the job ran and ended: at most a minute and a bit.
	var run map[string]any
	deadline := time.Now().Add(100 * time.Second)
	for run == nil && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		sc := bufio.NewScanner(strings.NewReader(agent.stdout.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r map[string]any
			if json.Unmarshal(sc.Bytes(), &r) == nil && r["type"] == "job_run" {
				if d, _ := r["dims"].(map[string]any); d != nil && strings.Contains(fmt.Sprint(d["job"]), "ec2diag-cron-probe") {
					run = r
				}
			}
		}
	}
	logData, _ := os.ReadFile(logf)
	if run == nil {
		t.Fatalf("no job_run for the cron job in the agent's records; the syslog file:\n%s", logData)
	}
	m, _ := run["metrics"].(map[string]any)
	if d, _ := m["duration_seconds"].(float64); d < 2.5 || d > 10 {
		t.Errorf("job_run duration %v s, want about 3 (the job sleeps 3 s): %v", d, run)
	}
	t.Logf("agent: %s", run["message"])

	// After the fact, from the file alone: start and end from cron's lines.
	out, err := exec.Command(b, "analyze", "--syslog", logf, "--format", "json").Output()
	if err != nil {
		t.Fatalf("analyze: %v", err)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) != nil || r["type"] != "job_run" || !strings.Contains(fmt.Sprint(r["job"]), "ec2diag-cron-probe") {
			continue
		}
		found = true
		if r["end"] == nil || r["user"] != "root" || r["source"] != "cron" {
			t.Errorf("analyze job_run without end, user or source: %v", r)
		}
	}
	if !found {
		t.Errorf("analyze found no job_run for the probe:\n%s\nsyslog:\n%s", out, logData)
	}
	if !strings.Contains(string(logData), "CRON[") || !strings.Contains(string(logData), "pam_unix(cron:session)") {
		t.Errorf("the real cron's lines are missing from the log:\n%s", logData)
	}
}
