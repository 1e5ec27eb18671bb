// Command harness runs the VM test: it boots the cached Debian guest under
// QEMU (software emulation, no network), lets the guest's driver install the
// .deb and arm one scenario per boot, watches the guest's heartbeat on its
// second serial port, and resets the guest through QMP when the heartbeat
// stops (what the StatusCheckFailed reboot alarm does on EC2) or when a
// scenario has run its course. At the end it reads the guest's disk and
// checks what the agent recorded against what each scenario did.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence/store"
)

// scenario is what one boot of the guest does, and what the agent must
// say of it after the reset.
type scenario struct {
	name    string
	hangs   bool          // expected to stop the heartbeat (informational)
	maxRun  time.Duration // reset after this even if the guest is still alive
	job     string        // the job or service the incident must blame ("" = no incident)
	procs   []string      // acceptable top processes
	reason  string        // a word the incident's reasons must contain
	comment string
}

var scenarios = map[string]scenario{
	"quiet":   {name: "quiet", maxRun: 0, comment: "(e) debian-sa1 every minute, a boot, nothing else"},
	"eatmem":  {name: "eatmem", hangs: true, maxRun: 150 * time.Second, job: "eatmem.sh", procs: []string{"hog"}, reason: "memory", comment: "(a) memory to exhaustion fast, a CPU burner beside it"},
	"thrash":  {name: "thrash", hangs: true, maxRun: 200 * time.Second, job: "thrash.sh", procs: []string{"hog"}, reason: "memory", comment: "(b) slow thrash: working set just under RAM, no OOM kill"},
	"cpuburn": {name: "cpuburn", maxRun: 75 * time.Second, job: "cpuburn.sh", procs: []string{"yes"}, reason: "CPU", comment: "(c) CPU only, every vCPU"},
	"runaway": {name: "runaway", hangs: true, maxRun: 200 * time.Second, job: "runaway.service", procs: []string{"hog"}, reason: "", comment: "(d) a runaway systemd service (not cron)"},
}

type result struct {
	Scenario     string   `json:"scenario"`
	Hung         bool     `json:"hung"` // heartbeat stopped before the reset
	Reset        string   `json:"reset"`
	Incidents    int      `json:"incidents"`
	Cause        string   `json:"cause"`
	Reasons      []string `json:"reasons"`
	DebianSA1    string   `json:"debian_sa1"`
	Console      bool     `json:"console_line"`
	GapSeconds   *float64 `json:"last_record_before_last_heartbeat_s"`
	Failures     []string `json:"failures"`
	lastHB       int64
	armed        int64
	consoleLines []string
}

