package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ec2diag/ec2diag/agent"
	"github.com/ec2diag/ec2diag/internal/alarm"
	"github.com/ec2diag/ec2diag/internal/checks"
	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/logging"
	"github.com/ec2diag/ec2diag/internal/sdnotify"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/ec2diag/ec2diag/internal/statedir"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func newRunCmd(g *globalFlags) *cobra.Command {
	var print bool
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the agent (the daemon; systemd starts it as ec2diag.service)",
		Long: `Run the agent in the foreground. Under systemd it logs natively to the journal and
speaks sd_notify (READY, RELOADING, STOPPING, STATUS, WATCHDOG). SIGHUP reloads the
config (a bad config is rejected and the running one kept); SIGTERM stops it.

Off EC2 (no IMDS answer, or AWS_EC2_METADATA_DISABLED=true) it runs in local mode:
everything but CloudWatch publishing works.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd.Context(), g, print)
		},
	}
	c.Flags().BoolVar(&print, "print", false, "also print every record as a JSON line on stdout")
	return c
}

func runAgent(ctx context.Context, g *globalFlags, print bool) error {
	cfg, err := loadConfig(g)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	log, level, format, err := logging.New(logging.Options{Level: cfg.Log.Level, Format: cfg.Log.Format})
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer log.Sync()
	if err := statedir.Check(cfg.StateDir); err != nil {
		log.Error("unusable state directory", zap.String("state_dir", cfg.StateDir), zap.Error(err))
		return &exitError{code: exitFailure, err: err}
	}
	release, err := statedir.Lock(cfg.StateDir)
	if err != nil {
		log.Error("state directory in use", zap.String("state_dir", cfg.StateDir), zap.Error(err))
		return &exitError{code: exitFailure, err: err}
	}
	defer release()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hupSig := make(chan os.Signal, 1)
	signal.Notify(hupSig, syscall.SIGHUP)
	defer signal.Stop(hupSig)
	hup := make(chan struct{}, 1)
	go func() {
		for range hupSig {
			select {
			case hup <- struct{}{}:
			default: // a reload is pending already
			}
		}
	}()

	log.Info("ec2diag starting", zap.String("version", version), zap.String("log_format", format), zap.String("state_dir", cfg.StateDir))
	if cfg.MemoryLock {
		lockMemory(log)
	}
	if cfg.MemoryTrim {
		go func() {
			// Once start-up is over (first checks, first samples, the first
			// scans of the logs), not before: what it touched is what goes.
			select {
			case <-ctx.Done():
				return
			case <-time.After(trimAfter):
			}
			before, after, err := trimProgramPages(cfg.MemoryLock)
			log.Info("program pages only start-up used given back", zap.String(logging.KeyEvent, "trim"),
				zap.Int64("resident_before_bytes", before), zap.Int64("resident_after_bytes", after), zap.Error(err))
		}()
	}
	mode, id := detectMode(ctx, cfg, log)
	if id != nil && cfg.CloudWatch.Enabled != "false" {
		go checkCredentials(ctx, cfg, log)
	}
	notifier := sdnotify.Notifier{OnError: func(err error) { log.Debug("sd_notify failed", zap.Error(err)) }}
	deps := agent.Deps{Log: log, Root: g.hostRoot(), Clock: clock.Real{}, Identity: id,
		Checks: func(ctx context.Context, c config.Config) []checks.Result {
			return checks.Run(ctx, checkEnv(ctx, c, *id))
		}}
	if print {
		deps.Print = os.Stdout
	}
	sys, err := agent.Build(ctx, cfg, deps)
	if err != nil {
		log.Error("agent failed", zap.Error(err))
		return &exitError{code: exitFailure, err: err}
	}
	a := &agent.Agent{
		Log:              log,
		Notify:           notifier,
		Mode:             mode,
		WatchdogInterval: sdnotify.WatchdogInterval(),
		ShutdownTimeout:  cfg.ShutdownTimeout.D(),
		Reload:           func() (config.Config, error) { return loadConfig(g) },
		OnConfig: func(c config.Config) {
			if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
				log.Warn("log level not changed", zap.Error(err))
			}
		},
	}
	if id != nil && cfg.CloudWatch.Enabled != "false" {
		// The liveness alarm reboots when the Stalled figure goes missing:
		// on while the agent runs, off when it is stopped on purpose.
		go livenessActions(ctx, cfg, *id, true, log)
	}
	if err := a.Run(ctx, sys, hup); err != nil {
		log.Error("agent failed", zap.Error(err))
		return &exitError{code: exitFailure, err: err}
	}
	if id != nil && cfg.CloudWatch.Enabled != "false" {
		livenessActions(context.WithoutCancel(ctx), cfg, *id, false, log)
	}
	return nil
}

// livenessActions enables or disables the actions of this instance's
// liveness alarm (ec2diag alarm install), within a few seconds. An alarm
// that was not installed is passed over by CloudWatch; a refusal is said
// once, with the permission it needs.
func livenessActions(ctx context.Context, cfg config.Config, id imds.Identity, enabled bool, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	region := cfg.CloudWatch.Region
	if region == "" {
		region = id.Region
	}
	awsCfg, err := cwsink.AWSConfig(ctx, cwsink.ClientOptions{Region: region, Endpoint: cfg.CloudWatch.Endpoint, IMDSEndpoint: cfg.IMDS.Endpoint,
		Timeout: 4 * time.Second, Log: log.Named("cloudwatch")})
	if err == nil {
		err = alarm.SetActions(ctx, cwsink.NewClient(awsCfg, cfg.CloudWatch.Endpoint), alarm.StalledName(id.InstanceID), enabled)
	}
	what := map[bool]string{true: "enabled", false: "disabled"}[enabled]
	if err != nil {
		log.Warn("liveness alarm's actions not "+what+" (needs cloudwatch:EnableAlarmActions and cloudwatch:DisableAlarmActions)",
			zap.String("alarm", alarm.StalledName(id.InstanceID)), zap.Error(err))
		return
	}
	log.Info("liveness alarm's actions "+what, zap.String("alarm", alarm.StalledName(id.InstanceID)), zap.String(logging.KeyEvent, "liveness_alarm"))
}

// detectMode asks IMDS who we are; off EC2 it says once, clearly, that the
// agent runs in local mode.
func detectMode(ctx context.Context, cfg config.Config, log *zap.Logger) (string, *imds.Identity) {
	id, err := imds.Detect(ctx, imds.Options{Disabled: cfg.IMDS.Disabled, Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()})
	if err != nil {
		reason := "no answer from IMDS"
		if errors.Is(err, imds.ErrDisabled) {
			reason = "IMDS disabled"
		}
		log.Warn("running in local mode: CloudWatch publishing is off; local sinks only",
			zap.String("reason", reason), zap.Error(err))
		return "local mode", nil
	}
	log.Info("running on EC2", zap.String("instance_id", id.InstanceID), zap.String("region", id.Region),
		zap.String("instance_type", id.InstanceType), zap.String("image_id", id.ImageID))
	if asg, ok := imds.Tag(ctx, imds.Options{Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()}, "aws:autoscaling:groupName"); ok {
		id.AutoScalingGroup = asg
	}
	return "instance " + id.InstanceID, &id
}

// checkCredentials says once where the SDK's default chain found
// credentials; keys in the environment or in files on an instance are a
// risk an IAM role avoids. The credentials themselves are never logged.
func checkCredentials(ctx context.Context, cfg config.Config, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	awsCfg, err := cwsink.AWSConfig(ctx, cwsink.ClientOptions{Region: cfg.CloudWatch.Region, IMDSEndpoint: cfg.IMDS.Endpoint, Timeout: cfg.CloudWatch.RequestTimeout.D()})
	if err != nil {
		log.Warn("AWS SDK configuration failed; CloudWatch publishing will fail", zap.Error(err))
		return
	}
	src, static, err := cwsink.CredentialSource(ctx, awsCfg)
	switch {
	case err != nil:
		log.Warn("no AWS credentials; metrics stay in the spool until an IAM role is attached", zap.Error(err))
	case static:
		log.Warn("static AWS credentials in use on EC2; prefer the instance's IAM role", zap.String("credentials_source", src))
	default:
		log.Info("AWS credentials from the instance's IAM role", zap.String("credentials_source", src))
	}
}
