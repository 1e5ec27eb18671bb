package evidence

import (
	"encoding/json"
	"unicode/utf8"
)

// MaxRecordBytes is the budget of one stored record's payload. A record is
// made at most this big where it is made, so that no input (thousands of
// job lines, 8 KiB commands, a flood of kernel lines) can bloat the store,
// the agent's memory or a shipped event. Records at the defaults are 5-20
// KiB; the budget only bites on hostile or pathological input.
const MaxRecordBytes = 64 << 10

// Cut counts what a record's budget left out, so a reader knows the
// record is not whole and what is missing.
type Cut struct {
	// BytesBefore is the payload's size before it was cut.
	BytesBefore int `json:"bytes_before"`
	Cmdlines    int `json:"cmdlines,omitempty"`  // command lines shortened
	Jobs        int `json:"jobs,omitempty"`      // candidate job runs left out (least confident)
	Events      int `json:"events,omitempty"`    // kernel events left out (newest)
	Samples     int `json:"samples,omitempty"`   // samples left out (oldest)
	Processes   int `json:"processes,omitempty"` // top processes left out (lowest ranked)
	Groups      int `json:"groups,omitempty"`    // groups left out (lowest ranked)
	Strings     int `json:"strings,omitempty"`   // other texts shortened
}

// EncodeIncident marshals d within max bytes (MaxRecordBytes when max is
// 0), cutting the least telling parts first: long command lines, the least
// confident candidate runs, the newest kernel events (the first ones tell
// how it started), the oldest samples, the lowest-ranked processes and
// groups, and last every long text. What was cut is counted in the
// record's "cut". d itself is not changed.
func EncodeIncident(d *Incident, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = MaxRecordBytes
	}
	b, err := json.Marshal(d)
	if err != nil || len(b) <= limit {
		return b, err
	}
	c := *d
	c.Verdict.Top = append(c.Verdict.Top[:0:0], d.Verdict.Top...)
	c.Verdict.Jobs = append(c.Verdict.Jobs[:0:0], d.Verdict.Jobs...)
	c.Verdict.Groups = append(c.Verdict.Groups[:0:0], d.Verdict.Groups...)
	cut := &Cut{BytesBefore: len(b)}
	if d.Cut != nil {
		*cut = *d.Cut
		cut.BytesBefore = max(cut.BytesBefore, len(b))
	}
	c.Cut = cut
	steps := []func() bool{
		func() bool { // command lines and parent chains
			n := 0
			for i := range c.Verdict.Top {
				p := &c.Verdict.Top[i]
				if len(p.Cmdline) > 160 {
					p.Cmdline, n = Truncate(p.Cmdline, 160), n+1
				}
				if len(p.Parents) > 3 {
					p.Parents = p.Parents[:3]
				}
			}
			cut.Cmdlines += n
			return n > 0
		},
		func() bool { return keep(&c.Verdict.Jobs, 8, &cut.Jobs) },
		func() bool { return keep(&c.Events, 16, &cut.Events) },
		func() bool { return keepLast(&c.Samples, 24, &cut.Samples) },
		func() bool { return keep(&c.Verdict.Top, 5, &cut.Processes) },
		func() bool { return keep(&c.Verdict.Groups, 5, &cut.Groups) },
		func() bool { return keep(&c.Verdict.Jobs, 2, &cut.Jobs) },
		func() bool {
			c.Verdict.Cause, c.Verdict.Summary = shorten(c.Verdict.Cause, cut), shorten(c.Verdict.Summary, cut)
			for i := range c.Reasons {
				c.Reasons[i] = shorten(c.Reasons[i], cut)
			}
			for i := range c.Verdict.Jobs {
				j := &c.Verdict.Jobs[i]
				j.Reason, j.Job, j.ID, j.Unverified = shorten(j.Reason, cut), shorten(j.Job, cut), shorten(j.ID, cut), shorten(j.Unverified, cut)
			}
			for i := range c.Verdict.Top {
				p := &c.Verdict.Top[i]
				p.Cmdline, p.Group, p.Cgroup, p.Parents = shorten(p.Cmdline, cut), shorten(p.Group, cut), shorten(p.Cgroup, cut), nil
			}
			for i := range c.Verdict.Groups {
				c.Verdict.Groups[i].Name = shorten(c.Verdict.Groups[i].Name, cut)
			}
			return true
		},
		func() bool {
			return keepLast(&c.Samples, 0, &cut.Samples) || keep(&c.Events, 0, &cut.Events) ||
				keep(&c.Verdict.Top, 1, &cut.Processes) || keep(&c.Verdict.Groups, 1, &cut.Groups)
		},
	}
	for _, step := range steps {
		if !step() {
			continue
		}
		if b, err = json.Marshal(&c); err != nil || len(b) <= limit {
			return b, err
		}
	}
	// Only a pathological host gets here (reasons, cause and summary are
	// bounded where they are made): the record says so rather than
	// exceed its budget.
	stub := Incident{Onset: c.Onset, ReasonKinds: c.ReasonKinds, Cut: cut}
	stub.Verdict.Cause = Truncate(c.Verdict.Cause, 256)
	return json.Marshal(&stub)
}

// EncodeJobRun marshals a job-run summary, its texts bounded.
func EncodeJobRun(d *JobRun) ([]byte, error) {
	c := *d
	c.ID, c.Job, c.Unit = Truncate(c.ID, 512), Truncate(c.Job, 256), Truncate(c.Unit, 256)
	return json.Marshal(&c)
}

func keep[T any](xs *[]T, n int, count *int) bool {
	if len(*xs) <= n {
		return false
	}
	*count += len(*xs) - n
	*xs = (*xs)[:n]
	return true
}

func keepLast[T any](xs *[]T, n int, count *int) bool {
	if len(*xs) <= n {
		return false
	}
	*count += len(*xs) - n
	*xs = (*xs)[len(*xs)-n:]
	return true
}

func shorten(s string, cut *Cut) string {
	if len(s) <= 256 {
		return s
	}
	cut.Strings++
	return Truncate(s, 256)
}

// Truncate bounds s to at most n bytes on a character boundary, marking a
// cut with "…" (within the n bytes).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	n -= len(mark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	if n < 0 {
		n = 0
	}
	return s[:n] + mark
}
