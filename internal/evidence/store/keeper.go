package store

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/console"
)

// Appender is what the keeper writes records to (*Store).
type Appender interface {
	Append(kind evidence.Kind, incident string, t time.Time, data any, sync bool) (Record, error)
}

// Keeper keeps the flight recorder's records: the console line at once (a
// character device: no disk in its way), then, in order, the store, from
// a goroutine of its own. A stalled disk holds up only that goroutine:
// the recorder goes on sampling and deciding, the console says the news,
// and the records wait here, in memory, until the disk takes them again.
// Each record is encoded within its budget (evidence.EncodeIncident).
type Keeper struct {
	Store   Appender
	Console *console.Console
	Clock   clock.Clock
	// OnError hears of a record the store refused (it is not retried: a
	// full disk is said once per record).
	OnError func(kind evidence.Kind, err error)
	// MaxQueued bounds the bytes waiting for the disk (default 16 MiB):
	// beyond it job-run summaries are left out first, then the oldest
	// snapshots; onsets and ends always wait their turn.
	MaxQueued int

	mu          sync.Mutex
	queue       []queued
	queuedBytes int
	dropped     uint64
	wake        chan struct{}
	idle        chan struct{} // closed while nothing is queued or being written
	idleClosed  bool
	writing     bool
	closed      bool
	once        sync.Once

	tokens      float64
	refilled    time.Time
	notRecorded uint64
}

type queued struct {
	kind     evidence.Kind
	incident string
	t        time.Time
	data     []byte
}

// Job-run summaries are kept at most jobRunRate a second, in bursts of
// jobRunBurst: a flood of job lines (anyone can log them) must not rotate
// the incidents out of the store. Those left out are counted in the next
// summary kept (runs_not_recorded).
const (
	jobRunRate  = 1.0
	jobRunBurst = 120
)

func (k *Keeper) start() {
	k.once.Do(func() {
		k.wake = make(chan struct{}, 1)
		k.idle = make(chan struct{})
		close(k.idle)
		k.idleClosed = true
		if k.MaxQueued <= 0 {
			k.MaxQueued = 16 << 20
		}
		go k.writer()
	})
}

// Incident keeps an onset, snapshot or end record: the console line now,
// the store (fdatasync'ed: it must be on disk before the machine can
// hang) as soon as the disk takes it. It never waits on the disk.
func (k *Keeper) Incident(kind evidence.Kind, id string, t time.Time, d *evidence.Incident) error {
	k.start()
	cerr := k.Console.Say(kind, id, d)
	b, err := evidence.EncodeIncident(d, 0)
	if err == nil {
		k.enqueue(queued{kind: kind, incident: id, t: t, data: b})
	}
	return errors.Join(err, cerr)
}

// JobRun keeps a job-run summary (not synced: it matters after the fact).
func (k *Keeper) JobRun(t time.Time, d *evidence.JobRun) error {
	k.start()
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
		k.enqueue(queued{kind: evidence.KindJobRun, t: t, data: b})
	}
	return err
}

// Crash keeps what the kernel left of a crash (synced: it is found once),
// under the crash's incident id.
func (k *Keeper) Crash(t time.Time, d *evidence.Crash) error {
	k.start()
	b, err := json.Marshal(d)
	if err == nil {
		k.enqueue(queued{kind: evidence.KindCrash, incident: evidence.CrashID(d), t: t, data: b})
	}
	return err
}

func (k *Keeper) enqueue(q queued) {
	k.mu.Lock()
	if k.idleClosed {
		k.idle, k.idleClosed = make(chan struct{}), false
	}
	k.queue = append(k.queue, q)
	k.queuedBytes += len(q.data)
	for k.queuedBytes > k.MaxQueued && k.shed() {
	}
	if !k.closed {
		select {
		case k.wake <- struct{}{}:
		default:
		}
	}
	k.mu.Unlock()
}

// shed leaves out one record to bound the queue: a job-run summary, else
// the oldest snapshot. It reports whether it found one.
func (k *Keeper) shed() bool {
	pick := -1
	for _, kind := range []evidence.Kind{evidence.KindJobRun, evidence.KindSnapshot} {
		for i, q := range k.queue {
			if q.kind == kind {
				pick = i
				break
			}
		}
		if pick >= 0 {
			break
		}
	}
	if pick < 0 {
		return false
	}
	k.queuedBytes -= len(k.queue[pick].data)
	k.queue = append(k.queue[:pick], k.queue[pick+1:]...)
	k.dropped++
	return true
}

func (k *Keeper) writer() {
	for range k.wake {
		for {
			k.mu.Lock()
			if len(k.queue) == 0 {
				k.writing = false
				if !k.idleClosed {
					close(k.idle)
					k.idleClosed = true
				}
				k.mu.Unlock()
				break
			}
			q := k.queue[0]
			k.writing = true
			k.mu.Unlock()
			_, err := k.Store.Append(q.kind, q.incident, q.t, q.data, q.kind != evidence.KindJobRun)
			if err != nil && k.OnError != nil {
				k.OnError(q.kind, err)
			}
			k.mu.Lock()
			k.queue = k.queue[1:]
			k.queuedBytes -= len(q.data)
			k.mu.Unlock()
		}
	}
}

// Pending is how many records wait for the disk, and how many a full
// queue left out.
func (k *Keeper) Pending() (queued int, dropped uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.queue), k.dropped // the record being written is still in the queue
}

// Close stops the writer; call it after Flush, when nothing more comes.
func (k *Keeper) Close() {
	k.start()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.closed = true
		close(k.wake)
	}
}

// Flush waits until every record queued so far is written, or ctx ends.
func (k *Keeper) Flush(ctx context.Context) error {
	k.start()
	k.mu.Lock()
	idle := k.idle
	k.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
