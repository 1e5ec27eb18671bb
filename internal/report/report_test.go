package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence/store"

	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
)

var update = flag.Bool("update", false, "rewrite the golden files from testdata/recorded")

// recorded is the incident testdata/record.sh recorded with the real agent:
// a service's two burners and an SSH session's yes, a real job run beside
// them, an OOM kill and a hung task in the log.
func recorded(t *testing.T) ([]evidence.Record, string) {
	t.Helper()
	recs, bad, err := store.ReadDir("testdata/recorded")
	if err != nil || bad != 0 {
		t.Fatalf("reading the recording: %v (%d bad)", err, bad)
	}
	for _, r := range recs {
		if r.Kind == evidence.KindOnset {
			return recs, r.Incident
		}
	}
	t.Fatal("the recording has no onset")
	return nil, ""
}

// hung cuts the recording after its second snapshot, as a machine that
// hung then would have left it.
func hung(recs []evidence.Record, id string) []evidence.Record {
	var out []evidence.Record
	snaps := 0
	for _, r := range recs {
		if r.Incident == id && r.Kind == evidence.KindSnapshot {
			snaps++
		}
		if r.Incident == id && (r.Kind == evidence.KindEnd || snaps > 2) {
			break
		}
		out = append(out, r)
	}
	return out
}

const unfinished = "no end recorded before the machine rebooted (or the agent stopped): the spike may have hung it"

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/report -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the report (go test -update rewrites it):\n%s", path, diff(string(want), string(got)))
	}
}

func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			b.WriteString("- " + a + "\n+ " + c + "\n")
		}
	}
	return b.String()
}

func TestTextReportGolden(t *testing.T) {
	recs, id := recorded(t)
	for _, c := range []struct {
		file       string
		recs       []evidence.Record
		boot       int
		unfinished string
	}{
		{"report.txt", recs, 0, ""},
		{"report-hung.txt", hung(recs, id), -1, unfinished},
	} {
		r, err := Build(c.recs, id, c.boot, c.unfinished)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := r.Text(&b, time.UTC); err != nil {
			t.Fatal(err)
		}
		golden(t, c.file, b.Bytes())
	}
}

