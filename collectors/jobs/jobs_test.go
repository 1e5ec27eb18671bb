package jobs

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/syslog"
)

func TestJobName(t *testing.T) {
	for cmd, want := range map[string]string{
		"command -v debian-sa1 > /dev/null && debian-sa1 1 1":                         "debian-sa1",
		"test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )": "cron.daily",
		"/usr/lib64/sa/sa1 1 1": "sa1",
		"[ -x /usr/lib/php/sessionclean ] && if [ ! -d /run/systemd/system ]; then /usr/lib/php/sessionclean; fi": "sessionclean",
		"cd /srv/app && ./bin/rake jobs:work >> /var/log/app.log 2>&1":                                            "rake",
		"PATH=/usr/bin:/bin nice -n 10 ionice -c3 /usr/local/bin/backup.sh --full":                                "backup.sh",
		"timeout 300 flock -n /tmp/x.lock python3 /opt/etl/load.py":                                               "load.py",
		"/bin/sh -c 'echo hi'":  "sh",
		"php /var/www/cron.php": "cron.php",
		"":                      "unknown",
	} {
		if got := JobName(cmd); got != want {
			t.Errorf("JobName(%q) = %q, want %q", cmd, got, want)
		}
	}
	n := &Namer{Rules: []NameRule{{Pattern: regexp.MustCompile(`backup`), Name: "nightly-backup"}}}
	if got := n.Name("/usr/local/bin/backup.sh"); got != "nightly-backup" {
		t.Errorf("override: %q", got)
	}
}

// An SSH login gives its user and address, and the logging sshd's pid (the
// ancestor of the session's processes); what is not a login is not one.
func TestSSHLogin(t *testing.T) {
	for line, want := range map[string]string{
		"sshd[812]: Accepted publickey for ubuntu from 10.0.0.5 port 51514 ssh2: ED25519 SHA256:abc":    "812 ubuntu 10.0.0.5",
		"sshd[90]: Accepted password for admin from 2001:db8::1 port 22 ssh2":                           "90 admin 2001:db8::1",
		"sshd-session[4100]: Accepted keyboard-interactive/pam for ec2-user from 192.0.2.7 port 1 ssh2": "4100 ec2-user 192.0.2.7",
		"sshd[812]: Accepted publickey for ubuntu from not-an-address port 1 ssh2":                      "",
		"sshd[812]: Accepted publickey for  from 10.0.0.5 port 1 ssh2":                                  "",
		"sshd[812]: Failed password for root from 10.0.0.5 port 1 ssh2":                                 "",
		"sshd: Accepted publickey for ubuntu from 10.0.0.5 port 1 ssh2":                                 "", // no pid to tie it to
		"sudo[812]: Accepted publickey for ubuntu from 10.0.0.5 port 1 ssh2":                            "",
	} {
		p := &syslog.Parser{Location: time.UTC}
		var l syslog.Line
		p.Parse([]byte("2026-12-03T10:00:00Z host "+line), &l)
		var ev Event
		got := ""
		if Recognize(&l, &ev) && ev.Type == TypeSSHLogin {
			got = fmt.Sprintf("%d %s %s", ev.PID, ev.User, ev.Addr)
		}
		if got != want {
			t.Errorf("%q: got %q, want %q", line, got, want)
		}
	}
}

// runsFrom parses a fixture and returns the tracker's runs and all events.
func runsFrom(t *testing.T, file string, anchor time.Time) ([]*Run, []Event) {
	f, err := os.Open("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := &syslog.Parser{Location: time.UTC, Anchor: anchor}
	tr := NewTracker(nil, true)
	var evs []Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l syslog.Line
		p.Parse(sc.Bytes(), &l)
		var ev Event
		if Recognize(&l, &ev) {
			evs = append(evs, ev)
			tr.Feed(&ev)
		}
	}
	return tr.Runs(), evs
}

func find(runs []*Run, job string, pid int) *Run {
	for _, r := range runs {
		if r.Job == job && (pid == 0 || r.PID == pid) {
			return r
		}
	}
	return nil
}

