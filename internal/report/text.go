package report

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/evidence"
)

// maxRows bounds the timeline's rows: a long incident keeps every sample
// around onset and before its end, and every few in between.
const maxRows = 48

// onsetRows is how much of the timeline around onset is always shown.
const (
	beforeOnset = 60 * time.Second
	afterOnset  = 90 * time.Second
	lastRows    = 8
)

// Text writes the report a person reads in a terminal. Times are in loc.
func (r *Report) Text(out io.Writer, loc *time.Location) error {
	w := bufio.NewWriter(out)
	e := escape.Control
	ts := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04:05 MST") }

	title := "spike"
	if len(r.Reasons) > 0 {
		title = kindsOf(r.Reasons) + " spike"
	}
	fmt.Fprintf(w, "Incident %s: %s\n\n", r.ID, title)

	fmt.Fprintln(w, "What happened")
	fmt.Fprintf(w, "  began      %s (boot %d)\n", ts(r.Onset), r.Boot)
	switch {
	case r.End != nil:
		fmt.Fprintf(w, "  ended      %s, after %s\n", ts(*r.End), r.Duration().Round(time.Second))
	case r.Hung():
		fmt.Fprintf(w, "  ended      NEVER: %s\n", r.Unfinished)
		fmt.Fprintf(w, "  last seen  %s, %s after onset: the agent's last record\n", ts(r.Last), r.Duration().Round(time.Second))
	default:
		fmt.Fprintf(w, "  ended      not yet (%s so far)\n", r.Duration().Round(time.Second))
	}
	fmt.Fprintf(w, "  why        %s\n", e(strings.Join(r.Reasons, "; ")))
	if k := r.Kernel; k != nil {
		fmt.Fprintf(w, "  kernel     since onset: %d OOM kills, %d major page faults, %d allocation stalls\n", k.OOMKills, k.MajorFaults, k.AllocStalls)
	}
	if n := count(r.Events, "hung_task"); n > 0 {
		fmt.Fprintf(w, "  hung tasks %d reported by the kernel\n", n)
	}
	if n := unverified(r.Events); n > 0 {
		fmt.Fprintf(w, "  log says   %d more kernel events that the kernel's counters do not confirm (marked unverified below; not counted)\n", n)
	}
	fmt.Fprintf(w, "  evidence   %d records in the store\n\n", r.Records)

	v := r.Verdict
	fmt.Fprintln(w, "Verdict")
	fmt.Fprintf(w, "  cause      %s\n", e(orNone(v.Cause)))
	if v.Summary != "" {
		fmt.Fprintf(w, "  summary    %s\n", e(v.Summary))
	}
	if len(v.Groups) > 0 {
		fmt.Fprintln(w, "  groups (share of the spike's CPU and of the top processes' memory):")
		grew := false
		for _, g := range v.Groups {
			grew = grew || g.RSSGrowth>>20 > 0
		}
		for _, g := range v.Groups {
			growth := ""
			if grew {
				// A column only when some group grew: a CPU spike's
				// report keeps its width.
				growth = fmt.Sprintf("  grew %5d MiB", g.RSSGrowth>>20)
			}
			fmt.Fprintf(w, "    %-11s %-40s cpu %3.0f%%  mem %3.0f%%  %5d MiB%s  %d process%s\n", g.Verdict, e(g.Name),
				100*g.CPUShare, 100*g.MemShare, g.RSSBytes>>20, growth, g.Processes, plural(g.Processes, "es"))
		}
	}
	if len(v.Jobs) > 0 {
		fmt.Fprintln(w, "  job runs near onset:")
		for _, j := range v.Jobs {
			fmt.Fprintf(w, "    %-11s job %s (pid %d, started %s): %s\n", j.Verdict, e(j.Job), j.PID,
				j.Start.In(loc).Format("15:04:05"), e(j.Reason))
		}
	}
	fmt.Fprintln(w)

	r.timeline(w, loc)

	shown, rest := r.ShownTop()
	if len(shown) > 0 {
		fmt.Fprintln(w, "Top processes")
		for _, p := range shown {
			who := p.User
			if who == "" && p.UID != nil {
				who = fmt.Sprintf("uid %d", *p.UID)
			}
			fmt.Fprintf(w, "  pid %-7d %-16s cpu %3.0f%% (%.1f s)  rss %d MiB", p.PID, e(p.Comm), 100*p.CPUShare, p.CPUSec, p.RSSBytes>>20)
			if g := p.RSSGrowth >> 20; g > 0 {
				fmt.Fprintf(w, " (grew %d MiB)", g)
			}
			if who != "" {
				fmt.Fprintf(w, "  user %s", e(who))
			}
			if p.DStateSec > 0 {
				fmt.Fprintf(w, "  waited %.0f s on I/O", p.DStateSec)
			}
			if p.Agent {
				fmt.Fprint(w, "  (ec2diag itself: never blamed)")
			}
			if p.Kernel {
				fmt.Fprint(w, "  (kernel thread: never blamed)")
			}
			fmt.Fprintln(w)
			if p.Cmdline != "" {
				red := ""
				if p.CmdlineRedacted > 0 {
					red = fmt.Sprintf("   [%d secret%s redacted]", p.CmdlineRedacted, plural(p.CmdlineRedacted, "s"))
				}
				fmt.Fprintf(w, "      command  %s%s\n", e(p.Cmdline), red)
			}
			if g := groupName(p); g != "" {
				fmt.Fprintf(w, "      group    %s\n", e(g))
			}
			if p.Cgroup != "" {
				fmt.Fprintf(w, "      cgroup   %s\n", e(p.Cgroup))
			}
			if len(p.Parents) > 0 {
				fmt.Fprintf(w, "      parents  %s\n", e(strings.Join(p.Parents, " < ")))
			}
			if !p.Started.IsZero() {
				fmt.Fprintf(w, "      started  %s\n", ts(p.Started))
			}
		}
		if len(rest) > 0 {
			fmt.Fprintf(w, "  and %s\n", e(restLine(rest)))
		}
	}
	return w.Flush()
}

