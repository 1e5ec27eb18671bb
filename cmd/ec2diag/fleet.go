package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/fleet"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/sink/cwlogs"
	"github.com/spf13/cobra"
)

type fleetFlags struct {
	since, asg, job, format, group, region, endpoint string
	limit                                            int
	timeout                                          time.Duration
}

func newFleetCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "fleet",
		Short: "Ask CloudWatch Logs Insights about the whole fleet's incidents",
		Long: `Query the incidents every instance shipped to CloudWatch Logs (cloudwatch_logs in the
config): "fleet incidents" lists them, newest first, with the instance, its Auto Scaling
group, the cause and whether the incident ended (an incident without an end record is
still running, or the machine hung or was replaced); "fleet jobs" the jobs most often
blamed (verdict caused), with how many incidents and instances. Run from an admin's shell
(IAM: logs:StartQuery on the group, logs:GetQueryResults). The queries are in the README
for pasting into the console; --print-query prints the one that would run.`,
	}
	f := &fleetFlags{}
	add := func(sc *cobra.Command) *cobra.Command {
		fl := sc.Flags()
		fl.StringVar(&f.since, "since", "7d", "how far back: a duration (90m, 36h) or days (7d)")
		fl.StringVar(&f.asg, "asg", "", "only instances of this Auto Scaling group")
		fl.StringVar(&f.job, "job", "", "only incidents that blamed this job")
		fl.StringVar(&f.format, "format", "text", "output: text or json")
		fl.StringVar(&f.group, "log-group", "", "log group (default: cloudwatch_logs.log_group)")
		fl.StringVar(&f.region, "region", "", "region (default: cloudwatch_logs.region, the SDK's, or this instance's)")
		fl.StringVar(&f.endpoint, "endpoint", "", "CloudWatch Logs endpoint (default: cloudwatch_logs.endpoint or the SDK's)")
		fl.IntVar(&f.limit, "limit", 1000, "at most this many rows (1 to 10000)")
		fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up on a query after this long")
		fl.Bool("print-query", false, "print the Logs Insights query and exit")
		return sc
	}
	c.AddCommand(
		add(&cobra.Command{Use: "incidents", Short: "List the fleet's incidents", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runFleet(cmd, g, f, true) }}),
		add(&cobra.Command{Use: "jobs", Short: "The jobs most often blamed across the fleet", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runFleet(cmd, g, f, false) }}),
	)
	return c
}

// parseSince takes Go durations and whole days ("7d"), which is how
// people say a week back.
func parseSince(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 && n <= 3650 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("--since %q: want a duration (90m, 36h) or days (7d)", s)
}

func runFleet(cmd *cobra.Command, g *globalFlags, f *fleetFlags, incidents bool) error {
	cfg, err := loadConfig(g)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	since, err := parseSince(f.since)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if f.format != "text" && f.format != "json" {
		return &exitError{code: exitUsage, err: fmt.Errorf("--format %q: want text or json", f.format)}
	}
	if f.limit < 1 || f.limit > 10000 {
		return &exitError{code: exitUsage, err: fmt.Errorf("--limit %d: want 1 to 10000", f.limit)}
	}
	filter := fleet.Filter{Since: since, ASG: f.asg, Job: f.job, Limit: f.limit}
	if p, _ := cmd.Flags().GetBool("print-query"); p {
		q := fleet.JobsQuery(filter)
		if incidents {
			q = fleet.IncidentsQuery(filter)
		}
		fmt.Fprintln(cmd.OutOrStdout(), q)
		return nil
	}
	group := f.group
	if group == "" {
		group = cfg.Logs.LogGroup
	}
	endpoint := f.endpoint
	if endpoint == "" {
		endpoint = cfg.Logs.Endpoint
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout+30*time.Second)
	defer cancel()
	region := f.region
	if region == "" {
		region = cfg.Logs.Region
	}
	awsCfg, err := awsConfig(ctx, cfg, region)
	if err != nil {
		return failed(err)
	}
	if awsCfg.Region == "" {
		id, err := imds.Detect(ctx, imds.Options{Disabled: cfg.IMDS.Disabled, Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()})
		if err != nil {
			return &exitError{code: exitUsage, err: errors.New("no region: give --region (or AWS_REGION), or run on EC2")}
		}
		awsCfg.Region = id.Region
	}
	c := &fleet.Client{API: cwlogs.NewClient(awsCfg, endpoint), Group: group, Timeout: f.timeout}
	out := cmd.OutOrStdout()
	if incidents {
		list, skipped, err := c.Incidents(ctx, filter)
		if err != nil {
			return failed(err)
		}
		if f.format == "json" {
			return writeJSON(out, map[string]any{"log_group": group, "since": since.String(), "incidents": list, "rows_skipped": skipped})
		}
		printFleetIncidents(out, list)
		if skipped > 0 {
			fmt.Fprintf(out, "%d result rows without an incident, instance or start were skipped (events in the group that are not the agent's)\n", skipped)
		}
		return nil
	}
	jobs, err := c.Jobs(ctx, filter)
	if err != nil {
		return failed(err)
	}
	if f.format == "json" {
		return writeJSON(out, map[string]any{"log_group": group, "since": since.String(), "jobs": jobs})
	}
	printFleetJobs(out, jobs)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// dash keeps empty columns visible; every value came from instances'
// logs, so it is escaped before a terminal sees it.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return escape.Control(s)
}

func printFleetIncidents(w io.Writer, list []fleet.Incident) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no incidents in the fleet's logs for that time")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED (UTC)\tINSTANCE\tASG\tINCIDENT\tSTATE\tCAUSE\tREASON")
	for _, in := range list {
		state := "ended after " + in.LastSeen.Sub(in.Started).Round(time.Second).String()
		if !in.Ended {
			state = "UNFINISHED (last record " + in.LastSeen.Format("15:04:05") + ": hung, replaced or still on)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Started.Format("2006-01-02 15:04:05"), dash(in.Instance), dash(in.ASG), dash(in.ID),
			state, dash(in.Cause), dash(in.Reason))
	}
	tw.Flush()
}

func printFleetJobs(w io.Writer, jobs []fleet.JobCount) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no job was blamed for an incident in the fleet's logs for that time")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tINCIDENTS\tINSTANCES")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", dash(j.Job), j.Incidents, j.Instances)
	}
	tw.Flush()
}