func TestUbuntu2004Traditional(t *testing.T) {
	runs, _ := runsFrom(t, "ubuntu2004.log", time.Date(2024, 10, 22, 0, 0, 0, 0, time.UTC))
	sa := find(runs, "debian-sa1", 2978)
	if sa == nil || sa.User != "root" || sa.SessionPID != 2977 || sa.End == nil || sa.End.Sub(sa.Start) != time.Second || sa.EndBy != "session_close" {
		t.Fatalf("debian-sa1 run = %+v", sa)
	}
	if sa.Start != time.Date(2024, 10, 21, 4, 49, 1, 0, time.UTC) {
		t.Errorf("start %v", sa.Start)
	}
	daily := find(runs, "cron.daily", 3101)
	if daily == nil || daily.End == nil || daily.End.Sub(daily.Start) != 39*time.Second || len(daily.Notes) != 1 || !strings.Contains(daily.Notes[0], "No MTA") {
		t.Fatalf("cron.daily run = %+v", daily)
	}
	lr := find(runs, "Rotate log files", 0)
	if lr == nil || lr.Source != "systemd" || lr.End == nil {
		t.Fatalf("description-only unit run = %+v (runs %v)", lr, runs)
	}
}

func TestDebian12(t *testing.T) {
	runs, evs := runsFrom(t, "debian12.log", time.Time{})
	sa := find(runs, "debian-sa1", 2978)
	if sa == nil || sa.End != nil {
		t.Fatalf("debian-sa1 with no session lines: %+v; its end must stay unknown", sa)
	}
	// Two identical jobs in one second: sessions cannot be paired, ends
	// must not be invented.
	for _, pid := range []int{10982, 10983} {
		r := find(runs, "backup.sh", pid)
		if r == nil || r.End != nil || r.Ambiguous == "" {
			t.Errorf("interleaved backup.sh pid %d = %+v; want ambiguous with no end", pid, r)
		}
	}
	ss := find(runs, "sysstat-collect", 0)
	if ss == nil || ss.End == nil || ss.CPU != 1.234 || ss.Result != "success" || ss.Unit != "sysstat-collect.service" {
		t.Errorf("sysstat-collect run = %+v", ss)
	}
	// A job open at the boot ends "before the boot", time unknown.
	php := find(runs, "cron.php", 11001)
	if php == nil || php.End != nil || php.EndBound == nil || php.SessionPID != 11000 || php.User != "www-data" {
		t.Errorf("cron.php run = %+v", php)
	}
	want := map[string]int{TypeOOMInvoked: 1, TypeOOMKill: 2, TypeHungTask: 1, TypeSoftLockup: 1, TypeENA: 1, TypeLinesLost: 1, TypeBoot: 2}
	got := map[string]int{}
	for _, e := range evs {
		got[e.Type]++
		switch e.Type {
		case TypeOOMKill:
			if e.Victim != 4242 || e.Comm != "java" {
				t.Errorf("oom kill %+v", e)
			}
			if e.Result != "summary" && e.RSSKB != 3912345 {
				t.Errorf("oom anon-rss %d", e.RSSKB)
			}
			if e.Result == "summary" && e.Memcg != "/system.slice/cron.service" {
				t.Errorf("oom memcg %q", e.Memcg)
			}
		case TypeHungTask:
			if e.Comm != "jbd2/nvme0n1p1-" || e.Victim != 321 {
				t.Errorf("hung task %+v", e)
			}
		case TypeSoftLockup:
			if e.Comm != "stress" || e.Victim != 1234 {
				t.Errorf("soft lockup %+v", e)
			}
		case TypeENA:
			if e.Iface != "ens5" {
				t.Errorf("ena %+v", e)
			}
		case TypeLinesLost:
			if e.Count != 1234 {
				t.Errorf("lines lost %+v", e)
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%d %s events, want %d", got[k], k, v)
		}
	}
}

func TestDebianL8AndFailure(t *testing.T) {
	runs, _ := runsFrom(t, "debian12-L8.log", time.Time{})
	r := find(runs, "report", 501)
	if r == nil || r.SessionPID != 500 || r.End == nil || r.End.Sub(r.Start) != 3*time.Second || r.EndBy != "end_line" {
		t.Errorf("-L 8 run = %+v", r)
	}
	f := find(runs, "false", 511)
	if f == nil || f.End == nil || f.Result != "exit status 1" {
		t.Errorf("failed run = %+v", f)
	}
}

func TestAmazonLinux(t *testing.T) {
	runs, _ := runsFrom(t, "al2.log", time.Date(2025, 1, 1, 1, 0, 0, 0, time.UTC))
	a, b := find(runs, "sa1", 900), find(runs, "sa1", 901)
	if a == nil || b == nil || a.Source != "cronie" || a.Start.Year() != 2024 || b.Start.Year() != 2025 {
		t.Fatalf("AL2 runs across new year: %+v %+v", a, b)
	}
	if a.End != nil {
		t.Errorf("AL2 cronie 1.4 has no CMDEND: end must be unknown, got %v", a.End)
	}
	runs, _ = runsFrom(t, "al2023.log", time.Time{})
	j := find(runs, "job.sh", 7000)
	if j == nil || j.End == nil || j.End.Sub(j.Start) != 4*time.Second {
		t.Errorf("AL2023 CMDEND pairing: %+v", j)
	}
	d := find(runs, "dnf-makecache", 0)
	if d == nil || d.End == nil || d.Result != "exit-code" || d.CPU != 62.5 {
		t.Errorf("failed unit: %+v", d)
	}
}

func TestPIDReuse(t *testing.T) {
	p := &syslog.Parser{Location: time.UTC}
	tr := NewTracker(nil, true)
	for _, s := range []string{
		"2024-10-21T01:00:01.000000+00:00 h CRON[99]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
		"2024-10-21T01:00:01.000100+00:00 h CRON[100]: (root) CMD (a.sh)",
		"2024-10-21T01:00:05.000000+00:00 h CRON[99]: pam_unix(cron:session): session closed for user root",
		// pids wrapped: the same numbers, hours later, a different job
		"2024-10-21T05:00:01.000000+00:00 h CRON[99]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
		"2024-10-21T05:00:01.000100+00:00 h CRON[100]: (root) CMD (b.sh)",
		"2024-10-21T05:00:09.000000+00:00 h CRON[99]: pam_unix(cron:session): session closed for user root",
	} {
		var l syslog.Line
		p.Parse([]byte(s), &l)
		var ev Event
		if Recognize(&l, &ev) {
			tr.Feed(&ev)
		}
	}
	runs := tr.Runs()
	if len(runs) != 2 || runs[0].End.Sub(runs[0].Start) != 4*time.Second-100*time.Microsecond || runs[1].End.Sub(runs[1].Start) != 8*time.Second-100*time.Microsecond {
		for _, r := range runs {
			t.Logf("%+v end %v", r, r.End)
		}
		t.Fatal("pid reuse confused the pairing")
	}
}

func FuzzRecognize(f *testing.F) {
	for _, s := range []string{
		"2024-10-21T04:49:01.801940+00:00 h CRON[2978]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
		"2024-10-21T04:49:01Z h CRON[1]: (root) CMD ([2] x)",
		"2024-10-21T04:49:01Z h kernel: Out of memory: Killed process 1 (a) anon-rss:5kB",
		"2024-10-21T04:49:01Z h kernel: oom-kill:task=a,pid=1",
		"2024-10-21T04:49:01Z h systemd[1]: x.service: Consumed 1min 2s CPU time.",
		"2024-10-21T04:49:01Z h kernel: INFO: task a:1 blocked for more than 120 seconds.",
		"2024-10-21T04:49:01Z h CRON[1]: (CRON) error (grandchild #5 failed with exit status 1)",
		"2024-10-21T04:49:01Z h sshd[812]: Accepted publickey for ubuntu from 10.0.0.5 port 51514 ssh2: ED25519 SHA256:x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &syslog.Parser{Location: time.UTC}
		var l syslog.Line
		p.Parse(b, &l)
		var ev Event
		tr := NewTracker(nil, true)
		if Recognize(&l, &ev) {
			if ev.Type == "" {
				t.Fatal("recognised with no type")
			}
			tr.Feed(&ev)
			tr.Boot(time.Now())
		}
	})
}

