package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/agent"
	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/imdsevents"
	"github.com/ec2diag/ec2diag/collectors/instancecheck"
	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/collectors/logsource"
	"github.com/ec2diag/ec2diag/collectors/nethealth"
	"github.com/ec2diag/ec2diag/collectors/procstat"
	"github.com/ec2diag/ec2diag/collectors/suspend"
	"github.com/ec2diag/ec2diag/internal/checks"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/incident"
	"github.com/ec2diag/ec2diag/internal/metrics"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/ec2diag/ec2diag/internal/sink/jsonl"
	"github.com/ec2diag/ec2diag/internal/sink/logsink"
	"github.com/ec2diag/ec2diag/internal/sink/prom"
	"github.com/ec2diag/ec2diag/internal/spool"
	"go.uber.org/zap"
)

// builder turns a config into collectors and sinks. It opens files so that
// a reload with an unusable path fails before the old pipeline stops.
func builder(log *zap.Logger, print bool, id *imds.Identity) agent.Builder {
	return func(ctx context.Context, cfg config.Config) (*agent.Pipeline, error) {
		p := &agent.Pipeline{}
		var desc []string

		store, err := incident.Open(cfg.StateDir, cfg.Incidents.MaxFileBytes, cfg.Incidents.KeepFiles, incident.BootID("/proc"))
		if err != nil {
			return nil, err
		}
		sp := cfg.Spikes
		rec := procstat.NewRecorder(procstat.Options{
			Interval: cfg.Host.Interval.D(), FastInterval: sp.FastInterval.D(), SnapshotEvery: sp.SnapshotEvery.D(),
			JobWindow: sp.JobWindow.D(), TopN: sp.TopProcesses, Store: store, Console: sp.Console, BootGrace: sp.BootGrace.D(),
			Thresholds: correlate.Thresholds{CPUHigh: sp.CPUHigh, CPULow: sp.CPULow, EnterSamples: sp.EnterSamples,
				ExitSamples: sp.ExitSamples, MemAvailLow: sp.MemAvailableLow, MemAvailHigh: sp.MemAvailableHigh, PSIMemFull: sp.PSIMemoryFull,
				// Samples taken early (a job started, a PSI trigger fired)
				// must not make a sustained spike out of a short burst.
				CPUFor: time.Duration(sp.EnterSamples-1) * cfg.Host.Interval.D() * 9 / 10},
			Log: func(msg string, err error) { log.Named("recorder").Warn(msg, zap.Error(err)) },
		})
		p.Collectors = append(p.Collectors, rec)
		p.Sinks = append(p.Sinks, closer{name: "incident store", close: store.Close})
		desc = append(desc, fmt.Sprintf("sampling every %s", cfg.Host.Interval.D()))

		loc, err := cfg.Syslog.Location()
		if err != nil {
			return nil, err
		}
		namer := &jobs.Namer{}
		for _, n := range cfg.Jobs.Names {
			namer.Rules = append(namer.Rules, jobs.NameRule{Pattern: regexp.MustCompile(n.Pattern), Name: n.Name}) // validated by config
		}
		useJournal := logsource.UseJournal(cfg.Syslog.Source, cfg.Syslog.Files)
		src := logsource.New(logsource.Options{
			Files: cfg.Syslog.Files, Journal: useJournal, StateDir: cfg.StateDir, FromStart: cfg.Syslog.FromStart,
			Location: loc, CheckpointEvery: cfg.Syslog.CheckpointInterval.D(), PollInterval: cfg.Syslog.PollInterval.D(),
			MaxLineBytes: cfg.Syslog.MaxLineBytes, JournalProbe: cfg.Syslog.JournalProbe.D(), Log: log.Named("logsource"),
		})
		p.Collectors = append(p.Collectors, &logsource.Collector{Source: src, StatsInterval: cfg.Sinks.SummaryInterval.D(), Recognize: recognizer(namer, rec)})
		if useJournal {
			desc = append(desc, "reading the journal")
		} else {
			desc = append(desc, "tailing "+strings.Join(cfg.Syslog.Files, ", "))
		}

		if stats, closeStats, err := nethealth.EthtoolStats(); err == nil {
			chk := nethealth.NewChecker("/sys", stats)
			chk.FullEvery = 10 // identity and evidence-only counters every 5 minutes at defaults
			p.Collectors = append(p.Collectors, &nethealth.Collector{Checker: chk, Interval: cfg.Host.Interval.D() * 6})
			p.Sinks = append(p.Sinks, closer{name: "ethtool", close: func() error { closeStats(); return nil }})
		}

		p.Collectors = append(p.Collectors, &suspend.Collector{Interval: cfg.Host.Interval.D()})
		if id != nil && cfg.IMDS.EventsInterval.D() > 0 {
			io := imds.Options{Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()}
			p.Collectors = append(p.Collectors, &imdsevents.Collector{Interval: cfg.IMDS.EventsInterval.D(),
				Get: func(ctx context.Context, path string) (string, bool, error) { return imds.Get(ctx, io, path) }})
		}
		if id != nil && cfg.Checks.Interval.D() > 0 {
			c := cfg
			p.Collectors = append(p.Collectors, &instancecheck.Collector{Interval: cfg.Checks.Interval.D(),
				Check: func(ctx context.Context) []checks.Result { return checks.Run(ctx, checkEnv(ctx, c, *id)) }})
		}
		p.Sinks = append(p.Sinks, logsink.New(log.Named("events"), cfg.Sinks.SummaryInterval.D()))
		cw, err := cloudWatchSink(ctx, cfg, id, log.Named("cloudwatch"))
		if err != nil {
			store.Close()
			return nil, err
		}
		if cw != nil {
			p.Sinks = append(p.Sinks, cw)
			desc = append(desc, "publishing to CloudWatch namespace "+cfg.CloudWatch.Namespace)
		}
		if cfg.Sinks.File.Path != "" {
			s, err := jsonl.Open(cfg.Sinks.File.Path)
			if err != nil {
				store.Close()
				return nil, err
			}
			p.Sinks = append(p.Sinks, s)
			desc = append(desc, "file sink "+cfg.Sinks.File.Path)
		}
		if l := cfg.Sinks.Prometheus.Listen; l != "" {
			ps, err := prom.New(l, func(err error) { log.Error("Prometheus endpoint not available", zap.Error(err)) })
			if err != nil {
				store.Close()
				return nil, err
			}
			p.Sinks = append(p.Sinks, ps)
			desc = append(desc, "Prometheus on http://"+l+"/metrics")
		}
		if print {
			p.Sinks = append(p.Sinks, jsonl.New("stdout", os.Stdout, nil))
		}
		p.Describe = strings.Join(desc, ", ")
		return p, nil
	}
}

