package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/atomicfile"

	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/store"
	"github.com/ec2diag/ec2diag/internal/report"
	"github.com/spf13/cobra"
)

// incidentView is the JSON contract of `ec2diag incidents --format json`.
type incidentView = evidence.View

func newIncidentsCmd(g *globalFlags) *cobra.Command {
	var since time.Duration
	var boot int
	var format string
	var bootSet bool
	c := &cobra.Command{
		Use:   "incidents [--since DURATION] [--boot -1] [--format json]",
		Short: "List recorded spikes: when, how bad, the job and processes blamed",
		Long: `List the incidents in the agent's evidence store (the state directory), in plain
words: when the spike began and ended, why it counts as a spike, which job run and
which processes caused it, and which jobs merely ran nearby. --boot 0 is this boot,
-1 the boot before (the one that hung, after a reboot). "incidents show ID" prints
one incident's report (--format json its records, --html FILE a page to attach to
a postmortem).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			views, bad, err := loadIncidents(g)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			bootSet = cmd.Flags().Changed("boot")
			var sel []incidentView
			for _, v := range views {
				if since > 0 && v.Onset.Before(g.clock().Now().Add(-since)) {
					continue
				}
				if bootSet && v.Boot != boot {
					continue
				}
				sel = append(sel, v)
			}
			return printIncidents(cmd.OutOrStdout(), sel, bad, format)
		},
	}
	c.Flags().DurationVar(&since, "since", 0, "only incidents that began within this long, e.g. 24h")
	c.Flags().IntVar(&boot, "boot", 0, "only incidents of this boot: 0 this one, -1 the previous ...")
	c.Flags().StringVar(&format, "format", "text", "output: text or json")
	c.AddCommand(newIncidentShowCmd(g))
	return c
}

func loadIncidents(g *globalFlags) ([]incidentView, int, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, 0, err
	}
	recs, bad, err := store.ReadDir(cfg.StateDir)
	if err != nil {
		return nil, 0, err
	}
	root := g.hostRoot()
	return evidence.Views(recs, root.BootID(), root.BootTime()), bad, nil
}

func printIncidents(w io.Writer, vs []incidentView, bad int, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for i := range vs {
			if err := enc.Encode(&vs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if len(vs) == 0 {
		fmt.Fprintln(w, "no incidents recorded")
	}
	for _, v := range vs {
		end := "still going"
		if v.End != nil {
			end = "lasted " + v.End.Sub(v.Onset).Round(time.Second).String()
		} else if v.Unfinished != "" {
			end = "UNFINISHED: " + v.Unfinished
		}
		if v.Crash != nil {
			printCrash(w, &v, 5)
			continue
		}
		e := escape.Control // names and commands come from other processes
		fmt.Fprintf(w, "%s  boot %d  %s\n  spike: %s\n  cause: %s\n", v.Onset.Local().Format(time.RFC3339), v.Boot, end, strings.Join(v.Reasons, ", "), e(v.Cause))
		for _, j := range v.Jobs {
			fmt.Fprintf(w, "  job %s: %s (%s)\n", e(j.Job), j.Verdict, e(j.Reason))
		}
		// The groups first: "service etl.service" is what a reader knows;
		// its processes follow with the group each belongs to.
		for i, g := range v.Groups {
			if i == 3 {
				break
			}
			fmt.Fprintf(w, "  %s: %s, %.0f%% of CPU, %d MiB%s in %d process%s\n", e(g.Name), g.Verdict, 100*g.CPUShare, g.RSSBytes>>20,
				grewText(g.RSSGrowth), g.Processes, map[bool]string{true: "", false: "es"}[g.Processes == 1])
		}
		for i, p := range v.Top {
			if i == 3 {
				break
			}
			of := ""
			if _, g, ok := correlate.GroupOf(p); p.Agent {
				of = " (ec2diag itself)"
			} else if p.Kernel {
				of = " (kernel thread)"
			} else if ok {
				of = " (" + e(g) + ")"
			}
			waited := ""
			if p.DStateSec > 0 {
				waited = fmt.Sprintf(", waited %.0f s on I/O", p.DStateSec)
			}
			fmt.Fprintf(w, "  process %s pid %d%s: %.0f%% of CPU, %d MiB%s%s\n", e(p.Comm), p.PID, of, 100*p.CPUShare, p.RSSBytes>>20, grewText(p.RSSGrowth), waited)
		}
		fmt.Fprintf(w, "  id %s (ec2diag incidents show %s)\n\n", v.ID, v.ID)
	}
	if bad > 0 {
		fmt.Fprintf(w, "%d damaged records skipped (torn by a crash)\n", bad)
	}
	return nil
}

// grewText says how much memory grew, where it grew by what ranks a
// memory spike (correlate.MinGrowth).
func grewText(b int64) string {
	if b < correlate.MinGrowth {
		return ""
	}
	return fmt.Sprintf(" (grew %d MiB)", b>>20)
}

func newIncidentShowCmd(g *globalFlags) *cobra.Command {
	var format, htmlFile string
	c := &cobra.Command{
		Use:   "show ID [--format text|json] [--html FILE]",
		Short: "One incident's report: what happened, the verdict, the timeline, what was blamed",
		Long: `Print the report of one incident: what happened (why it is a spike, how long it
lasted, whether the machine hung before it ended), the verdict with its evidence, a
timeline of the samples around onset with job runs and kernel events (OOM kills, hung
tasks) marked, and the groups and processes blamed with their command lines.
--format json prints the incident's records as the store holds them instead.
--html FILE also writes one self-contained HTML page (inline SVG charts of CPU, memory
and PSI with the job runs as bands; no scripts, nothing loaded from elsewhere).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return &exitError{code: exitUsage, err: fmt.Errorf("--format %q: want text or json", format)}
			}
			cfg, err := loadConfig(g)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			recs, _, err := store.ReadDir(cfg.StateDir)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			views, _, err := loadIncidents(g)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			var view *incidentView
			for i := range views {
				if views[i].ID == args[0] {
					view = &views[i]
				}
			}
			if view == nil {
				return &exitError{code: exitFailure, err: fmt.Errorf("no incident %q in %s", args[0], cfg.StateDir)}
			}
			if view.Crash != nil {
				if htmlFile != "" {
					return &exitError{code: exitUsage, err: fmt.Errorf("%s is a kernel crash: it has no timeline to draw (--html)", view.ID)}
				}
				if format == "json" {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(view)
				}
				printCrash(cmd.OutOrStdout(), view, 0)
				return nil
			}
			rep, err := report.Build(recs, view.ID, view.Boot, view.Unfinished)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			if htmlFile != "" {
				if err := atomicfile.WriteFunc(htmlFile, func(w io.Writer) error { return rep.HTML(w, time.Local) }, atomicfile.Options{Perm: 0o644}); err != nil {
					return &exitError{code: exitFailure, err: err}
				}
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				for _, r := range recs {
					if r.Incident == view.ID {
						if err := enc.Encode(r); err != nil {
							return err
						}
					}
				}
				return nil
			}
			return rep.Text(out, time.Local)
		},
	}
	c.Flags().StringVar(&format, "format", "text", "output: text (the report) or json (the records)")
	c.Flags().StringVar(&htmlFile, "html", "", "also write the report as one self-contained HTML page to this file")
	return c
}

// printCrash says what the kernel left of a crash, with the last lines of
// its dump (all of them when tail is 0).
func printCrash(w io.Writer, v *incidentView, tail int) {
	e := escape.Control // the dump quotes process names
	c := v.Crash
	fmt.Fprintf(w, "%s  boot %d  KERNEL %s (%s)\n  cause: %s\n", v.Onset.Local().Format(time.RFC3339), v.Boot, strings.ToUpper(c.Kind), v.ID, e(v.Cause))
	if c.Reason != "" {
		fmt.Fprintf(w, "  kernel: %s\n", e(c.Reason))
	}
	for _, l := range c.Lockups {
		fmt.Fprintf(w, "  before it: %s\n", e(l))
	}
	lines := c.Tail
	if tail > 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "  last words (%s):\n", e(strings.Join(c.Files, ", ")))
	}
	for _, l := range lines {
		fmt.Fprintf(w, "    %s\n", e(l))
	}
}
