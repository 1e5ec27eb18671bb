// Package dashboard generates a CloudWatch dashboard body for the
// agent's metrics, for one instance or for a fleet (an Auto Scaling
// group), using SEARCH expressions so that new jobs and interfaces show up
// without editing the dashboard.
package dashboard

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ec2diag/ec2diag/internal/alarm"
	"github.com/ec2diag/ec2diag/internal/fleet"
)

// Options select what the dashboard shows.
type Options struct {
	Namespace string
	Region    string
	// InstanceID for one instance; ASG for a fleet (its metrics must be
	// published with the AutoScalingGroupName dimension).
	InstanceID string
	ASG        string
	// ExtraDims are the configured cloudwatch.dimensions: part of every
	// metric's dimension set, so part of every search schema.
	ExtraDims []string
	// Detailed: the agents publish cloudwatch.metrics: detailed (per
	// interface, per instance and job); else the standard set.
	Detailed bool
	// FleetJobs: cloudwatch.job_names, whose metrics go by Job alone,
	// shared by the fleet (standard set).
	FleetJobs []string
	// LogGroup is where the agents ship incidents (cloudwatch_logs);
	// "" leaves out the Logs Insights widgets.
	LogGroup string
	// AccountID, when known, adds the reboot alarm's state (its ARN needs
	// the account).
	AccountID string
}

type widget struct {
	title   string
	names   []string
	stat    string
	dim     string // "", "Job" or "Interface"
	stacked bool
}

// standardWidgets show the standard set (cloudwatch.metrics: standard).
var standardWidgets = []widget{
	{title: "CPU busy and memory available (%)", names: []string{"CPUBusy", "MemoryAvailable", "CPUSteal", "SwapUsed"}, stat: "Average"},
	{title: "Spikes, correlated spikes, OOM kills, hung tasks, kernel lockups", names: []string{"Spikes", "CorrelatedSpikes", "OOMKills", "HungTasks", "KernelLockups"}, stat: "Sum"},
	{title: "Pressure stall information (avg10, %)", names: []string{"PSICPUSome", "PSIMemorySome", "PSIMemoryFull", "PSIIOFull"}, stat: "Maximum"},
	{title: "Job runs (all jobs)", names: []string{"JobRuns"}, stat: "Sum", stacked: true},
	{title: "ENA/EFA devices not healthy", names: []string{"NICUnhealthy"}, stat: "Maximum"},
	{title: "ENA allowance exceeded (packets, all interfaces)", names: []string{"NICAllowanceExceeded"}, stat: "Sum"},
	{title: "AWS notices, failed instance checks, agent errors", names: []string{"InstanceNotices", "InstanceCheckFailures", "AgentErrors"}, stat: "Maximum"},
	{title: "Stalled (1 = stalled; the liveness alarm reboots on it, and on it missing)", names: []string{"Stalled"}, stat: "Maximum"},
}

// fleetJobWidgets show the jobs in cloudwatch.job_names, by Job alone.
var fleetJobWidgets = []widget{
	{title: "Job runs by job (fleet)", names: []string{"JobRuns"}, stat: "Sum", dim: "Job", stacked: true},
	{title: "Job CPU seconds per run (fleet, max)", names: []string{"JobCPUSeconds"}, stat: "Maximum", dim: "Job"},
	{title: "Job peak RSS (fleet, bytes, max)", names: []string{"JobPeakRSS"}, stat: "Maximum", dim: "Job"},
	{title: "Job duration (fleet, s, max)", names: []string{"JobDuration"}, stat: "Maximum", dim: "Job"},
}

