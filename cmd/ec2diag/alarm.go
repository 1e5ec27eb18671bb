package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ec2diag/ec2diag/internal/alarm"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/spf13/cobra"
)

type alarmFlags struct {
	instanceID, region, snsTopic, format string
	recover, dryRun                      bool
}

func newAlarmCmd(g *globalFlags) *cobra.Command {
	f := &alarmFlags{}
	c := &cobra.Command{
		Use:   "alarm",
		Short: "Install or inspect the CloudWatch alarm that reboots this instance when its status check fails",
	}
	install := &cobra.Command{
		Use:   "install [--dry-run] [--recover] [--sns-topic ARN] [--instance-id ID --region R]",
		Short: "Create or update the StatusCheckFailed reboot alarm (idempotent)",
		Long: `Create or update, for this instance, the CloudWatch alarm that reboots it when
StatusCheckFailed reaches 1: AWS/EC2, InstanceId, Maximum over 300 s, 1 evaluation
period, threshold 1, GreaterThanOrEqualToThreshold, missing data not breaching,
action arn:aws:automate:REGION:ec2:reboot, actions enabled.

--recover installs AWS's recommended pair instead: reboot on
StatusCheckFailed_Instance (3 x 60 s) and recover on StatusCheckFailed_System
(2 x 60 s); a reboot cannot fix a host failure, a recovery can.

Running it twice changes nothing: an alarm that already matches is not written.
--dry-run prints the PutMetricAlarm request(s) as JSON (API field names) and the
equivalent Terraform, and calls nothing; with --instance-id and --region it works
off EC2. --format json prints {"requests": [...], "terraform": "..."} (dry run) or
{"results": [{"alarm_name", "action"}]}.

Needs cloudwatch:PutMetricAlarm and cloudwatch:DescribeAlarms, and the first time in
an account iam:CreateServiceLinkedRole (for AWSServiceRoleForCloudWatchEvents).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return alarmRun(cmd, g, f, false) },
	}
	status := &cobra.Command{
		Use:   "status [--recover] [--format json]",
		Short: "Show the alarm's state (OK, ALARM, INSUFFICIENT_DATA) and whether it matches",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return alarmRun(cmd, g, f, true) },
	}
	for _, sc := range []*cobra.Command{install, status} {
		sc.Flags().StringVar(&f.instanceID, "instance-id", "", "instance to protect (default: this one, from IMDS)")
		sc.Flags().StringVar(&f.region, "region", "", "its region (default: cloudwatch.region, then IMDS)")
		sc.Flags().BoolVar(&f.recover, "recover", false, "reboot on instance check failure and recover on system check failure")
		sc.Flags().StringVar(&f.snsTopic, "sns-topic", "", "also notify this SNS topic ARN")
		sc.Flags().StringVar(&f.format, "format", "text", "output: text or json")
	}
	install.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the request(s) and the Terraform; change nothing")
	c.AddCommand(install, status)
	return c
}

func alarmRun(cmd *cobra.Command, g *globalFlags, f *alarmFlags, status bool) error {
	cfg, err := loadConfig(g)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	t, err := resolveTarget(ctx, cfg, f.instanceID, f.region)
	if err != nil {
		return err
	}
	reqs, err := alarm.Build(alarm.Options{InstanceID: t.InstanceID, Region: t.Region, Recover: f.recover, SNSTopic: f.snsTopic})
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	out := cmd.OutOrStdout()
	if f.dryRun {
		if f.format == "json" {
			return json.NewEncoder(out).Encode(map[string]any{"requests": reqs, "terraform": alarm.Terraform(reqs)})
		}
		for _, r := range reqs {
			b, _ := json.MarshalIndent(r, "", "  ")
			fmt.Fprintf(out, "%s\n", b)
		}
		fmt.Fprintf(out, "\n# Terraform equivalent:\n%s", alarm.Terraform(reqs))
		return nil
	}
	awsCfg, err := awsConfig(ctx, cfg, t.Region)
	if err != nil {
		return failed(err)
	}
	api := cwsink.NewClient(awsCfg, cfg.CloudWatch.Endpoint)
	if status {
		states, err := alarm.Status(ctx, api, reqs)
		if err != nil {
			return failed(err)
		}
		if f.format == "json" {
			return json.NewEncoder(out).Encode(map[string]any{"alarms": states})
		}
		missing := false
		for _, s := range states {
			if !s.Exists {
				missing = true
				fmt.Fprintf(out, "%-40s not installed (ec2diag alarm install)\n", s.AlarmName)
				continue
			}
			note := ""
			if !s.Matches {
				note = "  (differs from what ec2diag would install)"
			}
			fmt.Fprintf(out, "%-40s %-17s since %s: %s%s\n", s.AlarmName, s.State, s.Updated, s.Reason, note)
		}
		if missing {
			return &exitError{code: exitFailure}
		}
		return nil
	}
	res, err := alarm.Apply(ctx, api, reqs)
	if f.format == "json" && err == nil {
		return json.NewEncoder(out).Encode(map[string]any{"results": res})
	}
	for _, r := range res {
		fmt.Fprintf(out, "%s: %s\n", r.AlarmName, r.Action)
	}
	return failed(err)
}
