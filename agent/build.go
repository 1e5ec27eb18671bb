package agent

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/ec2diag/ec2diag/agent/flightrec"
	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/imdsevents"
	"github.com/ec2diag/ec2diag/collectors/instancecheck"
	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/collectors/logsource"
	"github.com/ec2diag/ec2diag/collectors/nethealth"
	"github.com/ec2diag/ec2diag/collectors/suspend"
	"github.com/ec2diag/ec2diag/internal/checks/result"
	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/console"
	"github.com/ec2diag/ec2diag/internal/evidence/store"
	"github.com/ec2diag/ec2diag/internal/hostfs"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/metrics"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/ec2diag/ec2diag/internal/sink/cwlogs"
	"github.com/ec2diag/ec2diag/internal/sink/jsonl"
	"github.com/ec2diag/ec2diag/internal/sink/logsink"
	"github.com/ec2diag/ec2diag/internal/sink/prom"
	"github.com/ec2diag/ec2diag/internal/spool"
	"go.uber.org/zap"
)

// Deps are what the daemon's components need besides the config: made by
// `ec2diag run` (the real host, clock and IMDS) or by a test (a fixture
// tree, a fake clock, stand-ins).
type Deps struct {
	Log   *zap.Logger
	Root  hostfs.Root
	Clock clock.Clock
	// Identity is the instance (nil off EC2: local mode).
	Identity *imds.Identity
	// Print, if set, gets every record as a JSON line (run --print).
	Print io.Writer
	// Checks runs the instance hygiene checks (nil: none in the daemon).
	// Given by the caller so that this package does not link the EC2 API.
	Checks func(ctx context.Context, cfg config.Config) []result.Result
	// Ethtool opens the ethtool statistics socket (nil: the real ioctl).
	Ethtool func() (nethealth.StatsFunc, func(), error)
	// Self is the agent's pid (0: this process).
	Self int
	// NoInotify follows the log files by polling only (a fixture stepped
	// in fake time).
	NoInotify bool
}

// Daemon is ec2diag's System: every component the daemon runs, made once.
// The path of the data: the log source reads lines, jobs.Events
// recognises them and tells the flight recorder (its jobs.Listener) what
// they mean; the recorder samples the host and its processes and writes
// incidents through the keeper to the console and the store, which the
// CloudWatch Logs shipper follows; samples and events go through the
// fan-in to the sinks (journal, CloudWatch metrics, file, Prometheus).
type Daemon struct {
	d   Deps
	cfg config.Config

	store  *store.Store
	keeper *store.Keeper
	rec    *flightrec.Recorder
	namer  *jobs.Namer
	events *jobs.Events
	logsrc *logsource.Collector

	net        *nethealth.Collector
	closeStats func()
	susp       *suspend.Collector
	imdsEv     *imdsevents.Collector
	icheck     *instancecheck.Collector
	shipper    *cwlogs.Shipper

	logs  *logsink.Sink
	cw    Sink
	spool *spool.Spool
	file  *jsonl.Sink
	prom  *prom.Sink
	print Sink

	pipeline *Pipeline
}

