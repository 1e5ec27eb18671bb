package logsource

import (
	"context"
	"os"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/clock"
)

// Recognizer turns one entry into events (job runs, OOM kills ...); it is
// called concurrently for different files and must copy what it keeps.
type Recognizer func(e *Entry) []collectors.Record

// Collector runs a Source inside the agent: recognised events go into the
// pipeline, and a batch's checkpoint advances only when its last event has
// been handed to every sink.
type Collector struct {
	Source    *Source
	Recognize Recognizer // nil: count lines only
	// StatsInterval is how often the source's counters go out as a sample.
	StatsInterval time.Duration
	Clock         clock.Clock
}

func (c *Collector) Name() string { return "logsource" }

func (c *Collector) Run(ctx context.Context, e collectors.Emitter) error {
	done := make(chan error, 1)
	go func() {
		done <- c.Source.Run(ctx, func(batch []Entry, ack func()) error {
			var recs []collectors.Record
			if c.Recognize != nil {
				for i := range batch {
					recs = append(recs, c.Recognize(&batch[i])...)
				}
			}
			if len(recs) == 0 {
				ack()
				return nil
			}
			recs[len(recs)-1].Done = ack
			for _, r := range recs {
				if err := e.Emit(ctx, r); err != nil {
					return err
				}
			}
			return nil
		})
	}()
	// Ready only once the files are positioned: on a first start (no
	// checkpoint) a line logged between READY=1 and the first open would
	// otherwise fall before the starting offset and be lost.
	started := c.Source.Started()
	t := time.NewTicker(c.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-started:
			e.Ready()
			started = nil
		case err := <-done:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-t.C:
			st := c.Source.Stats()
			e.Emit(ctx, collectors.Record{Time: clock.Or(c.Clock).Now(), Kind: collectors.KindSample, Source: collectors.SourceLog, Type: collectors.TypeLogSource, Metrics: map[string]float64{
				"lines_read": float64(st.Lines), "lines_unparsed": float64(st.Unparsed), "lines_truncated": float64(st.Truncated),
				"rotations": float64(st.Rotations), "truncations": float64(st.Truncations), "gaps": float64(st.Gaps), "open_errors": float64(st.OpenErrors),
			}})
		}
	}
}

// UseJournal decides the "auto" source: the journal when the first file
// (normally /var/log/syslog) does not exist.
func UseJournal(source string, files []string) bool {
	switch source {
	case "journal":
		return true
	case "files":
		return false
	}
	if len(files) == 0 {
		return true
	}
	_, err := os.Stat(files[0])
	return os.IsNotExist(err)
}
