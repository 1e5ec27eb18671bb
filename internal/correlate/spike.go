// Package correlate holds the pure logic of ec2diag's core: spike onset and
// end with hysteresis, and the verdict on which job run and which processes
// caused a spike. No clock, no I/O: everything comes in as arguments, so the
// rules are tested as tables.
package correlate

import (
	"time"
)

// Host is one host sample.
type Host struct {
	Time        time.Time
	CPUBusy     float64 // % of all CPUs, steal excluded
	CPUSteal    float64
	MemAvailPct float64 // MemAvailable / MemTotal
	// MemKnown says MemAvailPct was read: 0 is then a real 0 (the VM's
	// thrash read exactly 0.0%, and the spike "ended" as memory ran out).
	// Without it 0 means unknown.
	MemKnown    bool    `json:",omitempty"`
	PSIMemFull  float64 // avg10 %
	PSIMemSome  float64
	PSICPUSome  float64
	SwapUsedPct float64 `json:",omitempty"`
	// PSIIOSome and PSIIOFull are /proc/pressure/io avg10 %.
	PSIIOSome float64 `json:",omitempty"`
	PSIIOFull float64 `json:",omitempty"`
	// IOStalled is how long a disk has had requests in flight and
	// (almost) none completing; IODevice is that disk.
	IOStalled time.Duration `json:",omitempty"`
	IODevice  string        `json:",omitempty"`
	// Booting: the machine is still starting. A boot runs the CPU at 100%
	// by itself; only memory makes an incident then.
	Booting bool `json:",omitempty"`
}

// Thresholds define a spike. Defaults (see DefaultThresholds) are those of
// the docs: CPU at 90% for 2 samples and back under 70% for 3; memory when
// MemAvailable falls to 10% (earlyoom acts at the same level) and clears at
// 15%; PSI memory full avg10 at 10% (tasks stalled on memory a tenth of the
// time: the thrash livelock of the incident shows 30-90%).
type Thresholds struct {
	CPUHigh, CPULow           float64
	EnterSamples, ExitSamples int
	MemAvailLow, MemAvailHigh float64
	PSIMemFull                float64
	// CPUFor is how long CPU must stay high, besides EnterSamples samples:
	// samples come early when a job starts or a PSI trigger fires, and
	// two of them a tenth of a second apart are not a sustained spike.
	CPUFor time.Duration
	// PSIIOFull: I/O pressure (PSI io full avg10 %) that is a spike at
	// once; 0 turns it off.
	PSIIOFull float64
	// IOStallFor: a disk stalled this long is a spike at once; 0 off.
	IOStallFor time.Duration
	// CPUStealHigh: CPU withheld by the hypervisor (steal %) that makes a
	// spike after EnterSamples, like CPU busy; 0 off.
	CPUStealHigh float64
}

// DefaultThresholds returns the documented defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{CPUHigh: 90, CPULow: 70, EnterSamples: 2, ExitSamples: 3, MemAvailLow: 10, MemAvailHigh: 15, PSIMemFull: 10,
		PSIIOFull: 90, IOStallFor: 10 * time.Second, CPUStealHigh: 30}
}

// Transition is what Observe reports.
type Transition int

const (
	None Transition = iota
	Onset
	End
)

// Detector tracks one spike at a time.
type Detector struct {
	T       Thresholds
	active  bool
	highRun int
	lowRun  int
	first   time.Time // first high sample of the current run
	onset   time.Time
	Reasons []Reason // why the current spike is a spike, one per kind
}