// Widgets, in order: what an SRE looks at after "what made it hang?"
// (cloudwatch.metrics: detailed).
var widgets = []widget{
	{title: "CPU busy and memory available (%)", names: []string{"CPUBusy", "MemoryAvailable", "CPUSteal", "CPUIOWait"}, stat: "Average"},
	{title: "Spikes, correlated spikes, OOM kills, hung tasks", names: []string{"Spikes", "CorrelatedSpikes", "OOMKills", "HungTasks", "SoftLockups"}, stat: "Sum"},
	{title: "Pressure stall information (avg10, %)", names: []string{"PSICPUSome", "PSIMemorySome", "PSIMemoryFull", "PSIIOSome", "PSIIOFull"}, stat: "Maximum"},
	{title: "Stalls: host stalled (1), disk stalled (s)", names: []string{"Stalled", "IOStalledSeconds"}, stat: "Maximum"},
	{title: "Job runs", names: []string{"JobRuns"}, stat: "Sum", dim: "Job", stacked: true},
	{title: "Job CPU seconds per run (max)", names: []string{"JobCPUSeconds"}, stat: "Maximum", dim: "Job"},
	{title: "Job peak RSS (bytes, max)", names: []string{"JobPeakRSS"}, stat: "Maximum", dim: "Job"},
	{title: "Job duration (s, max)", names: []string{"JobDuration"}, stat: "Maximum", dim: "Job"},
	{title: "ENA allowance exceeded (packets)", names: []string{"ENABwInAllowanceExceeded", "ENABwOutAllowanceExceeded", "ENAPpsAllowanceExceeded",
		"ENAConntrackAllowanceExceeded", "ENALinklocalAllowanceExceeded"}, stat: "Sum", dim: "Interface"},
	{title: "ENA health (1 = ok), resets, conntrack available", names: []string{"ENAHealthy", "ENATotalResets", "ENATxTimeout", "ENAConntrackAllowanceAvailable"}, stat: "Minimum", dim: "Interface"},
	{title: "EFA counters", names: []string{"EFAHealthy", "EFARxDrops", "EFARetransPkts", "EFACmdsErr", "EFARdmaReadWrErr", "EFARdmaWriteWrErr"}, stat: "Sum", dim: "Interface"},
	{title: "AWS notices: spot interruption, rebalance, scheduled events; resumes", names: []string{"SpotInterruptionNotice", "RebalanceRecommendation", "ScheduledEvents", "Resumes"}, stat: "Maximum"},
	{title: "ec2diag agent health", names: []string{"AgentLinesRead", "AgentParseErrors", "AgentEvents", "AgentPublishFailures", "AgentDatapointsDropped", "AgentSpoolBytes", "InstanceCheckFailures"}, stat: "Sum"},
}

// MetricNames lists every metric the detailed dashboard refers to.
func MetricNames() []string { return names(widgets) }

// StandardMetricNames lists every metric the standard dashboard refers to.
func StandardMetricNames() []string { return names(append(standardWidgets, fleetJobWidgets...)) }

func names(ws []widget) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.names...)
	}
	return out
}

// CheckASG refuses an Auto Scaling group name that would break out of the
// SEARCH expression's quotes or the header's markdown: a quote, a
// backslash, a backquote or a control character. AWS allows them in a
// name; a fleet that uses them gets a clear error, not a dashboard that
// queries something else.
func CheckASG(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("Auto Scaling group name of %d characters: at most 255", len(name))
	}
	for _, r := range name {
		if r == '\'' || r == '"' || r == '\\' || r == '`' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("Auto Scaling group name %q: quotes, backslashes, backquotes and control characters cannot be put in a dashboard's search expression", name)
		}
	}
	return nil
}

// CheckName refuses a dashboard name PutDashboard would not take: 1 to 255
// characters of A-Z, a-z, 0-9, - and _.
func CheckName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("dashboard name %q: want 1 to 255 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("dashboard name %q: want only letters, digits, - and _", name)
		}
	}
	return nil
}

// Body returns the dashboard body JSON.
func Body(o Options) (string, error) {
	if (o.InstanceID == "") == (o.ASG == "") {
		return "", fmt.Errorf("want exactly one of an instance id and an Auto Scaling group")
	}
	if o.Namespace == "" || o.Region == "" {
		return "", fmt.Errorf("namespace and region are required")
	}
	if err := CheckASG(o.ASG); err != nil {
		return "", err
	}
	schema := []string{o.Namespace, "InstanceId"}
	for _, d := range o.ExtraDims {
		if d != "InstanceId" && !(o.ASG != "" && d == "AutoScalingGroupName") {
			schema = append(schema, d)
		}
	}
	filter := fmt.Sprintf(`InstanceId=%q`, o.InstanceID)
	scope := o.InstanceID
	if o.ASG != "" {
		schema = append(schema, "AutoScalingGroupName")
		filter = fmt.Sprintf(`AutoScalingGroupName=%q`, o.ASG)
		scope = "Auto Scaling group " + o.ASG
	}
	var ws []map[string]any
	header := fmt.Sprintf("# ec2diag: %s\nFrom the ec2diag agent (namespace `%s`). Spikes with their cause are in `ec2diag incidents` on the instance and in the journal (`journalctl -u ec2diag -p crit`).", scope, o.Namespace)
	ws = append(ws, map[string]any{"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": map[string]any{"markdown": header}})
	list := widgets
	if !o.Detailed {
		list = standardWidgets
		if len(o.FleetJobs) > 0 {
			list = append(append([]widget(nil), list...), fleetJobWidgets...)
		}
	}
	for i, w := range list {
		sch := append([]string(nil), schema...)
		if w.dim != "" {
			sch = append(sch, w.dim)
		}
		fil := filter
		if !o.Detailed && w.dim == "Job" {
			// Fleet-wide: the Job dimension alone, no instance filter.
			sch, fil = []string{o.Namespace, "Job"}, ""
		}
		var names []string
		for _, n := range w.names {
			names = append(names, fmt.Sprintf("MetricName=%q", n))
		}
		expr := fmt.Sprintf("SEARCH('{%s} %s(%s)', '%s', 60)", strings.Join(sch, ","), fil+sp(fil), strings.Join(names, " OR "), w.stat)
		props := map[string]any{
			"title": w.title, "region": o.Region, "view": "timeSeries", "stacked": w.stacked, "period": 60, "stat": w.stat,
			"metrics": []any{[]any{map[string]any{"expression": expr, "id": fmt.Sprintf("e%d", i), "label": ""}}},
		}
		ws = append(ws, map[string]any{"type": "metric", "x": (i % 2) * 12, "y": 2 + (i/2)*6, "width": 12, "height": 6, "properties": props})
	}
	y := 2 + ((len(list)+1)/2)*6
	ws = append(ws, ec2Widgets(o, y)...)
	b, err := json.MarshalIndent(map[string]any{"widgets": ws}, "", "  ")
	return string(b), err
}

