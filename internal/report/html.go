package report

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
)

// The page is one file to attach to a postmortem: inline CSS and SVG, no
// script, and a Content-Security-Policy that forbids loading anything, so
// it reads the same offline, years later, and cannot call home.

const (
	chartW, chartH             = 900, 170
	padL, padR, padT, padB     = 44, 12, 12, 24
	plotW, plotH               = chartW - padL - padR, chartH - padT - padB
	colorCPU, colorMem, colorS = "#d62728", "#1f77b4", "#9467bd"
)

type svgLine struct {
	Name, Color, D string
	Dashed         bool
}

type svgBand struct {
	X, W  float64
	Label string
	Title string
	Cls   string
}

type svgMark struct {
	X     float64
	Title string
	Cls   string
}

type svgTick struct {
	Pos   float64
	Label string
}

type svgChart struct {
	Title          string
	W, H           int
	PlotX, PlotY   int
	PlotW, PlotH   int
	Lines          []svgLine
	Bands          []svgBand
	Marks          []svgMark
	YTicks, XTicks []svgTick
}

type page struct {
	R        *Report
	Title    string
	Began    string
	Ended    string
	Why      string
	Charts   []svgChart
	Kernel   string
	Loc      *time.Location
	Events   []string
	TimeZone string
	Top      []correlate.ProcUse
	Rest     string // the top processes not shown in full, in one line
}

// HTML writes the self-contained page. Times are in loc.
func (r *Report) HTML(w io.Writer, loc *time.Location) error {
	ts := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04:05 MST") }
	p := page{R: r, Title: "ec2diag incident " + r.ID, Began: ts(r.Onset), Why: strings.Join(r.Reasons, "; "), Loc: loc}
	if k := kindsOf(r.Reasons); k != "" {
		p.Title += ": " + k + " spike"
	}
	switch {
	case r.End != nil:
		p.Ended = fmt.Sprintf("%s, after %s", ts(*r.End), r.Duration().Round(time.Second))
	case r.Hung():
		p.Ended = fmt.Sprintf("NEVER: %s. Last record %s, %s after onset.", r.Unfinished, ts(r.Last), r.Duration().Round(time.Second))
	default:
		p.Ended = fmt.Sprintf("not yet (%s so far)", r.Duration().Round(time.Second))
	}
	var rest []correlate.ProcUse
	p.Top, rest = r.ShownTop()
	if len(rest) > 0 {
		p.Rest = restLine(rest)
	}
	if k := r.Kernel; k != nil {
		p.Kernel = fmt.Sprintf("since onset: %d OOM kills, %d major page faults, %d allocation stalls", k.OOMKills, k.MajorFaults, k.AllocStalls)
	}
	for _, ev := range r.Events {
		p.Events = append(p.Events, ev.Time.In(loc).Format("15:04:05")+"  "+eventText(ev))
	}
	if len(r.Samples) > 0 {
		mem := func(s evidence.Sample) (float64, bool) {
			if s.MemAvail == nil {
				return 0, false
			}
			return *s.MemAvail, true
		}
		always := func(f func(evidence.Sample) float64) func(evidence.Sample) (float64, bool) {
			return func(s evidence.Sample) (float64, bool) { return f(s), true }
		}
		p.Charts = []svgChart{
			r.chart("CPU busy (% of all CPUs)", loc, svgLine{Name: "CPU busy", Color: colorCPU}, always(func(s evidence.Sample) float64 { return s.CPUBusy })),
			r.chart("Memory (%)", loc,
				svgLine{Name: "memory available", Color: colorMem}, mem,
				svgLine{Name: "swap used", Color: colorS, Dashed: true}, always(func(s evidence.Sample) float64 { return s.SwapUsed })),
			r.chart("Pressure stall (PSI avg10, %)", loc,
				svgLine{Name: "memory some", Color: colorMem}, always(func(s evidence.Sample) float64 { return s.PSIMemSome }),
				svgLine{Name: "memory full", Color: colorCPU}, always(func(s evidence.Sample) float64 { return s.PSIMemFull }),
				svgLine{Name: "CPU some", Color: colorS, Dashed: true}, always(func(s evidence.Sample) float64 { return s.PSICPUSome })),
		}
	}
	return pageTmpl.Execute(w, p)
}

// span is the charts' time axis: the samples, and the end if later.
func (r *Report) span() (time.Time, time.Time) {
	t0, t1 := r.Samples[0].Time, r.Samples[len(r.Samples)-1].Time
	if r.End != nil && r.End.After(t1) {
		t1 = *r.End
	}
	if !t1.After(t0) {
		t1 = t0.Add(time.Second)
	}
	return t0, t1
}

