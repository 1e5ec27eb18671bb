package store

import (
	"sync"

	"errors"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"

	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/console"
)

// Keeper keeps the flight recorder's records: the console line first (a
// character device, it does not wait on a disk), then the store, each
// record encoded within its budget (evidence.EncodeIncident).
type Keeper struct {
	Store   *Store
	Console *console.Console
	Clock   clock.Clock

	mu          sync.Mutex
	tokens      float64
	refilled    time.Time
	notRecorded uint64
}

// Job-run summaries are kept at most jobRunRate a second, in bursts of
// jobRunBurst: a flood of job lines (anyone can log them) must not rotate
// the incidents out of the store. Those left out are counted in the next
// summary kept (runs_not_recorded).
const (
	jobRunRate  = 1.0
	jobRunBurst = 120
)

// Incident keeps an onset, snapshot or end record, fdatasync'ed: it must
// be on disk before the machine can hang.
func (k *Keeper) Incident(kind evidence.Kind, id string, t time.Time, d *evidence.Incident) error {
	cerr := k.Console.Say(kind, id, d)
	b, err := evidence.EncodeIncident(d, 0)
	if err == nil {
		_, err = k.Store.Append(kind, id, t, b, true)
	}
	return errors.Join(err, cerr)
}

// JobRun keeps a job-run summary (not synced: it matters after the fact).
func (k *Keeper) JobRun(t time.Time, d *evidence.JobRun) error {
	k.mu.Lock()
	now := clock.Or(k.Clock).Now()
	if k.refilled.IsZero() {
		k.tokens = jobRunBurst
	} else {
		k.tokens = min(jobRunBurst, k.tokens+now.Sub(k.refilled).Seconds()*jobRunRate)
	}
	k.refilled = now
	if k.tokens < 1 {
		k.notRecorded++
		k.mu.Unlock()
		return nil
	}
	k.tokens--
	c := *d
	c.NotRecorded, k.notRecorded = k.notRecorded, 0
	k.mu.Unlock()
	b, err := evidence.EncodeJobRun(&c)
	if err == nil {
		_, err = k.Store.Append(evidence.KindJobRun, "", t, b, false)
	}
	return err
}
