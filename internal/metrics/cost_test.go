package metrics

import (
	"math"
	"testing"
)

func TestMonthlyCostTiers(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want float64
	}{
		{0, 0}, {1, 0.30}, {19, 5.70}, {10000, 3000},
		{10001, 3000.10}, {250000, 3000 + 24000}, {1000000, 3000 + 24000 + 37500},
		{1270000, 3000 + 24000 + 37500 + 5400}, // the 127-metric default of before, on 10,000 instances
	} {
		if got := MonthlyCost(tc.n); math.Abs(got-tc.want) > 0.001 {
			t.Errorf("MonthlyCost(%d) = %.2f, want %.2f", tc.n, got, tc.want)
		}
	}
}

func TestEstimateStandardIgnoresJobsAndInterfaces(t *testing.T) {
	a := Estimate(false, nil, 20, 2, 0)
	b := Estimate(false, nil, 20, 8, 4)
	if a != b || a.PerInstance > 20 {
		t.Errorf("standard: %+v and %+v, want the same and at most 20", a, b)
	}
	if d := Estimate(true, nil, 20, 2, 0); d.PerInstance < 100 {
		t.Errorf("detailed with 2 ENA and 20 jobs: %d, want over 100 (it measured 127)", d.PerInstance)
	}
}
