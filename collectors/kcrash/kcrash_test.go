package kcrash

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/hostfs"
)

// put writes a file of the fixture host tree.
func put(t *testing.T, root, p, s string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func dump(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// What a guest's NMI panic left in ramoops (testdata, taken from the VM
// test's guest) reads as an NMI panic, dated from the crashed boot's start.
func TestNMIPanicFromPstore(t *testing.T) {
	dir := t.TempDir()
	root := hostfs.At(dir)
	put(t, dir, "sys/fs/pstore/dmesg-ramoops-0", dump(t, "nmi-panic-ramoops.txt"))
	dumps, skipped := Find(root, "")
	if len(dumps) != 1 || len(skipped) != 0 {
		t.Fatalf("found %d dumps, skipped %v", len(dumps), skipped)
	}
	boot := time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC)
	c := Parse(dumps, boot.Unix())
	if c.Kind != "panic" || !c.NMI || !strings.Contains(c.Reason, "NMI: Not continuing") {
		t.Errorf("kind %q nmi %v reason %q: want an NMI panic", c.Kind, c.NMI, c.Reason)
	}
	if c.Task == "" {
		t.Errorf("no task on the panicking CPU")
	}
	if c.Time.Before(boot) || c.Time.After(boot.Add(time.Hour)) {
		t.Errorf("crash time %s: want the boot's start plus the last kernel timestamp", c.Time)
	}
	if len(c.Tail) == 0 || len(c.Tail) > tailLines || c.Files[0] != "pstore:dmesg-ramoops-0" {
		t.Errorf("tail %d lines, files %v", len(c.Tail), c.Files)
	}
}

// Every source is read (systemd-pstore's archive, kdump's dmesg), the same
// content found twice has one key, and what cannot be read is said.
func TestSourcesAndKeys(t *testing.T) {
	dir := t.TempDir()
	root := hostfs.At(dir)
	oops := "<4>[   12.000001] BUG: kernel NULL pointer dereference, address: 0000000000000008\n<4>[   12.000100] CPU: 1 PID: 77 Comm: kworker/1:2 Not tainted 6.1.0 #1\n"
	put(t, dir, "var/lib/systemd/pstore/1733420000/dmesg-efi-173342000001001", oops)
	put(t, dir, "var/crash/202612051830/dmesg.202612051830", oops)
	put(t, dir, "var/crash/202612051830/vmcore", "not a dmesg")
	put(t, dir, "var/lib/systemd/pstore/a/b/c/dmesg-too-deep", oops)
	if err := os.Chmod(filepath.Join(dir, "var/crash/202612051830/dmesg.202612051830"), 0); err != nil {
		t.Fatal(err)
	}
	dumps, skipped := Find(root, "")
	names := map[string]string{}
	for _, d := range dumps {
		names[d.Name] = d.Key
	}
	if _, ok := names["systemd-pstore:1733420000/dmesg-efi-173342000001001"]; !ok {
		t.Errorf("systemd-pstore's archive not read: %v", names)
	}
	for n := range names {
		if strings.Contains(n, "vmcore") || strings.Contains(n, "too-deep") {
			t.Errorf("read %s", n)
		}
	}
	if os.Geteuid() != 0 {
		if len(skipped) != 1 || !strings.Contains(skipped[0], "kdump:202612051830/dmesg.202612051830") {
			t.Errorf("unreadable dump not said: %v", skipped)
		}
	}
	c := Parse(dumps, 0)
	if c.Kind != "oops" || c.Task != "PID 77 (kworker/1:2)" || c.NMI {
		t.Errorf("oops: %+v", c)
	}
}

// A dump is outside text: bounded, redacted and escaped line by line.
func TestDumpTextIsKeptSafely(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 500; i++ {
		b.WriteString("<6>[  100.000000] filler line\n")
	}
	b.WriteString("<12>[  101.000000] app: connecting with password=hunter2 \x1b[31m\n")
	b.WriteString("<0>[  102.000000] Kernel panic - not syncing: " + strings.Repeat("x", 5000) + "\n")
	c := Parse([]Dump{{Name: "pstore:dmesg-ramoops-0", Text: b.String(), ModTime: time.Unix(1, 0)}}, 0)
	if len(c.Tail) != tailLines {
		t.Errorf("tail of %d lines, want %d", len(c.Tail), tailLines)
	}
	all := strings.Join(c.Tail, "\n") + c.Reason
	if strings.Contains(all, "hunter2") || strings.Contains(all, "\x1b") {
		t.Errorf("secret or control byte kept: %q", all)
	}
	for _, l := range append(c.Tail, c.Reason) {
		if len(l) > maxLine {
			t.Errorf("line of %d bytes kept", len(l))
		}
	}
	if !c.Time.Equal(time.Unix(1, 0).UTC()) {
		t.Errorf("no boot start known: time %s, want the file's", c.Time)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("<0>[  102.000000] Kernel panic - not syncing: NMI: Not continuing\nCPU: 0 PID: 1 Comm: x\n")
	f.Add("Panic#1 Part1\n<4>[ 1.5] soft lockup - CPU#0 stuck for 22s! [yes:100]\n")
	f.Fuzz(func(t *testing.T, s string) {
		c := Parse([]Dump{{Name: "x", Text: s}}, 1700000000)
		if len(c.Tail) > tailLines || len(c.Lockups) > maxLockups {
			t.Fatalf("unbounded: %d lines, %d lockups", len(c.Tail), len(c.Lockups))
		}
		for _, l := range append(append(c.Tail, c.Lockups...), c.Reason, c.Task) {
			if len(l) > maxLine || strings.ContainsAny(l, "\x00\x1b\n\r") {
				t.Fatalf("unsafe line %q", l)
			}
		}
	})
}

// What root copies for the agent is read as the dump itself, is not said
// to be unreadable, and is removed once recorded.
func TestCopiesStandInForUnreadableDumps(t *testing.T) {
	dir := t.TempDir()
	root := hostfs.At(dir)
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o750); err != nil {
		t.Fatal(err)
	}
	put(t, dir, "var/lib/systemd/pstore/dmesg-ramoops-0", dump(t, "nmi-panic-ramoops.txt"))
	n, err := Copy(root, state, os.Getuid(), os.Getgid())
	if n != 1 || err != nil {
		t.Fatalf("Copy: %d, %v", n, err)
	}
	if n, _ := Copy(root, state, os.Getuid(), os.Getgid()); n != 0 {
		t.Errorf("copied the same dump again")
	}
	// The original becomes unreadable (as to the agent's user).
	if err := os.Remove(filepath.Join(dir, "var/lib/systemd/pstore/dmesg-ramoops-0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "var/lib/systemd/pstore/dmesg-ramoops-0"), 0); err != nil {
		t.Fatal(err)
	}
	dumps, skipped := Find(root, state)
	if len(dumps) != 1 || dumps[0].Name != "systemd-pstore:dmesg-ramoops-0" || len(skipped) != 0 {
		t.Fatalf("dumps %+v, skipped %v", dumps, skipped)
	}
	if c := Parse(dumps, 0); !c.NMI {
		t.Errorf("the copy does not read as the NMI panic: %+v", c)
	}
	if err := Forget(dumps); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(state, CopyDir)); len(ents) != 0 {
		t.Errorf("copies left after Forget: %v", ents)
	}
}

// systemd-pstore archives the record and writes dmesg.txt beside it (the
// same lines, headed by the record's name): one crash, each line once.
func TestSystemdPstoreArchiveIsOneCrash(t *testing.T) {
	dir := t.TempDir()
	root := hostfs.At(dir)
	put(t, dir, "var/lib/systemd/pstore/dmesg-ramoops-0", dump(t, "nmi-panic-ramoops.txt"))
	put(t, dir, "var/lib/systemd/pstore/dmesg.txt", dump(t, "systemd-pstore-dmesg.txt"))
	dumps, _ := Find(root, "")
	if len(dumps) != 2 {
		t.Fatalf("%d dumps, want 2", len(dumps))
	}
	boot := time.Date(2026, 12, 5, 18, 35, 0, 0, time.UTC)
	c := Parse(dumps, boot.Unix())
	if c.Task != "PID 469 (yes)" || !c.NMI || c.Kind != "panic" {
		t.Errorf("crash: kind %s nmi %v task %q", c.Kind, c.NMI, c.Task)
	}
	if want := boot.Add(126120744 * time.Microsecond); c.Time.Sub(want).Abs() > time.Millisecond {
		t.Errorf("time %s, want %s", c.Time, want)
	}
	var alone evidence.Crash
	for _, d := range dumps {
		if d.Name == "systemd-pstore:dmesg-ramoops-0" {
			alone = Parse([]Dump{d}, boot.Unix())
		}
	}
	if strings.Join(c.Tail, "\n") != strings.Join(alone.Tail, "\n") {
		t.Errorf("the archive's two files made a tail other than the record's own:\n%s\n---\n%s", strings.Join(c.Tail, "\n"), strings.Join(alone.Tail, "\n"))
	}
}
