package evidence

import (
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
	for _, r := range recs {
		if n := len(boots); n == 0 || !SameBoot(boots[n-1].id, boots[n-1].t, r.BootID, r.BootTime) {
			boots = append(boots, boot{r.BootID, r.BootTime})
		}
	}
	pos := len(boots)
	for i, b := range boots {
		if SameBoot(b.id, b.t, curID, curTime) {
			pos = i
		}
	}
	bootIndex := func(r Record) int {
		for i := len(boots) - 1; i >= 0; i-- {
			if SameBoot(boots[i].id, boots[i].t, r.BootID, r.BootTime) {
				return i - pos
			}
		}
		return 0
	}
	byID := map[string]*View{}
	var order []string
	for _, r := range recs {
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
		}
		out = append(out, *v)
	}
	return out
}

func (v *View) setVerdict(d correlate.Verdict) {
	v.Cause, v.Summary, v.Jobs, v.Top, v.Groups = d.Cause, d.Summary, d.Jobs, d.Top, d.Groups
}
