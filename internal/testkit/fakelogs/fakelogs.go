// Package fakelogs is a CloudWatch Logs stand-in for tests, on loopback.
// It speaks the SDK's real protocol (AWS JSON 1.1: POST /, X-Amz-Target:
// Logs_20140328.<Operation>), verifies SigV4 with the verifier the other
// stand-ins use (signing name "logs"), and enforces PutLogEvents' limits
// and ordering rules as the service documents them: at most 10,000 events
// and 1,048,576 bytes (message bytes + 26 per event) per call, events of
// at most 256 KiB, in chronological order, spanning at most 24 hours; too
// old (14 days) and too new (2 hours) events are rejected in
// rejectedLogEventsInfo, not as an error. It can throttle, fail and hang,
// and answers a small subset of Logs Insights (see query.go) from what it
// stored.
package fakelogs

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit/sigv4"
)

// The credentials the server accepts (the same as fakecw's, so one SDK
// environment serves both).
const (
	AccessKey = sigv4.TestAccessKey
	SecretKey = sigv4.TestSecretKey
)

// Fault is what the server does with the next requests.
type Fault string

const (
	None     Fault = ""
	Throttle Fault = "throttle" // ThrottlingException for ThrottlePct of requests
	Unavail  Fault = "503"      // 503 ServiceUnavailableException
	Hang     Fault = "hang"     // never answer (until the client gives up)
	Deny     Fault = "deny"     // AccessDeniedException on CreateLogGroup/PutRetentionPolicy
)

// Limits of PutLogEvents.
const (
	MaxEvents     = 10000
	MaxBatchBytes = 1048576
	EventOverhead = 26
	MaxEventBytes = 256 * 1024
	MaxSpan       = 24 * time.Hour
)

// Event is a stored log event.
type Event struct {
	Group, Stream string
	Timestamp     int64 // ms
	Message       string
	Ingested      time.Time
}

// Server is the stand-in.
type Server struct {
	URL string

	mu          sync.Mutex
	fault       Fault
	throttlePct int
	groups      map[string]int // group -> retention days (0: never expire)
	streams     map[string]bool
	events      []Event
	calls       map[string]int
	sigFailures int
	queries     map[string]*query
	srv         *http.Server
	now         func() time.Time
	reject      string
}

// RejectEventsContaining makes the server refuse, as InvalidParameterException,
// every batch holding an event whose message contains s ("" stops): the
// service has rules beyond its documented limits, and a client must not let
// one event it cannot send hold up or drop the others.
func (s *Server) RejectEventsContaining(sub string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject = sub
}

// Start runs the stand-in on a loopback port (addr "" picks one).
func Start(t testing.TB, addr string) *Server {
	t.Helper()
	s := &Server{groups: map[string]int{}, streams: map[string]bool{}, calls: map[string]int{}, queries: map[string]*query{}, now: time.Now}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := s.listen(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.srv = &http.Server{Handler: s}
	s.URL = "http://" + ln.Addr().String()
	srv := s.srv
	s.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// Stop closes the endpoint (connection refused), as a cut network does.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Restart brings the endpoint back at the same address, with what it
// stored.
func (s *Server) Restart() error { return s.listen(strings.TrimPrefix(s.URL, "http://")) }

// SetFault changes what the next requests get; pct applies to Throttle.
func (s *Server) SetFault(f Fault, pct int) {
	s.mu.Lock()
	s.fault, s.throttlePct = f, pct
	s.mu.Unlock()
}

// CreateGroup makes a log group as an administrator would, outside the
// agent's permissions.
func (s *Server) CreateGroup(name string, retentionDays int) {
	s.mu.Lock()
	s.groups[name] = retentionDays
	s.mu.Unlock()
}

// Events returns what was stored, in arrival order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Groups returns the log groups and their retention in days.
func (s *Server) Groups() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.groups {
		out[k] = v
	}
	return out
}

// Calls counts requests by operation; SigFailures those refused for
// their signature.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *Server) SigFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sigFailures
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "Logs_20140328.")
	if r.Method != http.MethodPost || r.URL.Path != "/" || !ok || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		fail(w, 400, "SerializationException", "not an AWS JSON 1.1 Logs_20140328 request")
		return
	}
	s.mu.Lock()
	s.calls[op]++
	fault, pct := s.fault, s.throttlePct
	s.mu.Unlock()
	switch {
	case fault == Hang:
		<-r.Context().Done()
		return
	case fault == Unavail:
		fail(w, 503, "ServiceUnavailableException", "The service cannot complete the request.")
		return
	case fault == Throttle && rand.IntN(100) < pct:
		fail(w, 400, "ThrottlingException", "Rate exceeded")
		return
	}
	if err := sigv4.Verify(r, raw, AccessKey, SecretKey, "logs", s.now()); err != nil {
		s.mu.Lock()
		s.sigFailures++
		s.mu.Unlock()
		fail(w, 400, "InvalidSignatureException", err.Error())
		return
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(raw, &in); err != nil {
		fail(w, 400, "SerializationException", err.Error())
		return
	}
	str := func(k string) string {
		var v string
		json.Unmarshal(in[k], &v)
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	group := str("logGroupName")
	switch op {
	case "CreateLogGroup":
		if fault == Deny {
			fail(w, 400, "AccessDeniedException", "not authorized to perform: logs:CreateLogGroup")
			return
		}
		if _, ok := s.groups[group]; ok {
			fail(w, 400, "ResourceAlreadyExistsException", "The specified log group already exists")
			return
		}
		if !validGroup(group) {
			fail(w, 400, "InvalidParameterException", "1 validation error detected: logGroupName")
			return
		}
		s.groups[group] = 0
		ok200(w, map[string]any{})
	case "PutRetentionPolicy":
		if fault == Deny {
			fail(w, 400, "AccessDeniedException", "not authorized to perform: logs:PutRetentionPolicy")
			return
		}
		var days int
		json.Unmarshal(in["retentionInDays"], &days)
		if _, ok := s.groups[group]; !ok {
			fail(w, 400, "ResourceNotFoundException", "The specified log group does not exist.")
			return
		}
		if !validRetention(days) {
			fail(w, 400, "InvalidParameterException", fmt.Sprintf("retentionInDays %d is not one of the allowed values", days))
			return
		}
		s.groups[group] = days
		ok200(w, map[string]any{})
	case "CreateLogStream":
		if _, ok := s.groups[group]; !ok {
			fail(w, 400, "ResourceNotFoundException", "The specified log group does not exist.")
			return
		}
		k := group + "\x00" + str("logStreamName")
		if s.streams[k] {
			fail(w, 400, "ResourceAlreadyExistsException", "The specified log stream already exists")
			return
		}
		s.streams[k] = true
		ok200(w, map[string]any{})
	case "PutLogEvents":
		s.putLogEvents(w, group, str("logStreamName"), in["logEvents"])
	case "StartQuery":
		s.startQuery(w, in)
	case "GetQueryResults":
		s.getQueryResults(w, str("queryId"))
	default:
		fail(w, 400, "UnknownOperationException", "unknown operation "+op)
	}
}

// validRetention: the values PutRetentionPolicy accepts.
func validRetention(d int) bool {
	for _, v := range []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653} {
		if d == v {
			return true
		}
	}
	return false
}

