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
	name   string
	hangs  bool          // expected to stop the heartbeat (informational)
	maxRun time.Duration // reset after this even if the guest is still alive
	job    string        // the job or service the incident must blame ("" = no incident)
	procs  []string      // acceptable top processes
	reason string        // a word the incident's reasons must contain
	// kinds: one of these must be among the incident's reason_kinds.
	kinds []string
	// throttleAt/For: the guest's disk is throttled to nearly nothing
	// (QMP block_set_io_throttle) from armed+throttleAt for throttleFor.
	throttleAt, throttleFor time.Duration
	// nmiAt: an NMI is injected (EC2's diagnostic interrupt) at armed+nmiAt;
	// the guest must panic and reboot itself.
	nmiAt   time.Duration
	comment string
}

var scenarios = map[string]scenario{
	"quiet":   {name: "quiet", maxRun: 0, comment: "(e) debian-sa1 every minute, a boot, nothing else"},
	"eatmem":  {name: "eatmem", hangs: true, maxRun: 150 * time.Second, job: "eatmem.sh", procs: []string{"hog"}, reason: "memory", comment: "(a) memory to exhaustion fast, a CPU burner beside it"},
	"thrash":  {name: "thrash", hangs: true, maxRun: 200 * time.Second, job: "thrash.sh", procs: []string{"hog"}, reason: "memory", comment: "(b) slow thrash: working set just under RAM, no OOM kill"},
	"cpuburn": {name: "cpuburn", maxRun: 75 * time.Second, job: "cpuburn.sh", procs: []string{"yes"}, reason: "CPU", comment: "(c) CPU only, every vCPU"},
	"runaway": {name: "runaway", hangs: true, maxRun: 200 * time.Second, job: "runaway.service", procs: []string{"hog"}, reason: "", comment: "(d) a runaway systemd service (not cron)"},
	"iostall": {name: "iostall", job: "iostall.sh", procs: []string{"dd"}, kinds: []string{"io_stall", "io_pressure"},
		throttleAt: 5 * time.Second, throttleFor: 60 * time.Second, comment: "(f) a job writing to a disk that stalls for 60 s (QMP throttle)"},
	"nmi": {name: "nmi", job: "nmi.sh", procs: []string{"yes"}, reason: "CPU", nmiAt: 40 * time.Second,
		comment: "(g) EC2's diagnostic interrupt (QMP inject-nmi) on a busy machine, drop-in on"},
}

type result struct {
	Scenario   string   `json:"scenario"`
	Hung       bool     `json:"hung"` // heartbeat stopped before the reset
	Reset      string   `json:"reset"`
	Incidents  int      `json:"incidents"`
	Cause      string   `json:"cause"`
	Reasons    []string `json:"reasons"`
	DebianSA1  string   `json:"debian_sa1"`
	Console    bool     `json:"console_line"`
	GapSeconds *float64 `json:"last_record_before_last_heartbeat_s"`
	// Disk stall: when the throttle began and ended, and how long after
	// it began the spike's console line appeared (the host's view).
	ThrottledAt     int64    `json:"throttled_at,omitempty"`
	LiftedAt        int64    `json:"lifted_at,omitempty"`
	ConsoleAfterS   *float64 `json:"console_line_after_stall_began_s,omitempty"`
	NMIAt           int64    `json:"nmi_at,omitempty"`
	RebootedItselfS *float64 `json:"rebooted_itself_after_nmi_s,omitempty"`
	Failures        []string `json:"failures"`
	lastHB          int64
	armed           int64
	consoleLines    []string
}

