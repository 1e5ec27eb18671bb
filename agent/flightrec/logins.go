package flightrec

import (
	"fmt"

	"time"

	"github.com/ec2diag/ec2diag/internal/escape"

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

// checkLogin says why the process table does not confirm that l was
// logged by sshd ("" when it does): the logging pid must be sshd (or
// sshd-session, OpenSSH 9.8's), run by root, in sshd's service or a login
// session, and started before the line. Anyone can write "sshd[PID]:
// Accepted ... for root from 6.6.6.6" with the pid of a service's
// runaway: that renamed the runaway "session of root from 6.6.6.6".
func (r *Recorder) checkLogin(l jobs.Login) string {
	var p procstat.Proc
	if !r.sampler.ReadProc(l.PID, &p) {
		return "gone before it could be checked"
	}
	if p.Comm != "sshd" && p.Comm != "sshd-session" {
		return fmt.Sprintf("pid %d is %q, not sshd", l.PID, escape.Control(p.Comm))
	}
	if r.sampler.StartTime(p.Start).After(l.Time.Add(time.Second)) {
		return fmt.Sprintf("pid %d started after the line", l.PID)
	}
	in := r.sampler.ReadInfo(l.PID)
	if in.UID != 0 {
		return fmt.Sprintf("pid %d runs as uid %d, not root", l.PID, in.UID)
	}
	g := in.Group
	if !(g.Kind == "session" || g.Kind == "service" && (g.Name == "ssh.service" || g.Name == "sshd.service")) {
		return fmt.Sprintf("pid %d is in %s, not sshd's service or a login session", l.PID, escape.Control(in.Cgroup))
	}
	return ""
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
