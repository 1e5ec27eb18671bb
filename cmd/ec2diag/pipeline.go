package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/ec2diag/ec2diag/agent"
	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/collectors/logsource"
	"github.com/ec2diag/ec2diag/collectors/nethealth"
	"github.com/ec2diag/ec2diag/collectors/procstat"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/incident"
	"github.com/ec2diag/ec2diag/internal/sink/jsonl"
	"github.com/ec2diag/ec2diag/internal/sink/logsink"
	"go.uber.org/zap"
)

// builder turns a config into collectors and sinks. It opens files so that
// a reload with an unusable path fails before the old pipeline stops.
func builder(log *zap.Logger, print bool) agent.Builder {
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
			JobWindow: sp.JobWindow.D(), TopN: sp.TopProcesses, Store: store, Console: sp.Console,
			Thresholds: correlate.Thresholds{CPUHigh: sp.CPUHigh, CPULow: sp.CPULow, EnterSamples: sp.EnterSamples,
				ExitSamples: sp.ExitSamples, MemAvailLow: sp.MemAvailableLow, MemAvailHigh: sp.MemAvailableHigh, PSIMemFull: sp.PSIMemoryFull},
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
			MaxLineBytes: cfg.Syslog.MaxLineBytes, Log: log.Named("logsource"),
		})
		p.Collectors = append(p.Collectors, &logsource.Collector{Source: src, StatsInterval: cfg.Sinks.SummaryInterval.D(), Recognize: recognizer(namer, rec)})
		if useJournal {
			desc = append(desc, "reading the journal")
		} else {
			desc = append(desc, "tailing "+strings.Join(cfg.Syslog.Files, ", "))
		}

		if stats, closeStats, err := nethealth.EthtoolStats(); err == nil {
			p.Collectors = append(p.Collectors, &nethealth.Collector{Checker: nethealth.NewChecker("/sys", stats), Interval: cfg.Host.Interval.D() * 6})
			p.Sinks = append(p.Sinks, closer{name: "ethtool", close: func() error { closeStats(); return nil }})
		}

		p.Sinks = append(p.Sinks, logsink.New(log.Named("events"), cfg.Sinks.SummaryInterval.D()))
		if cfg.Sinks.File.Path != "" {
			s, err := jsonl.Open(cfg.Sinks.File.Path)
			if err != nil {
				store.Close()
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

// recognizer turns log entries into events and tells the recorder about
// job runs as their start lines arrive.
func recognizer(namer *jobs.Namer, rec *procstat.Recorder) logsource.Recognizer {
	var mu sync.Mutex
	var out []collectors.Record
	tr := jobs.NewTracker(namer, false)
	tr.OnStart = func(r *jobs.Run) {
		rec.JobStarted(r.Key(), r.Job, r.PID, r.Unit, r.Start)
		out = append(out, collectors.Record{Time: r.Start, Kind: collectors.KindEvent, Source: r.Source, Type: "job_start",
			Message: "job " + r.Job + " started",
			Dims:    map[string]string{"job": r.Job, "user": r.User, "pid": strconv.Itoa(r.PID), "unit": r.Unit, "command": r.Command}})
	}
	tr.OnEnd = func(r *jobs.Run) {
		if r.End != nil {
			rec.JobEnded(r.Key(), *r.End)
		}
	}
	return func(e *logsource.Entry) []collectors.Record {
		var ev jobs.Event
		if !jobs.Recognize(&e.Line, &ev) {
			return nil
		}
		ev.File, ev.Offset = e.Raw.File, e.Raw.Offset
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
