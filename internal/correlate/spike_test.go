package correlate

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 10, 21, 4, 49, 0, 0, time.UTC)

// idle is a quiet host: nothing high, everything low.
func idle() Host { return Host{CPUBusy: 5, MemAvailPct: 80} }

func TestDetectorTransitions(t *testing.T) {
	cpu := func(busy float64) Host { return Host{CPUBusy: busy, MemAvailPct: 80} }
	mem := func(avail float64) Host { return Host{CPUBusy: 20, MemAvailPct: avail} }
	psi := func(full float64) Host { return Host{CPUBusy: 20, MemAvailPct: 80, PSIMemFull: full} }
	cases := []struct {
		name    string
		samples []Host
		want    []Transition
		reason  string // a reason the spike carries at its end (or last sample)
		onsetAt int    // index of the sample the onset is back-dated to; -1: no onset
	}{
		{"quiet", []Host{idle(), idle(), idle()}, []Transition{None, None, None}, "", -1},
		{"one busy second is not an incident", []Host{cpu(95), cpu(50), cpu(95), cpu(50)}, []Transition{None, None, None, None}, "", -1},
		{"two busy samples start a spike, back-dated to the first",
			[]Host{idle(), cpu(95), cpu(99)}, []Transition{None, None, Onset}, "CPU 99% busy", 1},
		{"exactly at the threshold counts", []Host{cpu(90), cpu(90)}, []Transition{None, Onset}, "CPU 90% busy", 0},
		{"memory starts a spike at once", []Host{idle(), mem(9.5)}, []Transition{None, Onset}, "memory available 9.5%", 1},
		{"PSI full starts a spike at once", []Host{psi(30)}, []Transition{Onset}, "memory pressure (PSI full) 30%", 0},
		{"ends after three low samples",
			[]Host{cpu(95), cpu(95), cpu(60), cpu(60), cpu(60)}, []Transition{None, Onset, None, None, End}, "", 0},
		{"a sample between the thresholds is not low: the count starts again",
			[]Host{cpu(95), cpu(95), cpu(60), cpu(60), cpu(80), cpu(60), cpu(60), cpu(60)},
			[]Transition{None, Onset, None, None, None, None, None, End}, "", 0},
		{"memory clears only at the high mark (hysteresis)",
			[]Host{mem(8), mem(12), mem(12), mem(12), mem(16), mem(16), mem(16)},
			[]Transition{Onset, None, None, None, None, None, End}, "", 0},
		{"PSI clears only under half its threshold",
			[]Host{psi(12), psi(6), psi(6), psi(6), psi(4), psi(4), psi(4)},
			[]Transition{Onset, None, None, None, None, None, End}, "", 0},
		{"unknown memory (0) is neither a spike nor a bar to its end",
			[]Host{{CPUBusy: 95}, {CPUBusy: 95}, {CPUBusy: 10}, {CPUBusy: 10}, {CPUBusy: 10}},
			[]Transition{None, Onset, None, None, End}, "", 0},
		{"a new spike after the end needs its own run of high samples",
			[]Host{cpu(95), cpu(95), cpu(10), cpu(10), cpu(10), cpu(95), cpu(95)},
			[]Transition{None, Onset, None, None, End, None, Onset}, "", 5},
		{"reasons gather over the spike, one per kind, latest figure",
			[]Host{cpu(95), cpu(96), {CPUBusy: 97, MemAvailPct: 7}, {CPUBusy: 98, MemAvailPct: 6}},
			[]Transition{None, Onset, None, None}, "memory available 6.0%", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &Detector{T: DefaultThresholds()}
			onset := -1
			for i, h := range c.samples {
				h.Time = t0.Add(time.Duration(i) * time.Second)
				got := d.Observe(h)
				if got != c.want[i] {
					t.Fatalf("sample %d (%+v): %v, want %v", i, h, got, c.want[i])
				}
				if got == Onset {
					_, at := d.Active()
					onset = int(at.Sub(t0) / time.Second)
				}
			}
			if onset != c.onsetAt {
				t.Errorf("onset back-dated to sample %d, want %d", onset, c.onsetAt)
			}
			if c.reason != "" && !contains(Strings(d.Reasons), c.reason) {
				t.Errorf("reasons %q lack %q", d.Reasons, c.reason)
			}
		})
	}
}

