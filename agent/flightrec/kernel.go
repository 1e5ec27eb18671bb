package flightrec

import (
	"fmt"

	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/collectors/procstat"
)

// kernelCheck holds what the log's kernel events are checked against.
type kernelCheck struct {
	// oom is the verdict on each OOM victim of this boot the log named
	// (the kernel logs one kill in two lines): "" confirmed, else why not.
	oom map[int]string
}

// maxVictims bounds the OOM victims remembered per boot.
const maxVictims = 4096

// check says why the kernel's own counters do not confirm ev ("" when
// they do). A syslog file cannot tell the kernel's lines from anyone's
// "kernel: Out of memory: Killed process 4242 (x)": an OOM kill counts
// only while /proc/vmstat's oom_kill has room for it, a hung task only if
// the task it names is blocked (D state) when the line is read.
func (k *kernelCheck) check(r *Recorder, ev jobs.KernelEvent) string {
	switch ev.Type {
	case jobs.TypeOOMKill:
		if k.oom == nil {
			k.oom = map[int]string{}
		}
		if why, ok := k.oom[ev.PID]; ok {
			return why // the kill's second line
		}
		counted := 0
		for _, why := range k.oom {
			if why == "" {
				counted++
			}
		}
		vm := procstat.ReadKernel(r.o.Root.Proc, &r.vmBuf)
		why := ""
		switch {
		case !vm.Available:
			why = "/proc/vmstat could not be read to confirm it"
		case uint64(counted+1) > vm.OOMKills:
			why = fmt.Sprintf("the kernel counts %d OOM kills since boot (/proc/vmstat oom_kill); this line would be kill %d", vm.OOMKills, counted+1)
		}
		if len(k.oom) < maxVictims {
			k.oom[ev.PID] = why
		}
		return why
	case jobs.TypeHungTask:
		var p procstat.Proc
		if !r.sampler.ReadProc(ev.PID, &p) {
			return fmt.Sprintf("pid %d is gone: /proc cannot confirm it was blocked", ev.PID)
		}
		if p.State != 'D' {
			return fmt.Sprintf("pid %d is in state %c, not blocked (D)", ev.PID, p.State)
		}
		return ""
	}
	return "only the log line says so (no kernel counter to check it against; the journal's kernel transport would)"
}
