package flightrec

import (
	"time"

	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/collectors/procstat"
)

var _ jobs.Listener = (*Recorder)(nil)

// JobStarted tells the recorder about a job run seen in the logs; it
// samples at once so that a short job's processes are found live.
func (r *Recorder) JobStarted(run *jobs.Run) {
	r.in.mu.Lock()
	r.in.jobs.push(jobMsg{run: &procstat.JobRun{ID: run.Key(), Job: run.Job, PID: run.PID, Unit: run.Unit, Start: run.Start}})
	r.in.mu.Unlock()
	r.in.nudge()
}

// JobEnded marks a run ended (from its log line).
func (r *Recorder) JobEnded(id string, at time.Time) {
	r.in.mu.Lock()
	r.in.jobs.push(jobMsg{id: id, ended: at})
	r.in.mu.Unlock()
}

// JobCancelled forgets a run that turned out not to be a job (a systemd
// unit that started and keeps running is a service).
func (r *Recorder) JobCancelled(id string) {
	r.in.mu.Lock()
	r.in.jobs.push(jobMsg{id: id, cancel: true})
	r.in.mu.Unlock()
}

// KernelEvent tells the recorder about a kernel event from the logs (an
// OOM kill, a hung task, a soft lockup): an incident's records keep those
// of its time for the report's timeline. Bounded like job messages: the
// kernel can log thousands of hung tasks.
func (r *Recorder) KernelEvent(ev jobs.KernelEvent) {
	r.in.mu.Lock()
	r.in.kernel.push(ev)
	r.in.mu.Unlock()
}

// SSHLogin tells the recorder that sshd process l.PID logged a login: once
// the process table confirms that l.PID is sshd's (checkLogin), the
// processes of that session (its descendants) are named "session of USER
// from ADDR".
func (r *Recorder) SSHLogin(l jobs.Login) {
	r.in.mu.Lock()
	r.in.claims.push(l)
	r.in.mu.Unlock()
}

// BootFinished tells the recorder that systemd logged "Startup finished"
// at t; a line from an earlier boot, read again from the log, is ignored.
func (r *Recorder) BootFinished(t time.Time) {
	if t.Before(r.sampler.BootTime()) {
		return
	}
	r.in.mu.Lock()
	if r.in.boot.IsZero() {
		r.in.boot = t
	}
	r.in.mu.Unlock()
}
