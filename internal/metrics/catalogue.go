// Package metrics turns the agent's records into CloudWatch-shaped datums:
// the metric catalogue (names, units, dimensions) and a per-period
// aggregator that folds many samples into one statistic set, so a fleet
// pays for one datum per metric per minute, not one per sample.
//
// It knows nothing about the AWS SDK or the network; the cloudwatch sink
// and the spool work on the Datum type defined here.
package metrics

import (
	"sort"
	"strings"
)

// How a record field becomes a datum.
type Agg int

const (
	// Gauge: every sample in the period goes into one statistic set
	// (SampleCount, Sum, Minimum, Maximum).
	Gauge Agg = iota
	// Count: events in the period are summed into one Value.
	Count
	// Delta: the record carries a cumulative counter; the period's datum
	// is the increase (a counter that went down restarted from zero).
	Delta
)

// Spec is one catalogue entry.
type Spec struct {
	Name string
	Unit string // a CloudWatch StandardUnit
	Agg  Agg
	// Dims lists the dimensions besides InstanceId and the configured
	// extras: "Job" or "Interface".
	Dims []string
	Help string
	// ZeroFill publishes 0 for periods without events, so an alarm on it
	// sees "nothing happened" rather than missing data.
	ZeroFill bool
	// Detailed: published only with cloudwatch.metrics: detailed. The
	// standard set is the few figures people alarm and graph per machine
	// (at most 20 per instance whatever the jobs and interfaces: each
	// custom metric costs about $0.30 a month, per instance).
	Detailed bool
	// Fleet: published with the Job dimension alone, shared by every
	// instance, so its cost does not grow with the fleet.
	Fleet bool
}

// host sample field -> metric
var hostSpecs = map[string]Spec{
	"cpu_busy_pct":          {Name: "CPUBusy", Unit: "Percent", Help: "CPU busy (user+system+irq+steal), all CPUs"},
	"cpu_user_pct":          {Name: "CPUUser", Unit: "Percent", Detailed: true, Help: "CPU in user mode (incl. nice)"},
	"cpu_system_pct":        {Name: "CPUSystem", Unit: "Percent", Detailed: true, Help: "CPU in kernel mode (incl. irq, softirq)"},
	"cpu_iowait_pct":        {Name: "CPUIOWait", Unit: "Percent", Detailed: true, Help: "CPU idle waiting for I/O"},
	"cpu_steal_pct":         {Name: "CPUSteal", Unit: "Percent", Help: "CPU stolen by the hypervisor (burstable credits exhausted)"},
	"mem_used_pct":          {Name: "MemoryUsed", Unit: "Percent", Detailed: true, Help: "memory used, as gopsutil defines it"},
	"mem_available_pct":     {Name: "MemoryAvailable", Unit: "Percent", Help: "MemAvailable / MemTotal"},
	"swap_used_pct":         {Name: "SwapUsed", Unit: "Percent", Help: "swap used (only when swap exists)"},
	"psi_cpu_some_avg10":    {Name: "PSICPUSome", Unit: "Percent", Help: "pressure stall: some tasks waiting for CPU (avg10)"},
	"psi_memory_some_avg10": {Name: "PSIMemorySome", Unit: "Percent", Help: "pressure stall: some tasks waiting for memory (avg10)"},
	"psi_memory_full_avg10": {Name: "PSIMemoryFull", Unit: "Percent", Help: "pressure stall: all tasks waiting for memory (avg10); thrashing"},
	"psi_io_full_avg10":     {Name: "PSIIOFull", Unit: "Percent", Help: "pressure stall: all tasks waiting for I/O (avg10)"},
	"psi_io_some_avg10":     {Name: "PSIIOSome", Unit: "Percent", Detailed: true, Help: "pressure stall: some tasks waiting for I/O (avg10)"},
	"io_stalled_seconds":    {Name: "IOStalledSeconds", Unit: "Seconds", Detailed: true, Help: "how long a disk has had requests in flight and none completing"},
	"stalled":               {Name: "Stalled", Unit: "None", Help: "1 while the host has been stalled (memory, I/O, withheld CPU) for spikes.stalled_after, else 0; what the liveness alarm watches (it also reboots when the figure is missing)"},
}