func main() {
	cache := flag.String("cache", "/var/cache/ec2diag-vm", "guest image cache (scripts/vmtest/build-image)")
	work := flag.String("work", "", "work directory (disk copy, consoles, results)")
	deb := flag.String("deb", "", "the .deb to install")
	hog := flag.String("hog", "", "the static hog binary")
	guest := flag.String("guest", "scripts/vmtest/guest", "guest files")
	plan := flag.String("plan", "quiet,eatmem,thrash,cpuburn,runaway,iostall,nmi", "scenarios, one per boot")
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
		"-append", "root=/dev/vda ro console=ttyS0,115200 panic=10 "+ramoopsArgs,
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
	var consoleMark int64
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
				if cur != nil && cur.ThrottledAt > 0 && cur.LiftedAt == 0 {
					must(qmp(qmpPath, unthrottle))
					cur.LiftedAt = time.Now().Unix()
				}
				if cur != nil && cur.NMIAt > 0 {
					d := time.Since(time.Unix(cur.NMIAt, 0)).Seconds()
					cur.RebootedItselfS = &d
					cur.Reset = fmt.Sprintf("the guest rebooted itself %.0f s after the NMI", d)
					logf("%s: %s", cur.Scenario, cur.Reset)
				}
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
		if cur != nil && cur.armed > 0 {
			since := time.Since(time.Unix(cur.armed, 0))
			if curScen.throttleFor > 0 && cur.ThrottledAt == 0 && since >= curScen.throttleAt {
				must(qmp(qmpPath, throttle))
				cur.ThrottledAt = time.Now().Unix()
				consoleMark = consoleSize(consolePath)
				logf("%s: disk throttled to 1 IOPS, 16 KiB/s", cur.Scenario)
			}
			if cur.ThrottledAt > 0 && cur.LiftedAt == 0 {
				if cur.ConsoleAfterS == nil {
					if seenSpikeLine(consolePath, consoleMark) {
						d := time.Since(time.Unix(cur.ThrottledAt, 0)).Seconds()
						cur.ConsoleAfterS = &d
						logf("%s: console line %.1f s after the stall began", cur.Scenario, d)
					}
				}
				if since >= curScen.throttleAt+curScen.throttleFor {
					must(qmp(qmpPath, unthrottle))
					cur.LiftedAt = time.Now().Unix()
					logf("%s: throttle lifted", cur.Scenario)
				}
			}
			if curScen.nmiAt > 0 && cur.NMIAt == 0 && since >= curScen.nmiAt {
				must(qmp(qmpPath, `{"execute":"inject-nmi"}`))
				cur.NMIAt = time.Now().Unix()
				logf("%s: NMI injected", cur.Scenario)
			}
			if cur.NMIAt > 0 && time.Since(time.Unix(cur.NMIAt, 0)) > 4*time.Minute {
				cur.Reset = "QMP system_reset: the guest did not reboot itself within 4 minutes of the NMI"
				logf("%s: %s", cur.Scenario, cur.Reset)
				must(qmp(qmpPath, `{"execute":"system_reset"}`))
				cur = nil
				continue
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
			if err := qmp(qmpPath, `{"execute":"system_reset"}`); err != nil {
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

// ramoopsArgs reserve 1 MiB just under the guest's 1 GiB for pstore: QEMU
// keeps RAM across a reset, so a panic's messages survive the reboot.
const ramoopsArgs = "memmap=1M$0x3f000000 ramoops.mem_address=0x3f000000 ramoops.mem_size=0x100000 ramoops.record_size=0x40000"

// The stalled disk: virtio0 is the guest's only drive (-drive if=virtio).
const (
	throttle   = `{"execute":"block_set_io_throttle","arguments":{"device":"virtio0","iops":1,"bps":16384,"bps_rd":0,"bps_wr":0,"iops_rd":0,"iops_wr":0}}`
	unthrottle = `{"execute":"block_set_io_throttle","arguments":{"device":"virtio0","iops":0,"bps":0,"bps_rd":0,"bps_wr":0,"iops_rd":0,"iops_wr":0}}`
)

func consoleSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// seenSpikeLine reports whether the console has said a spike since off.
func seenSpikeLine(path string, off int64) bool {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < off {
		return false
	}
	return strings.Contains(string(b[off:]), "ec2diag: spike ")
}

// qmp runs commands on the guest's QMP socket, one connection each call.
func qmp(path string, cmds ...string) error {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	r.ReadString('\n') // greeting
	for _, cmd := range append([]string{`{"execute":"qmp_capabilities"}`}, cmds...) {
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
	for _, s := range []string{"eatmem", "thrash", "cpuburn", "iostall", "nmi"} {
		put(filepath.Join(guest, s+".sh"), "/usr/local/bin/"+s+".sh", 0o755)
	}
	for _, u := range []string{"runaway.service", "heartbeat.service", "ci-driver.service"} {
		put(filepath.Join(guest, u), "/etc/systemd/system/"+u, 0o644)
	}
	// pstore on ramoops, in the last MiB the kernel is told not to use
	// (ramoopsArgs): an EC2 instance booted with UEFI has efi_pstore.
	must(os.MkdirAll(filepath.Join(mnt, "etc/modules-load.d"), 0o755))
	must(os.WriteFile(filepath.Join(mnt, "etc/modules-load.d/ramoops.conf"), []byte("ramoops\n"), 0o644))
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
	Summary string     `json:"summary"`
	Jobs    []struct {
		Job     string `json:"job"`
		Verdict string `json:"verdict"`
		Reason  string `json:"reason"`
		Active  bool   `json:"active_at_onset"`
		Start   time.Time
	} `json:"jobs"`
	Top []struct {
		Comm   string `json:"comm"`
		Agent  bool   `json:"agent"`
		Kernel bool   `json:"kernel_thread"`
	} `json:"top_processes"`
	ReasonKinds []string `json:"reason_kinds"`
	Unfinished  string   `json:"unfinished"`
	Crash       *struct {
		Kind   string   `json:"kind"`
		Reason string   `json:"reason"`
		NMI    bool     `json:"nmi"`
		Task   string   `json:"task"`
		Files  []string `json:"files"`
	} `json:"kernel_crash"`
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
			for _, j := range v.Jobs {
				if j.Job == "ec2diag" {
					fail(r, "the agent's own unit is a candidate run: %s %s", j.Verdict, j.Reason)
				}
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
			if w.Onset.Unix() >= r.armed-5 && w.Crash == nil {
				v = w
				break
			}
		}
		scenarioChecks(r, sc, v, vs, dir, string(console), fail)
		r.Cause, r.Reasons = v.Cause, v.Reasons
		if !strings.Contains(v.Cause, sc.job) {
			fail(r, "cause %q does not name %s", v.Cause, sc.job)
		}
		// The first process that can be blamed: the agent and kernel
		// threads (jbd2 waits on a stalled disk longest) are listed,
		// never blamed. Or the process the cause names: the cause may be
		// a group (the job's dd and its shell together) named by its own
		// busiest process while a single process of another group leads
		// the list, as journald did in a disk stall, waiting exactly as
		// long as dd (52 s each; the job's processes 46% of all the
		// waiting, journald's less).
		topOK, first := false, true
		for _, p := range v.Top {
			if p.Agent || p.Kernel {
				continue
			}
			for _, want := range sc.procs {
				topOK = topOK || (first && p.Comm == want) || strings.HasPrefix(v.Cause, "process "+want+" (")
			}
			first = false
		}
		if !topOK {
			fail(r, "neither the top process nor the cause is one of %v: cause %q, top %+v", sc.procs, v.Cause, v.Top)
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

// scenarioChecks are what the disk-stall and NMI scenarios must show
// beyond the blame every scenario is checked for.
func scenarioChecks(r *result, sc scenario, v view, vs []view, dir, console string, fail func(*result, string, ...any)) {
	if len(sc.kinds) > 0 {
		ok := false
		for _, k := range v.ReasonKinds {
			for _, want := range sc.kinds {
				ok = ok || k == want
			}
		}
		if !ok {
			fail(r, "reason kinds %v hold none of %v", v.ReasonKinds, sc.kinds)
		}
	}
	if sc.throttleFor > 0 {
		if r.ConsoleAfterS == nil {
			fail(r, "no spike line on the console while the disk stalled")
		}
		after, _ := os.ReadFile(filepath.Join(dir, "after.txt"))
		if !strings.Contains(string(after), "ActiveState=active") || !strings.Contains(string(after), "NRestarts=0") {
			fail(r, "the agent did not come through the stall running, unrestarted: %s", after)
		}
		if v.End == nil {
			fail(r, "the stall's incident has no end: its records after the stall did not reach the disk")
		}
		if !strings.Contains(v.Summary, "disk vda:") {
			fail(r, "the summary does not name the stalled device vda: %q", v.Summary)
		}
	}
	if sc.nmiAt > 0 {
		if r.RebootedItselfS == nil {
			fail(r, "the guest did not panic and reboot itself after the NMI")
		}
		for _, want := range []string{"NMI", "Kernel panic - not syncing"} {
			if !strings.Contains(console, want) {
				fail(r, "the console has no %q", want)
			}
		}
		var crash *view
		for i := range vs {
			if vs[i].Crash != nil {
				crash = &vs[i]
			}
		}
		switch {
		case crash == nil:
			fail(r, "incidents --boot -1 shows no kernel crash")
		case !crash.Crash.NMI || crash.Crash.Kind != "panic":
			fail(r, "kernel crash %+v: want an NMI panic", *crash.Crash)
		default:
			logf("%s: %s: %s (%s)", sc.name, crash.ID, crash.Cause, strings.Join(crash.Crash.Files, ", "))
		}
		if !strings.Contains(v.Unfinished, "panicked") {
			fail(r, "the busy incident does not say the kernel panicked: %q", v.Unfinished)
		}
		check, _ := os.ReadFile(filepath.Join(dir, "check.txt"))
		if !strings.Contains(string(check), "pass  nmi-panic") || !strings.Contains(string(check), "pass  pstore") {
			fail(r, "check --local with the drop-in on: %s", check)
		}
	}
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
