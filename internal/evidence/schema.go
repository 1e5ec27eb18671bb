// Package evidence is the schema of what ec2diag keeps about an incident:
// the records the flight recorder writes (onset, snapshots, end, job-run
// summaries) as Go types, the size budget every record is cut to where it
// is made, and the grouping of records into incidents that every reader
// (`ec2diag incidents`, the report, the CloudWatch Logs shipper, the VM
// harness) shares. It does no I/O: the store (evidence/store) keeps the
// records, the console (evidence/console) says them on the serial port.
package evidence

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
)

// Kind is what a record is.
type Kind string

// Record kinds. The strings are in the store and in shipped events.
const (
	KindOnset    Kind = "onset"
	KindSnapshot Kind = "snapshot"
	KindEnd      Kind = "end"
	KindJobRun   Kind = "job_run"
	// KindCrash is the kernel's own account of how an earlier boot ended
	// (a panic's last messages, kept in pstore or by kdump), recorded at
	// the next start.
	KindCrash Kind = "kernel_crash"
)

// OfIncident reports whether records of this kind belong to an incident.
func (k Kind) OfIncident() bool { return k == KindOnset || k == KindSnapshot || k == KindEnd }

// Record is one record as stored: an envelope around its kind's payload.
type Record struct {
	Kind     Kind      `json:"kind"`
	Incident string    `json:"incident,omitempty"`
	Time     time.Time `json:"time"`
	BootID   string    `json:"boot_id"`
	// BootTime (unix seconds, /proc/stat btime) identifies the boot too;
	// unlike boot_id it reads the same in every mount namespace (nspawn
	// overmounts boot_id, and a sandbox remount of /proc/sys may not).
	BootTime int64           `json:"boot_time"`
	Seq      uint64          `json:"seq"`
	Data     json.RawMessage `json:"data"`
}

// Incident is the payload of an onset, snapshot or end record. Each record
// carries the verdict as it stood and the part of the timeline (samples,
// kernel events) the records before it lack, so what reached the disk
// before a hang is the whole story up to then.
type Incident struct {
	// Onset is back-dated to the first sample over the threshold (onset
	// and snapshot records).
	Onset time.Time `json:"onset,omitzero"`
	// Reasons say in words why this is a spike ("CPU 97% busy");
	// ReasonKinds are the same reasons typed, for programs.
	Reasons     []string               `json:"reasons,omitempty"`
	ReasonKinds []correlate.ReasonKind `json:"reason_kinds,omitempty"`
	Host        *correlate.Host        `json:"host,omitempty"`
	Verdict     correlate.Verdict      `json:"verdict"`
	// Kernel is the growth of the kernel's counters since onset.
	Kernel  *Kernel  `json:"kernel,omitempty"`
	Samples []Sample `json:"samples,omitempty"`
	Events  []Event  `json:"events,omitempty"`
	// Cut says what the size budget left out of this record.
	Cut *Cut `json:"cut,omitempty"`
}

// JobRun is the payload of a job_run record: every run the recorder
// followed gets one when it ends, spike or not.
type JobRun struct {
	ID            string    `json:"id"`
	Job           string    `json:"job"`
	PID           int       `json:"pid"`
	Unit          string    `json:"unit"`
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	CPUSeconds    float64   `json:"cpu_seconds"`
	PeakRSSBytes  int64     `json:"peak_rss_bytes"`
	ProcessesSeen bool      `json:"processes_seen"`
	// NotRecorded counts the runs before this one that got no record of
	// their own (a flood of job lines is summarised, not stored).
	NotRecorded uint64 `json:"runs_not_recorded,omitempty"`
}

// Kernel is the kernel's side of a memory story, from /proc/vmstat: the
// growth since onset.
type Kernel struct {
	OOMKills    uint64 `json:"oom_kills"`
	MajorFaults uint64 `json:"major_faults"` // pgmajfault: pages read back in, program text among them
	AllocStalls uint64 `json:"alloc_stalls"` // allocstall_*: allocations that had to reclaim directly
}

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
	PSIIOSome  float64  `json:"psi_io_some_avg10,omitempty"`
	PSIIOFull  float64  `json:"psi_io_full_avg10,omitempty"`
	CPUSteal   float64  `json:"cpu_steal_pct,omitempty"`
	// IOStalled is how long a disk had been stalled (seconds).
	IOStalled float64 `json:"io_stalled_seconds,omitempty"`
}

// Event is something the logs said during an incident that its report
// marks on the timeline: the kernel's OOM kills, hung tasks, soft lockups
// and RCU stalls.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	PID     int       `json:"pid,omitempty"`
	Comm    string    `json:"comm,omitempty"`
	Message string    `json:"message,omitempty"`
	// Unverified says why nothing but the log line (which anyone can
	// write) vouches for the event: /proc/vmstat counts fewer OOM kills,
	// the hung task is not blocked. Such an event is shown, marked, and
	// never counts as the kernel's evidence.
	Unverified string `json:"unverified,omitempty"`
}

// Crash is the payload of a kernel_crash record: what the kernel wrote as
// it died, read at the next boot. Only the kernel writes pstore and the
// crash kernel's dmesg, but the messages quote process names and whatever
// root wrote to /dev/kmsg: lines are redacted and bounded like log lines.
type Crash struct {
	// Time is when it happened: the crashed boot's start plus the last
	// kernel timestamp, else the dump file's time.
	Time time.Time `json:"time"`
	// Boot identifies the boot that crashed, when the agent ran in it.
	BootID   string `json:"crashed_boot_id,omitempty"`
	BootTime int64  `json:"crashed_boot_time,omitempty"`
	// Kind is panic, oops or unknown (a dump with neither line).
	Kind string `json:"kind"`
	// Reason is the kernel's line: "Kernel panic - not syncing: ...".
	Reason string `json:"reason,omitempty"`
	// NMI says the panic followed an unknown NMI: EC2's diagnostic
	// interrupt (SendDiagnosticInterrupt) with kernel.unknown_nmi_panic=1.
	NMI bool `json:"nmi,omitempty"`
	// Task is the task on the CPU that panicked ("PID 812 (hog)").
	Task string `json:"task,omitempty"`
	// Lockups are the hung-task, soft-lockup and RCU stall lines before it.
	Lockups []string `json:"lockups,omitempty"`
	// Tail is the dump's last lines, oldest first.
	Tail []string `json:"tail,omitempty"`
	// Files are where it was read ("pstore:dmesg-ramoops-0").
	Files []string `json:"files"`
}

// DecodeCrash reads the payload of a kernel_crash record.
func (r Record) DecodeCrash() (Crash, error) {
	return decode[Crash](r, r.Kind == KindCrash, "a kernel_crash")
}

// Round2 keeps two decimals: a sample's figures are percentages read from
// avg10 and tick counts, and the digits beyond only cost bytes on disk.
func Round2(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return math.Round(x*100) / 100
}

// DecodeIncident reads the payload of an onset, snapshot or end record.
func (r Record) DecodeIncident() (Incident, error) {
	return decode[Incident](r, r.Kind.OfIncident(), "an incident")
}

// DecodeJobRun reads the payload of a job_run record.
func (r Record) DecodeJobRun() (JobRun, error) {
	return decode[JobRun](r, r.Kind == KindJobRun, "a job_run")
}

func decode[T any](r Record, ok bool, what string) (T, error) {
	var d T
	if !ok {
		return d, fmt.Errorf("record %d is a %s, not %s record", r.Seq, r.Kind, what)
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return d, fmt.Errorf("record %d (%s): %w", r.Seq, r.Kind, err)
	}
	return d, nil
}