// event type -> count metric
var eventSpecs = map[string]Spec{
	"spike":       {Name: "Spikes", Unit: "Count", Agg: Count, ZeroFill: true, Help: "CPU/memory spikes that began in the period"},
	"oom_kill":    {Name: "OOMKills", Unit: "Count", Agg: Count, ZeroFill: true, Help: "processes killed by the kernel's OOM killer (from the log)"},
	"hung_task":   {Name: "HungTasks", Unit: "Count", Agg: Count, ZeroFill: true, Help: "hung-task reports (task blocked > 120 s)"},
	"soft_lockup": {Name: "SoftLockups", Unit: "Count", Agg: Count, Detailed: true, Help: "soft-lockup reports"},
	"rcu_stall":   {Name: "RCUStalls", Unit: "Count", Agg: Count, Detailed: true, Help: "RCU stall reports"},
	"ena_event":   {Name: "ENADriverEvents", Unit: "Count", Agg: Count, Detailed: true, Help: "ENA driver warnings in the log (resets, keep-alive timeouts)"},
	"resume":      {Name: "Resumes", Unit: "Count", Agg: Count, Detailed: true, Help: "resumes from suspend (hibernation), told apart from hangs by CLOCK_BOOTTIME"},
}

// The standard set folds what detailed publishes one by one.
var (
	kernelLockups   = Spec{Name: "KernelLockups", Unit: "Count", Agg: Count, Help: "soft lockups and RCU stalls (the kernel's own hang reports besides hung tasks)"}
	instanceNotices = Spec{Name: "InstanceNotices", Unit: "Count", Help: "AWS notices active in IMDS: spot interruption, rebalance recommendation, scheduled events"}
	nicUnhealthy    = Spec{Name: "NICUnhealthy", Unit: "Count", Help: "per check, 1 for each ENA/EFA device not healthy (Maximum >= 1: some device is not)"}
	nicAllowance    = Spec{Name: "NICAllowanceExceeded", Unit: "Count", Agg: Count,
		Help: "packets shaped or dropped for exceeding an ENA allowance (bandwidth in/out, PPS, conntrack, link-local), summed over the interfaces"}
	agentErrors = Spec{Name: "AgentErrors", Unit: "Count", Agg: Count, ZeroFill: true,
		Help: "the agent's own failures: PutMetricData calls that failed and datums dropped (invalid, too old, spool full)"}
	instanceJobRuns = Spec{Name: "JobRuns", Unit: "Count", Agg: Count, Help: "job runs (cron, timers) that ended in the period, all jobs of the instance"}
)

var correlatedSpike = Spec{Name: "CorrelatedSpikes", Unit: "Count", Agg: Count, ZeroFill: true,
	Help: "spikes whose cause or contributor is a recognised job run"}

// job_run event field -> metric, per Job
var jobSpecs = map[string]Spec{
	"":                 {Name: "JobRuns", Unit: "Count", Agg: Count, Dims: []string{"Job"}, Fleet: true, Help: "job runs (cron, timers) that ended in the period"},
	"duration_seconds": {Name: "JobDuration", Unit: "Seconds", Dims: []string{"Job"}, Fleet: true, Help: "wall-clock duration of each run"},
	"cpu_seconds":      {Name: "JobCPUSeconds", Unit: "Seconds", Dims: []string{"Job"}, Fleet: true, Help: "CPU time used by each run's processes (children included)"},
	"peak_rss_bytes":   {Name: "JobPeakRSS", Unit: "Bytes", Dims: []string{"Job"}, Fleet: true, Help: "peak resident memory of each run (sum over its processes)"},
}

// imdsevents sample fields: 0/1 (or a count) while AWS announces something.
var noticeSpecs = map[string]Spec{
	"spot_interruption":        {Name: "SpotInterruptionNotice", Unit: "None", Detailed: true, Help: "1 while IMDS carries a spot interruption notice (2 minutes' warning)"},
	"rebalance_recommendation": {Name: "RebalanceRecommendation", Unit: "None", Detailed: true, Help: "1 while IMDS carries a rebalance recommendation"},
	"scheduled_events":         {Name: "ScheduledEvents", Unit: "Count", Detailed: true, Help: "active scheduled maintenance events (reboot, stop, retirement)"},
}

