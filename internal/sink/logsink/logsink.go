// Package logsink puts what the agent sees into its own log (the journal
// under systemd): every event as a structured entry, and a periodic
// one-line summary of the samples. It is the local sink that always works.
package logsink

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Sink logs events and periodic summaries.
type Sink struct {
	// Clock dates the summaries; nil is the system clock.
	Clock    clock.Clock
	log      *zap.Logger
	interval time.Duration
	last     time.Time
	latest   map[string]collectors.Record // newest sample per source+type
	samples  int
	events   int
}

// New logs through log; a summary at most every interval.
func New(log *zap.Logger, interval time.Duration) *Sink {
	return &Sink{log: log, interval: interval, latest: map[string]collectors.Record{}}
}

func (s *Sink) Name() string { return "log" }

// Update takes a reloaded summary interval; what the sink has seen stays.
// Called only while no Write runs (between pipeline runs).
func (s *Sink) Update(interval time.Duration) { s.interval = interval }

func (s *Sink) Write(_ context.Context, batch []collectors.Record) error {
	for i := range batch {
		r := &batch[i]
		switch r.Kind {
		case collectors.KindEvent:
			s.events++
			s.event(r)
		case collectors.KindSample:
			s.samples++
			s.latest[string(r.Source)+"/"+string(r.Type)] = *r
		}
	}
	now := clock.Or(s.Clock).Now()
	if s.last.IsZero() {
		s.last = now
	} else if now.Sub(s.last) >= s.interval {
		s.summary(now)
	}
	return nil
}

// event logs at the level the event asks for via its "level" dim (so a
// spike onset can be a warning), info otherwise.
func (s *Sink) event(r *collectors.Record) {
	fields := []zap.Field{zap.String(logging.KeyEvent, string(r.Type)), zap.String("source", string(r.Source)), zap.Time("event_time", r.Time)}
	keys := make([]string, 0, len(r.Dims))
	for k := range r.Dims {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lvl := zapcore.InfoLevel
	for _, k := range keys {
		switch k {
		case "level":
			_ = lvl.UnmarshalText([]byte(r.Dims[k]))
		case logging.PriorityKey:
			if n, err := strconv.Atoi(r.Dims[k]); err == nil {
				fields = append(fields, zap.Int(k, n))
			}
		default:
			fields = append(fields, zap.String(k, escape.Control(r.Dims[k])))
		}
	}
	for k, v := range r.Metrics {
		fields = append(fields, zap.Float64(k, v))
	}
	msg := escape.Control(r.Message) // process names, commands, log text
	if msg == "" {
		msg = string(r.Type)
	}
	s.log.Check(lvl, msg).Write(fields...)
}

func (s *Sink) summary(now time.Time) {
	keys := make([]string, 0, len(s.latest))
	for k := range s.latest {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		r := s.latest[k]
		mk := make([]string, 0, len(r.Metrics))
		for m := range r.Metrics {
			mk = append(mk, m)
		}
		sort.Strings(mk)
		for _, m := range mk {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(m)
			b.WriteByte('=')
			b.WriteString(strconv.FormatFloat(r.Metrics[m], 'f', -1, 64))
		}
	}
	s.log.Info("summary", zap.String(logging.KeyEvent, "summary"), zap.Int("samples", s.samples), zap.Int("events", s.events),
		zap.Duration("period", now.Sub(s.last).Round(time.Second)), zap.String("latest", b.String()))
	s.samples, s.events, s.last = 0, 0, now
}

func (s *Sink) Close(context.Context) error {
	if s.samples+s.events > 0 {
		s.summary(clock.Or(s.Clock).Now())
	}
	return nil
}