// Build makes the daemon for cfg. It opens the store and the files the
// config names, so that an unusable path fails here; what it opened is
// closed again when it fails.
func Build(ctx context.Context, cfg config.Config, d Deps) (_ *Daemon, err error) {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	d.Root, d.Clock = d.Root.OrDefault(), clock.Or(d.Clock)
	s := &Daemon{d: d, cfg: cfg}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.store, err = store.Open(cfg.StateDir, cfg.Incidents.MaxFileBytes, cfg.Incidents.KeepFiles, store.Boot{ID: d.Root.BootID(), Time: d.Root.BootTime()})
	if err != nil {
		return nil, err
	}
	klog := d.Log.Named("recorder")
	s.keeper = &store.Keeper{Store: s.store, Console: &console.Console{Path: cfg.Spikes.Console, Clock: d.Clock}, Clock: d.Clock,
		OnError: func(kind evidence.Kind, err error) {
			klog.Error("incident store refused a record", zap.String("kind", string(kind)), zap.Error(err))
		}}
	s.recordCrashes()
	s.rec = flightrec.New(s.recorderOptions(cfg))
	s.namer = &jobs.Namer{Rules: nameRules(cfg)}
	s.events = jobs.NewEvents(s.namer, s.rec)
	s.events.Clock = d.Clock
	s.logsrc = s.logSource(cfg)

	stats := d.Ethtool
	if stats == nil {
		stats = nethealth.EthtoolStats
	}
	sf, closeStats, serr := stats()
	if serr != nil {
		// Without the socket there is no ENA/EFA health: say so once,
		// rather than drop it without a word.
		d.Log.Warn("ethtool socket unavailable; ENA/EFA health is not checked", zap.Error(serr))
	} else {
		s.closeStats = closeStats
		chk := nethealth.NewChecker(d.Root.Sys, sf)
		chk.FullEvery = 10 // identity and evidence-only counters every 5 minutes at defaults
		s.net = &nethealth.Collector{Checker: chk, Interval: cfg.Host.Interval.D() * 6, Clock: d.Clock}
	}
	s.susp = &suspend.Collector{Interval: cfg.Host.Interval.D(), Clock: d.Clock}
	s.imdsEv = s.imdsEvents(cfg)
	s.icheck = s.instanceChecks(cfg)

	s.logs = logsink.New(d.Log.Named("events"), cfg.Sinks.SummaryInterval.D())
	s.logs.Clock = d.Clock
	if s.cw, err = s.cloudWatch(ctx, cfg); err != nil {
		return nil, err
	}
	if s.shipper, err = s.logsShipper(ctx, cfg); err != nil {
		return nil, err
	}
	if p := cfg.Sinks.File.Path; p != "" {
		if s.file, err = jsonl.Open(p); err != nil {
			return nil, err
		}
	}
	if l := cfg.Sinks.Prometheus.Listen; l != "" {
		if s.prom, err = prom.Listen(l); err != nil {
			return nil, err
		}
	}
	if d.Print != nil {
		s.print = jsonl.New("stdout", d.Print, nil)
	}
	s.pipeline = s.assemble()
	return s, nil
}

// Pipeline is what runs now.
func (s *Daemon) Pipeline() *Pipeline { return s.pipeline }

// Recorder is the flight recorder.
func (s *Daemon) Recorder() *flightrec.Recorder { return s.rec }

// Close releases the store, the spool's sockets and the ethtool socket.
func (s *Daemon) Close() {
	if s.closeStats != nil {
		s.closeStats()
		s.closeStats = nil
	}
	if s.net != nil {
		s.net.Checker.Close()
	}
	if s.store != nil {
		// What the recorder wrote last is still on its way to the disk:
		// wait for it, a little. A disk that does not take it (stalled)
		// keeps the writer in its write; the store is then left to the
		// process's exit rather than closed under it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.keeper.Flush(ctx)
		cancel()
		if err != nil {
			n, _ := s.keeper.Pending()
			s.d.Log.Error("incident records not written at exit: the disk did not take them", zap.Int("records", n))
			return
		}
		s.keeper.Close()
		s.store.Close()
		s.store = nil
	}
}

// assemble lists what runs, in the order the agent starts it.
func (s *Daemon) assemble() *Pipeline {
	cfg := s.cfg
	p := &Pipeline{}
	desc := []string{fmt.Sprintf("sampling every %s", cfg.Host.Interval.D())}
	p.Collectors = append(p.Collectors, s.rec, s.logsrc)
	if s.logsrc.Source.Journal() {
		desc = append(desc, "reading the journal")
	} else {
		desc = append(desc, "tailing "+strings.Join(cfg.Syslog.Files, ", "))
	}
	for _, c := range []collectors.Collector{s.net, s.susp, s.imdsEv, s.icheck, s.shipper} {
		if !reflect.ValueOf(c).IsNil() {
			p.Collectors = append(p.Collectors, c)
		}
	}
	p.Sinks = append(p.Sinks, s.logs)
	if s.cw != nil {
		p.Sinks = append(p.Sinks, s.cw)
		desc = append(desc, "publishing to CloudWatch namespace "+cfg.CloudWatch.Namespace)
	}
	if s.shipper != nil {
		desc = append(desc, "shipping incidents to "+s.shipper.String())
	}
	if s.file != nil {
		p.Sinks = append(p.Sinks, s.file)
		desc = append(desc, "file sink "+cfg.Sinks.File.Path)
	}
	if s.prom != nil {
		p.Sinks = append(p.Sinks, s.prom)
		desc = append(desc, "Prometheus on http://"+cfg.Sinks.Prometheus.Listen+"/metrics")
	}
	if s.print != nil {
		p.Sinks = append(p.Sinks, s.print)
	}
	p.Describe = strings.Join(desc, ", ")
	return p
}

