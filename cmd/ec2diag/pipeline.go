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
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/incident"
	"github.com/ec2diag/ec2diag/internal/metrics"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/ec2diag/ec2diag/internal/sink/cwlogs"
	"github.com/ec2diag/ec2diag/internal/sink/jsonl"
	"github.com/ec2diag/ec2diag/internal/sink/logsink"
	"github.com/ec2diag/ec2diag/internal/sink/prom"
	"github.com/ec2diag/ec2diag/internal/spool"
	"go.uber.org/zap"
)

// resources outlive a reload: the flight recorder with the incident in
// progress and its job runs, the store it writes (one sequence of record
// numbers), the log recogniser's open job runs, the CloudWatch spool and
// the ethtool socket. A reload used to build all of them anew while the
// old ones still ran: the incident in progress got no end (reported after
// the next boot as a hang), a second store wrote its own sequence numbers
// into the same file, the new spool deleted temporary files the old sink
// was about to rename, and a rejected reload leaked what it had opened.
// They are made by the first build and closed when the agent exits.
type resources struct {
	store      *incident.Store
	rec        *procstat.Recorder
	namer      *jobs.Namer
	recognize  logsource.Recognizer
	spool      *spool.Spool
	stats      nethealth.StatsFunc
	closeStats func()
	statsErr   error
	statsTried bool
}

func (r *resources) Close() {
	if r.closeStats != nil {
		r.closeStats()
	}
	if r.store != nil {
		r.store.Close()
	}
}