// chart draws series (pairs of svgLine and value func) on a 0-100 scale.
func (r *Report) chart(title string, loc *time.Location, series ...any) svgChart {
	t0, t1 := r.span()
	x := func(t time.Time) float64 {
		return float64(padL) + float64(plotW)*float64(t.Sub(t0))/float64(t1.Sub(t0))
	}
	y := func(v float64) float64 {
		v = min(max(v, 0), 100)
		return float64(padT) + float64(plotH)*(1-v/100)
	}
	c := svgChart{Title: title, W: chartW, H: chartH, PlotX: padL, PlotY: padT, PlotW: plotW, PlotH: plotH}
	for i := 0; i+1 < len(series); i += 2 {
		l := series[i].(svgLine)
		f := series[i+1].(func(evidence.Sample) (float64, bool))
		var b strings.Builder
		pen := false
		for _, s := range r.Samples {
			v, ok := f(s)
			if !ok {
				pen = false // a gap, not a fall to 0
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&b, "%s%.1f,%.1f ", cmd, x(s.Time), y(v))
			pen = true
		}
		l.D = strings.TrimSpace(b.String())
		c.Lines = append(c.Lines, l)
	}
	for _, v := range []float64{0, 25, 50, 75, 100} {
		c.YTicks = append(c.YTicks, svgTick{Pos: y(v), Label: fmt.Sprintf("%.0f", v)})
	}
	step := tickStep(t1.Sub(t0))
	for t := t0.Truncate(step).Add(step); t.Before(t1); t = t.Add(step) {
		c.XTicks = append(c.XTicks, svgTick{Pos: x(t), Label: t.In(loc).Format("15:04:05")})
	}
	clip := func(a, b time.Time) (float64, float64, bool) {
		if b.IsZero() || b.After(t1) {
			b = t1
		}
		if a.Before(t0) {
			a = t0
		}
		if !b.After(a) {
			if a.After(t1) || b.Before(t0) {
				return 0, 0, false
			}
			b = a.Add((t1.Sub(t0)) / 300) // a run of a moment still shows
		}
		return x(a), x(b) - x(a), true
	}
	for _, j := range r.Runs {
		if xa, w, ok := clip(j.Start, j.End); ok {
			cls := "band"
			if j.Verdict == "caused" || j.Verdict == "contributed" {
				cls = "band blamed"
			}
			title := fmt.Sprintf("job %s (pid %d) from %s", j.Job, j.PID, j.Start.In(loc).Format("15:04:05"))
			if j.Verdict != "" {
				title += ": " + string(j.Verdict)
			}
			c.Bands = append(c.Bands, svgBand{X: xa, W: w, Label: j.Job, Title: title, Cls: cls})
		}
	}
	c.Marks = append(c.Marks, svgMark{X: x(r.Onset), Title: "onset " + r.Onset.In(loc).Format("15:04:05"), Cls: "onset"})
	if r.End != nil {
		c.Marks = append(c.Marks, svgMark{X: x(*r.End), Title: "end " + r.End.In(loc).Format("15:04:05"), Cls: "end"})
	}
	for _, ev := range r.Events {
		if !ev.Time.Before(t0) && !ev.Time.After(t1) {
			c.Marks = append(c.Marks, svgMark{X: x(ev.Time), Title: ev.Time.In(loc).Format("15:04:05") + " " + eventText(ev), Cls: "event"})
		}
	}
	return c
}

func tickStep(d time.Duration) time.Duration {
	for _, s := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour} {
		if d/s <= 8 {
			return s
		}
	}
	return 6 * time.Hour
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"mib": func(b int64) string { return fmt.Sprintf("%d MiB", b>>20) },
	"grew": func(b int64) string {
		if b>>20 == 0 {
			return ""
		}
		return fmt.Sprintf(" (grew %d MiB)", b>>20)
	},
	"hms":   func(loc *time.Location, t time.Time) string { return t.In(loc).Format("15:04:05") },
	"f1":    func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"join":  strings.Join,
	"group": groupName,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
