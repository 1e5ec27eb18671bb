package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/incident"
	"github.com/spf13/cobra"
)

// incidentView is the JSON contract of `ec2diag incidents --format json`.
type incidentView struct {
	ID         string              `json:"id"`
	Onset      time.Time           `json:"onset"`
	End        *time.Time          `json:"end"`
	BootID     string              `json:"boot_id"`
	Boot       int                 `json:"boot"` // 0 this boot, -1 the one before ...
	Reasons    []string            `json:"reasons"`
	Cause      string              `json:"cause"`
	Summary    string              `json:"summary"`
	Jobs       []correlate.Blame   `json:"jobs"`
	Top        []correlate.ProcUse `json:"top_processes"`
	Records    int                 `json:"records"`
	Unfinished string              `json:"unfinished,omitempty"`
}

type snapshotData struct {
	Onset   time.Time         `json:"onset"`
	Reasons []string          `json:"reasons"`
	Verdict correlate.Verdict `json:"verdict"`
}

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
every record of one incident.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			views, bad, err := loadIncidents(g)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			bootSet = cmd.Flags().Changed("boot")
			var sel []incidentView
			for _, v := range views {
				if since > 0 && v.Onset.Before(time.Now().Add(-since)) {
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
	c.AddCommand(&cobra.Command{
		Use:   "show ID",
		Short: "Print every record of one incident",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			recs, _, err := incident.ReadDir(cfg.StateDir)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			n := 0
			for _, r := range recs {
				if r.Incident == args[0] {
					enc.Encode(r)
					n++
				}
			}
			if n == 0 {
				return &exitError{code: exitFailure, err: fmt.Errorf("no incident %q in %s", args[0], cfg.StateDir)}
			}
			return nil
		},
	})
	return c
}

func loadIncidents(g *globalFlags) ([]incidentView, int, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, 0, err
	}
	recs, bad, err := incident.ReadDir(cfg.StateDir)
	if err != nil {
		return nil, 0, err
	}
	curID, curTime := incident.BootID("/proc"), incident.BootTime("/proc")
	// Boots in the order the store saw them; this boot is 0.
	type boot struct {
		id string
		t  int64
	}
	var boots []boot
	for _, r := range recs {
		if n := len(boots); n == 0 || !incident.SameBoot(boots[n-1].id, boots[n-1].t, r.BootID, r.BootTime) {
			boots = append(boots, boot{r.BootID, r.BootTime})
		}
	}
	pos := len(boots)
	for i, b := range boots {
		if incident.SameBoot(b.id, b.t, curID, curTime) {
			pos = i
		}
	}
	bootIndex := func(r incident.Record) int {
		for i := len(boots) - 1; i >= 0; i-- {
			if incident.SameBoot(boots[i].id, boots[i].t, r.BootID, r.BootTime) {
				return i - pos
			}
		}
		return 0
	}
	byID := map[string]*incidentView{}
	var order []string
	for _, r := range recs {
		if r.Incident == "" {
			continue
		}
		v, ok := byID[r.Incident]
		if !ok {
			v = &incidentView{ID: r.Incident, BootID: r.BootID, Boot: bootIndex(r)}
			byID[r.Incident] = v
			order = append(order, r.Incident)
		}
		v.Records++
		var d snapshotData
		json.Unmarshal(r.Data, &d)
		switch r.Kind {
		case incident.KindOnset, incident.KindSnapshot:
			v.Onset, v.Reasons = d.Onset, d.Reasons
			v.Cause, v.Summary, v.Jobs, v.Top = d.Verdict.Cause, d.Verdict.Summary, d.Verdict.Jobs, d.Verdict.Top
		case incident.KindEnd:
			t := r.Time
			v.End = &t
			if d.Verdict.Cause != "" {
				v.Cause, v.Summary, v.Jobs, v.Top = d.Verdict.Cause, d.Verdict.Summary, d.Verdict.Jobs, d.Verdict.Top
			}
		}
	}
	var out []incidentView
	for _, id := range order {
		v := byID[id]
		if v.End == nil && v.Boot != 0 {
			v.Unfinished = "no end recorded before the machine rebooted (or the agent stopped): the spike may have hung it"
		}
		out = append(out, *v)
	}
	return out, bad, nil
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
		e := escape.Control // names and commands come from other processes
		fmt.Fprintf(w, "%s  boot %d  %s\n  spike: %s\n  cause: %s\n", v.Onset.Local().Format(time.RFC3339), v.Boot, end, strings.Join(v.Reasons, ", "), e(v.Cause))
		for _, j := range v.Jobs {
			fmt.Fprintf(w, "  job %s: %s (%s)\n", e(j.Job), j.Verdict, e(j.Reason))
		}
		for i, p := range v.Top {
			if i == 3 {
				break
			}
			fmt.Fprintf(w, "  process %s pid %d: %.0f%% of CPU, %d MiB\n", e(p.Comm), p.PID, 100*p.CPUShare, p.RSSBytes>>20)
		}
		fmt.Fprintf(w, "  id %s (ec2diag incidents show %s)\n\n", v.ID, v.ID)
	}
	if bad > 0 {
		fmt.Fprintf(w, "%d damaged records skipped (torn by a crash)\n", bad)
	}
	return nil
}
