// Package cwlogs ships the incident store to CloudWatch Logs: one JSON
// event per incident record (onset, snapshots, end) and per job-run
// summary, in one log stream per instance, so the evidence outlives an
// instance that an Auto Scaling group replaced after the reboot alarm
// fired, and a fleet can be asked what hung its machines.
//
// The store is the spool: the shipper follows STATE_DIR/incidents.jsonl
// with the syslog tailer (rotation, restarts, kill -9) and its own
// checkpoint, which advances only once CloudWatch Logs took the events.
// An outage, a restart or a kill delays events; it loses none while the
// store still holds them (incidents.keep_files rotations), and a kill -9
// between an accepted call and the checkpoint write is the one way an
// event is sent twice (each carries its seq and boot_id to dedupe on).
package cwlogs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/smithy-go"
	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/correlate"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/evidence"
	"github.com/ec2diag/ec2diag/internal/evidence/store"
	"github.com/ec2diag/ec2diag/internal/logging"
	"github.com/ec2diag/ec2diag/internal/tail"
	"go.uber.org/zap"
)

// API is what the shipper calls; *cloudwatchlogs.Client satisfies it.
type API interface {
	CreateLogGroup(context.Context, *cloudwatchlogs.CreateLogGroupInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogGroupOutput, error)
	PutRetentionPolicy(context.Context, *cloudwatchlogs.PutRetentionPolicyInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutRetentionPolicyOutput, error)
	CreateLogStream(context.Context, *cloudwatchlogs.CreateLogStreamInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogStreamOutput, error)
	PutLogEvents(context.Context, *cloudwatchlogs.PutLogEventsInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutLogEventsOutput, error)
}

// NewClient builds the SDK client; endpoint "" keeps the SDK's resolution
// (which honours AWS_ENDPOINT_URL_CLOUDWATCH_LOGS).
func NewClient(cfg aws.Config, endpoint string) *cloudwatchlogs.Client {
	return cloudwatchlogs.NewFromConfig(cfg, func(o *cloudwatchlogs.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// PutLogEvents' limits (the service's documented quotas).
const (
	maxEvents     = 10000
	maxBatchBytes = 1048576
	eventOverhead = 26
	maxEventBytes = 256*1024 - eventOverhead
	maxSpan       = 24 * time.Hour
	// maxQueued bounds what waits in memory; beyond it the tailer waits
	// (the store on disk holds the rest).
	maxQueued = 2 * maxEvents
)

// Options configure a Shipper.
type Options struct {
	// StateDir holds the incident store; the checkpoint goes under
	// StateDir/cwlogs.
	StateDir      string
	Group, Stream string
	RetentionDays int32 // 0: leave the group's retention alone
	InstanceID    string
	// AutoScalingGroup, when known, goes in every event so fleet queries
	// can pick one group (ec2diag fleet --asg).
	AutoScalingGroup string
	API              API
	// FlushEvery is how long a job-run event may wait to be batched
	// (default 60 s: one call a minute per instance keeps a fleet of
	// 10,000 far under the account's PutLogEvents quota). Incident
	// records go at once: the machine may hang or be replaced next.
	FlushEvery     time.Duration
	RequestTimeout time.Duration
	Log            *zap.Logger
}

// Stats are cumulative counts.
type Stats struct {
	Calls, Failures, Events, Rejected, Damaged, Oversized int
}

// Shipper is a collector: it reads the store and calls CloudWatch Logs.
type Shipper struct {
	o Options

	mu     sync.Mutex
	ctx    context.Context
	queue  []*pending
	space  *sync.Cond
	stats  Stats
	ready  bool // group and stream exist (or we were refused making them)
	warned map[string]bool
	urgent chan struct{} // an incident record is queued: flush now
}

type pending struct {
	ev    types.InputLogEvent
	batch *tailBatch
}

// tailBatch is one batch the tailer handed on: acknowledged once all its
// events are in CloudWatch Logs.
type tailBatch struct {
	left int
	ack  func()
}

// New returns a shipper; nothing runs until Run.
func New(o Options) *Shipper {
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Minute
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	s := &Shipper{o: o, warned: map[string]bool{}, urgent: make(chan struct{}, 1)}
	s.space = sync.NewCond(&s.mu)
	return s
}

func (s *Shipper) Name() string { return "cwlogs" }

// Stats returns the counts so far.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run follows the store and ships until ctx is done.
func (s *Shipper) Run(ctx context.Context, e collectors.Emitter) error {
	f := tail.New(tail.Options{Path: filepath.Join(s.o.StateDir, store.FileName), StateDir: filepath.Join(s.o.StateDir, "cwlogs"),
		FromStart: true, MaxLineBytes: 1 << 20, PollInterval: min(s.o.FlushEvery, 10*time.Second), Log: s.o.Log.Named("store")})
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	stopWake := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.space.Broadcast() // a handler waiting for room gives up
		s.mu.Unlock()
	})
	defer stopWake()
	done := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		s.flusher(ctx, done)
	}()
	go func() {
		<-f.Started()
		e.Ready()
	}()
	err := f.Run(ctx, s.handle)
	close(done)
	s.mu.Lock()
	s.space.Broadcast()
	s.mu.Unlock()
	<-flushed
	return err
}

