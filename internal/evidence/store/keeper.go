package store

import (
	"errors"
	"time"

	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/console"
)

// Keeper keeps the flight recorder's records: the console line first (a
// character device, it does not wait on a disk), then the store, each
// record encoded within its budget (evidence.EncodeIncident).
type Keeper struct {
	Store   *Store
	Console *console.Console
}

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
	b, err := evidence.EncodeJobRun(d)
	if err == nil {
		_, err = k.Store.Append(evidence.KindJobRun, "", t, b, false)
	}
	return err
}
