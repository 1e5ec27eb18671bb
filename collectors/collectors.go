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

// Record is one sample or event on its way to the sinks.
type Record struct {
	Time    time.Time          `json:"time"`
	Kind    Kind               `json:"kind"`
	Source  string             `json:"source"`
	Type    string             `json:"type"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Dims    map[string]string  `json:"dims,omitempty"`
	Message string             `json:"message,omitempty"`
	Data    any                `json:"data,omitempty"`

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

// Collector produces records until ctx is done.
type Collector interface {
	Name() string
	// Run blocks until ctx is done, cleans up before returning, and returns
	// only errors that stop this collector (the others keep running).
	Run(ctx context.Context, e Emitter) error
}