func TestReasonsKeepOnePerKind(t *testing.T) {
	d := &Detector{T: DefaultThresholds()}
	for i, h := range []Host{{CPUBusy: 95, MemAvailPct: 5}, {CPUBusy: 99, MemAvailPct: 4}, {CPUBusy: 50, MemAvailPct: 3}} {
		h.Time = t0.Add(time.Duration(i) * time.Second)
		d.Observe(h)
	}
	want := []string{"memory available 3.0%", "CPU 99% busy"}
	if strings.Join(Strings(d.Reasons), "|") != strings.Join(want, "|") {
		t.Errorf("reasons %q, want %q", d.Reasons, want)
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func TestBootAndShortSamples(t *testing.T) {
	feed := func(d *Detector, hs []Host, step time.Duration) []Transition {
		var out []Transition
		for i, h := range hs {
			h.Time = t0.Add(time.Duration(i) * step)
			out = append(out, d.Observe(h))
		}
		return out
	}
	boot := Host{CPUBusy: 100, MemAvailPct: 70, Booting: true}
	// A boot is 100% CPU by itself: the agent blamed that on systemd and on
	// itself at every boot of a real VM.
	d := &Detector{T: DefaultThresholds()}
	if got := feed(d, []Host{boot, boot, boot, boot}, 5*time.Second); got[3] != None {
		t.Errorf("CPU during boot made an incident: %v", got)
	}
	// Once the boot is over the same load is a spike, counted from then.
	d = &Detector{T: DefaultThresholds()}
	after := boot
	after.Booting = false
	got := feed(d, []Host{boot, boot, after, after}, 5*time.Second)
	if got[2] != None || got[3] != Onset {
		t.Errorf("after boot: %v", got)
	}
	if _, on := d.Active(); !on.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("onset %v, want the first sample after boot", on)
	}
	// Memory makes an incident at boot too: a unit that eats memory at boot
	// can hang the machine before anyone logs in.
	d = &Detector{T: DefaultThresholds()}
	if got := feed(d, []Host{{CPUBusy: 100, MemAvailPct: 4, Booting: true}}, time.Second); got[0] != Onset {
		t.Errorf("memory at boot: %v", got)
	}
	// Samples a tenth of a second apart (nudged by job starts) are not a
	// sustained spike until CPUFor has passed.
	th := DefaultThresholds()
	th.CPUFor = 4 * time.Second
	d = &Detector{T: th}
	busy := Host{CPUBusy: 99, MemAvailPct: 70}
	got = feed(d, []Host{busy, busy, busy, busy, busy}, 100*time.Millisecond)
	for _, g := range got {
		if g != None {
			t.Fatalf("a 0.4 s burst made an incident: %v", got)
		}
	}
	d = &Detector{T: th}
	if got := feed(d, []Host{busy, busy}, 5*time.Second); got[1] != Onset {
		t.Errorf("two samples 5 s apart: %v", got)
	}
}

// Memory read as exactly 0% available is exhaustion, not "unknown": the
// VM's thrash read 0.0% and its spike ended while memory was gone.
func TestZeroMemoryAvailableKeepsTheSpike(t *testing.T) {
	d := &Detector{T: DefaultThresholds()}
	gone := Host{CPUBusy: 5, MemAvailPct: 0, MemKnown: true}
	var got []Transition
	for i := 0; i < 6; i++ {
		gone.Time = t0.Add(time.Duration(i) * time.Second)
		got = append(got, d.Observe(gone))
	}
	if got[0] != Onset {
		t.Fatalf("0%% available did not start a spike: %v", got)
	}
	for _, g := range got[1:] {
		if g == End {
			t.Fatalf("the spike ended with no memory left: %v", got)
		}
	}
}
