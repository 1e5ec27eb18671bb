package flightrec

import (
	"time"

	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/collectors/procstat"
)

// maxLogins bounds the logins remembered: a host under a password-guessing
// storm logs failures, which are not kept, but a busy bastion logs many
// real logins.
const maxLogins = 1024

// logins are the SSH logins from auth.log by the logging sshd's pid.
type logins struct {
	by map[int]jobs.Login
}

func (ls *logins) add(l jobs.Login) {
	if ls.by == nil {
		ls.by = map[int]jobs.Login{}
	}
	if _, ok := ls.by[l.PID]; !ok && len(ls.by) >= maxLogins {
		oldest := -1
		for p, o := range ls.by {
			if oldest < 0 || o.Time.Before(ls.by[oldest].Time) {
				oldest = p
			}
		}
		delete(ls.by, oldest)
	}
	ls.by[l.PID] = l
}

// loginOf finds the SSH login k descends from: the nearest ancestor (or k)
// whose pid logged one after it started (a reused pid started later).
func (r *Recorder) loginOf(k procstat.Key) (jobs.Login, bool) {
	r.in.mu.Lock()
	defer r.in.mu.Unlock()
	if len(r.in.logins.by) == 0 {
		return jobs.Login{}, false
	}
	for _, a := range append([]procstat.Key{k}, r.sampler.Ancestors(k, 16)...) {
		if l, ok := r.in.logins.by[a.PID]; ok && !l.Time.Before(r.sampler.StartTime(a.Start).Add(-time.Second)) {
			return l, true
		}
	}
	return jobs.Login{}, false
}
