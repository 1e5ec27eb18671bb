package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ec2diag/ec2diag/agent"
	"github.com/ec2diag/ec2diag/collectors/host"
	"github.com/ec2diag/ec2diag/collectors/logsource"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/logging"
	"github.com/ec2diag/ec2diag/internal/sdnotify"
	"github.com/ec2diag/ec2diag/internal/sink/jsonl"
	"github.com/ec2diag/ec2diag/internal/sink/logsink"
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
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		log.Error("cannot create state directory", zap.String("state_dir", cfg.StateDir), zap.Error(err))
		return &exitError{code: exitFailure, err: err}
	}

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
	mode := detectMode(ctx, cfg, log)
	notifier := sdnotify.Notifier{OnError: func(err error) { log.Debug("sd_notify failed", zap.Error(err)) }}
	a := &agent.Agent{
		Log:              log,
		Notify:           notifier,
		Mode:             mode,
		WatchdogInterval: sdnotify.WatchdogInterval(),
		ShutdownTimeout:  cfg.ShutdownTimeout.D(),
		Build:            builder(log, print),
		Reload: func() (config.Config, error) {
			c, err := loadConfig(g)
			if err == nil && c.StateDir != cfg.StateDir {
				err = fmt.Errorf("state_dir cannot change on reload (%s -> %s); restart the agent", cfg.StateDir, c.StateDir)
			}
			return c, err
		},
		OnConfig: func(c config.Config) {
			if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
				log.Warn("log level not changed", zap.Error(err))
			}
		},
	}
	if err := a.Run(ctx, cfg, hup); err != nil {
		log.Error("agent failed", zap.Error(err))
		return &exitError{code: exitFailure, err: err}
	}
	return nil
}

// detectMode asks IMDS who we are; off EC2 it says once, clearly, that the
// agent runs in local mode.
func detectMode(ctx context.Context, cfg config.Config, log *zap.Logger) string {
	id, err := imds.Detect(ctx, imds.Options{Disabled: cfg.IMDS.Disabled, Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()})
	if err != nil {
		reason := "no answer from IMDS"
		if errors.Is(err, imds.ErrDisabled) {
			reason = "IMDS disabled"
		}
		log.Warn("running in local mode: CloudWatch publishing is off; local sinks only",
			zap.String("reason", reason), zap.Error(err))
		return "local mode"
	}
	log.Info("running on EC2", zap.String("instance_id", id.InstanceID), zap.String("region", id.Region),
		zap.String("instance_type", id.InstanceType), zap.String("image_id", id.ImageID))
	return "instance " + id.InstanceID
}

// builder turns a config into collectors and sinks. It opens files so that
// a reload with an unusable path fails before the old pipeline stops.
func builder(log *zap.Logger, print bool) agent.Builder {
	return func(ctx context.Context, cfg config.Config) (*agent.Pipeline, error) {
		p := &agent.Pipeline{}
		p.Collectors = append(p.Collectors, &host.Collector{Interval: cfg.Host.Interval.D()})
		desc := []string{fmt.Sprintf("host every %s", cfg.Host.Interval.D())}

		loc, err := cfg.Syslog.Location()
		if err != nil {
			return nil, err
		}
		useJournal := logsource.UseJournal(cfg.Syslog.Source, cfg.Syslog.Files)
		src := logsource.New(logsource.Options{
			Files: cfg.Syslog.Files, Journal: useJournal, StateDir: cfg.StateDir, FromStart: cfg.Syslog.FromStart,
			Location: loc, CheckpointEvery: cfg.Syslog.CheckpointInterval.D(), PollInterval: cfg.Syslog.PollInterval.D(),
			MaxLineBytes: cfg.Syslog.MaxLineBytes, Log: log.Named("logsource"),
		})
		p.Collectors = append(p.Collectors, &logsource.Collector{Source: src, StatsInterval: time.Minute})
		if useJournal {
			desc = append(desc, "reading the journal")
		} else {
			desc = append(desc, "tailing "+strings.Join(cfg.Syslog.Files, ", "))
		}

		p.Sinks = append(p.Sinks, logsink.New(log.Named("summary"), cfg.Sinks.SummaryInterval.D()))
		if cfg.Sinks.File.Path != "" {
			s, err := jsonl.Open(cfg.Sinks.File.Path)
			if err != nil {
				return nil, err
			}
			p.Sinks = append(p.Sinks, s)
			desc = append(desc, "file sink "+cfg.Sinks.File.Path)
		}
		if print {
			p.Sinks = append(p.Sinks, jsonl.New("stdout", os.Stdout, nil))
		}
		p.Describe = strings.Join(desc, ", ")
		return p, nil
	}
}