func (d *Detector) high(h Host) []Reason {
	var r []Reason
	if h.CPUBusy >= d.T.CPUHigh && (d.active || !h.Booting) {
		r = append(r, Reason{ReasonCPU, h.CPUBusy})
	}
	if h.memKnown() && h.MemAvailPct <= d.T.MemAvailLow {
		r = append(r, Reason{ReasonMemAvailable, h.MemAvailPct})
	}
	if d.T.PSIMemFull > 0 && h.PSIMemFull >= d.T.PSIMemFull {
		r = append(r, Reason{ReasonMemPressure, h.PSIMemFull})
	}
	if d.ioStalled(h) {
		r = append(r, Reason{ReasonIOStall, h.IOStalled.Seconds()})
	}
	if d.T.PSIIOFull > 0 && h.PSIIOFull >= d.T.PSIIOFull && (d.active || !h.Booting) {
		// A boot reads everything from disk at once: like CPU, not an
		// incident then (a disk that stops completing still is).
		r = append(r, Reason{ReasonIOPressure, h.PSIIOFull})
	}
	if d.T.CPUStealHigh > 0 && h.CPUSteal >= d.T.CPUStealHigh {
		r = append(r, Reason{ReasonCPUSteal, h.CPUSteal})
	}
	return r
}

func (d *Detector) ioStalled(h Host) bool { return d.T.IOStallFor > 0 && h.IOStalled >= d.T.IOStallFor }

// immediate reports whether h holds a reason that makes a spike at once:
// memory and I/O can hang a machine before a second sample.
func (d *Detector) immediate(h Host) bool {
	return h.memKnown() && h.MemAvailPct <= d.T.MemAvailLow || d.T.PSIMemFull > 0 && h.PSIMemFull >= d.T.PSIMemFull ||
		d.ioStalled(h) || d.T.PSIIOFull > 0 && h.PSIIOFull >= d.T.PSIIOFull && !h.Booting
}

func (d *Detector) low(h Host) bool {
	return h.CPUBusy < d.T.CPULow && (!h.memKnown() || h.MemAvailPct >= d.T.MemAvailHigh) && (d.T.PSIMemFull == 0 || h.PSIMemFull < d.T.PSIMemFull/2) &&
		h.IOStalled == 0 && (d.T.PSIIOFull == 0 || h.PSIIOFull < d.T.PSIIOFull/2) &&
		(d.T.CPUStealHigh == 0 || h.CPUSteal < d.T.CPUStealHigh*0.7)
}

// Calm reports whether h is far from a spike: none on, none building up,
// and every figure on the clear side of its exit level. Only then may the
// costly per-process evidence be gathered less often.
func (d *Detector) Calm(h Host) bool {
	return !d.active && d.highRun == 0 && d.low(h)
}

func (h Host) memKnown() bool { return h.MemKnown || h.MemAvailPct > 0 }

// Active reports whether a spike is on, and since when (back-dated to the
// first high sample of the run that started it).
func (d *Detector) Active() (bool, time.Time) { return d.active, d.onset }

// Observe feeds one sample. Memory and PSI conditions start a spike at
// once (a thrash can hang the box before a second sample); CPU needs
// EnterSamples in a row, so a one-off busy second is not an incident.
func (d *Detector) Observe(h Host) Transition {
	if !d.active {
		r := d.high(h)
		if len(r) == 0 {
			d.highRun = 0
			return None
		}
		if d.highRun == 0 {
			d.first = h.Time
		}
		d.highRun++
		if d.highRun >= d.T.EnterSamples && h.Time.Sub(d.first) >= d.T.CPUFor || d.immediate(h) {
			d.active, d.onset, d.Reasons, d.lowRun = true, d.first, r, 0
			return Onset
		}
		return None
	}
	if r := d.high(h); len(r) > 0 {
		d.Reasons = mergeReasons(d.Reasons, r)
	}
	if d.low(h) {
		d.lowRun++
		if d.lowRun >= d.T.ExitSamples {
			d.active, d.highRun = false, 0
			return End
		}
	} else {
		d.lowRun = 0
	}
	return None
}

// mergeReasons keeps one reason per kind, the latest figure.
func mergeReasons(old, cur []Reason) []Reason {
	out := append([]Reason(nil), cur...)
	for _, o := range old {
		found := false
		for _, c := range cur {
			if c.Kind == o.Kind {
				found = true
			}
		}
		if !found {
			out = append(out, o)
		}
	}
	return out
}
