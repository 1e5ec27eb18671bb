package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ec2diag/ec2diag/internal/alarm"
	"github.com/ec2diag/ec2diag/internal/config"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/spf13/cobra"
)

type alarmFlags struct {
	instanceID, region, snsTopic, format string
	recover, dryRun, noLiveness          bool
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

With it comes the liveness alarm, ec2diag-stalled-INSTANCE: the agent's own
Stalled figure (its namespace and dimensions, at cloudwatch.period), Maximum,
threshold 1, missing data breaching, reboot when 3 of 5 periods breach. It reboots
an instance whose user space is livelocked while its kernel still answers EC2's
status check (which the alarm above then never sees), and one whose agent cannot
publish at all. The agent disables the alarm's actions when it is stopped on
purpose (shutdown, upgrade, systemctl stop, removal) and enables them when it
starts: only a hung or dead agent lets the figure go missing for 3 minutes.
--no-liveness leaves it out.

Running it twice changes nothing: an alarm that already matches is not written.
--dry-run prints the PutMetricAlarm request(s) as JSON (API field names) and the
equivalent Terraform, and calls nothing; with --instance-id and --region it works
off EC2. --format json prints {"requests": [...], "terraform": "..."} (dry run) or
{"results": [{"alarm_name", "action"}]}.

Needs cloudwatch:PutMetricAlarm and cloudwatch:DescribeAlarms, and the first time in
an account iam:CreateServiceLinkedRole (for AWSServiceRoleForCloudWatchEvents); the
agent needs cloudwatch:EnableAlarmActions and cloudwatch:DisableAlarmActions on
the liveness alarm.`,
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
		sc.Flags().BoolVar(&f.noLiveness, "no-liveness", false, "leave out the liveness alarm (reboot when the agent says the host is stalled, or cannot say)")
		sc.Flags().StringVar(&f.format, "format", "text", "output: text or json")
	}
	install.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the request(s) and the Terraform; change nothing")
	liveness := &cobra.Command{
		Use:   "liveness on|off [--instance-id ID --region R]",
		Short: "Enable or disable the liveness alarm's reboot action",
		Long: `Enable or disable the actions of the liveness alarm, ec2diag-stalled-INSTANCE. The agent
enables them when it starts and disables them when it is stopped on purpose; the
package's removal script runs "alarm liveness off" too (best effort, 15 s), so that an
agent that was not running when it was removed does not leave an alarm that reboots the
instance for a figure nobody publishes any more. Needs cloudwatch:EnableAlarmActions or
cloudwatch:DisableAlarmActions.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "on" && args[0] != "off" {
				return &exitError{code: exitUsage, err: fmt.Errorf("alarm liveness %q: want on or off", args[0])}
			}
			cfg, err := loadConfig(g)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			t, err := resolveTarget(ctx, cfg, f.instanceID, f.region)
			if err != nil {
				return err
			}
			awsCfg, err := awsConfig(ctx, cfg, t.Region)
			if err != nil {
				return failed(err)
			}
			name := alarm.StalledName(t.InstanceID)
			if err := alarm.SetActions(ctx, cwsink.NewClient(awsCfg, cfg.CloudWatch.Endpoint), name, args[0] == "on"); err != nil {
				return failed(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: actions %s\n", name, map[string]string{"on": "enabled", "off": "disabled"}[args[0]])
			return nil
		},
	}
	liveness.Flags().StringVar(&f.instanceID, "instance-id", "", "the instance (default: this one, from IMDS)")
	liveness.Flags().StringVar(&f.region, "region", "", "its region (default: cloudwatch.region, then IMDS)")
	c.AddCommand(install, status, liveness)
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
	ao := alarm.Options{InstanceID: t.InstanceID, Region: t.Region, Recover: f.recover, SNSTopic: f.snsTopic}
	if !f.noLiveness {
		ao.Stalled = livenessAlarm(cmd, cfg, t)
	}
	reqs, err := alarm.Build(ao)
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

// livenessAlarm is the liveness alarm as the agent publishes its figure:
// the namespace, InstanceId and the configured extra dimensions (their
// values from IMDS; one that cannot be known here is said and left out,
// as the agent leaves it out), at the agent's period.
func livenessAlarm(cmd *cobra.Command, cfg config.Config, t awsTarget) *alarm.Liveness {
	l := alarm.DefaultLiveness(cfg.CloudWatch.Namespace)
	l.Period = int32(max(60, cfg.CloudWatch.Period.D().Seconds()))
	for _, d := range cfg.CloudWatch.Dimensions {
		v := ""
		if id := t.Identity; id != nil {
			v = map[string]string{"InstanceType": id.InstanceType, "ImageId": id.ImageID, "AutoScalingGroupName": id.AutoScalingGroup}[d]
		}
		if v == "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "ec2diag: the liveness alarm leaves out dimension %s: its value is not known here (run on the instance)\n", d)
			continue
		}
		l.Dimensions = append(l.Dimensions, alarm.Dimension{Name: d, Value: v})
	}
	return l
}