// cloudWatchSink builds the publisher, or nil when publishing is off.
func cloudWatchSink(ctx context.Context, cfg config.Config, id *imds.Identity, log *zap.Logger) (agent.Sink, error) {
	cw := cfg.CloudWatch
	if cw.Enabled == "false" {
		return nil, nil
	}
	if id == nil {
		if cw.Enabled == "true" {
			log.Warn("cloudwatch.enabled is true, but there is no instance identity (local mode): not publishing")
		}
		return nil, nil
	}
	region := cw.Region
	if region == "" {
		region = id.Region
	}
	awsCfg, err := cwsink.AWSConfig(ctx, cwsink.ClientOptions{Region: region, Endpoint: cw.Endpoint, IMDSEndpoint: cfg.IMDS.Endpoint, Timeout: cw.RequestTimeout.D()})
	if err != nil {
		return nil, err
	}
	sp, err := spool.Open(filepath.Join(cfg.StateDir, "spool"), cw.SpoolMaxBytes)
	if err != nil {
		return nil, err
	}
	dims := []metrics.Dim{{Name: "InstanceId", Value: id.InstanceID}}
	for _, d := range cw.Dimensions {
		v := map[string]string{"InstanceType": id.InstanceType, "ImageId": id.ImageID, "AutoScalingGroupName": id.AutoScalingGroup}[d]
		if v == "" {
			log.Warn("dimension not available on this instance; left out", zap.String("dimension", d),
				zap.String("hint", "AutoScalingGroupName needs instance tags in metadata"))
			continue
		}
		dims = append(dims, metrics.Dim{Name: d, Value: v})
	}
	hr := map[string]bool{}
	for _, n := range cw.HighResolution {
		hr[n] = true
	}
	agg := metrics.New(metrics.Options{Period: cw.Period.D(), HighRes: hr, HighResPeriod: cw.HighResolutionPeriod.D(),
		BaseDims: dims, JobNames: cw.JobNames, MaxJobNames: cw.MaxJobNames})
	return cwsink.New(cwsink.Options{Namespace: cw.Namespace, API: cwsink.NewClient(awsCfg, cw.Endpoint), Agg: agg, Spool: sp,
		Period: cw.Period.D(), Offset: cwsink.Offset(id.InstanceID, min(cw.Period.D(), time.Minute)),
		RequestTimeout: cw.RequestTimeout.D(), Log: log, SummaryEvery: cfg.Sinks.SummaryInterval.D()}), nil
}

