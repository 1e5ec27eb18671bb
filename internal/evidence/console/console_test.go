package console

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
)

// The console says an incident at onset and again only when its verdict
// or the kinds of its reasons change, at most every few seconds; outside
// text is escaped and the line bounded.
func TestSaysNewsOnlyEscaped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kmsg")
	os.WriteFile(path, nil, 0o644)
	clk := clock.NewFake(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	c := &Console{Path: path, Clock: clk}
	d := &evidence.Incident{Reasons: []string{"memory available 4.0%"}, ReasonKinds: []correlate.ReasonKind{correlate.ReasonMemAvailable},
		Verdict: correlate.Verdict{Cause: "service runaway.service (process hog\n<0>PANIC pid 500)"}}
	say := func(kind evidence.Kind) {
		t.Helper()
		if err := c.Say(kind, "20261205T100000Z", d); err != nil {
			t.Fatal(err)
		}
	}
	say(evidence.KindOnset)
	clk.Advance(10 * time.Second)
	say(evidence.KindSnapshot) // nothing new: no line
	d.ReasonKinds = append(d.ReasonKinds, correlate.ReasonMemPressure)
	d.Reasons = append(d.Reasons, "memory pressure (PSI full) 40%")
	clk.Advance(time.Second)
	say(evidence.KindSnapshot) // new, but within 5 s of the last line
	clk.Advance(5 * time.Second)
	say(evidence.KindSnapshot) // new: a line
	// The same kinds in the other order (the larger figure leads): no news.
	d.ReasonKinds = []correlate.ReasonKind{correlate.ReasonMemPressure, correlate.ReasonMemAvailable}
	clk.Advance(10 * time.Second)
	say(evidence.KindSnapshot)
	say(evidence.KindEnd) // no line at the end
	d.Verdict.Cause = strings.Repeat("x", 1000)
	clk.Advance(time.Minute)
	say(evidence.KindSnapshot)
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "<2>ec2diag: spike 20261205T100000Z (") || !strings.Contains(lines[1], " update (") {
		t.Fatalf("console lines: %q", lines)
	}
	if !strings.Contains(lines[0], `hog\x0a<0>PANIC`) {
		t.Errorf("process name not escaped on the console: %q", lines[0])
	}
	if len(lines[2]) > MaxLine {
		t.Errorf("line of %d bytes, want at most %d", len(lines[2]), MaxLine)
	}
}
