package metrics

import "fmt"

// CloudWatch's list price for custom metrics per metric-month (us-east-1,
// 2026; re-check before quoting): tiers by the account's total count.
var priceTiers = []struct {
	upTo  int // metrics in this tier and below
	price float64
}{{10000, 0.30}, {250000, 0.10}, {1000000, 0.05}, {1 << 62, 0.02}}

// MonthlyCost is what n custom metrics in one account cost per month at
// list price, tier by tier.
func MonthlyCost(n int) float64 {
	var cost float64
	prev := 0
	for _, t := range priceTiers {
		if n <= prev {
			break
		}
		in := min(n, t.upTo) - prev
		cost += float64(in) * t.price
		prev = t.upTo
	}
	return cost
}

// MetricCount is how many custom metrics one instance publishes, and how many
// fleet-wide ones (Job alone) the fleet shares.
type MetricCount struct {
	PerInstance int
	Fleet       int
}

// Per-interface metrics the detailed set publishes, as counted by the
// publishing benchmark (ENA: 13 counters and gauges; EFA: about 6).
const (
	detailedPerENA = 13
	detailedPerEFA = 6
)

// Estimate counts the metrics a config publishes on a host with the given
// interfaces. The standard set does not depend on jobs or interfaces.
func Estimate(detailed bool, jobNames []string, maxJobNames, enaIfaces, efaDevs int) MetricCount {
	if !detailed {
		return MetricCount{PerInstance: len(Standard()), Fleet: 4 * len(jobNames)}
	}
	n := 0
	for _, s := range Catalogue() {
		if !s.Fleet && s.Name != agentErrors.Name && s.Name != kernelLockups.Name && s.Name != instanceNotices.Name &&
			s.Name != nicUnhealthy.Name && s.Name != nicAllowance.Name {
			n++
		}
	}
	jobs := maxJobNames + 1 // and "other"
	if len(jobNames) > 0 {
		jobs = len(jobNames) + 1
	}
	return MetricCount{PerInstance: n + 4*jobs + detailedPerENA*enaIfaces + detailedPerEFA*efaDevs}
}

// Describe says what a count costs for one instance and for fleets of 100
// and 10,000, at list price.
func (c MetricCount) Describe() string {
	one := MonthlyCost(c.PerInstance + c.Fleet)
	s := fmt.Sprintf("%d custom metrics per instance", c.PerInstance)
	if c.Fleet > 0 {
		s += fmt.Sprintf(" + %d fleet-wide (Job alone, shared)", c.Fleet)
	}
	return s + fmt.Sprintf(": about $%.2f a month for one instance, $%.0f for 100, $%.0f for 10,000 (list price)",
		one, MonthlyCost(100*c.PerInstance+c.Fleet), MonthlyCost(10000*c.PerInstance+c.Fleet))
}