.caused{color:#b00;font-weight:bold}.contributed{color:#c60}.coincident,.unverified{color:#777}
.hung{color:#b00;font-weight:bold}code{font:12px monospace;word-break:break-all}
svg text{font:11px sans-serif;fill:#444}.grid{stroke:#eee}.axis{stroke:#999}
.band{fill:#2ca02c;fill-opacity:.12}.band.blamed{fill:#d62728;fill-opacity:.15}
.onset{stroke:#000;stroke-dasharray:4 3}.end{stroke:#2ca02c;stroke-dasharray:4 3}.event{stroke:#b00;stroke-width:2}
.legend{font-size:12px}
</style></head><body>
<h1>{{.Title}}</h1>
<table>
<tr><th>began</th><td>{{.Began}} (boot {{.R.Boot}})</td></tr>
<tr><th>ended</th><td{{if .R.Hung}} class="hung"{{end}}>{{.Ended}}</td></tr>
<tr><th>why</th><td>{{.Why}}</td></tr>
{{if .Kernel}}<tr><th>kernel</th><td>{{.Kernel}}</td></tr>{{end}}
<tr><th>cause</th><td><b>{{with .R.Verdict.Cause}}{{.}}{{else}}(none found){{end}}</b></td></tr>
{{with .R.Verdict.Summary}}<tr><th>summary</th><td>{{.}}</td></tr>{{end}}
<tr><th>evidence</th><td>{{.R.Records}} records; incident {{.R.ID}}</td></tr>
</table>
{{if .Charts}}<h2>Timeline</h2>
{{range .Charts}}{{$c := .}}<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Title}}">
<text x="{{.PlotX}}" y="10">{{.Title}}</text>
{{range .YTicks}}<line class="grid" x1="{{$c.PlotX}}" y1="{{.Pos}}" x2="{{$.Right $c}}" y2="{{.Pos}}"/><text x="{{$.Sub $c.PlotX 4}}" y="{{.Pos}}" text-anchor="end" dominant-baseline="middle">{{.Label}}</text>
{{end}}{{range .XTicks}}<text x="{{.Pos}}" y="{{$.Bottom $c}}" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Bands}}<rect class="{{.Cls}}" x="{{.X}}" y="{{$c.PlotY}}" width="{{.W}}" height="{{$c.PlotH}}"><title>{{.Title}}</title></rect><text x="{{.X}}" y="{{$.Sub $c.PlotY -10}}">{{.Label}}</text>
{{end}}{{range .Marks}}<line class="{{.Cls}}" x1="{{.X}}" x2="{{.X}}" y1="{{$c.PlotY}}" y2="{{$.Base $c}}"><title>{{.Title}}</title></line>
{{end}}{{range .Lines}}<path d="{{.D}}" fill="none" stroke="{{.Color}}" stroke-width="1.8"{{if .Dashed}} stroke-dasharray="5 3"{{end}}><title>{{.Name}}</title></path>
{{end}}<line class="axis" x1="{{.PlotX}}" y1="{{$.Base $c}}" x2="{{$.Right $c}}" y2="{{$.Base $c}}"/>
</svg>
<div class="legend">{{range .Lines}}<span style="color:{{.Color}}">&#9632; {{.Name}}</span> {{end}}<span>&#9646; job runs (red: blamed); dashed black: onset; red ticks: kernel events</span></div>
{{end}}{{end}}
{{with .R.Verdict.Groups}}<h2>Groups</h2>
<table><tr><th>verdict</th><th>group</th><th>CPU</th><th>memory</th><th>RSS</th><th>processes</th></tr>
{{range .}}<tr><td class="{{.Verdict}}">{{.Verdict}}</td><td>{{.Name}}</td><td>{{pct .CPUShare}}</td><td>{{pct .MemShare}}</td><td>{{mib .RSSBytes}}{{grew .RSSGrowth}}</td><td>{{.Processes}}</td></tr>
{{end}}</table>{{end}}
{{with .R.Runs}}<h2>Job runs</h2>
<table><tr><th>job</th><th>pid</th><th>started</th><th>ended</th><th>verdict</th><th>why</th></tr>
{{range .}}<tr><td>{{.Job}}</td><td>{{.PID}}</td><td>{{hms $.Loc .Start}}</td><td>{{if .End.IsZero}}running{{else}}{{hms $.Loc .End}}{{end}}</td><td class="{{.Verdict}}">{{.Verdict}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>{{end}}
{{with .Events}}<h2>Kernel events</h2>
<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Top}}<h2>Top processes</h2>
<table><tr><th>pid</th><th>name</th><th>CPU</th><th>RSS</th><th>user</th><th>group</th><th>command</th></tr>
{{range .}}<tr><td>{{.PID}}</td><td>{{.Comm}}</td><td>{{pct .CPUShare}} ({{f1 .CPUSec}} s)</td><td>{{mib .RSSBytes}}{{grew .RSSGrowth}}</td><td>{{.User}}</td><td>{{group .}}{{if .Agent}} (ec2diag itself){{end}}{{if .Kernel}} (kernel thread){{end}}</td><td><code>{{.Cmdline}}</code>{{with .Parents}}<br><small>parents: {{join . " < "}}</small>{{end}}{{with .Cgroup}}<br><small>cgroup {{.}}</small>{{end}}</td></tr>
{{end}}</table>{{with $.Rest}}<p>And {{.}}</p>{{end}}{{end}}
<p><small>Written by ec2diag from the evidence store; <code>ec2diag incidents show {{.R.ID}} --format json</code> prints its records.</small></p>
</body></html>
`))

// Geometry helpers the template calls.
func (page) Right(c svgChart) int  { return c.PlotX + c.PlotW }
func (page) Base(c svgChart) int   { return c.PlotY + c.PlotH }
func (page) Bottom(c svgChart) int { return c.PlotY + c.PlotH + 16 }
func (page) Sub(a int, b int) int  { return a - b }
