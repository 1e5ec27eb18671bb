package incident

import (
	"math"
	"time"
)

// Sample is one host sample as an incident keeps it for its timeline:
// onset and snapshot records carry the samples since the record before
// (the onset record those of the minutes before onset), so a report can
// draw what the machine did even when it hung between two snapshots.
type Sample struct {
	Time    time.Time `json:"t"`
	CPUBusy float64   `json:"cpu_busy_pct"`
	// MemAvail is nil when /proc/meminfo could not be read: 0 would read
	// as memory gone.
	MemAvail   *float64 `json:"mem_available_pct,omitempty"`
	SwapUsed   float64  `json:"swap_used_pct,omitempty"`
	PSIMemSome float64  `json:"psi_memory_some_avg10,omitempty"`
	PSIMemFull float64  `json:"psi_memory_full_avg10,omitempty"`
	PSICPUSome float64  `json:"psi_cpu_some_avg10,omitempty"`
}

// Event is something the logs said during an incident that its report
// marks on the timeline: the kernel's OOM kills, hung tasks, soft
// lockups and RCU stalls.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	PID     int       `json:"pid,omitempty"`
	Comm    string    `json:"comm,omitempty"`
	Message string    `json:"message,omitempty"`
}

// Round2 keeps two decimals: a sample's figures are percentages read from
// avg10 and tick counts, and the digits beyond only cost bytes on disk.
func Round2(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return math.Round(x*100) / 100
}