// nethealth sample fields: per-interface figures. Counters arrive as
// per-interval deltas already and are summed; "healthy" is a 0/1 gauge.
var nicGauges = map[string]bool{"healthy": true, "conntrack_allowance_available": true, "ena_srd_mode": true,
	"ena_srd_resource_utilization": true, "num_of_active_io_queues": true} // as collectors/nethealth's gauges

// agent health
var (
	agentLines       = Spec{Name: "AgentLinesRead", Unit: "Count", Agg: Delta, Detailed: true, Help: "log lines the agent read"}
	agentUnparsed    = Spec{Name: "AgentParseErrors", Unit: "Count", Agg: Delta, Detailed: true, Help: "log lines that did not parse (kept as raw messages)"}
	agentEvents      = Spec{Name: "AgentEvents", Unit: "Count", Agg: Count, Detailed: true, Help: "events the agent recognised or raised"}
	AgentSpoolBytes  = Spec{Name: "AgentSpoolBytes", Unit: "Bytes", Detailed: true, Help: "bytes waiting in the on-disk spool at flush time"}
	AgentPublishFail = Spec{Name: "AgentPublishFailures", Unit: "Count", Agg: Count, ZeroFill: true, Detailed: true, Help: "PutMetricData calls that failed (after the SDK's retries)"}
	AgentDropped     = Spec{Name: "AgentDatapointsDropped", Unit: "Count", Agg: Count, ZeroFill: true, Detailed: true, Help: "datums dropped: invalid, too old, or spool full"}
	CheckFailures    = Spec{Name: "InstanceCheckFailures", Unit: "Count", Help: "instance checks (ec2diag check) in state fail, at the last run"}
)

// nicSpec names a per-interface metric: ENA/EFA prefix + the driver's
// counter name in PascalCase (bw_in_allowance_exceeded ->
// ENABwInAllowanceExceeded), so people can map it back to ethtool -S.
func nicSpec(kind, field string) Spec {
	agg := Count
	unit := "Count"
	if nicGauges[field] {
		agg, unit = Gauge, "None"
	}
	return Spec{Name: strings.ToUpper(kind) + Pascal(field), Unit: unit, Agg: agg, Dims: []string{"Interface"}}
}

// Pascal turns snake_case into PascalCase.
func Pascal(s string) string {
	var b strings.Builder
	up := true
	for _, c := range s {
		if c == '_' || c == '-' {
			up = true
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		b.WriteRune(c)
	}
	return b.String()
}

// Catalogue lists every fixed metric, for the docs and the dashboard.
// Per-interface metrics are open-ended (whatever counters the driver has
// among those published) and are listed by NICCatalogue.
func Catalogue() []Spec {
	var out []Spec
	for _, m := range []map[string]Spec{hostSpecs, eventSpecs, jobSpecs, noticeSpecs} {
		for _, s := range m {
			out = append(out, s)
		}
	}
	out = append(out, correlatedSpike, agentLines, agentUnparsed, agentEvents, AgentSpoolBytes, AgentPublishFail, AgentDropped, CheckFailures,
		kernelLockups, instanceNotices, nicUnhealthy, nicAllowance, agentErrors)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// zeroFill lists the metrics published as 0 for quiet periods, by set.
func zeroFill(detailed bool) []Spec {
	var out []Spec
	for _, s := range Catalogue() {
		if s.ZeroFill && (detailed || !s.Detailed) && !(detailed && s.Name == agentErrors.Name) {
			out = append(out, s)
		}
	}
	return out
}

// Standard lists the per-instance metrics of the standard set.
func Standard() []Spec {
	var out []Spec
	for _, s := range Catalogue() {
		if !s.Detailed && !s.Fleet {
			out = append(out, s)
		}
	}
	return append(out, instanceJobRuns)
}

// NICCatalogue lists the per-interface metrics for the given counters.
func NICCatalogue(kind string, fields []string) []Spec {
	var out []Spec
	for _, f := range fields {
		out = append(out, nicSpec(kind, f))
	}
	return out
}
