// Package collectors is the contract between what produces data (samplers,
// log sources, health checks) and the agent that fans it in to sinks. It
// imports only the standard library so collectors stay independent of the
// agent and of AWS.
package collectors

import (
	"context"
	"time"
)

// Kind tells samples (figures at an instant) from events (something that
// happened).
type Kind string

const (
	KindSample Kind = "sample"
	KindEvent  Kind = "event"
)

// Source is what produced a record; sinks and the metric catalogue match
// on these constants, so a rename is a compile error, not a metric that
// silently stops.
type Source string

// Sources of records.
const (
	SourceHost          Source = "host"
	SourceRecorder      Source = "recorder"
	SourceLog           Source = "logsource"
	SourceIMDSEvents    Source = "imdsevents"
	SourceInstanceCheck Source = "instancecheck"
	SourceNetHealth     Source = "nethealth"
	SourceSuspend       Source = "suspend"
	SourceShipper       Source = "cwlogs"
)

// Type is what a record says; for log events it is the recognizer's event
// type (oom_kill, hung_task ...).
type Type string

// Types of records that sinks branch on.
const (
	TypeHost          Type = "host"
	TypeSpike         Type = "spike"
	TypeSpikeSnapshot Type = "spike_snapshot"
	TypeSpikeEnd      Type = "spike_end"
	TypeJobRun        Type = "job_run"
	TypeJobStart      Type = "job_start"
	TypeLogSource     Type = "logsource"
	TypeIMDSEvents    Type = "imdsevents"
	TypeIMDSError     Type = "imds_error"
	TypeInstanceCheck Type = "instancecheck"
	TypeCheckResult   Type = "instance_check"
	TypeNICState      Type = "nic_state"
	TypeResume        Type = "resume"
	TypeClockStep     Type = "clock_step"
	TypeLinesLost     Type = "lines_lost"
	TypeLogSummary    Type = "log_summary"
)

// Record is one sample or event on its way to the sinks.
type Record struct {
	Time    time.Time          `json:"time"`
	Kind    Kind               `json:"kind"`
	Source  Source             `json:"source"`
	Type    Type               `json:"type"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Dims    map[string]string  `json:"dims,omitempty"`
	Message string             `json:"message,omitempty"`

	// Done, if set, runs once every sink has been handed the record. A log
	// source advances its checkpoint only then, so a crash never skips a
	// line whose events were not yet handed on.
	Done func() `json:"-"`
}

// Emitter is how a collector hands records on.
type Emitter interface {
	// Emit blocks while the pipeline is full (backpressure) and returns
	// ctx.Err() on shutdown.
	Emit(ctx context.Context, r Record) error
	// Ready says the collector finished its first cycle; the agent tells
	// systemd READY=1 once all collectors have.
	Ready()
}

// Essential is implemented by a collector without which the agent is not
// doing its job (the flight recorder): while it is down the watchdog pings
// stop, so systemd restarts the whole agent.
type Essential interface {
	Essential() bool
}

// Collector produces records until ctx is done.
type Collector interface {
	Name() string
	// Run blocks until ctx is done, cleans up before returning, and returns
	// only errors that stop this collector (the others keep running).
	Run(ctx context.Context, e Emitter) error
}