// recognizer turns log entries into events and tells the recorder about
// job runs as their start lines arrive.
func recognizer(namer *jobs.Namer, rec *procstat.Recorder) logsource.Recognizer {
	var mu sync.Mutex
	var out []collectors.Record
	tr := jobs.NewTracker(namer, false)
	tr.OnStart = func(r *jobs.Run) {
		rec.JobStarted(r.Key(), r.Job, r.PID, r.Unit, r.Start)
		if r.Source == "systemd" {
			// Not yet known to be a job: most units that start are
			// services. Its summary comes if it finishes as a job.
			return
		}
		out = append(out, collectors.Record{Time: r.Start, Kind: collectors.KindEvent, Source: r.Source, Type: "job_start",
			Message: "job " + r.Job + " started",
			Dims:    map[string]string{"job": r.Job, "user": r.User, "pid": strconv.Itoa(r.PID), "unit": r.Unit, "command": r.Command}})
	}
	tr.OnEnd = func(r *jobs.Run) {
		if r.End != nil {
			rec.JobEnded(r.Key(), *r.End)
		}
	}
	tr.OnCancel = func(r *jobs.Run) { rec.JobCancelled(r.Key()) }
	return func(e *logsource.Entry) []collectors.Record {
		var ev jobs.Event
		if !jobs.Recognize(&e.Line, &ev) {
			return nil
		}
		ev.File, ev.Offset = e.Raw.File, e.Raw.Offset
		if ev.Type == jobs.TypeStartupDone && ev.PID == 1 {
			rec.BootFinished(ev.Time) // PID 1's, not a user manager's
		}
		mu.Lock()
		defer mu.Unlock()
		out = out[:0]
		tr.Feed(&ev)
		switch ev.Type {
		case jobs.TypeOOMKill, jobs.TypeOOMInvoked, jobs.TypeHungTask, jobs.TypeSoftLockup, jobs.TypeRCUStall, jobs.TypeENA, jobs.TypeLinesLost:
			dims := map[string]string{"level": "warn"}
			if ev.Comm != "" {
				dims["comm"] = ev.Comm
			}
			if ev.Victim != 0 {
				dims["victim_pid"] = strconv.Itoa(ev.Victim)
			}
			if ev.Iface != "" {
				dims["iface"] = ev.Iface
			}
			out = append(out, collectors.Record{Time: ev.Time, Kind: collectors.KindEvent, Source: ev.Source, Type: ev.Type, Message: ev.Message, Dims: dims})
		}
		return append([]collectors.Record(nil), out...)
	}
}

// closer adapts something that must be closed at shutdown to a Sink.
type closer struct {
	name  string
	close func() error
}

func (c closer) Name() string                                     { return c.name }
func (c closer) Write(context.Context, []collectors.Record) error { return nil }
func (c closer) Close(context.Context) error                      { return c.close() }
