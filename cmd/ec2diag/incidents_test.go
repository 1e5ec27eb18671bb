package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The list says what each incident blamed in people's words: its groups
// with their verdicts and shares, then its busiest processes with the
// group each belongs to. The incident is the one recorded with the real
// agent for the report's golden files.
func TestIncidentsListNamesGroups(t *testing.T) {
	rec, err := os.ReadFile("../../internal/report/testdata/recorded/incidents.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if err := os.WriteFile(filepath.Join(state, "incidents.jsonl"), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin(t), "incidents", "--state-dir", state).CombinedOutput()
	if err != nil {
		t.Fatalf("ec2diag incidents: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"\n  cause: service etl.service (process python3 pid ",
		"\n  service etl.service: caused, 66% of CPU, 132 MiB (grew 129 MiB) in 3 processes\n",
		"\n  session of ubuntu from 10.0.0.5: contributed, 34% of CPU, 4 MiB in 2 processes\n",
		"\n  job debian-sa1: coincident, 0% of CPU, 1 MiB in 1 process\n",
		"\n  process yes pid 108 (session of ubuntu from 10.0.0.5): 34% of CPU, 1 MiB\n",
		"\n  process python3 pid 107 (service etl.service): 33% of CPU, 11 MiB\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the list lacks %q:\n%s", want, text)
		}
	}
	// The groups come before the processes, in the verdict's order.
	if i, j := strings.Index(text, "  service etl.service: caused"), strings.Index(text, "  process yes pid"); i < 0 || j < i {
		t.Errorf("groups do not lead:\n%s", text)
	}
}

// What the VM test's guest recorded around EC2's diagnostic interrupt (a
// CPU incident, then the NMI panic found in pstore at the next start),
// read as on that next boot: the incident says the kernel panicked, the
// crash is listed and shown with its last words.
func TestIncidentsAfterAnNMIPanic(t *testing.T) {
	rec, err := os.ReadFile("testdata/vm-nmi/incidents.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	state, host := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(state, "incidents.jsonl"), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	// The boot after the panic, as the guest's own.
	for p, body := range map[string]string{"proc/sys/kernel/random/boot_id": "2d08a391-0c5c-445d-831d-f4222b499be1\n", "proc/stat": "cpu  1 0 0 1 0 0 0 0 0 0\nbtime 1796498100\n"} {
		os.MkdirAll(filepath.Join(host, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(host, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin(t), append([]string{"--state-dir", state, "--host-root", host}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ec2diag %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := run("incidents", "--boot", "-1")
	for _, want := range []string{
		"UNFINISHED: the kernel panicked at 2026-12-05T19:14:49Z (Kernel panic - not syncing: NMI: Not continuing): see kernel-20261205T191449Z",
		"  cause: job nmi.sh\n",
		"KERNEL PANIC (kernel-20261205T191449Z)",
		"cause: an NMI panicked the kernel: EC2's diagnostic interrupt (SendDiagnosticInterrupt), as kernel.unknown_nmi_panic=1 asks; on the CPU: PID 479 (yes)",
		"last words (systemd-pstore:dmesg-ramoops-0, systemd-pstore:dmesg.txt):",
	} {
		if !strings.Contains(list, want) {
			t.Errorf("incidents --boot -1 lacks %q:\n%s", want, list)
		}
	}
	show := run("incidents", "show", "kernel-20261205T191449Z")
	if !strings.Contains(show, "Kernel panic - not syncing: NMI: Not continuing") || strings.Count(show, "\n") < 40 {
		t.Errorf("incidents show of the crash:\n%s", show)
	}
	js := run("incidents", "show", "kernel-20261205T191449Z", "--format", "json")
	if !strings.Contains(js, `"nmi": true`) || !strings.Contains(js, `"crashed_boot_id": "78225228-8428-4376-b1f9-003384b4d0c1"`) {
		t.Errorf("incidents show --format json:\n%s", js)
	}
}
