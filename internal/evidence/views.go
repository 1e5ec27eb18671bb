package evidence

import (
	"fmt"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
)

// View is one incident put together from its records: the JSON contract
// of `ec2diag incidents --format json`.
type View struct {
	ID      string              `json:"id"`
	Onset   time.Time           `json:"onset"`
	End     *time.Time          `json:"end"`
	BootID  string              `json:"boot_id"`
	Boot    int                 `json:"boot"` // 0 this boot, -1 the one before ...
	Reasons []string            `json:"reasons"`
	Cause   string              `json:"cause"`
	Summary string              `json:"summary"`
	Jobs    []correlate.Blame   `json:"jobs"`
	Top     []correlate.ProcUse `json:"top_processes"`
	// Groups ranks the services, containers, sessions and job runs of the
	// top processes (verdict.groups of the records).
	Groups     []correlate.GroupBlame `json:"groups,omitempty"`
	Records    int                    `json:"records"`
	Unfinished string                 `json:"unfinished,omitempty"`
	// ReasonKinds are the reasons typed (see correlate.ReasonKind).
	ReasonKinds []correlate.ReasonKind `json:"reason_kinds,omitempty"`
	// Crash is set on the view of a kernel crash (reason kind
	// kernel_crash): what the kernel wrote as it died.
	Crash *Crash `json:"kernel_crash,omitempty"`
}

// Unfinished is what a view says of an incident of an earlier boot that
// has no end record.
const Unfinished = "no end recorded before the machine rebooted (or the agent stopped): the spike may have hung it"

// SameBoot compares two records' boots: by boot time when both have one
// (btime can shift by a second with clock adjustments), else by boot id.
func SameBoot(aID string, aTime int64, bID string, bTime int64) bool {
	if aTime != 0 && bTime != 0 {
		d := aTime - bTime
		return d >= -2 && d <= 2
	}
	return aID == bID
}

// Views groups recs (the whole store, oldest first) into incidents, in the
// order they began. curID and curTime identify the running boot, which
// is boot 0; the boots before it count down in the order the store saw
// them. A record whose payload does not decode counts, but adds nothing.
func Views(recs []Record, curID string, curTime int64) []View {
	type boot struct {
		id string
		t  int64
	}
	var boots []boot
	add := func(id string, t int64) {
		if n := len(boots); n == 0 || !SameBoot(boots[n-1].id, boots[n-1].t, id, t) {
			boots = append(boots, boot{id, t})
		}
	}
	for _, r := range recs {
		if r.Kind == KindCrash {
			// A crash is recorded at the start after it, about the boot
			// before: that boot counts even if it left no record itself.
			if c, err := r.DecodeCrash(); err == nil && (c.BootID != "" || c.BootTime != 0) {
				add(c.BootID, c.BootTime)
			}
		}
		add(r.BootID, r.BootTime)
	}
	pos := len(boots)
	for i, b := range boots {
		if SameBoot(b.id, b.t, curID, curTime) {
			pos = i
		}
	}
	indexOf := func(id string, t int64) (int, bool) {
		for i := len(boots) - 1; i >= 0; i-- {
			if SameBoot(boots[i].id, boots[i].t, id, t) {
				return i - pos, true
			}
		}
		return 0, false
	}
	bootIndex := func(r Record) int {
		i, _ := indexOf(r.BootID, r.BootTime)
		return i
	}
	byID := map[string]*View{}
	var order []string
	crashOf := map[int]*Crash{} // by boot index
	for _, r := range recs {
		if r.Kind == KindCrash {
			c, err := r.DecodeCrash()
			if err != nil {
				continue
			}
			b, known := indexOf(c.BootID, c.BootTime)
			if !known || c.BootID == "" && c.BootTime == 0 {
				b = bootIndex(r) - 1
			}
			v := crashView(c, b)
			if byID[v.ID] != nil {
				continue // the same crash, found again
			}
			byID[v.ID] = v
			order = append(order, v.ID)
			crashOf[b] = v.Crash
			continue
		}
		if r.Incident == "" || !r.Kind.OfIncident() {
			continue
		}
		v, ok := byID[r.Incident]
		if !ok {
			v = &View{ID: r.Incident, BootID: r.BootID, Boot: bootIndex(r)}
			byID[r.Incident] = v
			order = append(order, r.Incident)
		}
		v.Records++
		d, _ := r.DecodeIncident()
		switch r.Kind {
		case KindOnset, KindSnapshot:
			v.Onset, v.Reasons, v.ReasonKinds = d.Onset, d.Reasons, d.ReasonKinds
			v.setVerdict(d.Verdict)
		case KindEnd:
			t := r.Time
			v.End = &t
			if d.Verdict.Cause != "" {
				v.setVerdict(d.Verdict)
			}
		}
	}
	out := make([]View, 0, len(order))
	for _, id := range order {
		v := byID[id]
		if v.End == nil && v.Boot != 0 {
			v.Unfinished = Unfinished
			if c := crashOf[v.Boot]; c != nil && !c.Time.Before(v.Onset) {
				v.Unfinished = fmt.Sprintf("the kernel %s at %s (%s): see %s", crashVerb(c), c.Time.Format(time.RFC3339), crashWhat(c), CrashID(c))
			}
		}
		out = append(out, *v)
	}
	return out
}

func (v *View) setVerdict(d correlate.Verdict) {
	v.Cause, v.Summary, v.Jobs, v.Top, v.Groups = d.Cause, d.Summary, d.Jobs, d.Top, d.Groups
}

// CrashID is the incident id of a kernel crash.
func CrashID(c *Crash) string {
	return "kernel-" + c.Time.UTC().Format("20060102T150405Z")
}

func crashVerb(c *Crash) string {
	switch c.Kind {
	case "panic":
		return "panicked"
	case "oops":
		return "oopsed"
	}
	return "left a dump"
}

func crashWhat(c *Crash) string {
	if c.Reason != "" {
		return c.Reason
	}
	return "no panic or oops line in " + strings.Join(c.Files, ", ")
}

// crashView is a kernel crash as an incident of the boot that crashed.
func crashView(c Crash, boot int) *View {
	end := c.Time
	v := &View{ID: CrashID(&c), Onset: c.Time, End: &end, BootID: c.BootID, Boot: boot, Records: 1, Crash: &c,
		Reasons: []string{"kernel " + c.Kind}, ReasonKinds: []correlate.ReasonKind{correlate.ReasonKernelCrash}}
	if v.BootID == "" {
		v.BootID = "unknown (the agent did not run in it)"
	}
	switch {
	case c.NMI && c.Kind == "panic":
		v.Cause = "an NMI panicked the kernel: EC2's diagnostic interrupt (SendDiagnosticInterrupt), as kernel.unknown_nmi_panic=1 asks"
	default:
		v.Cause = "the kernel " + crashVerb(&c) + ": " + crashWhat(&c)
	}
	if c.Task != "" {
		v.Cause += "; on the CPU: " + c.Task
	}
	var parts []string
	if len(c.Lockups) > 0 {
		parts = append(parts, fmt.Sprintf("before it: %s", strings.Join(c.Lockups, "; ")))
	}
	parts = append(parts, "from "+strings.Join(c.Files, ", "))
	v.Summary = strings.Join(parts, "; ")
	return v
}
