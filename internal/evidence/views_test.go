package evidence

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
)

func rec(t *testing.T, kind Kind, id string, at time.Time, boot string, btime int64, data any) Record {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return Record{Kind: kind, Incident: id, Time: at, BootID: boot, BootTime: btime, Data: b}
}

// A crash found at the start of boot C about boot B is B's: listed under
// --boot -1 with C running, and B's unfinished incident says the kernel
// panicked rather than "may have hung it".
func TestCrashBelongsToTheBootThatCrashed(t *testing.T) {
	bA, bB, bC := time.Unix(1_000_000, 0), time.Unix(1_100_000, 0), time.Unix(1_200_000, 0)
	onset := bB.Add(time.Hour)
	crash := &Crash{Time: onset.Add(2 * time.Minute), BootID: "B", BootTime: bB.Unix(), Kind: "panic",
		Reason: "Kernel panic - not syncing: NMI: Not continuing", NMI: true, Task: "PID 9 (yes)", Files: []string{"pstore:dmesg-ramoops-0"}}
	recs := []Record{
		rec(t, KindOnset, "old", bA.Add(time.Hour), "A", bA.Unix(), Incident{Onset: bA.Add(time.Hour), Reasons: []string{"CPU 99% busy"}}),
		rec(t, KindOnset, "busy", onset, "B", bB.Unix(), Incident{Onset: onset, Reasons: []string{"CPU 99% busy"}, Verdict: correlate.Verdict{Cause: "job nmi.sh"}}),
		rec(t, KindCrash, CrashID(crash), bC.Add(30*time.Second), "C", bC.Unix(), crash),
	}
	vs := Views(recs, "C", bC.Unix())
	if len(vs) != 3 {
		t.Fatalf("%d views, want 3: %+v", len(vs), vs)
	}
	busy, kv := vs[1], vs[2]
	if kv.Crash == nil || kv.Boot != -1 || kv.ID != CrashID(crash) || kv.ReasonKinds[0] != correlate.ReasonKernelCrash {
		t.Errorf("crash view: %+v", kv)
	}
	if !strings.Contains(kv.Cause, "diagnostic interrupt") || !strings.Contains(kv.Cause, "PID 9 (yes)") {
		t.Errorf("crash cause: %q", kv.Cause)
	}
	if busy.Boot != -1 || !strings.Contains(busy.Unfinished, "the kernel panicked") || !strings.Contains(busy.Unfinished, kv.ID) {
		t.Errorf("busy incident of the crashed boot: boot %d, unfinished %q", busy.Boot, busy.Unfinished)
	}
	if vs[0].Boot != -2 || vs[0].Unfinished != Unfinished {
		t.Errorf("the boot before keeps its own story: %+v", vs[0])
	}
	// The same dump recorded again (a state file lost) is one crash.
	recs = append(recs, recs[2])
	if n := len(Views(recs, "C", bC.Unix())); n != 3 {
		t.Errorf("a crash recorded twice made %d views", n)
	}
}

// When the agent did not run in the boot that crashed, the crash is the
// boot before the one that recorded it: it still counts as a boot.
func TestCrashOfABootWithoutRecords(t *testing.T) {
	bA, bC := time.Unix(1_000_000, 0), time.Unix(1_200_000, 0)
	crash := &Crash{Time: bC.Add(-time.Hour), Kind: "oops", Reason: "BUG: kernel NULL pointer dereference", Files: []string{"kdump:x/dmesg.x"}}
	recs := []Record{
		rec(t, KindOnset, "old", bA.Add(time.Hour), "A", bA.Unix(), Incident{Onset: bA.Add(time.Hour)}),
		rec(t, KindCrash, CrashID(crash), bC.Add(30*time.Second), "C", bC.Unix(), crash),
	}
	vs := Views(recs, "C", bC.Unix())
	if len(vs) != 2 || vs[1].Crash == nil || vs[1].Boot != -1 || !strings.Contains(vs[1].Cause, "oopsed") {
		t.Fatalf("views: %+v", vs)
	}
}