func validGroup(g string) bool {
	if g == "" || len(g) > 512 {
		return false
	}
	for _, c := range g {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-/.#", c)) {
			return false
		}
	}
	return true
}

func (s *Server) putLogEvents(w http.ResponseWriter, group, stream string, raw json.RawMessage) {
	if _, ok := s.groups[group]; !ok {
		fail(w, 400, "ResourceNotFoundException", "The specified log group does not exist.")
		return
	}
	if !s.streams[group+"\x00"+stream] {
		fail(w, 400, "ResourceNotFoundException", "The specified log stream does not exist.")
		return
	}
	var evs []struct {
		Timestamp *int64  `json:"timestamp"`
		Message   *string `json:"message"`
	}
	if err := json.Unmarshal(raw, &evs); err != nil {
		fail(w, 400, "SerializationException", err.Error())
		return
	}
	if len(evs) == 0 || len(evs) > MaxEvents {
		fail(w, 400, "InvalidParameterException", fmt.Sprintf("%d log events: want 1 to %d", len(evs), MaxEvents))
		return
	}
	size := 0
	for i, e := range evs {
		if e.Timestamp == nil || e.Message == nil || *e.Message == "" {
			fail(w, 400, "InvalidParameterException", fmt.Sprintf("log event %d lacks its timestamp or message", i))
			return
		}
		if len(*e.Message)+EventOverhead > MaxEventBytes {
			fail(w, 400, "InvalidParameterException", fmt.Sprintf("log event %d is %d bytes: over the maximum", i, len(*e.Message)))
			return
		}
		if s.reject != "" && strings.Contains(*e.Message, s.reject) {
			fail(w, 400, "InvalidParameterException", fmt.Sprintf("log event %d is not valid", i))
			return
		}
		if i > 0 && *e.Timestamp < *evs[i-1].Timestamp {
			fail(w, 400, "InvalidParameterException", "Log events in a single PutLogEvents request must be in chronological order.")
			return
		}
		size += len(*e.Message) + EventOverhead
	}
	if size > MaxBatchBytes {
		fail(w, 400, "InvalidParameterException", fmt.Sprintf("batch of %d bytes: over %d", size, MaxBatchBytes))
		return
	}
	if time.Duration(*evs[len(evs)-1].Timestamp-*evs[0].Timestamp)*time.Millisecond > MaxSpan {
		fail(w, 400, "InvalidParameterException", "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.")
		return
	}
	now := s.now()
	rejected := map[string]int{}
	for i, e := range evs {
		t := time.UnixMilli(*e.Timestamp)
		switch {
		case t.Before(now.Add(-14 * 24 * time.Hour)):
			rejected["tooOldLogEventEndIndex"] = i + 1
		case t.After(now.Add(2 * time.Hour)):
			if _, ok := rejected["tooNewLogEventStartIndex"]; !ok {
				rejected["tooNewLogEventStartIndex"] = i
			}
		default:
			s.events = append(s.events, Event{Group: group, Stream: stream, Timestamp: *e.Timestamp, Message: *e.Message, Ingested: now})
		}
	}
	out := map[string]any{"nextSequenceToken": fmt.Sprintf("%d", len(s.events))}
	if len(rejected) > 0 {
		out["rejectedLogEventsInfo"] = rejected
	}
	ok200(w, out)
}

func ok200(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", fmt.Sprintf("fake-%d", time.Now().UnixNano()))
	json.NewEncoder(w).Encode(v)
}

// fail answers as the service does: the error type in the body's __type
// and in X-Amzn-ErrorType, which the SDK's ErrorCode() reads.
func fail(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", typ+":")
	w.Header().Set("X-Amzn-Requestid", fmt.Sprintf("fake-%d", time.Now().UnixNano()))
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}