// timeline writes the samples around onset with the job runs and kernel
// events between them, in time order.
func (r *Report) timeline(w io.Writer, loc *time.Location) {
	if len(r.Samples) == 0 {
		fmt.Fprintln(w, "Timeline: no samples recorded (records from before the agent kept them)")
		fmt.Fprintln(w)
		return
	}
	type row struct {
		t    time.Time
		text string
		ord  int // at one time: events after the sample they follow
	}
	var rows []row
	keep := r.keptSamples()
	skipped := 0
	for i, s := range r.Samples {
		if !keep[i] {
			skipped++
			continue
		}
		if skipped > 0 {
			rows = append(rows, row{t: s.Time.Add(-time.Nanosecond), text: fmt.Sprintf("  %8s  (%d samples not shown)", "...", skipped), ord: -1})
			skipped = 0
		}
		mem := "    ?"
		if s.MemAvail != nil {
			mem = fmt.Sprintf("%5.1f", *s.MemAvail)
		}
		mark := ""
		if !s.Time.Before(r.Onset) && (i == 0 || r.Samples[i-1].Time.Before(r.Onset)) {
			mark = "  <- onset"
		}
		if r.End != nil && i == len(r.Samples)-1 && !s.Time.Before(*r.End) {
			mark += "  <- end"
		}
		rows = append(rows, row{t: s.Time, text: fmt.Sprintf("  %8s  %5.1f      %s  %5.1f   %5.1f  %5.1f   %5.1f%s",
			s.Time.In(loc).Format("15:04:05"), s.CPUBusy, mem, s.SwapUsed, s.PSIMemSome, s.PSIMemFull, s.PSICPUSome, mark)})
	}
	first, last := r.Samples[0].Time, r.Samples[len(r.Samples)-1].Time
	in := func(t time.Time) bool { return !t.Before(first) && !t.After(last.Add(time.Minute)) }
	marker := func(t time.Time, s string) {
		rows = append(rows, row{t: t, text: fmt.Sprintf("  %8s  %s", t.In(loc).Format("15:04:05"), s), ord: 1})
	}
	for _, j := range r.Runs {
		v := ""
		if j.Verdict != "" {
			v = " [" + string(j.Verdict) + "]"
		}
		if in(j.Start) {
			marker(j.Start, fmt.Sprintf("-- job %s started (pid %d)%s", escape.Control(j.Job), j.PID, v))
		}
		if !j.End.IsZero() && in(j.End) {
			marker(j.End, fmt.Sprintf("-- job %s ended after %s", escape.Control(j.Job), j.End.Sub(j.Start).Round(time.Second)))
		}
	}
	for _, ev := range r.Events {
		marker(ev.Time, "!! "+eventText(ev))
	}
	if r.End == nil && r.Hung() {
		rows = append(rows, row{t: last.Add(time.Hour), text: "  (nothing after this: the machine stopped, or the agent did, before the spike ended)", ord: 2})
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].t.Equal(rows[j].t) {
			return rows[i].t.Before(rows[j].t)
		}
		return rows[i].ord < rows[j].ord
	})
	fmt.Fprintln(w, "Timeline (% of CPU busy, memory available, swap used; PSI avg10 %)")
	fmt.Fprintln(w, "      time    cpu  mem avail   swap  mem some  full  cpu some")
	for _, x := range rows {
		fmt.Fprintln(w, x.text)
	}
	fmt.Fprintln(w)
}

