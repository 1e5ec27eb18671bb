package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/ec2diag/ec2diag/collectors/kcrash"
	"github.com/ec2diag/ec2diag/collectors/nethealth"
	"github.com/ec2diag/ec2diag/internal/checks"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/metrics"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/spf13/cobra"
)

func newCheckCmd(g *globalFlags) *cobra.Command {
	var format string
	var local bool
	c := &cobra.Command{
		Use:   "check [--format json] [--local]",
		Short: "Instance hygiene checks (AMI provenance, Allowed AMIs, credentials, IMDSv2, hop limit, hibernation, placement)",
		Long: `Run the instance hygiene checks and print one line per check: pass, warn or fail,
with the reason. Exit status 1 when any check fails, 0 otherwise.

  ami-provenance   the AMI's owner is an allowed provider (checks.allowed_ami_owners);
                   a public AMI from an unknown owner fails (the "whoAMI" attack)
  allowed-amis     the account's Allowed AMIs setting is enabled or in audit mode
  credentials      credentials come from the instance's IAM role, not static keys
  imdsv2-required  IMDSv1 is disabled
  imds-hop-limit   the hop limit fits (1 for the host, 2 with containers)
  hibernation      configured or not
  placement        availability zone, placement group and partition
  metric-cost      how many CloudWatch custom metrics this instance publishes at this
                   config, and what that costs at list price for 1, 100 and 10,000
                   instances (warn above 20 per instance)

Whether a hung machine can be made to leave a record (these need no AWS; --local
runs only them, anywhere):

  nmi-panic        kernel.unknown_nmi_panic=1, so that EC2's diagnostic interrupt
                   (aws ec2 send-diagnostic-interrupt) panics the kernel
  panic-reboot     kernel.panic > 0, so that the panic reboots the machine
  pstore           a pstore backend keeps the panic's last messages for the next boot
  crash-dump       a crash kernel is loaded (kdump) and /var/crash has room for a dump

JSON (--format json): {"results": [{"name", "status", "reason", "details"}], "worst"}.
Missing permissions give a warn naming the permission, never a fail.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			var rs []checks.Result
			if !local {
				ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
				defer cancel()
				id, err := imds.Detect(ctx, imds.Options{Disabled: cfg.IMDS.Disabled, Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()})
				if err != nil {
					return &exitError{code: exitUsage, err: fmt.Errorf("ec2diag check runs on an EC2 instance (IMDS: %v); --local runs the checks of this machine alone", err)}
				}
				rs = checks.Run(ctx, checkEnv(ctx, cfg, id))
				rs = append(rs, metricCost(cfg, g.hostRoot().Sys))
			}
			rs = append(rs, kcrash.Readiness(g.hostRoot())...)
			out := cmd.OutOrStdout()
			if format == "json" {
				if err := json.NewEncoder(out).Encode(map[string]any{"results": rs, "worst": checks.Worst(rs)}); err != nil {
					return err
				}
			} else {
				for _, r := range rs {
					fmt.Fprintf(out, "%-4s  %-16s %s\n", r.Status, r.Name, r.Reason)
				}
			}
			if checks.Worst(rs) == checks.Fail {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "text", "output: text or json")
	c.Flags().BoolVar(&local, "local", false, "only the checks that need no AWS (crash readiness), on or off EC2")
	return c
}

// checkEnv wires the checks to this instance's IMDS and the SDK.
func checkEnv(ctx context.Context, cfg config.Config, id imds.Identity) checks.Env {
	io := imds.Options{Disabled: cfg.IMDS.Disabled, Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()}
	e := checks.Env{
		InstanceID: id.InstanceID, AccountID: id.AccountID, ImageID: id.ImageID, AllowedOwners: cfg.Checks.AllowedAMIOwners,
		Meta:       func(ctx context.Context, p string) (string, bool, error) { return imds.Get(ctx, io, p) },
		Containers: checks.Containers,
		Homes:      []string{"/root"},
	}
	if h, err := os.UserHomeDir(); err == nil && h != "/root" {
		e.Homes = append(e.Homes, h)
	}
	region := cfg.CloudWatch.Region
	if region == "" {
		region = id.Region
	}
	awsCfg, err := awsConfig(ctx, cfg, region)
	if err != nil {
		return e
	}
	e.Credentials = func(ctx context.Context) (string, bool, error) { return cwsink.CredentialSource(ctx, awsCfg) }
	e.EC2 = ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
		if cfg.Checks.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Checks.Endpoint)
		}
	})
	return e
}

// metricCost counts the custom metrics this config publishes here (the
// detailed set depends on the interfaces, found under sysRoot) and prices
// them: a fleet decides on this figure.
func metricCost(cfg config.Config, sysRoot string) checks.Result {
	cw := cfg.CloudWatch
	ena, efa := 0, 0
	devs := nethealth.NewChecker(sysRoot, nil)
	for _, d := range devs.Check() {
		switch d.Kind {
		case "ena":
			ena++
		case "efa":
			efa++
		}
	}
	devs.Close()
	n := metrics.Estimate(cw.Metrics == "detailed", cw.JobNames, cw.MaxJobNames, ena, efa)
	r := checks.Result{Name: "metric-cost", Status: checks.Pass, Reason: fmt.Sprintf("cloudwatch.metrics %s: %s", cw.Metrics, n.Describe()),
		Details: map[string]string{"per_instance": strconv.Itoa(n.PerInstance), "fleet_wide": strconv.Itoa(n.Fleet),
			"usd_per_instance_month": fmt.Sprintf("%.2f", metrics.MonthlyCost(n.PerInstance))}}
	if cw.Enabled == "false" {
		r.Reason = "cloudwatch.enabled is false: nothing published"
		r.Details = nil
	} else if n.PerInstance > 20 {
		r.Status = checks.Warn
	}
	return r
}
