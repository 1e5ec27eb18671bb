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