// keptSamples picks the timeline's rows: all around onset, the last few,
// and an even spread of the rest within maxRows.
func (r *Report) keptSamples() map[int]bool {
	keep := map[int]bool{}
	n := len(r.Samples)
	for i, s := range r.Samples {
		if !s.Time.Before(r.Onset.Add(-beforeOnset)) && !s.Time.After(r.Onset.Add(afterOnset)) || i >= n-lastRows {
			keep[i] = true
		}
	}
	if n <= maxRows {
		for i := range r.Samples {
			keep[i] = true
		}
		return keep
	}
	if spare := maxRows - len(keep); spare > 0 {
		step := (n + spare - 1) / spare
		for i := 0; i < n; i += step {
			keep[i] = true
		}
	}
	return keep
}

func eventText(ev evidence.Event) string {
	e := escape.Control
	who := ""
	if ev.Comm != "" || ev.PID != 0 {
		who = fmt.Sprintf(": %s (pid %d)", e(ev.Comm), ev.PID)
	}
	if ev.Unverified != "" {
		who += " (unverified: " + e(ev.Unverified) + ")"
	}
	switch ev.Type {
	case "oom_kill":
		return "OOM kill" + who
	case "hung_task":
		return "hung task" + who
	case "soft_lockup":
		return "soft lockup" + who
	case "rcu_stall":
		return "RCU stall" + who
	}
	return e(ev.Type) + who
}

// kindsOf says what the spike was about: "CPU", "memory" or both.
func kindsOf(reasons []string) string {
	cpu, mem := false, false
	for _, x := range reasons {
		switch {
		case strings.Contains(x, "memory"):
			mem = true
		case strings.HasPrefix(x, "CPU"):
			cpu = true
		}
	}
	switch {
	case cpu && mem:
		return "CPU and memory"
	case mem:
		return "memory"
	case cpu:
		return "CPU"
	}
	return ""
}

func groupName(p correlate.ProcUse) string {
	if _, name, ok := correlate.GroupOf(p); ok {
		return name
	}
	return p.Group // a system scope (init.scope) is no group, but says where the process is
}

// count counts the confirmed events of a type: one only a log line vouches
// for is no evidence of the kernel's.
func count(evs []evidence.Event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ && e.Unverified == "" {
			n++
		}
	}
	return n
}

func unverified(evs []evidence.Event) int {
	n := 0
	for _, e := range evs {
		if e.Unverified != "" {
			n++
		}
	}
	return n
}

func orNone(s string) string {
	if s == "" {
		return "(none found)"
	}
	return s
}

// restLine names the processes a report does not print in full.
func restLine(rest []correlate.ProcUse) string {
	names := make([]string, len(rest))
	for i, p := range rest {
		names[i] = fmt.Sprintf("%s(%d)", p.Comm, p.PID)
	}
	return fmt.Sprintf("%d more, each under %.0f%% of the CPU and grown less than %d MiB: %s",
		len(rest), 100*minCPUShare, correlate.MinGrowth>>20, strings.Join(names, ", "))
}

func plural(n int, suffix string) string {
	if n == 1 {
		return ""
	}
	return suffix
}