// ec2Widgets put EC2's own verdict beside the agent's: StatusCheckFailed
// (what the reboot alarm watches) and the alarm's state, then the
// incidents and most-blamed jobs from CloudWatch Logs.
func ec2Widgets(o Options, y int) []map[string]any {
	var ws []map[string]any
	metric := []any{"AWS/EC2", "StatusCheckFailed", "InstanceId", o.InstanceID}
	if o.ASG != "" {
		metric = []any{"AWS/EC2", "StatusCheckFailed", "AutoScalingGroupName", o.ASG}
	}
	// Beside EC2's check, the agent's own liveness figure: a kernel
	// answers the status check while its user space is livelocked, and
	// only the second line then says so.
	stalled := []any{o.Namespace, "Stalled", "InstanceId", o.InstanceID, map[string]any{"label": "ec2diag Stalled"}}
	if o.ASG != "" {
		stalled = []any{map[string]any{"expression": fmt.Sprintf("SEARCH('{%s,InstanceId,AutoScalingGroupName} AutoScalingGroupName=%q MetricName=\"Stalled\"', 'Maximum', 60)", o.Namespace, o.ASG),
			"id": "stalled", "label": ""}}
	}
	ws = append(ws, map[string]any{"type": "metric", "x": 0, "y": y, "width": 12, "height": 6, "properties": map[string]any{
		"title": "EC2 status check failed and ec2diag Stalled (the two reboot alarms' metrics)", "region": o.Region, "view": "timeSeries", "stat": "Maximum",
		"period": 60, "metrics": []any{metric, stalled}}})
	if o.AccountID != "" && o.InstanceID != "" {
		arn := func(name string) string {
			return fmt.Sprintf("arn:aws:cloudwatch:%s:%s:alarm:%s", o.Region, o.AccountID, name)
		}
		ws = append(ws, map[string]any{"type": "alarm", "x": 12, "y": y, "width": 12, "height": 6, "properties": map[string]any{
			"title": "Reboot alarms (ec2diag alarm install)", "alarms": []string{arn(alarm.RebootName(o.InstanceID)), arn(alarm.StalledName(o.InstanceID))}}})
	}
	if o.LogGroup == "" {
		return ws
	}
	f := fleet.Filter{Instance: o.InstanceID, ASG: o.ASG, Limit: 50}
	ws = append(ws,
		map[string]any{"type": "log", "x": 0, "y": y + 6, "width": 24, "height": 8, "properties": map[string]any{
			"title": "Incidents (CloudWatch Logs Insights; ec2diag fleet incidents)", "region": o.Region, "view": "table",
			"query": fleet.Source(o.LogGroup) + fleet.IncidentsQuery(f)}},
		map[string]any{"type": "log", "x": 0, "y": y + 14, "width": 12, "height": 6, "properties": map[string]any{
			"title": "Jobs most often blamed (ec2diag fleet jobs)", "region": o.Region, "view": "table",
			"query": fleet.Source(o.LogGroup) + fleet.TopJobsQuery(f)}})
	return ws
}

func sp(s string) string {
	if s == "" {
		return ""
	}
	return " "
}

// Panel is one graph of the dashboard, for other renderings of it (the
// Grafana dashboards): Names are catalogue metrics, Stat the CloudWatch
// statistic, Dim "", "Job" or "Interface".
type Panel struct {
	Title   string
	Names   []string
	Stat    string
	Dim     string
	Stacked bool
}

func panels(ws []widget) []Panel {
	var out []Panel
	for _, w := range ws {
		out = append(out, Panel{Title: w.title, Names: w.names, Stat: w.stat, Dim: w.dim, Stacked: w.stacked})
	}
	return out
}

// StandardPanels are the graphs of the standard set, per instance.
func StandardPanels() []Panel { return panels(standardWidgets) }

// FleetJobPanels are the graphs of the per-job figures published by Job
// alone (cloudwatch.job_names).
func FleetJobPanels() []Panel { return panels(fleetJobWidgets) }

// DetailedPanels are the graphs of cloudwatch.metrics: detailed.
func DetailedPanels() []Panel { return panels(widgets) }
