package metrics

import (
	"fmt"
	"sort"
	"strings"
)

// PromQuery is the PromQL that shows the catalogue metric name from the
// agent's own Prometheus endpoint (internal/sink/prom), which names a
// sample's field ec2diag_<source>_<field> and counts events as
// ec2diag_events_total{type}. sel holds the label matchers every series
// gets (`instance=~"$instance"`), window the range of increase(). It is
// derived from the same tables the CloudWatch aggregator uses, so a
// Grafana panel and a CloudWatch widget of one name show one figure.
// ok is false where the endpoint has no such series: per-job figures (a
// job name would be an unbounded label), CorrelatedSpikes, and the
// CloudWatch sink's own failures.
func PromQuery(name, sel, window string) (expr string, ok bool) {
	series := func(metric string) string { return fmt.Sprintf("%s{%s}", metric, sel) }
	events := func(typeRE string) string {
		return fmt.Sprintf(`sum by (instance) (increase(ec2diag_events_total{type=~"%s",%s}[%s]))`, typeRE, sel, window)
	}
	for k, s := range hostSpecs {
		if s.Name == name {
			return series("ec2diag_host_" + k), true
		}
	}
	for k, s := range eventSpecs {
		if s.Name == name {
			return events(k), true
		}
	}
	for k, s := range noticeSpecs {
		if s.Name == name {
			return series("ec2diag_imdsevents_" + k), true
		}
	}
	switch name {
	case kernelLockups.Name:
		return events("soft_lockup|rcu_stall"), true
	case instanceJobRuns.Name:
		return events("job_run"), true
	case instanceNotices.Name:
		var ks []string
		for k := range noticeSpecs {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return fmt.Sprintf(`sum by (instance) ({__name__=~"ec2diag_imdsevents_(%s)",%s})`, strings.Join(ks, "|"), sel), true
	case CheckFailures.Name:
		return series("ec2diag_instancecheck_fail"), true
	case nicUnhealthy.Name:
		return fmt.Sprintf("sum by (instance) (1 - ec2diag_nethealth_healthy{%s})", sel), true
	case nicAllowance.Name:
		return fmt.Sprintf(`sum by (instance) ({__name__=~"ec2diag_nethealth_.*_allowance_exceeded",%s})`, sel), true
	}
	// Per-interface counters: ENA<Pascal(field)> and EFA<...>.
	for _, kind := range []string{"ENA", "EFA"} {
		if f, ok := strings.CutPrefix(name, kind); ok && f != "" && f[0] >= 'A' && f[0] <= 'Z' {
			return fmt.Sprintf(`ec2diag_nethealth_%s{kind="%s",%s}`, snake(f), strings.ToLower(kind), sel), true
		}
	}
	return "", false
}

// snake undoes Pascal: BwInAllowanceExceeded -> bw_in_allowance_exceeded.
func snake(s string) string {
	var b strings.Builder
	for i, c := range s {
		if c >= 'A' && c <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}