// builder turns a config into collectors and sinks. It opens files so that
// a reload with an unusable path fails before the old pipeline stops; what
// a rejected build opened is closed again.
func builder(log *zap.Logger, print bool, id *imds.Identity, res *resources) agent.Builder {
	return func(ctx context.Context, cfg config.Config) (_ *agent.Pipeline, err error) {
		p := &agent.Pipeline{}
		var desc []string
		var undo []func()
		defer func() {
			if err != nil {
				for _, u := range undo {
					u()
				}
			}
		}()

		if res.store == nil {
			store, err := incident.Open(cfg.StateDir, cfg.Incidents.MaxFileBytes, cfg.Incidents.KeepFiles, incident.BootID("/proc"))
			if err != nil {
				return nil, err
			}
			res.store = store
		}
		sp := cfg.Spikes
		ro := procstat.Options{
			Interval: cfg.Host.Interval.D(), CalmProcessInterval: cfg.Host.CalmProcessInterval.D(), FastInterval: sp.FastInterval.D(), SnapshotEvery: sp.SnapshotEvery.D(),
			JobWindow: sp.JobWindow.D(), TopN: sp.TopProcesses, Store: res.store, Console: sp.Console, BootGrace: sp.BootGrace.D(),
			CronParents: cfg.Jobs.CronParents,
			Thresholds: correlate.Thresholds{CPUHigh: sp.CPUHigh, CPULow: sp.CPULow, EnterSamples: sp.EnterSamples,
				ExitSamples: sp.ExitSamples, MemAvailLow: sp.MemAvailableLow, MemAvailHigh: sp.MemAvailableHigh, PSIMemFull: sp.PSIMemoryFull,
				// Samples taken early (a job started, a PSI trigger fired)
				// must not make a sustained spike out of a short burst.
				CPUFor: time.Duration(sp.EnterSamples-1) * cfg.Host.Interval.D() * 9 / 10},
			Log: func(msg string, err error) { log.Named("recorder").Warn(msg, zap.Error(err)) },
		}
		var rules []jobs.NameRule
		for _, n := range cfg.Jobs.Names {
			rules = append(rules, jobs.NameRule{Pattern: regexp.MustCompile(n.Pattern), Name: n.Name}) // validated by config
		}
		if res.rec == nil {
			res.rec = procstat.NewRecorder(ro)
			res.namer = &jobs.Namer{Rules: rules}
			res.recognize = recognizer(res.namer, res.rec)
		}
		p.Activate = func() {
			res.rec.Reconfigure(ro)
			res.namer.Rules = rules
		}
		p.Collectors = append(p.Collectors, res.rec)
		desc = append(desc, fmt.Sprintf("sampling every %s", cfg.Host.Interval.D()))

		loc, err := cfg.Syslog.Location()
		if err != nil {
			return nil, err
		}
		useJournal := logsource.UseJournal(cfg.Syslog.Source, cfg.Syslog.Files)
		src := logsource.New(logsource.Options{
			Files: cfg.Syslog.Files, Journal: useJournal, StateDir: cfg.StateDir, FromStart: cfg.Syslog.FromStart,
			Location: loc, CheckpointEvery: cfg.Syslog.CheckpointInterval.D(), PollInterval: cfg.Syslog.PollInterval.D(),
			MaxLineBytes: cfg.Syslog.MaxLineBytes, JournalProbe: cfg.Syslog.JournalProbe.D(), Log: log.Named("logsource"),
		})
		p.Collectors = append(p.Collectors, &logsource.Collector{Source: src, StatsInterval: cfg.Sinks.SummaryInterval.D(), Recognize: res.recognize})
		if useJournal {
			desc = append(desc, "reading the journal")
		} else {
			desc = append(desc, "tailing "+strings.Join(cfg.Syslog.Files, ", "))
		}

		if !res.statsTried {
			res.statsTried = true
			res.stats, res.closeStats, res.statsErr = nethealth.EthtoolStats()
			if res.statsErr != nil {
				// Without the socket there is no ENA/EFA health: say so
				// once, rather than drop it without a word.
				log.Warn("ethtool socket unavailable; ENA/EFA health is not checked", zap.Error(res.statsErr))
			}
		}
		if res.statsErr == nil {
			chk := nethealth.NewChecker("/sys", res.stats)
			chk.FullEvery = 10 // identity and evidence-only counters every 5 minutes at defaults
			p.Collectors = append(p.Collectors, &nethealth.Collector{Checker: chk, Interval: cfg.Host.Interval.D() * 6})
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
		cw, err := cloudWatchSink(ctx, cfg, id, log.Named("cloudwatch"), res)
		if err != nil {
			return nil, err
		}
		if cw != nil {
			p.Sinks = append(p.Sinks, cw)
			desc = append(desc, "publishing to CloudWatch namespace "+cfg.CloudWatch.Namespace)
		}
		if sh, err := logsShipper(ctx, cfg, id, log.Named("cwlogs")); err != nil {
			return nil, err
		} else if sh != nil {
			p.Collectors = append(p.Collectors, sh)
			desc = append(desc, "shipping incidents to "+sh.String())
		}
		if cfg.Sinks.File.Path != "" {
			s, err := jsonl.Open(cfg.Sinks.File.Path)
			if err != nil {
				return nil, err
			}
			undo = append(undo, func() { s.Close(context.Background()) })
			p.Sinks = append(p.Sinks, s)
			desc = append(desc, "file sink "+cfg.Sinks.File.Path)
		}
		if l := cfg.Sinks.Prometheus.Listen; l != "" {
			ps, err := prom.New(l, func(err error) { log.Error("Prometheus endpoint not available", zap.Error(err)) })
			if err != nil {
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

// logsShipper builds the CloudWatch Logs shipper, or nil when shipping is
// off. It is a collector of the store (which is its spool), so a reload
// makes a new one that resumes at the old one's checkpoint.
func logsShipper(ctx context.Context, cfg config.Config, id *imds.Identity, log *zap.Logger) (*cwlogs.Shipper, error) {
	lc := cfg.Logs
	if lc.Enabled == "false" {
		return nil, nil
	}
	if id == nil {
		if lc.Enabled == "true" {
			log.Warn("cloudwatch_logs.enabled is true, but there is no instance identity (local mode): not shipping")
		}
		return nil, nil
	}
	region := lc.Region
	if region == "" {
		region = id.Region
	}
	awsCfg, err := cwsink.AWSConfig(ctx, cwsink.ClientOptions{Region: region, IMDSEndpoint: cfg.IMDS.Endpoint, Timeout: lc.RequestTimeout.D()})
	if err != nil {
		return nil, err
	}
	return cwlogs.New(cwlogs.Options{StateDir: cfg.StateDir, Group: lc.LogGroup, Stream: id.InstanceID, RetentionDays: int32(lc.RetentionDays),
		InstanceID: id.InstanceID, AutoScalingGroup: id.AutoScalingGroup, API: cwlogs.NewClient(awsCfg, lc.Endpoint),
		FlushEvery: lc.FlushInterval.D(), RequestTimeout: lc.RequestTimeout.D(), Log: log}), nil
}

// cloudWatchSink builds the publisher, or nil when publishing is off.
func cloudWatchSink(ctx context.Context, cfg config.Config, id *imds.Identity, log *zap.Logger, res *resources) (agent.Sink, error) {
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
	if res.spool == nil {
		// Opened once: Open clears temporary files, which an older sink
		// may still have been about to rename. spool_max_bytes changes
		// take effect at restart.
		sp, err := spool.Open(filepath.Join(cfg.StateDir, "spool"), cw.SpoolMaxBytes)
		if err != nil {
			return nil, err
		}
		res.spool = sp
	}
	sp := res.spool
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
	agg := metrics.New(aggOptions(cw, dims))
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
		if ev.Type == jobs.TypeSSHLogin {
			rec.SSHLogin(ev.PID, ev.User, ev.Addr, ev.Time)
			return nil
		}
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
			if ev.Type != jobs.TypeENA && ev.Type != jobs.TypeLinesLost && ev.Type != jobs.TypeOOMInvoked {
				pid := ev.Victim
				if pid == 0 {
					pid = ev.JobPID
				}
				rec.KernelEvent(incident.Event{Time: ev.Time.UTC(), Type: ev.Type, PID: pid, Comm: ev.Comm, Message: escape.Truncate(escape.Control(ev.Message), 200)})
			}
		}
		return append([]collectors.Record(nil), out...)
	}
}

// aggOptions is how the agent shapes its metrics from the config; the
// metric-count test uses it too, so it counts what the agent publishes.
func aggOptions(cw config.CloudWatch, dims []metrics.Dim) metrics.Options {
	hr := map[string]bool{}
	for _, n := range cw.HighResolution {
		hr[n] = true
	}
	return metrics.Options{Period: cw.Period.D(), HighRes: hr, HighResPeriod: cw.HighResolutionPeriod.D(),
		BaseDims: dims, JobNames: cw.JobNames, MaxJobNames: cw.MaxJobNames, Detailed: cw.Metrics == "detailed"}
}