// handle turns store lines into events and queues them with the batch's
// acknowledgement; it waits while the queue is full.
func (s *Shipper) handle(lines []tail.Line, ack func()) error {
	b := &tailBatch{ack: ack}
	var evs []types.InputLogEvent
	urgent := false
	for _, l := range lines {
		ev, kind, ok := s.event(l)
		if ok {
			evs = append(evs, ev)
			urgent = urgent || kind != evidence.KindJobRun
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(evs) == 0 {
		ack()
		return nil
	}
	b.left = len(evs)
	for len(s.queue) >= maxQueued {
		if err := s.ctx.Err(); err != nil {
			return err // not acknowledged: read again at the next start
		}
		s.space.Wait()
	}
	for _, ev := range evs {
		s.queue = append(s.queue, &pending{ev: ev, batch: b})
	}
	if urgent || len(s.queue) >= maxEvents { // an incident record, or a full batch: now
		select {
		case s.urgent <- struct{}{}:
		default:
		}
	}
	return nil
}

// Event is the JSON message of one store record, designed for Logs
// Insights, which extracts at most 200 fields of a JSON event (AWS,
// "Supported logs and discovered fields") in the order it reads them: the
// fields fleet queries filter and group on come first, each bounded, and
// the whole record travels as one string field (data), so an event has
// at most 20 fields however big its record. The JSON names are a
// contract (the fleet queries and dashboards use them).
type Event struct {
	Kind       evidence.Kind `json:"kind"`
	Incident   string        `json:"incident,omitempty"`
	InstanceID string        `json:"instance_id"`
	Time       time.Time     `json:"time"`
	ASG        string        `json:"asg,omitempty"`
	BootID     string        `json:"boot_id"`
	Seq        uint64        `json:"seq"`
	Cause      string        `json:"cause,omitempty"`
	BlamedJob  string        `json:"blamed_job,omitempty"`
	TopProcess string        `json:"top_process,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Job        string        `json:"job,omitempty"`
	Summary    string        `json:"summary,omitempty"`
	// Reasons are the first few reasons (an array is one field per
	// element to Logs Insights).
	Reasons []string `json:"reasons,omitempty"`
	// Data is the store's record payload as JSON text, as `ec2diag
	// incidents --format json` reads it; absent when the event would pass
	// the service's size limit (DataTruncatedBytes says how big it was).
	Data               string `json:"data,omitempty"`
	DataTruncatedBytes int    `json:"data_truncated_bytes,omitempty"`
}

// Bounds of the lifted fields.
const (
	maxLifted  = 512
	maxSummary = 2048
	maxReasons = 4
)

// event is the CloudWatch Logs event of one store record.
func (s *Shipper) event(l tail.Line) (types.InputLogEvent, evidence.Kind, bool) {
	r, ok := store.ParseLine(l.Data)
	if !ok || l.Truncated || l.Partial {
		s.mu.Lock()
		s.stats.Damaged++ // counted by the store's readers too
		s.mu.Unlock()
		return types.InputLogEvent{}, "", false
	}
	ev := Event{Kind: r.Kind, Incident: r.Incident, InstanceID: s.o.InstanceID, Time: r.Time, ASG: s.o.AutoScalingGroup,
		BootID: r.BootID, Seq: r.Seq, Data: string(r.Data)}
	b := func(x string, n int) string { return escape.Truncate(x, n) }
	if r.Kind.OfIncident() {
		if d, err := r.DecodeIncident(); err == nil {
			v := d.Verdict
			ev.Cause, ev.Summary = b(v.Cause, maxLifted), b(v.Summary, maxSummary)
			for _, j := range v.Jobs {
				if j.Verdict == correlate.Caused {
					ev.BlamedJob = b(j.Job, maxLifted)
					break
				}
			}
			if len(v.Top) > 0 {
				ev.TopProcess = b(fmt.Sprintf("%s (pid %d)", v.Top[0].Comm, v.Top[0].PID), maxLifted)
			}
			if len(d.Reasons) > 0 {
				// One string as well: a query wants the whole.
				ev.Reason = b(strings.Join(d.Reasons, "; "), maxLifted)
				for _, x := range d.Reasons[:min(len(d.Reasons), maxReasons)] {
					ev.Reasons = append(ev.Reasons, b(x, maxLifted))
				}
			}
		}
	} else if r.Kind == evidence.KindCrash {
		if d, err := r.DecodeCrash(); err == nil {
			ev.Reason = b("kernel "+d.Kind+": "+d.Reason, maxLifted)
			ev.Reasons = []string{ev.Reason}
			ev.Cause = b(d.Reason, maxLifted)
		}
	} else if d, err := r.DecodeJobRun(); err == nil {
		ev.Job = b(d.Job, maxLifted)
	}
	msg, err := marshal(&ev)
	if err == nil && len(msg) > maxEventBytes {
		// Over the event limit: the record's identity and verdict go, its
		// data stays in the store.
		ev.DataTruncatedBytes, ev.Data = len(r.Data), ""
		msg, err = marshal(&ev)
		s.mu.Lock()
		s.stats.Oversized++
		s.mu.Unlock()
	}
	if err != nil || len(msg) > maxEventBytes {
		s.mu.Lock()
		s.stats.Damaged++
		s.mu.Unlock()
		return types.InputLogEvent{}, "", false
	}
	return types.InputLogEvent{Timestamp: aws.Int64(r.Time.UnixMilli()), Message: aws.String(string(msg))}, r.Kind, true
}

// marshal writes JSON as is: HTML escaping made a job name of 60,000 "<"
// six times longer than the size the shipper had checked.
func marshal(ev *Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// flusher sends the queue every FlushEvery (at once when a batch is full),
// retrying with backoff; on done it makes a last attempt.
func (s *Shipper) flusher(ctx context.Context, done <-chan struct{}) {
	backoff := time.Duration(0)
	for {
		wait := s.o.FlushEvery
		if backoff > 0 {
			wait = backoff
		}
		urgent := s.urgent
		if backoff > 0 {
			urgent = nil // backing off: an incident record waits its turn too
		}
		timer := time.NewTimer(wait)
		select {
		case <-urgent:
			timer.Stop()
		case <-done:
			// One last, short try; what it cannot send stays in the store
			// and goes at the next start.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.flush(fctx, true)
			cancel()
			return
		case <-timer.C:
		}
		if err := s.flush(ctx, false); err != nil {
			backoff = min(max(2*backoff, time.Second), 5*time.Minute)
			backoff = backoff/2 + rand.N(backoff/2+1) // jittered: a fleet must not retry in step
			continue
		}
		backoff = 0
	}
}

// flush sends everything queued, batch by batch; it stops at the first
// failure (the events stay queued, in order).
func (s *Shipper) flush(ctx context.Context, final bool) error {
	for {
		s.mu.Lock()
		batch := s.take()
		s.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		n, err := s.sendSplit(ctx, batch)
		s.mu.Lock()
		s.queue = s.queue[n:]
		for _, p := range batch[:n] {
			if p.batch.left--; p.batch.left == 0 {
				p.batch.ack()
			}
		}
		s.space.Broadcast()
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if final && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// take picks the longest prefix of the queue that fits one call.
func (s *Shipper) take() []*pending {
	size := 0
	var first, last int64
	for i, p := range s.queue {
		n := len(*p.ev.Message) + eventOverhead
		t := *p.ev.Timestamp
		if i == 0 {
			first, last = t, t
		}
		first, last = min(first, t), max(last, t)
		if i == maxEvents || size+n > maxBatchBytes || time.Duration(last-first)*time.Millisecond > maxSpan {
			return s.queue[:i]
		}
		size += n
	}
	return s.queue
}

// errInvalid is a batch the service refused as invalid.
var errInvalid = errors.New("CloudWatch Logs refused the batch as invalid")

// sendSplit sends batch and returns how many of its events (a prefix) were
// handled: sent, or dropped as the one event the service refused. A batch
// refused as invalid is halved until the event at fault is alone: one bad
// event used to drop its whole batch, an onset with it.
func (s *Shipper) sendSplit(ctx context.Context, batch []*pending) (int, error) {
	err := s.send(ctx, batch)
	switch {
	case err == nil:
		return len(batch), nil
	case !errors.Is(err, errInvalid):
		return 0, err
	case len(batch) == 1:
		s.fail("invalid", "CloudWatch Logs refused an event; dropping it (the record stays in the store)", err)
		s.mu.Lock()
		s.stats.Rejected++
		s.mu.Unlock()
		return 1, nil
	}
	h := len(batch) / 2
	n, err := s.sendSplit(ctx, batch[:h])
	if err != nil || n < h {
		return n, err
	}
	m, err := s.sendSplit(ctx, batch[h:])
	return n + m, err
}

// send makes one PutLogEvents call (creating group and stream first when
// needed). Events go in time order, as the service requires.
func (s *Shipper) send(ctx context.Context, batch []*pending) error {
	evs := make([]types.InputLogEvent, len(batch))
	for i, p := range batch {
		evs[i] = p.ev
	}
	sort.SliceStable(evs, func(i, j int) bool { return *evs[i].Timestamp < *evs[j].Timestamp })
	if !s.ready {
		if err := s.ensure(ctx); err != nil {
			s.mu.Lock()
			s.stats.Failures++
			s.mu.Unlock()
			return err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	defer cancel()
	out, err := s.o.API.PutLogEvents(cctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: &s.o.Group, LogStreamName: &s.o.Stream, LogEvents: evs})
	s.mu.Lock()
	s.stats.Calls++
	s.mu.Unlock()
	var rnf *types.ResourceNotFoundException
	if errors.As(err, &rnf) {
		s.ready = false // deleted under us: made again at the next try
	}
	var ipe *types.InvalidParameterException
	if errors.As(err, &ipe) {
		// Refused though it fits every limit we know of: sendSplit finds
		// the event at fault.
		return fmt.Errorf("%w: %v", errInvalid, err)
	}
	if err != nil {
		s.mu.Lock()
		s.stats.Failures++
		s.mu.Unlock()
		s.fail("put", "CloudWatch Logs unavailable; events wait in the store", err)
		return err
	}
	s.warned["put"] = false
	n := len(evs)
	if ri := out.RejectedLogEventsInfo; ri != nil {
		rej := 0
		if ri.TooOldLogEventEndIndex != nil {
			rej += int(*ri.TooOldLogEventEndIndex)
		}
		if ri.ExpiredLogEventEndIndex != nil {
			rej = max(rej, int(*ri.ExpiredLogEventEndIndex))
		}
		if ri.TooNewLogEventStartIndex != nil {
			rej += n - int(*ri.TooNewLogEventStartIndex)
		}
		s.mu.Lock()
		s.stats.Rejected += rej
		s.mu.Unlock()
		s.o.Log.Warn("CloudWatch Logs rejected events outside its time window (over 14 days old or 2 hours ahead)", zap.Int("events", rej))
		n -= rej
	}
	s.mu.Lock()
	s.stats.Events += n
	s.mu.Unlock()
	return nil
}

// ensure makes the log group (with its retention) and the stream. Being
// refused the group or the retention (no logs:CreateLogGroup) is said
// once: an administrator may have made them.
func (s *Shipper) ensure(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	defer cancel()
	_, err := s.o.API.CreateLogGroup(cctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: &s.o.Group})
	created := err == nil
	if err != nil && !is(err, "ResourceAlreadyExistsException") {
		if !is(err, "AccessDeniedException") {
			s.fail("ensure", "cannot create the CloudWatch Logs group", err, zap.String("log_group", s.o.Group))
			return err
		}
		s.fail("group", "not allowed to create the log group; it must exist", err, zap.String("log_group", s.o.Group))
	}
	if created && s.o.RetentionDays > 0 {
		if _, err := s.o.API.PutRetentionPolicy(cctx, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: &s.o.Group, RetentionInDays: &s.o.RetentionDays}); err != nil {
			s.fail("retention", "cannot set the log group's retention", err, zap.String("log_group", s.o.Group))
		}
	}
	_, err = s.o.API.CreateLogStream(cctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: &s.o.Group, LogStreamName: &s.o.Stream})
	if err != nil && !is(err, "ResourceAlreadyExistsException") {
		s.fail("ensure", "cannot create the CloudWatch Logs stream", err, zap.String("log_group", s.o.Group), zap.String("log_stream", s.o.Stream))
		return err
	}
	s.ready = true
	return nil
}

func is(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

// fail warns once per kind of failure until it clears.
func (s *Shipper) fail(kind, msg string, err error, f ...zap.Field) {
	if s.warned[kind] {
		return
	}
	s.warned[kind] = true
	s.o.Log.Warn(msg, append(f, zap.Error(err), zap.String(logging.KeyEvent, "cwlogs_"+kind))...)
}

// String says where events go, for STATUS=.
func (s *Shipper) String() string { return fmt.Sprintf("CloudWatch Logs %s/%s", s.o.Group, s.o.Stream) }