func main() {
	cache := flag.String("cache", "/var/cache/ec2diag-vm", "guest image cache (scripts/vmtest/build-image)")
	work := flag.String("work", "", "work directory (disk copy, consoles, results)")
	deb := flag.String("deb", "", "the .deb to install")
	hog := flag.String("hog", "", "the static hog binary")
	guest := flag.String("guest", "scripts/vmtest/guest", "guest files")
	plan := flag.String("plan", "quiet,eatmem,thrash,cpuburn,runaway", "scenarios, one per boot")
	dropin := flag.String("dropin", "", "extra lines for the agent's unit drop-in ([Service] section)")
	timeout := flag.Duration("timeout", 40*time.Minute, "give up after this")
	flag.Parse()
	steps := strings.Split(*plan, ",")
	for _, s := range steps {
		if _, ok := scenarios[s]; !ok {
			fatal("unknown scenario %q", s)
		}
	}
	must(os.MkdirAll(*work, 0o755))
	disk := filepath.Join(*work, "disk.img")
	run("cp", "--sparse=always", filepath.Join(*cache, "base.img"), disk)
	prepare(disk, *work, *deb, *hog, *guest, steps, *dropin)

	qmpPath := filepath.Join(*work, "qmp.sock")
	hbPath := filepath.Join(*work, "ttyS1.log")
	consolePath := filepath.Join(*work, "console.log")
	os.Remove(qmpPath)
	q := exec.Command("qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "1024",
		"-display", "none", "-nic", "none", "-no-user-config", "-nodefaults",
		"-kernel", filepath.Join(*cache, "vmlinuz"), "-initrd", filepath.Join(*cache, "initrd.img"),
		"-append", "root=/dev/vda ro console=ttyS0,115200 panic=10",
		"-drive", "file="+disk+",format=raw,if=virtio",
		"-serial", "file:"+consolePath, "-serial", "file:"+hbPath,
		"-qmp", "unix:"+qmpPath+",server=on,wait=off")
	qlog, _ := os.Create(filepath.Join(*work, "qemu.log"))
	q.Stdout, q.Stderr = qlog, qlog
	must(q.Start())
	exited := make(chan error, 1)
	go func() { exited <- q.Wait() }()
	deadline := time.Now().Add(*timeout)
	results := map[string]*result{}
	for _, s := range steps {
		results[s] = &result{Scenario: s}
	}
	logf("guest started (plan: %s)", *plan)

	w := watcher{path: hbPath}
	var cur *result
	var curScen scenario
	lastBeat := time.Now()
	for {
		select {
		case err := <-exited:
			if !w.done {
				w.poll()
			}
			if !w.done {
				fatal("QEMU exited before the guest said DONE: %v (see %s)", err, *work)
			}
			goto finished
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			q.Process.Kill()
			fatal("timed out after %s (see %s)", *timeout, *work)
		}
		for _, ev := range w.poll() {
			switch ev.kind {
			case "hb":
				lastBeat = time.Now()
				if cur != nil {
					cur.lastHB = ev.t
				}
			case "BOOT":
				logf("boot %s", ev.arg)
				cur = nil
			case "ARMED":
				cur, curScen = results[ev.arg], scenarios[ev.arg]
				cur.armed = ev.t
				lastBeat = time.Now()
				logf("armed %s for %s", ev.arg, time.Unix(ev.t, 0).Format(time.TimeOnly))
			case "REBOOT":
				if cur != nil {
					cur.Reset = "clean reboot by the guest"
				}
				cur = nil
			case "DONE":
				logf("guest done; waiting for power-off")
			}
		}
		if cur == nil || curScen.maxRun == 0 || time.Now().Unix() < cur.armed {
			continue
		}
		silent := time.Since(lastBeat)
		ran := time.Since(time.Unix(cur.armed, 0))
		if silent > 20*time.Second || ran > curScen.maxRun {
			cur.Hung = silent > 20*time.Second
			cur.Reset = fmt.Sprintf("QMP system_reset after %s (heartbeat silent %s)", ran.Round(time.Second), silent.Round(time.Second))
			logf("%s: %s", cur.Scenario, cur.Reset)
			if err := qmpReset(qmpPath); err != nil {
				fatal("reset: %v", err)
			}
			cur = nil
		}
	}
finished:
	check(*work, disk, steps, results)
}

type event struct {
	kind, arg string
	t         int64
}

// watcher reads the heartbeat port's file as it grows.
type watcher struct {
	path string
	off  int64
	part string
	done bool
}

