package jobs

import (
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/syslog"
)

type heard struct {
	starts []string
	boot   int
	kernel []KernelEvent
}

func (h *heard) JobStarted(r *Run)          { h.starts = append(h.starts, r.Job) }
func (h *heard) JobEnded(string, time.Time) {}
func (h *heard) JobCancelled(string)        {}
func (h *heard) KernelEvent(ev KernelEvent) { h.kernel = append(h.kernel, ev) }
func (h *heard) SSHLogin(Login)             {}
func (h *heard) BootFinished(time.Time)     { h.boot++ }

func line(t *testing.T, s string) *syslog.Line {
	t.Helper()
	var l syslog.Line
	p := &syslog.Parser{Anchor: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	p.Parse([]byte(s), &l)
	if !l.Parsed {
		t.Fatalf("not a syslog line: %q", s)
	}
	return &l
}

// A unit's start (and the boot's end) is heard only from the system
// manager: in a file by its tag systemd[1], in the journal by the
// journal's own _PID and _COMM, which the writer cannot choose.
func TestUnitLinesOnlyFromPID1(t *testing.T) {
	h := &heard{}
	g := NewEvents(&Namer{}, h)
	file := syslog.Origin{}
	g.Line(line(t, "2026-12-05T10:00:00+00:00 h systemd[1]: Starting rt-nightly.service - nightly..."), file, "syslog", 0)
	g.Line(line(t, "2026-12-05T10:00:01+00:00 h systemd[1234]: Starting user-thing.service - user's..."), file, "syslog", 0)
	// The journal: the tag says systemd[1], the journal says pid 4242.
	g.Line(line(t, "2026-12-05T10:00:02+00:00 h systemd[1]: Starting forged.service - forged..."), syslog.Origin{Known: true, PID: 4242, Comm: "logger"}, "journal", 0)
	g.Line(line(t, "2026-12-05T10:00:03+00:00 h systemd[1]: Starting real.service - real..."), syslog.Origin{Known: true, PID: 1, Comm: "systemd"}, "journal", 0)
	g.Line(line(t, "2026-12-05T10:00:04+00:00 h systemd[1]: Startup finished in 3.2s."), syslog.Origin{Known: true, PID: 77, Comm: "logger"}, "journal", 0)
	if got := h.starts; len(got) != 2 || got[0] != "rt-nightly" || got[1] != "real" {
		t.Errorf("runs started %q, want rt-nightly and real", got)
	}
	if h.boot != 0 || g.Stats().NotPID1 != 3 {
		t.Errorf("boot finished %d times, %d lines refused; want 0 and 3", h.boot, g.Stats().NotPID1)
	}
}

// A kernel line the journal says came from the kernel is marked so; one
// from a file is for the recorder to check.
func TestKernelLinesCarryTheirOrigin(t *testing.T) {
	h := &heard{}
	g := NewEvents(&Namer{}, h)
	msg := "2026-12-05T10:00:00+00:00 h kernel: Out of memory: Killed process 4242 (java) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0"
	g.Line(line(t, msg), syslog.Origin{}, "syslog", 0)
	g.Line(line(t, msg), syslog.Origin{Known: true, Transport: "kernel"}, "journal", 0)
	if len(h.kernel) != 2 || h.kernel[0].FromKernel || !h.kernel[1].FromKernel {
		t.Errorf("kernel events %+v", h.kernel)
	}
}

// A flood of kernel lines (anyone can write them) makes a handful of
// journal warnings, then one line saying how many more there were.
func TestKernelLineFloodIsOneWarningPerBurst(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	h := &heard{}
	g := NewEvents(&Namer{}, h)
	g.Clock = clk
	l := line(t, "2026-12-05T10:00:00+00:00 h kernel: Out of memory: Killed process 4242 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0")
	var recs []collectors.Record
	for i := 0; i < 20000; i++ {
		recs = append(recs, g.Line(l, syslog.Origin{}, "syslog", 0)...)
	}
	clk.Advance(2 * time.Minute)
	recs = append(recs, g.Line(l, syslog.Origin{}, "syslog", 0)...)
	if len(recs) != burstMax+2 || recs[burstMax].Type != collectors.TypeLogSummary || !strings.Contains(recs[burstMax].Message, "19990 more oom_kill lines") {
		t.Fatalf("%d records from 20,001 lines; the summary: %+v", len(recs), recs[min(burstMax, len(recs)-1)])
	}
}
