package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/console"
)

// stuckDisk is a store whose writes block until released, as every write
// to a stalled EBS volume does.
type stuckDisk struct {
	mu      sync.Mutex
	release chan struct{}
	got     []evidence.Kind
}

func (s *stuckDisk) Append(kind evidence.Kind, incident string, t time.Time, data any, sync bool) (Record, error) {
	<-s.release
	s.mu.Lock()
	s.got = append(s.got, kind)
	s.mu.Unlock()
	return Record{}, nil
}

// While the disk does not take writes, the recorder's records do not wait
// for it: the console says the onset at once, and the records reach the
// store in order once the disk comes back, none lost.
func TestEvidenceDoesNotWaitForTheDisk(t *testing.T) {
	kmsg := filepath.Join(t.TempDir(), "kmsg")
	os.WriteFile(kmsg, nil, 0o644)
	disk := &stuckDisk{release: make(chan struct{})}
	k := &Keeper{Store: disk, Console: &console.Console{Path: kmsg}}
	d := &evidence.Incident{Reasons: []string{"disk stalled 12 s"}, ReasonKinds: []correlate.ReasonKind{correlate.ReasonIOStall},
		Verdict: correlate.Verdict{Cause: "job backup.sh"}}
	done := make(chan struct{})
	go func() {
		k.Incident(evidence.KindOnset, "X", time.Now(), d)
		for i := 0; i < 10; i++ {
			k.Incident(evidence.KindSnapshot, "X", time.Now(), d)
			k.JobRun(time.Now(), &evidence.JobRun{ID: "r", Job: "j"})
		}
		k.Incident(evidence.KindEnd, "X", time.Now(), d)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the recorder waited for a stalled disk")
	}
	if b, _ := os.ReadFile(kmsg); !strings.Contains(string(b), "ec2diag: spike X (disk stalled 12 s): cause job backup.sh") {
		t.Fatalf("console: %q", b)
	}
	if n, _ := k.Pending(); n != 22 {
		t.Errorf("%d records waiting, want 22", n)
	}
	close(disk.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := k.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(disk.got) != 22 || disk.got[0] != evidence.KindOnset || disk.got[21] != evidence.KindEnd {
		t.Errorf("store got %v; want all 22, onset first, end last", disk.got)
	}
}

// A queue that outgrows its bound leaves out job-run summaries first,
// then the oldest snapshots, never an onset or an end, and counts them.
func TestStalledQueueIsBounded(t *testing.T) {
	disk := &stuckDisk{release: make(chan struct{})}
	k := &Keeper{Store: disk, MaxQueued: 4000}
	d := &evidence.Incident{Verdict: correlate.Verdict{Cause: strings.Repeat("x", 900)}}
	k.Incident(evidence.KindOnset, "X", time.Now(), d)
	for i := 0; i < 20; i++ {
		k.Incident(evidence.KindSnapshot, "X", time.Now(), d)
		k.JobRun(time.Now(), &evidence.JobRun{ID: "r", Job: "j"})
	}
	k.Incident(evidence.KindEnd, "X", time.Now(), d)
	n, dropped := k.Pending()
	if n > 5 || dropped == 0 {
		t.Fatalf("%d queued, %d dropped; want the bound kept", n, dropped)
	}
	close(disk.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k.Flush(ctx)
	if disk.got[0] != evidence.KindOnset || disk.got[len(disk.got)-1] != evidence.KindEnd {
		t.Errorf("kept %v; want the onset and the end", disk.got)
	}
}
