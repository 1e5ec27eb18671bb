package imdsevents

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/imds"
	"github.com/ec2diag/ec2diag/internal/testkit"
)

func getter(url string) Getter {
	o := imds.Options{Endpoint: url, Timeout: 2 * time.Second}
	return func(ctx context.Context, p string) (string, bool, error) { return imds.Get(ctx, o, p) }
}

type rec struct {
	mu sync.Mutex
	rs []collectors.Record
}

func (r *rec) Emit(_ context.Context, x collectors.Record) error {
	r.mu.Lock()
	r.rs = append(r.rs, x)
	r.mu.Unlock()
	return nil
}
func (r *rec) Ready() {}
func (r *rec) events(typ string) (n int, last collectors.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.rs {
		if string(x.Type) == typ {
			n++
			last = x
		}
	}
	return
}

// Against the real IMDS mock: no notice, then a spot interruption notice
// three seconds in after a rebalance recommendation at two seconds, each
// logged once however often it is polled.
func TestSpotInterruptionFromRealIMDSMock(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	const rebalanceAfter = 2 * time.Second
	// The mock's delays run from its own start, not from the first
	// request, and a loaded machine can take longer than them just to
	// start it; so "nothing yet" is only asserted for a poll that ended
	// before the earliest moment the mock can have started plus the delay.
	before := time.Now()
	url := testkit.StartAEMM(t, testkit.AEMMOptions{Args: []string{"spot", "-d", "3", "-a", "stop", "--rebalance-delay-sec", "2"}})
	c := &Collector{Get: getter(url), Interval: 200 * time.Millisecond}
	ns, m, err := c.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(before) < rebalanceAfter {
		if len(ns) != 0 || m["spot_interruption"] != 0 {
			t.Fatalf("before the notice: %v %v", ns, m)
		}
	} else {
		t.Logf("the mock took %v to start; the before-notice check is skipped", time.Since(before))
	}
	r := &rec{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Run(ctx, r)
	n, last := r.events("spot_interruption")
	if n != 1 || last.Dims["action"] != "stop" || last.Dims["deadline"] == "" {
		t.Fatalf("spot_interruption events: %d, last %+v", n, last)
	}
	if n, _ := r.events("rebalance_recommendation"); n != 1 {
		t.Errorf("rebalance_recommendation events: %d, want 1", n)
	}
	samples, s := r.events("imdsevents")
	if samples < 5 || s.Metrics["spot_interruption"] != 1 {
		t.Errorf("samples %d, last %v", samples, s.Metrics)
	}
	t.Log(last.Message)
}

func TestScheduledEventFromRealIMDSMock(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	url := testkit.StartAEMM(t, testkit.AEMMOptions{Args: []string{"events", "-o", "instance-stop", "-t", "active"}})
	c := &Collector{Get: getter(url)}
	ns, m, err := c.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m["scheduled_events"] != 1 || len(ns) != 1 || ns[0].Action != "instance-stop" || ns[0].ID == "" {
		t.Fatalf("notices %+v, metrics %v", ns, m)
	}
	t.Log(ns[0].Message)
}

// Garbage from IMDS is an error reported once, not a crash.
func TestBadAnswersAreErrorsNotPanics(t *testing.T) {
	bad := func(ctx context.Context, p string) (string, bool, error) { return "{not json", true, nil }
	c := &Collector{Get: bad}
	if _, _, err := c.Poll(context.Background()); err == nil {
		t.Fatal("no error for malformed answers")
	}
}

// IMDS answers are outside input: whatever the three paths return, Poll
// reports notices or an error and never panics; every notice has a kind
// and a message, and the figures count what was reported.
func FuzzPoll(f *testing.F) {
	f.Add(`{"action":"terminate","time":"2026-11-27T03:29:30Z"}`, `{"noticeTime":"2026-11-27T03:29:30Z"}`,
		`[{"Code":"system-reboot","Description":"scheduled reboot","EventId":"instance-event-0d59937288b749b32","NotBefore":"21 Jan 2019 09:00:43 GMT","NotAfter":"21 Jan 2019 09:17:23 GMT","State":"active"}]`)
	f.Add("", "", "")
	f.Add("null", "null", "null")
	f.Add("{", "[", `[{"State":"completed"}]`)
	f.Fuzz(func(t *testing.T, spot, rebalance, scheduled string) {
		answers := map[string]string{"spot/instance-action": spot, "events/recommendations/rebalance": rebalance, "events/maintenance/scheduled": scheduled}
		get := func(_ context.Context, p string) (string, bool, error) {
			v := answers[p]
			return v, v != "", nil
		}
		ns, m, _ := (&Collector{Get: get}).Poll(context.Background())
		kinds := map[string]float64{}
		for _, n := range ns {
			if n.Kind == "" || n.Message == "" {
				t.Fatalf("notice without kind or message: %+v", n)
			}
			kinds[n.Kind]++
		}
		if kinds["spot_interruption"] != m["spot_interruption"] || kinds["rebalance_recommendation"] != m["rebalance_recommendation"] ||
			kinds["scheduled_event"] != m["scheduled_events"] {
			t.Fatalf("figures %v disagree with notices %v", m, kinds)
		}
	})
}

// The spot path answers only when a notice exists: an answer missing its
// fields is still a notice, worded without them.
func TestSpotNoticeWithoutFields(t *testing.T) {
	get := func(_ context.Context, p string) (string, bool, error) {
		if p == "spot/instance-action" {
			return "{}", true, nil
		}
		return "", false, nil
	}
	ns, m, err := (&Collector{Get: get}).Poll(context.Background())
	if err != nil || m["spot_interruption"] != 1 || len(ns) != 1 {
		t.Fatalf("%v %v %v", ns, m, err)
	}
	if want := "spot interruption notice: the instance will be interrupted at an unknown time"; ns[0].Message != want {
		t.Errorf("message %q, want %q", ns[0].Message, want)
	}
}

// A path IMDS did not answer has no figure: a 0 would claim "no notice"
// when nothing is known, and an alarm on the gauge would read it as calm.
func TestUnreadPathHasNoFigure(t *testing.T) {
	get := func(_ context.Context, p string) (string, bool, error) {
		switch p {
		case "spot/instance-action":
			return "", false, errors.New("connection refused")
		case "events/recommendations/rebalance":
			return "{not json", true, nil
		}
		return "", false, nil
	}
	_, m, err := (&Collector{Get: get}).Poll(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	if _, ok := m["spot_interruption"]; ok {
		t.Errorf("spot_interruption reported as %v though unread", m["spot_interruption"])
	}
	if _, ok := m["rebalance_recommendation"]; ok {
		t.Errorf("rebalance_recommendation reported though unparsable")
	}
	if v, ok := m["scheduled_events"]; !ok || v != 0 {
		t.Errorf("scheduled_events %v %v, want 0: that path answered", v, ok)
	}
	all := func(context.Context, string) (string, bool, error) { return "", false, errors.New("down") }
	if _, m, _ := (&Collector{Get: all}).Poll(context.Background()); m != nil {
		t.Errorf("figures %v from an IMDS that answered nothing", m)
	}
}

// The poll that shutdown cuts short emits nothing: the last sample of a
// series must not be a false 0 (seen under qemu-user, where the cut poll
// is slow enough to be the last).
func TestShutdownMidPollEmitsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	polls := 0
	get := func(ctx context.Context, p string) (string, bool, error) {
		if p == "spot/instance-action" {
			polls++
			if polls == 2 {
				cancel()
				return "", false, ctx.Err()
			}
			return `{"action":"stop","time":"2026-12-03T15:05:31Z"}`, true, nil
		}
		return "", false, nil
	}
	r := &rec{}
	(&Collector{Get: get, Interval: time.Millisecond}).Run(ctx, r)
	n, s := r.events("imdsevents")
	if n != 1 || s.Metrics["spot_interruption"] != 1 {
		t.Fatalf("samples %d, last %v: want the one sample of the whole poll", n, s.Metrics)
	}
	if n, _ := r.events("imds_error"); n != 0 {
		t.Errorf("%d imds_error events for a shutdown", n)
	}
}
