// Package kcrash reads the kernel's own account of how an earlier boot
// ended: the messages a panic or oops left in pstore (EFI variables on EC2
// instances that boot with UEFI, ramoops elsewhere), as the kernel exposes
// them under /sys/fs/pstore or systemd-pstore archived them under
// /var/lib/systemd/pstore, and the dmesg kdump-tools saves beside a vmcore
// under /var/crash. A machine that panicked (EC2's diagnostic interrupt
// with kernel.unknown_nmi_panic=1 among the ways) leaves nothing in the
// journal; this is where its last words are.
//
// It only reads: systemd-pstore moves the records out of pstore (which has
// little room), and the operator's kdump tooling owns /var/crash.
package kcrash

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/hostfs"
	"github.com/ec2diag/ec2diag/internal/redact"
)

// Bounds on what is read and kept: a dump file is read up to maxFile
// bytes (pstore records are tens of KiB; kdump's dmesg can be the whole
// ring buffer, whose end is what matters), at most maxFiles of them.
const (
	maxFile    = 1 << 20
	maxFiles   = 64
	tailLines  = 40
	maxLine    = 240
	maxLockups = 8
)

// Dump is one file of a crash, as read.
type Dump struct {
	// Name says where it was: "pstore:dmesg-efi-1733...", "systemd-pstore:...",
	// "kdump:202612051830/dmesg.202612051830".
	Name    string
	Key     string // content hash: a dump is recorded once
	ModTime time.Time
	Text    string
	copy    string // the file Copy made of it, if read from there
}

// Find lists the crash dumps under root and those Copy left under
// stateDir, oldest first, one per content, and says which it could not
// read and has no copy of (systemd-pstore's archive is root's alone: the
// caller reports them rather than claim there was no crash).
func Find(root hostfs.Root, stateDir string) (dumps []Dump, skipped []string) {
	dumps, skipped = find(root)
	if stateDir == "" {
		return dumps, skipped
	}
	copies, bad := readCopies(filepath.Join(stateDir, CopyDir))
	have := map[string]bool{}
	for _, d := range dumps {
		have[d.Key] = true
	}
	names := map[string]bool{}
	for _, c := range copies {
		names[c.Name] = true
		if !have[c.Key] {
			dumps = append(dumps, c)
			have[c.Key] = true
		} else {
			// Read from the original: the copy is done with all the same.
			for i := range dumps {
				if dumps[i].Key == c.Key {
					dumps[i].copy = c.copy
				}
			}
		}
	}
	var left []string
	for _, s := range skipped {
		if name, _, _ := strings.Cut(s, ": "); !names[name] {
			left = append(left, s)
		}
	}
	sort.SliceStable(dumps, func(i, j int) bool { return dumps[i].ModTime.Before(dumps[j].ModTime) })
	return dumps, append(left, bad...)
}

func find(root hostfs.Root) (dumps []Dump, skipped []string) {
	root = root.OrDefault()
	type src struct {
		label, dir string
		depth      int
		match      func(name string) bool
	}
	dmesg := func(n string) bool { return strings.HasPrefix(n, "dmesg") }
	srcs := []src{
		{"pstore", root.SysPath("fs", "pstore"), 0, dmesg},
		{"systemd-pstore", root.Path("/var/lib/systemd/pstore"), 1, dmesg},
		{"kdump", root.Path("/var/crash"), 1, dmesg},
	}
	for _, s := range srcs {
		_ = filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p != s.dir {
					skipped = append(skipped, s.label+":"+rel(s.dir, p)+": "+err.Error())
				}
				return nil
			}
			if d.IsDir() {
				if p != s.dir && strings.Count(rel(s.dir, p), "/") >= s.depth {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || !s.match(d.Name()) || len(dumps) >= maxFiles {
				return nil
			}
			name := s.label + ":" + rel(s.dir, p)
			txt, mod, err := readTail(p)
			if err != nil {
				skipped = append(skipped, name+": "+err.Error())
				return nil
			}
			h := sha256.Sum256([]byte(txt))
			dumps = append(dumps, Dump{Name: name, Key: hex.EncodeToString(h[:8]), ModTime: mod, Text: txt})
			return nil
		})
	}
	sort.SliceStable(dumps, func(i, j int) bool { return dumps[i].ModTime.Before(dumps[j].ModTime) })
	return dumps, skipped
}

func rel(dir, p string) string {
	r, err := filepath.Rel(dir, p)
	if err != nil {
		return filepath.Base(p)
	}
	return r
}