// What the golden files must say, so that -update cannot bless a report
// that lost its point.
func TestTextReportSaysWhatHappened(t *testing.T) {
	recs, id := recorded(t)
	r, err := Build(recs, id, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	r.Text(&b, time.UTC)
	s := b.String()
	for _, want := range []string{
		"Incident " + id + ": CPU spike",
		"  cause      service etl.service (process python3 pid ",
		"--full --password=***",
		"    caused      service etl.service",
		"    contributed session of ubuntu from 10.0.0.5",
		"coincident  job debian-sa1",
		"<- onset",
		"<- end",
		"-- job debian-sa1 started",
		"!! OOM kill: java (pid 4242)",
		"!! hung task: jbd2/nvme0n1p1-8 (pid 312)",
		"      group    session of ubuntu from 10.0.0.5",
		"      cgroup   /system.slice/etl.service",
		// The service's three processes outweigh the session's yes.
		"service etl.service used 66% of the CPU in 3 processes",
		// Its parent wrote 96 MiB after it started: the growth shows.
		"rss 110 MiB (grew ",
		"grew   1",
		// The idle rest in one line, the agent among them.
		"more, each under 1% of the CPU and grown less than 16 MiB: ",
		"ec2diag(",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "hunter2") {
		t.Error("the secret is in the report")
	}
	if strings.Contains(s, "  pid 1 ") || strings.Contains(s, "command  sleep") {
		t.Error("an idle process is printed in full")
	}
	if len(r.Samples) < 30 {
		t.Errorf("%d samples in the timeline; the recording holds more", len(r.Samples))
	}
	// The timeline is in time order and starts before onset.
	if !r.Samples[0].Time.Before(r.Onset) {
		t.Errorf("first sample %s is not before onset %s", r.Samples[0].Time, r.Onset)
	}
	var hb bytes.Buffer
	Build(hung(recs, id), id, -1, unfinished)
	rh, _ := Build(hung(recs, id), id, -1, unfinished)
	rh.Text(&hb, time.UTC)
	if !strings.Contains(hb.String(), "  ended      NEVER: no end recorded") || !strings.Contains(hb.String(), "nothing after this") {
		t.Errorf("the hung report does not say it hung:\n%s", hb.String())
	}
}

// Outside text in a record cannot break the report's lines or the page.
func TestReportEscapesOutsideText(t *testing.T) {
	recs, id := recorded(t)
	r, _ := Build(recs, id, 0, "")
	r.Verdict.Cause = "process evil\n<0>PANIC </td><script>alert(1)</script>"
	r.Verdict.Top[0].Cmdline = "x\x1b[2J"
	r.Events = append(r.Events, evidence.Event{Time: r.Onset, Type: "oom_kill", Comm: "a\nb"})
	r.Verdict.Top[len(r.Verdict.Top)-1].Comm = "idle\n<b>x"
	var tb, hb bytes.Buffer
	r.Text(&tb, time.UTC)
	if strings.Contains(tb.String(), "evil\n") || strings.Contains(tb.String(), "\x1b") || strings.Contains(tb.String(), "a\nb") || strings.Contains(tb.String(), "idle\n") {
		t.Errorf("control bytes reached the text report")
	}
	if err := r.HTML(&hb, time.UTC); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(hb.String(), "<script>") || strings.Contains(hb.String(), "<b>x") {
		t.Error("markup from a record reached the page")
	}
}

func TestHTMLReportGolden(t *testing.T) {
	recs, id := recorded(t)
	r, err := Build(recs, id, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.HTML(&b, time.UTC); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.html", b.Bytes())
	s := b.String()
	if n := len(regexp.MustCompile(`<path d="M[0-9]`).FindAllString(s, -1)); n != 6 {
		t.Errorf("%d drawn lines, want 6 (CPU; memory, swap; three PSI)", n)
	}
	// Self-contained: nothing to fetch, nothing to run.
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(s, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	if strings.Contains(s, "hunter2") {
		t.Error("the secret is in the page")
	}
}

func TestShownTopKeepsWhatMatters(t *testing.T) {
	r := &Report{Verdict: correlate.Verdict{Top: []correlate.ProcUse{
		{PID: 1, CPUShare: 0.9}, {PID: 2, CPUShare: 0.05}, {PID: 3}, // the ranking's first three
		{PID: 4, CPUShare: 0.01},                      // a visible part
		{PID: 5, RSSGrowth: correlate.MinGrowth},      // grew
		{PID: 6, CPUShare: 0.009, RSSGrowth: 1 << 20}, // neither
		{PID: 7},
	}}}
	shown, rest := r.ShownTop()
	pids := func(ps []correlate.ProcUse) (out []int) {
		for _, p := range ps {
			out = append(out, p.PID)
		}
		return out
	}
	if got := pids(shown); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Errorf("shown %v", got)
	}
	if got := pids(rest); !slices.Equal(got, []int{6, 7}) {
		t.Errorf("rest %v", got)
	}
}

func TestBuildUnknownIncident(t *testing.T) {
	recs, _ := recorded(t)
	if _, err := Build(recs, "nope", 0, ""); err == nil {
		t.Error("no error for an incident the store does not hold")
	}
}

// A name holding a bidi override reads backwards from there on, in a
// terminal and in a browser alike: the report escapes it in both.
func TestReportEscapesBidiControls(t *testing.T) {
	d := evidence.Incident{Onset: time.Unix(1_800_000_000, 0).UTC(), Reasons: []string{"CPU 99% busy"},
		Verdict: correlate.Verdict{Cause: "process evil\u202egnp.sh (pid 7)", Top: []correlate.ProcUse{{PID: 7, Comm: "evil\u202egnp.sh", Cmdline: "evil\u202egnp.sh --x"}}}}
	b, _ := json.Marshal(d)
	rec := evidence.Record{Kind: evidence.KindOnset, Incident: "X", Time: d.Onset, Seq: 1, Data: b}
	r, err := Build([]evidence.Record{rec}, "X", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	var txt, page bytes.Buffer
	r.Text(&txt, time.UTC)
	r.HTML(&page, time.UTC)
	for name, out := range map[string]string{"text": txt.String(), "html": page.String()} {
		if strings.ContainsRune(out, 0x202e) || !strings.Contains(out, `\u202e`) {
			t.Errorf("%s report: the bidi override is not escaped", name)
		}
	}
}
