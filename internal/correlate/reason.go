package correlate

import (
	"fmt"
	"sort"
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
	ReasonIOStall      ReasonKind = "io_stall"         // a disk with requests in flight and none completing
	ReasonIOPressure   ReasonKind = "io_pressure"      // PSI io full
	ReasonCPUSteal     ReasonKind = "cpu_steal"        // CPU withheld by the hypervisor
	// ReasonKernelCrash is not a spike: the kernel panicked or oopsed, as
	// it wrote in pstore or kdump's dmesg (an incident of its own).
	ReasonKernelCrash ReasonKind = "kernel_crash"
)

// IO reports whether the kind is about I/O: such a spike ranks processes
// by their time waiting on it.
func (k ReasonKind) IO() bool { return k == ReasonIOStall || k == ReasonIOPressure }

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
	case ReasonIOStall:
		return fmt.Sprintf("disk stalled %.0f s", r.Value)
	case ReasonIOPressure:
		return fmt.Sprintf("I/O pressure (PSI full) %.0f%%", r.Value)
	case ReasonCPUSteal:
		return fmt.Sprintf("CPU withheld by the hypervisor (steal) %.0f%%", r.Value)
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
	ks := make([]string, len(rs))
	for i, r := range rs {
		ks[i] = string(r.Kind)
	}
	// A set: the same kinds in another order are no change.
	sort.Strings(ks)
	return strings.Join(ks, ",") + ","
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

// AnyIO reports whether I/O is among the reasons.
func AnyIO(rs []Reason) bool {
	for _, r := range rs {
		if r.Kind.IO() {
			return true
		}
	}
	return false
}

// ReasonKindsOf makes reasons of bare kinds (values unknown), for Has.
func ReasonKindsOf(ks []ReasonKind) []Reason {
	out := make([]Reason, len(ks))
	for i, k := range ks {
		out[i].Kind = k
	}
	return out
}

// Has reports whether kind is among the reasons.
func Has(rs []Reason, kind ReasonKind) bool {
	for _, r := range rs {
		if r.Kind == kind {
			return true
		}
	}
	return false
}

// RankFor is what a spike with these reasons ranks its processes by:
// memory first (a thrash also shows as I/O), then I/O, then CPU.
func RankFor(rs []Reason) Rank {
	switch {
	case AnyMemory(rs):
		return RankMemory
	case AnyIO(rs):
		return RankIO
	}
	return RankCPU
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