// readTail reads the last maxFile bytes of p.
func readTail(p string) (string, time.Time, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", time.Time{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", time.Time{}, err
	}
	if st.Size() > maxFile {
		if _, err := f.Seek(st.Size()-maxFile, io.SeekStart); err != nil {
			return "", time.Time{}, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFile))
	if err != nil {
		return "", time.Time{}, err
	}
	return string(b), st.ModTime(), nil
}

var (
	// printk's level prefix in pstore records, and its timestamp.
	levelPrefix = regexp.MustCompile(`^<\d+>`)
	// systemd-pstore's dmesg.txt heads each record with its name.
	pstoreHeader = regexp.MustCompile(`^dmesg-[\w.-]+:$`)
	stamp        = regexp.MustCompile(`^\[\s*(\d+)\.(\d+)\]`)
	// "CPU: 1 PID: 812 Comm: hog Not tainted 6.1.0 #1" (6.1 to 6.x).
	cpuLine = regexp.MustCompile(`CPU: \d+ (?:UID: \d+ )?PID: (\d+) Comm: (\S{1,16})`)
	panicRe = regexp.MustCompile(`Kernel panic - not syncing: ?(.*)`)
	oopsRe  = regexp.MustCompile(`(BUG: unable to handle|BUG: kernel NULL pointer|general protection fault|Oops: |kernel BUG at )`)
	lockup  = regexp.MustCompile(`(soft lockup - CPU#|hard LOCKUP|blocked for more than \d+ seconds|rcu_sched detected stalls|rcu: INFO: rcu_\w+ detected stalls|detected stalls on CPUs)`)
	nmiRe   = regexp.MustCompile(`(NMI received for unknown reason|Uhhuh\. NMI received|NMI: Not continuing|Dazed and confused, but trying to continue)`)
)

// Parse reads what a crash's dumps say. bootTime (unix seconds) is the
// start of the boot that crashed when known: with the kernel's last
// timestamp it dates the crash; else the newest file's time does.
func Parse(dumps []Dump, bootTime int64) evidence.Crash {
	c := evidence.Crash{Kind: "unknown"}
	var lines []string
	var last float64 = -1
	// systemd-pstore writes dmesg.txt beside the records it is made of:
	// a line an earlier dump had is not counted twice.
	before := map[string]bool{}
	for _, d := range dumps {
		c.Files = append(c.Files, escape.Truncate(escape.Control(d.Name), 200))
		if d.ModTime.After(c.Time) {
			c.Time = d.ModTime.UTC()
		}
		these := map[string]bool{}
		for _, l := range strings.Split(d.Text, "\n") {
			l = strings.TrimRight(levelPrefix.ReplaceAllString(l, ""), "\r ")
			if l == "" || before[l] || pstoreHeader.MatchString(l) {
				continue
			}
			these[l] = true
			if m := stamp.FindStringSubmatch(l); m != nil {
				if sec, err := strconv.ParseFloat(m[1]+"."+m[2], 64); err == nil && sec > last {
					last = sec
				}
			}
			lines = append(lines, l)
		}
		for l := range these {
			before[l] = true
		}
	}
	if bootTime > 0 && last >= 0 {
		c.Time = time.Unix(bootTime, 0).Add(time.Duration(last * float64(time.Second))).UTC()
	}
	for _, l := range lines {
		switch {
		case c.Reason == "" && panicRe.MatchString(l):
			c.Kind, c.Reason = "panic", keep(panicRe.FindString(l))
		case c.Kind == "unknown" && oopsRe.MatchString(l):
			c.Kind, c.Reason = "oops", keep(stripStamp(l))
		}
		if nmiRe.MatchString(l) {
			c.NMI = true
		}
		if m := cpuLine.FindStringSubmatch(l); m != nil {
			// The last one before the panic line names the task that
			// panicked (an earlier oops may name another).
			if c.Kind != "panic" || c.Task == "" {
				c.Task = keep("PID " + m[1] + " (" + m[2] + ")")
			}
		}
		if lockup.MatchString(l) && len(c.Lockups) < maxLockups {
			c.Lockups = append(c.Lockups, keep(stripStamp(l)))
		}
	}
	if n := len(lines); n > tailLines {
		lines = lines[n-tailLines:]
	}
	for _, l := range lines {
		c.Tail = append(c.Tail, keep(l))
	}
	return c
}

func stripStamp(l string) string {
	if loc := stamp.FindStringIndex(l); loc != nil {
		return strings.TrimSpace(l[loc[1]:])
	}
	return l
}

// keep bounds, redacts and escapes one line of the dump: the ring buffer
// quotes process names and what root wrote to /dev/kmsg.
func keep(l string) string {
	l = escape.Truncate(l, 2*maxLine)
	l, _ = redact.Text(l)
	return escape.Truncate(escape.Control(l), maxLine)
}
