package flightrec

import (
	"sync"
	"time"

	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/collectors/procstat"
)

// bounded is a queue that holds at most max items; a flood beyond it is
// counted, not kept. What the log tells the recorder arrives on the log
// reader's goroutines and waits here for the next sample.
type bounded[T any] struct {
	items   []T
	max     int
	dropped uint64
}

func (q *bounded[T]) push(x T) bool {
	if len(q.items) >= q.max {
		q.dropped++
		return false
	}
	q.items = append(q.items, x)
	return true
}

func (q *bounded[T]) take() []T {
	xs := q.items
	q.items = nil
	return xs
}

// maxPending bounds the job and kernel messages queued between two
// samples: anyone can log start lines.
const maxPending = 4 * procstat.MaxJobs

type jobMsg struct {
	run    *procstat.JobRun
	ended  time.Time
	id     string
	cancel bool
}

// inbox is what the listener side hands to the sampling goroutine.
type inbox struct {
	mu      sync.Mutex
	jobs    bounded[jobMsg]
	kernel  bounded[jobs.KernelEvent]
	claims  bounded[jobs.Login] // SSH logins not yet checked
	logins  logins              // SSH logins checked
	boot    time.Time           // systemd's "Startup finished" of this boot
	wake    chan struct{}
	dropped uint64
}

func newInbox() *inbox {
	return &inbox{jobs: bounded[jobMsg]{max: maxPending}, kernel: bounded[jobs.KernelEvent]{max: maxPending}, claims: bounded[jobs.Login]{max: maxLogins},
		wake: make(chan struct{}, 1)}
}

func (in *inbox) nudge() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}
