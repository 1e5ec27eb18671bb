package suspend

import (
	"testing"
	"time"
)

func TestDetectorTellsSleepFromClockStep(t *testing.T) {
	d := &Detector{Threshold: 2 * time.Second}
	s := time.Second
	steps := []struct {
		boot, mono, real time.Duration
		want             Change
	}{
		{100 * s, 100 * s, 1000 * s, Change{}},
		{105 * s, 105 * s, 1005 * s, Change{}},                      // normal
		{705 * s, 110 * s, 1605 * s, Change{Slept: 595 * s}},        // 10 min hibernated: boot jumps, mono does not; wall follows boot
		{710 * s, 115 * s, 1670 * s, Change{Stepped: 60 * s}},       // NTP stepped the wall clock forward a minute
		{715 * s, 120 * s, 1675*s + 500*time.Millisecond, Change{}}, // noise below the threshold
	}
	for i, st := range steps {
		if got := d.Observe(st.boot, st.mono, st.real); got != st.want {
			t.Errorf("step %d: %+v, want %+v", i, got, st.want)
		}
	}
}

// On a running machine the real clocks show neither.
func TestRealClocksShowNoSleep(t *testing.T) {
	d := &Detector{Threshold: 2 * time.Second}
	d.Observe(System())
	time.Sleep(200 * time.Millisecond)
	if ch := d.Observe(System()); ch != (Change{}) {
		t.Errorf("awake machine: %+v", ch)
	}
}
