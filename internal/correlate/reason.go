package correlate

import (
	"fmt"
	"strings"
)

// ReasonKind is what made a spike: the contract programs branch on. The
// words people read come from Reason.String.
type ReasonKind string

// The kinds of spike.
const (
	ReasonCPU          ReasonKind = "cpu"              // CPU busy (steal excluded)
	ReasonMemAvailable ReasonKind = "memory_available" // MemAvailable low
	ReasonMemPressure  ReasonKind = "memory_pressure"  // PSI memory full
)

// Memory reports whether the kind is about memory: a memory spike ranks
// processes by what grew, and is snapshotted more often.
func (k ReasonKind) Memory() bool { return k == ReasonMemAvailable || k == ReasonMemPressure }

// Reason is one reason a spike is a spike: its kind and its figure.
type Reason struct {
	Kind  ReasonKind `json:"kind"`
	Value float64    `json:"value"`
}

// String says the reason in words, as records and the console have always
// said it ("CPU 97% busy").
func (r Reason) String() string {
	switch r.Kind {
	case ReasonCPU:
		return fmt.Sprintf("CPU %.0f%% busy", r.Value)
	case ReasonMemAvailable:
		return fmt.Sprintf("memory available %.1f%%", r.Value)
	case ReasonMemPressure:
		return fmt.Sprintf("memory pressure (PSI full) %.0f%%", r.Value)
	}
	return fmt.Sprintf("%s %.1f", r.Kind, r.Value)
}

// Strings says each reason in words.
func Strings(rs []Reason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// Kinds lists the reasons' kinds.
func Kinds(rs []Reason) []ReasonKind {
	out := make([]ReasonKind, len(rs))
	for i, r := range rs {
		out[i] = r.Kind
	}
	return out
}

// KindSet is the reasons' kinds as one comparable string.
func KindSet(rs []Reason) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(string(r.Kind))
		b.WriteByte(',')
	}
	return b.String()
}

// AnyMemory reports whether memory is among the reasons.
func AnyMemory(rs []Reason) bool {
	for _, r := range rs {
		if r.Kind.Memory() {
			return true
		}
	}
	return false
}

// Judgement is the verdict on one job run or group.
type Judgement string

// The judgements.
const (
	Caused      Judgement = "caused"
	Contributed Judgement = "contributed"
	Coincident  Judgement = "coincident"
	// Unverified: the run's log line was not confirmed by the process
	// table; never the cause.
	Unverified Judgement = "unverified"
)