func BenchmarkRecognize(b *testing.B) {
	lines := [][]byte{
		[]byte("2024-10-21T04:49:01.801940+00:00 ip-172-31-20-5 CRON[2978]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"),
		[]byte("2024-10-21T04:49:01.801940+00:00 ip-172-31-20-5 sshd[100]: Accepted publickey for ubuntu from 10.0.0.1 port 5 ssh2"),
		[]byte("2024-10-21T04:49:01.801940+00:00 ip-172-31-20-5 systemd[1]: Started Session 5 of User ubuntu."),
		[]byte("2024-10-21T04:49:01.801940+00:00 ip-172-31-20-5 kernel: [ 1.0] audit: type=1400"),
	}
	p := &syslog.Parser{}
	var l syslog.Line
	var ev Event
	b.ReportAllocs()
	b.SetBytes(110)
	n := 0
	for i := 0; i < b.N; i++ {
		p.Parse(lines[i%len(lines)], &l)
		if Recognize(&l, &ev) {
			n++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// At boot every unit says "Starting"; services then say "Started" and keep
// running, oneshots say "Finished" when done. Only the latter are job runs:
// a real VM listed rsyslog, dbus and the agent itself as jobs at each boot.
func TestServicesAreNotJobRuns(t *testing.T) {
	runs, evs := runsFrom(t, "debian12-boot.log", time.Time{})
	var names []string
	for _, r := range runs {
		names = append(names, r.Job)
	}
	want := "[e2scrub_reap sysstat-collect]"
	if fmt.Sprint(names) != want {
		t.Errorf("job runs %v, want %s", names, want)
	}
	done := 0
	for _, e := range evs {
		if e.Type == TypeStartupDone {
			done++
			if e.PID == 1 && !strings.Contains(e.Message, "14.528s") {
				t.Errorf("startup message %q", e.Message)
			}
		}
	}
	if done != 2 {
		t.Errorf("%d startup_done events, want 2 (PID 1 and a user manager; the agent takes PID 1's)", done)
	}
	// Cancelled runs are reported, so the recorder forgets them.
	tr := NewTracker(nil, true)
	var cancelled []string
	tr.OnCancel = func(r *Run) { cancelled = append(cancelled, r.Job) }
	for _, e := range evs {
		tr.Feed(&e)
	}
	if fmt.Sprint(cancelled) != "[rsyslog ec2diag runaway]" {
		t.Errorf("cancelled %v", cancelled)
	}
	if len(tr.Open()) != 0 {
		t.Errorf("open runs left: %v", tr.Open())
	}
}

// forged makes n CMD events as `logger -t 'CRON[pid]'` writes them: each a
// new pid, none ever ended.
func forged(n int, base time.Time) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{Type: TypeCronCmd, Source: "cron", Time: base.Add(time.Duration(i) * time.Millisecond), PID: 10000 + i, JobPID: 10000 + i,
			User: "root", Command: "backup.sh", Host: "h"}
	}
	return evs
}

// A flood of CMD lines nobody ends keeps at most MaxOpen runs open, says
// how many it gave up, and an analyze-style tracker lists at most MaxKept.
// (Open runs grew without bound: analyze reached 10.4 GB RSS.)
func TestFloodOfOpenRunsIsBounded(t *testing.T) {
	tr := NewTracker(nil, false)
	evs := forged(3*MaxOpen, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := range evs {
		tr.Feed(&evs[i])
	}
	if n := len(tr.Open()); n != MaxOpen {
		t.Fatalf("%d runs open, want the bound %d", n, MaxOpen)
	}
	if tr.Dropped != 2*MaxOpen {
		t.Fatalf("dropped %d, want %d counted", tr.Dropped, 2*MaxOpen)
	}
	// The newest are the ones kept, and still end by their pid.
	last := evs[len(evs)-1]
	end := Event{Type: TypeCronFailed, Source: "cron", Time: last.Time.Add(time.Second), JobPID: last.JobPID, Result: "exit status 1"}
	tr.Feed(&end)
	if n := len(tr.Open()); n != MaxOpen-1 {
		t.Fatalf("the newest run did not end by its pid: %d open", n)
	}
}

// An event costs the same with 4,096 runs open as with none: each used to
// scan every open run (~1k forged lines/s on a core). Reported as the
// ratio of ns/event full vs empty; run with -bench Tracker.
func BenchmarkTrackerEventFullVsEmpty(b *testing.B) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	measure := func(prefill int) float64 {
		tr := NewTracker(nil, false)
		pre := forged(prefill, base)
		for i := range pre {
			tr.Feed(&pre[i])
		}
		evs := forged(b.N, base.Add(time.Hour))
		for i := range evs {
			evs[i].PID += 1 << 22
			evs[i].JobPID += 1 << 22
		}
		start := time.Now()
		for i := range evs {
			tr.Feed(&evs[i])
			end := Event{Type: TypeCronFailed, Source: "cron", Time: evs[i].Time, JobPID: evs[i].JobPID}
			tr.Feed(&end)
		}
		return float64(time.Since(start).Nanoseconds()) / float64(b.N)
	}
	empty := measure(0)
	full := measure(MaxOpen - 1)
	b.ReportMetric(empty, "ns/event-empty")
	b.ReportMetric(full, "ns/event-full")
	b.ReportMetric(full/empty, "full/empty")
}