func (w *watcher) poll() []event {
	f, err := os.Open(w.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	f.Seek(w.off, 0)
	buf := make([]byte, 1<<16)
	n, _ := f.Read(buf)
	w.off += int64(n)
	w.part += string(buf[:n])
	var evs []event
	for {
		i := strings.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(w.part[:i])
		w.part = w.part[i+1:]
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		ev := event{kind: fs[0], t: time.Now().Unix()}
		switch fs[0] {
		case "hb":
			if len(fs) > 1 {
				ev.t, _ = strconv.ParseInt(fs[1], 10, 64)
			}
		case "BOOT", "ARMED":
			if len(fs) > 1 {
				ev.arg = fs[1]
			}
			if len(fs) > 2 {
				ev.t, _ = strconv.ParseInt(fs[2], 10, 64)
			}
		case "DONE":
			w.done = true
		case "REBOOT":
		default:
			continue
		}
		evs = append(evs, ev)
	}
	return evs
}

func qmpReset(path string) error {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	r.ReadString('\n') // greeting
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`, `{"execute":"system_reset"}`} {
		if _, err := c.Write([]byte(cmd + "\n")); err != nil {
			return err
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.Contains(l, `"return"`) {
				break
			}
			if strings.Contains(l, `"error"`) {
				return fmt.Errorf("%s: %s", cmd, l)
			}
		}
	}
	return nil
}

// prepare writes the guest's test files into its disk.
func prepare(disk, work, deb, hog, guest string, steps []string, dropin string) {
	mnt := filepath.Join(work, "mnt")
	must(os.MkdirAll(mnt, 0o755))
	run("mount", "-o", "loop", disk, mnt)
	defer run("umount", mnt)
	put := func(src, dst string, mode os.FileMode) {
		b, err := os.ReadFile(src)
		must(err)
		must(os.MkdirAll(filepath.Dir(filepath.Join(mnt, dst)), 0o755))
		must(os.WriteFile(filepath.Join(mnt, dst), b, mode))
	}
	put(deb, "/ci/ec2diag.deb", 0o644)
	put(hog, "/usr/local/bin/hog", 0o755)
	put(filepath.Join(guest, "driver.sh"), "/ci/driver.sh", 0o755)
	for _, s := range []string{"eatmem", "thrash", "cpuburn"} {
		put(filepath.Join(guest, s+".sh"), "/usr/local/bin/"+s+".sh", 0o755)
	}
	for _, u := range []string{"runaway.service", "heartbeat.service", "ci-driver.service"} {
		put(filepath.Join(guest, u), "/etc/systemd/system/"+u, 0o644)
	}
	must(os.WriteFile(filepath.Join(mnt, "ci/plan"), []byte(strings.Join(steps, "\n")+"\n"), 0o644))
	for _, l := range [][2]string{{"sysinit.target.wants", "heartbeat.service"}, {"multi-user.target.wants", "ci-driver.service"}} {
		d := filepath.Join(mnt, "etc/systemd/system", l[0])
		must(os.MkdirAll(d, 0o755))
		os.Symlink("/etc/systemd/system/"+l[1], filepath.Join(d, l[1]))
	}
	// Never ask IMDS, even with no network.
	d := filepath.Join(mnt, "etc/systemd/system/ec2diag.service.d")
	must(os.MkdirAll(d, 0o755))
	must(os.WriteFile(filepath.Join(d, "vm.conf"), []byte("[Service]\nEnvironment=AWS_EC2_METADATA_DISABLED=true\n"+dropin+"\n"), 0o644))
	// The stock sysstat line, every minute instead of every ten, so that
	// it runs beside every scenario as the decoy of the seed's incident.
	must(os.WriteFile(filepath.Join(mnt, "etc/cron.d/sysstat"), []byte(
		"PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n"+
			"* * * * * root command -v debian-sa1 > /dev/null && debian-sa1 1 1\n"), 0o644))
}

type view struct {
	ID      string     `json:"id"`
	Onset   time.Time  `json:"onset"`
	End     *time.Time `json:"end"`
	Reasons []string   `json:"reasons"`
	Cause   string     `json:"cause"`
	Jobs    []struct {
		Job     string `json:"job"`
		Verdict string `json:"verdict"`
		Reason  string `json:"reason"`
		Active  bool   `json:"active_at_onset"`
		Start   time.Time
	} `json:"jobs"`
	Top []struct {
		Comm string `json:"comm"`
	} `json:"top_processes"`
}

func readViews(path string) ([]view, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var vs []view
	dec := json.NewDecoder(strings.NewReader(string(b)))
	for dec.More() {
		var v view
		if err := dec.Decode(&v); err != nil {
			return vs, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

func check(work, disk string, steps []string, results map[string]*result) {
	mnt := filepath.Join(work, "mnt")
	run("mount", "-o", "ro,loop,noload", disk, mnt)
	defer run("umount", mnt)
	out := filepath.Join(work, "guest-results")
	run("cp", "-a", filepath.Join(mnt, "ci"), out)
	run("cp", "-a", filepath.Join(mnt, "var/lib/ec2diag"), filepath.Join(work, "guest-state"))
	if ids, _ := filepath.Glob(filepath.Join(mnt, "var/log/journal/*")); len(ids) > 0 {
		j, _ := exec.Command("journalctl", "-D", ids[0], "--no-pager", "-o", "short-precise").CombinedOutput()
		os.WriteFile(filepath.Join(work, "guest-journal.txt"), j, 0o644)
	}
	recs, _, _ := store.ReadDir(filepath.Join(work, "guest-state"))
	console, _ := os.ReadFile(filepath.Join(work, "console.log"))
	var failures int
	fail := func(r *result, f string, a ...any) {
		r.Failures = append(r.Failures, fmt.Sprintf(f, a...))
		failures++
	}
	for i, s := range steps {
		r, sc := results[s], scenarios[s]
		dir := filepath.Join(out, "results", s)
		if i == 0 {
			act, _ := os.ReadFile(filepath.Join(out, "results", "active-1.txt"))
			if !strings.Contains(string(act), "ActiveState=active") || !strings.Contains(string(act), "StatusText=") {
				fail(r, "service not active with a STATUS after install: %s", act)
			}
		}
		bootID, _ := os.ReadFile(filepath.Join(out, "results", fmt.Sprintf("boot-%d.id", i+1)))
		var last time.Time
		for _, rec := range recs {
			if rec.BootID == strings.TrimSpace(string(bootID)) && rec.Time.After(last) {
				last = rec.Time
			}
		}
		if r.lastHB > 0 && !last.IsZero() && sc.maxRun > 0 {
			g := float64(r.lastHB) - float64(last.UnixMilli())/1000
			r.GapSeconds = &g
		}
		vs, err := readViews(filepath.Join(dir, "incidents.json"))
		if err != nil {
			fail(r, "incidents --boot -1 --format json: %v", err)
		}
		r.Incidents = len(vs)
		for _, v := range vs {
			if strings.Contains(v.Cause, "ec2diag") {
				fail(r, "the agent blamed itself: %s", v.Cause)
			}
			if v.Onset.Unix() < r.armed-5 {
				fail(r, "incident %s before the scenario started (%s): %s", v.ID, v.Onset.Format(time.TimeOnly), v.Cause)
			}
		}
		if sc.job == "" {
			if len(vs) > 0 {
				fail(r, "%d incident(s) where there should be none: %s", len(vs), vs[0].Cause)
			}
			continue
		}
		if len(vs) == 0 {
			fail(r, "no incident recorded")
			continue
		}
		v := vs[0]
		for _, w := range vs {
			if w.Onset.Unix() >= r.armed-5 {
				v = w
				break
			}
		}
		r.Cause, r.Reasons = v.Cause, v.Reasons
		if !strings.Contains(v.Cause, sc.job) {
			fail(r, "cause %q does not name %s", v.Cause, sc.job)
		}
		topOK := false
		for i, p := range v.Top {
			for _, want := range sc.procs {
				topOK = topOK || (i == 0 && p.Comm == want)
			}
		}
		if !topOK {
			fail(r, "top process is not one of %v: %+v", sc.procs, v.Top)
		}
		if sc.reason != "" && !strings.Contains(strings.Join(v.Reasons, " "), sc.reason) {
			fail(r, "reasons %v do not mention %s", v.Reasons, sc.reason)
		}
		for _, j := range v.Jobs {
			if sc.job != "" && j.Job == sc.job {
				// Why the scenario's own job got its verdict: a cause that
				// does not name it says no more than that.
				logf("%s: %s %s: %s", sc.name, j.Job, j.Verdict, j.Reason)
			}
			if j.Job == "debian-sa1" {
				r.DebianSA1 = j.Verdict
				logf("%s: debian-sa1 %s: %s", sc.name, j.Verdict, j.Reason)
				// Never blamed. "unverified" (the process table did not
				// confirm the CMD line) was seen under the runaway service on
				// the emulated VM, most likely the agent reading the line
				// before the job's setsid() (checked again since); it is
				// not blame either.
				if j.Verdict != "coincident" && j.Verdict != "unverified" {
					fail(r, "debian-sa1 is %s, not coincident", j.Verdict)
				}
			}
			if j.Active && j.Start.After(v.Onset) {
				fail(r, "%s started after onset but is active_at_onset", j.Job)
			}
		}
		re := regexp.MustCompile(`ec2diag: spike ` + regexp.QuoteMeta(v.ID) + `[^\n]*`)
		r.consoleLines = re.FindAllString(string(console), -1)
		r.Console = len(r.consoleLines) > 0
		if !r.Console {
			fail(r, "no console line for incident %s", v.ID)
		}
	}
	// The last boot must be quiet too.
	lastVs, _ := readViews(filepath.Join(out, "results", "last-boot.json"))
	for _, v := range lastVs {
		failures++
		fmt.Printf("vm-test: FAIL: last boot has an incident: %s %s\n", v.ID, v.Cause)
	}
	js, _ := json.MarshalIndent(results, "", "  ")
	os.WriteFile(filepath.Join(work, "results.json"), js, 0o644)
	fmt.Println()
	fmt.Println("| scenario | hung | incidents | cause | debian-sa1 | console line | last record before last heartbeat |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, s := range steps {
		r := results[s]
		gap := "-"
		if r.GapSeconds != nil {
			gap = fmt.Sprintf("%.0f s", *r.GapSeconds)
		}
		fmt.Printf("| %s | %v | %d | %s | %s | %v | %s |\n", scenarios[s].comment, r.Hung, r.Incidents, r.Cause, orDash(r.DebianSA1), r.Console, gap)
	}
	fmt.Println()
	names := append([]string(nil), steps...)
	sort.Strings(names)
	for _, s := range names {
		for _, l := range results[s].consoleLines {
			fmt.Printf("vm-test: %s console: %s\n", s, l)
		}
		for _, f := range results[s].Failures {
			fmt.Printf("vm-test: FAIL: %s: %s\n", s, f)
		}
	}
	if failures > 0 {
		fmt.Printf("vm-test: %d failed (evidence in %s)\n", failures, work)
		os.Exit(1)
	}
	fmt.Printf("vm-test: %d passed, 0 failed\n", len(steps))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func run(name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		fatal("%s %v: %v: %s", name, args, err, out)
	}
}

func must(err error) {
	if err != nil {
		fatal("%v", err)
	}
}

func logf(f string, a ...any) {
	fmt.Printf("vm-test: %s %s\n", time.Now().Format(time.TimeOnly), fmt.Sprintf(f, a...))
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "vm-test: FAIL: "+f+"\n", a...)
	os.Exit(1)
}