// change is a prepared reload of the daemon.
type change struct {
	s   *Daemon
	cfg config.Config

	logsrc  *logsource.Collector
	imdsEv  *imdsevents.Collector
	icheck  *instancecheck.Collector
	cw      Sink
	shipper *cwlogs.Shipper
	file    *jsonl.Sink
	rebind  *prom.Rebind
	newProm *prom.Sink
	opened  []func() // what Discard closes
}

// Prepare checks cfg against the running daemon and makes what it needs
// anew; nothing that runs is touched.
func (s *Daemon) Prepare(ctx context.Context, cfg config.Config) (_ Change, err error) {
	old := s.cfg
	if cfg.StateDir != old.StateDir {
		return nil, fmt.Errorf("state_dir cannot change on reload (%s -> %s); restart the agent", old.StateDir, cfg.StateDir)
	}
	c := &change{s: s, cfg: cfg}
	defer func() {
		if err != nil {
			c.Discard()
		}
	}()
	if !reflect.DeepEqual(cfg.Syslog, old.Syslog) {
		if _, err := cfg.Syslog.Location(); err != nil {
			return nil, err
		}
		c.logsrc = s.logSource(cfg)
	}
	if !reflect.DeepEqual(cfg.IMDS, old.IMDS) {
		c.imdsEv = s.imdsEvents(cfg)
	}
	if !reflect.DeepEqual(cfg.Checks, old.Checks) {
		c.icheck = s.instanceChecks(cfg)
	}
	if !reflect.DeepEqual(cfg.CloudWatch, old.CloudWatch) || cfg.Sinks.SummaryInterval != old.Sinks.SummaryInterval {
		if c.cw, err = s.cloudWatch(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if !reflect.DeepEqual(cfg.Logs, old.Logs) {
		if c.shipper, err = s.logsShipper(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if p := cfg.Sinks.File.Path; p != old.Sinks.File.Path && p != "" {
		if c.file, err = jsonl.Open(p); err != nil {
			return nil, err
		}
		f := c.file
		c.opened = append(c.opened, func() { f.Close(context.Background()) })
	}
	if l := cfg.Sinks.Prometheus.Listen; l != old.Sinks.Prometheus.Listen && l != "" {
		if s.prom != nil {
			if c.rebind, err = s.prom.PrepareRebind(l); err != nil {
				return nil, err
			}
			rb := c.rebind
			c.opened = append(c.opened, rb.Discard)
		} else {
			if c.newProm, err = prom.Listen(l); err != nil {
				return nil, err
			}
			np := c.newProm
			c.opened = append(c.opened, func() { np.Close(context.Background()) })
		}
	}
	return c, nil
}

// Discard closes what Prepare opened.
func (c *change) Discard() {
	for _, f := range c.opened {
		f()
	}
	c.opened = nil
}

// Apply updates every component in place and swaps in what Prepare made.
func (c *change) Apply() (retired []Sink) {
	s, cfg, old := c.s, c.cfg, c.s.cfg
	s.rec.Update(s.recorderOptions(cfg))
	s.namer.Rules = nameRules(cfg)
	s.store.SetLimits(cfg.Incidents.MaxFileBytes, cfg.Incidents.KeepFiles)
	s.keeper.Console.Path = cfg.Spikes.Console
	if c.logsrc != nil {
		s.logsrc = c.logsrc
	}
	if s.net != nil {
		s.net.Update(cfg.Host.Interval.D() * 6)
	}
	s.susp.Interval = cfg.Host.Interval.D()
	if !reflect.DeepEqual(cfg.IMDS, old.IMDS) {
		if s.imdsEv != nil && c.imdsEv != nil {
			s.imdsEv.Update(cfg.IMDS.EventsInterval.D()) // keeps the notices it saw
		} else {
			s.imdsEv = c.imdsEv
		}
	}
	if !reflect.DeepEqual(cfg.Checks, old.Checks) {
		if s.icheck != nil && c.icheck != nil {
			s.icheck.Update(cfg.Checks.Interval.D()) // keeps when it last ran
		} else {
			s.icheck = c.icheck
		}
	}
	s.logs.Update(cfg.Sinks.SummaryInterval.D())
	if !reflect.DeepEqual(cfg.CloudWatch, old.CloudWatch) || cfg.Sinks.SummaryInterval != old.Sinks.SummaryInterval {
		if s.cw != nil {
			retired = append(retired, s.cw) // closing it spools what it aggregated
		}
		s.cw = c.cw
	}
	if !reflect.DeepEqual(cfg.Logs, old.Logs) {
		s.shipper = c.shipper // a new one resumes at the old one's checkpoint
	}
	if cfg.Sinks.File.Path != old.Sinks.File.Path {
		if s.file != nil {
			retired = append(retired, s.file)
		}
		s.file = c.file
	}
	if cfg.Sinks.Prometheus.Listen != old.Sinks.Prometheus.Listen {
		switch {
		case c.rebind != nil:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.rebind.Apply(ctx) // the figures stay
			cancel()
		case c.newProm != nil:
			s.prom = c.newProm
		case s.prom != nil:
			retired = append(retired, s.prom)
			s.prom = nil
		}
	}
	c.opened = nil
	s.cfg = cfg
	s.pipeline = s.assemble()
	return retired
}

func (s *Daemon) recorderOptions(cfg config.Config) flightrec.Options {
	sp := cfg.Spikes
	return flightrec.Options{
		Root: s.d.Root, Clock: s.d.Clock, Self: s.d.Self, Evidence: s.keeper, Log: s.d.Log.Named("recorder"),
		Interval: cfg.Host.Interval.D(), CalmProcessInterval: cfg.Host.CalmProcessInterval.D(), FastInterval: sp.FastInterval.D(), SnapshotEvery: sp.SnapshotEvery.D(),
		JobWindow: sp.JobWindow.D(), TopN: sp.TopProcesses, BootGrace: sp.BootGrace.D(),
		CronParents: cfg.Jobs.CronParents, StalledAfter: sp.StalledAfter.D(), InstanceType: instanceType(s.d.Identity),
		// PSI triggers exist only on the real procfs.
		NoPSITriggers: s.d.Root.Proc != hostfs.Default().Proc,
		Thresholds: correlate.Thresholds{CPUHigh: sp.CPUHigh, CPULow: sp.CPULow, EnterSamples: sp.EnterSamples,
			ExitSamples: sp.ExitSamples, MemAvailLow: sp.MemAvailableLow, MemAvailHigh: sp.MemAvailableHigh, PSIMemFull: sp.PSIMemoryFull,
			IOStallFor: sp.IOStallAfter.D(), PSIIOFull: sp.PSIIOFull, CPUStealHigh: sp.CPUStealHigh,
			// Samples taken early (a job started, a PSI trigger fired)
			// must not make a sustained spike out of a short burst.
			CPUFor: time.Duration(sp.EnterSamples-1) * cfg.Host.Interval.D() * 9 / 10},
	}
}

func instanceType(id *imds.Identity) string {
	if id == nil {
		return ""
	}
	return id.InstanceType
}

func nameRules(cfg config.Config) []jobs.NameRule {
	var rules []jobs.NameRule
	for _, n := range cfg.Jobs.Names {
		re, err := regexp.Compile(n.Pattern)
		if err != nil {
			continue // config validation refuses it before it gets here
		}
		rules = append(rules, jobs.NameRule{Pattern: re, Name: n.Name})
	}
	return rules
}

func (s *Daemon) logSource(cfg config.Config) *logsource.Collector {
	loc, _ := cfg.Syslog.Location() // validated by config
	src := logsource.New(logsource.Options{
		Files: cfg.Syslog.Files, Journal: logsource.UseJournal(cfg.Syslog.Source, cfg.Syslog.Files), StateDir: cfg.StateDir, FromStart: cfg.Syslog.FromStart,
		Location: loc, CheckpointEvery: cfg.Syslog.CheckpointInterval.D(), PollInterval: cfg.Syslog.PollInterval.D(),
		MaxLineBytes: cfg.Syslog.MaxLineBytes, JournalProbe: cfg.Syslog.JournalProbe.D(), Log: s.d.Log.Named("logsource"), Clock: s.d.Clock, NoInotify: s.d.NoInotify,
	})
	ev := s.events
	return &logsource.Collector{Source: src, StatsInterval: cfg.Sinks.SummaryInterval.D(), Clock: s.d.Clock,
		Recognize: func(e *logsource.Entry) []collectors.Record {
			return ev.Line(&e.Line, e.Origin, e.Raw.File, e.Raw.Offset)
		}}
}

func (s *Daemon) imdsEvents(cfg config.Config) *imdsevents.Collector {
	if s.d.Identity == nil || cfg.IMDS.EventsInterval.D() <= 0 {
		return nil
	}
	io := imds.Options{Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()}
	return &imdsevents.Collector{Interval: cfg.IMDS.EventsInterval.D(), Clock: s.d.Clock,
		Get: func(ctx context.Context, path string) (string, bool, error) { return imds.Get(ctx, io, path) }}
}

func (s *Daemon) instanceChecks(cfg config.Config) *instancecheck.Collector {
	if s.d.Identity == nil || s.d.Checks == nil || cfg.Checks.Interval.D() <= 0 {
		return nil
	}
	run := s.d.Checks
	return &instancecheck.Collector{Interval: cfg.Checks.Interval.D(), Clock: s.d.Clock,
		Check: func(ctx context.Context) []result.Result { return run(ctx, cfg) }}
}

// logsShipper builds the CloudWatch Logs shipper, or nil when shipping is
// off. It is a collector of the store (which is its spool), so a reload
// makes a new one that resumes at the old one's checkpoint.
func (s *Daemon) logsShipper(ctx context.Context, cfg config.Config) (*cwlogs.Shipper, error) {
	lc, id, log := cfg.Logs, s.d.Identity, s.d.Log.Named("cwlogs")
	awsCfg, on, err := s.aws(ctx, "cloudwatch_logs", lc.Enabled, cwsink.ClientOptions{Region: lc.Region, IMDSEndpoint: cfg.IMDS.Endpoint, Timeout: lc.RequestTimeout.D(), Log: log})
	if !on || err != nil {
		return nil, err
	}
	return cwlogs.New(cwlogs.Options{StateDir: cfg.StateDir, Group: lc.LogGroup, Stream: id.InstanceID, RetentionDays: int32(lc.RetentionDays),
		InstanceID: id.InstanceID, AutoScalingGroup: id.AutoScalingGroup, API: cwlogs.NewClient(awsCfg, lc.Endpoint),
		FlushEvery: lc.FlushInterval.D(), RequestTimeout: lc.RequestTimeout.D(), Log: log}), nil
}

// aws is the SDK configuration of a feature that talks to AWS (key is its
// config section), or on=false when it is off: enabled "false", or no
// instance identity (local mode), which "true" is told about.
func (s *Daemon) aws(ctx context.Context, key, enabled string, o cwsink.ClientOptions) (_ aws.Config, on bool, _ error) {
	id := s.d.Identity
	if enabled == "false" {
		return aws.Config{}, false, nil
	}
	if id == nil {
		if enabled == "true" {
			o.Log.Warn(key + ".enabled is true, but there is no instance identity (local mode): it is off")
		}
		return aws.Config{}, false, nil
	}
	if o.Region == "" {
		o.Region = id.Region
	}
	c, err := cwsink.AWSConfig(ctx, o)
	return c, err == nil, err
}

// cloudWatch builds the metric publisher, or nil when publishing is off.
func (s *Daemon) cloudWatch(ctx context.Context, cfg config.Config) (Sink, error) {
	cw, id, log := cfg.CloudWatch, s.d.Identity, s.d.Log.Named("cloudwatch")
	awsCfg, on, err := s.aws(ctx, "cloudwatch", cw.Enabled, cwsink.ClientOptions{Region: cw.Region, Endpoint: cw.Endpoint, IMDSEndpoint: cfg.IMDS.Endpoint, Timeout: cw.RequestTimeout.D(), Log: log})
	if !on || err != nil {
		return nil, err
	}
	if s.spool == nil {
		// Opened once: Open clears temporary files, which an older sink
		// may still have been about to rename. spool_max_bytes changes
		// take effect at restart.
		sp, err := spool.Open(filepath.Join(cfg.StateDir, "spool"), cw.SpoolMaxBytes)
		if err != nil {
			return nil, err
		}
		sp.Clock = s.d.Clock
		s.spool = sp
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
	agg := metrics.New(AggOptions(cw, dims))
	return cwsink.New(cwsink.Options{Namespace: cw.Namespace, API: cwsink.NewClient(awsCfg, cw.Endpoint), Agg: agg, Spool: s.spool,
		Period: cw.Period.D(), Offset: cwsink.Offset(id.InstanceID, min(cw.Period.D(), time.Minute)),
		RequestTimeout: cw.RequestTimeout.D(), Log: log, SummaryEvery: cfg.Sinks.SummaryInterval.D(), Clock: s.d.Clock}), nil
}

// AggOptions is how the agent shapes its metrics from the config; the
// metric-count test uses it too, so it counts what the agent publishes.
func AggOptions(cw config.CloudWatch, dims []metrics.Dim) metrics.Options {
	hr := map[string]bool{}
	for _, n := range cw.HighResolution {
		hr[n] = true
	}
	return metrics.Options{Period: cw.Period.D(), HighRes: hr, HighResPeriod: cw.HighResolutionPeriod.D(),
		BaseDims: dims, JobNames: cw.JobNames, MaxJobNames: cw.MaxJobNames, Detailed: cw.Metrics == "detailed"}
}
