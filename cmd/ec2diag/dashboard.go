package main

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/ec2diag/ec2diag/internal/dashboard"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/spf13/cobra"
)

func newDashboardCmd(g *globalFlags) *cobra.Command {
	var instanceID, region, asg, put, accountID string
	c := &cobra.Command{
		Use:   "dashboard [--asg NAME] [--put NAME] [--instance-id ID --region R]",
		Short: "Print (or put) a CloudWatch dashboard for the agent's metrics",
		Long: `Generate a CloudWatch dashboard body (JSON) for ec2diag's metrics: CPU and memory
with spikes, OOM kills and hung tasks, pressure stall information, per-job runs, CPU,
peak RSS and duration, ENA allowance counters and health, EFA counters, and the agent's
own health. Every graph is a SEARCH expression, so new jobs and interfaces appear by
themselves.

For one instance (default: this one) or, with --asg, for a whole Auto Scaling group
(one line per instance; the fleet must publish with cloudwatch.dimensions:
[AutoScalingGroupName]). Prints the body; --put NAME creates or replaces the dashboard
NAME (cloudwatch:PutDashboard).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if put != "" {
				if err := dashboard.CheckName(put); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			if err := dashboard.CheckASG(asg); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			o := dashboard.Options{Namespace: cfg.CloudWatch.Namespace, ASG: asg, ExtraDims: cfg.CloudWatch.Dimensions,
				Detailed: cfg.CloudWatch.Metrics == "detailed", FleetJobs: cfg.CloudWatch.JobNames, AccountID: accountID}
			if cfg.Logs.Enabled != "false" {
				o.LogGroup = cfg.Logs.LogGroup
			}
			if asg != "" && region != "" {
				o.Region = region
			} else {
				t, err := resolveTarget(ctx, cfg, instanceID, region)
				if err != nil {
					return err
				}
				o.Region = t.Region
				if t.Identity != nil && o.AccountID == "" {
					o.AccountID = t.Identity.AccountID
				}
				if asg == "" {
					o.InstanceID = t.InstanceID
				}
			}
			body, err := dashboard.Body(o)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if put == "" {
				fmt.Fprintln(cmd.OutOrStdout(), body)
				return nil
			}
			awsCfg, err := awsConfig(ctx, cfg, o.Region)
			if err != nil {
				return failed(err)
			}
			out, err := cwsink.NewClient(awsCfg, cfg.CloudWatch.Endpoint).PutDashboard(ctx, &cloudwatch.PutDashboardInput{DashboardName: aws.String(put), DashboardBody: aws.String(body)})
			if err != nil {
				return failed(fmt.Errorf("PutDashboard %s: %w", put, err))
			}
			for _, m := range out.DashboardValidationMessages {
				fmt.Fprintf(cmd.ErrOrStderr(), "CloudWatch: %s: %s\n", aws.ToString(m.DataPath), aws.ToString(m.Message))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dashboard %s put in %s\n", put, o.Region)
			return nil
		},
	}
	c.Flags().StringVar(&instanceID, "instance-id", "", "instance (default: this one, from IMDS)")
	c.Flags().StringVar(&region, "region", "", "region (default: cloudwatch.region, then IMDS)")
	c.Flags().StringVar(&asg, "asg", "", "a fleet view of this Auto Scaling group instead of one instance")
	c.Flags().StringVar(&accountID, "account-id", "", "the account, for the reboot alarm's state (default: this instance's, from IMDS)")
	c.Flags().StringVar(&put, "put", "", "create or replace the dashboard with this name instead of printing it")
	return c
}
