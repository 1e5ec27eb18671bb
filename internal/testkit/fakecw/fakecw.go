// Package fakecw is a CloudWatch stand-in for tests: it speaks the wire
// protocol the SDK really uses (Smithy RPC v2 CBOR over HTTP, SigV4,
// optional gzip), verifies each request's signature against test
// credentials, enforces PutMetricData's documented limits, answers with
// the real error shapes, and can be told to throttle, fail, hang or reset.
// It stores what it accepted so tests can assert "every datapoint
// arrived, none twice".
package fakecw

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit/sigv4"

	"github.com/fxamacker/cbor/v2"
)

// Test credentials the fake accepts.
const (
	AccessKey = sigv4.TestAccessKey
	SecretKey = sigv4.TestSecretKey
	Region    = "eu-west-1"
)

// Fault is what the server does with the next requests.
type Fault string

const (
	None     Fault = ""
	Throttle Fault = "throttle" // 400 ThrottlingException, for ThrottlePct of requests
	Unavail  Fault = "503"      // 503 with an empty body
	Hang     Fault = "hang"     // never answer (until the client gives up)
	Reset    Fault = "reset"    // close the connection before reading the request
	// ResetAfterStore stores the data, then closes the connection without
	// answering: the SDK retries and CloudWatch gets it twice.
	ResetAfterStore Fault = "reset-after-store"
)

// Datum is a stored datum.
type Datum struct {
	Namespace  string
	Name       string
	Dims       string // "A=1,B=2", sorted
	Time       time.Time
	Unit       string
	Value      *float64
	Stats      *StatSet
	Values     []float64
	Counts     []float64
	Resolution int32
}

// Key identifies the metric and timestamp.
func (d Datum) Key() string {
	return d.Namespace + "/" + d.Name + "{" + d.Dims + "}@" + d.Time.UTC().Format(time.RFC3339Nano)
}

func (d Datum) sig() string {
	return fmt.Sprintf("%s v=%v s=%v %v %v", d.Key(), ptr(d.Value), d.Stats, d.Values, d.Counts)
}

func ptr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// Server is the fake.
type Server struct {
	URL string

	mu          sync.Mutex
	fault       Fault
	throttlePct int
	reject      map[string]bool
	datums      []Datum
	seen        map[string]int
	requests    int
	rejected    int
	faulted     int
	wireBytes   int64
	alarms      map[string]map[string]any
	ln          net.Listener
	srv         *http.Server
	now         func() time.Time
	sigFailures int
	puts        int
	actionCalls []ActionCall
	dashboards  map[string]string
}

// Start runs the fake on a loopback port (addr "" picks one; a fixed
// "127.0.0.1:PORT" lets a test stop and restart it at the same URL).
func Start(t testing.TB, addr string) *Server {
	t.Helper()
	s := &Server{seen: map[string]int{}, reject: map[string]bool{}, alarms: map[string]map[string]any{}, dashboards: map[string]string{}, now: time.Now}
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
	s.ln = ln
	s.srv = &http.Server{Handler: s}
	s.URL = "http://" + ln.Addr().String()
	srv := s.srv
	s.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// Stop closes the listener, answers the requests already being handled
// and closes the connections: the endpoint is gone (connection refused)
// from then on. A request cut after it was stored but before its answer
// is the one duplicate docs/metrics.md allows (the agent cannot tell it
// from a lost request); closing connections under handlers made it
// happen at random in the outage tests, which test the spool, not that.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}
}

// Restart brings the endpoint back at the same address.
func (s *Server) Restart() error {
	return s.listen(strings.TrimPrefix(s.URL, "http://"))
}

// SetFault changes what the next requests get; pct applies to Throttle.
func (s *Server) SetFault(f Fault, pct int) {
	s.mu.Lock()
	s.fault, s.throttlePct = f, pct
	s.mu.Unlock()
}

// RejectMetric makes any request with this metric name fail as invalid,
// as CloudWatch does for a bad datum (the whole request is refused).
func (s *Server) RejectMetric(name string) {
	s.mu.Lock()
	s.reject[name] = true
	s.mu.Unlock()
}

// Datums returns what was stored, in arrival order.
func (s *Server) Datums() []Datum {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Datum(nil), s.datums...)
}

// Duplicates lists datums received more than once with identical values
// (a retried request, not two halves of one period).
func (s *Server) Duplicates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k, n := range s.seen {
		if n > 1 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Counts returns requests seen (all), requests rejected as invalid,
// requests that got a fault, signature failures, and wire bytes.
func (s *Server) Counts() (requests, rejected, faulted, sigFailures int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.rejected, s.faulted, s.sigFailures, s.wireBytes
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	fault, pct := s.fault, s.throttlePct
	s.mu.Unlock()
	switch fault {
	case Reset:
		s.count(&s.faulted)
		hijackClose(w)
		return
	case Hang:
		s.count(&s.faulted)
		<-r.Context().Done()
		return
	case Unavail:
		s.count(&s.faulted)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case Throttle:
		if rand.IntN(100) < pct {
			s.count(&s.faulted)
			s.fail(w, 400, "com.amazon.coral.availability#ThrottlingException", "Throttling", "Rate exceeded")
			return
		}
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.wireBytes += int64(len(raw))
	s.mu.Unlock()
	if r.Method != http.MethodPost || r.Header.Get("Smithy-Protocol") != "rpc-v2-cbor" || r.Header.Get("Content-Type") != "application/cbor" {
		s.fail(w, 400, "SerializationException", "", "not an RPC v2 CBOR request")
		return
	}
	if err := sigv4.Verify(r, raw, AccessKey, SecretKey, "monitoring", s.now()); err != nil {
		s.count(&s.sigFailures)
		s.fail(w, 403, "InvalidSignatureException", "InvalidSignature", err.Error())
		return
	}
	body := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			s.fail(w, 400, "SerializationException", "", "bad gzip body")
			return
		}
	}
	op := strings.TrimPrefix(r.URL.Path, "/service/GraniteServiceVersion20100801/operation/")
	switch op {
	case "PutMetricData":
		s.putMetricData(w, body, fault == ResetAfterStore)
	case "PutMetricAlarm":
		s.putMetricAlarm(w, body)
	case "DescribeAlarms":
		s.describeAlarms(w, body)
	case "EnableAlarmActions":
		s.setActions(w, body, true)
	case "DisableAlarmActions":
		s.setActions(w, body, false)
	case "PutDashboard":
		s.putDashboard(w, body)
	default:
		s.fail(w, 404, "UnknownOperationException", "", "unknown operation "+op)
	}
}

func (s *Server) count(p *int) {
	s.mu.Lock()
	*p++
	s.mu.Unlock()
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, not FIN
			}
			c.Close()
		}
	}
}

var dec, _ = cbor.DecOptions{IndefLength: cbor.IndefLengthAllowed, ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()

type dimension struct {
	Name  *string
	Value *string
}

// StatSet is CloudWatch's StatisticSet.
type StatSet struct {
	SampleCount, Sum, Minimum, Maximum *float64
}

func (s *StatSet) String() string {
	if s == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{n=%v sum=%v min=%v max=%v}", ptr(s.SampleCount), ptr(s.Sum), ptr(s.Minimum), ptr(s.Maximum))
}

type metricDatum struct {
	MetricName        *string
	Dimensions        []dimension
	Timestamp         *time.Time
	Value             *float64
	StatisticValues   *StatSet
	Values            []float64
	Counts            []float64
	Unit              *string
	StorageResolution *int32
}

type putMetricDataInput struct {
	Namespace              *string
	MetricData             []metricDatum
	StrictEntityValidation *bool
}

var units = map[string]bool{}

func init() {
	for _, u := range strings.Fields("Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes Terabytes Bits Kilobits Megabits Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second Megabytes/Second Gigabytes/Second Terabytes/Second Bits/Second Kilobits/Second Megabits/Second Gigabits/Second Terabits/Second Count/Second None") {
		units[u] = true
	}
}

func (s *Server) putMetricData(w http.ResponseWriter, body []byte, resetAfter bool) {
	var in putMetricDataInput
	if err := dec.Unmarshal(body, &in); err != nil {
		s.fail(w, 400, "SerializationException", "", "cannot decode CBOR: "+err.Error())
		return
	}
	if msg := s.validate(&in); msg != "" {
		s.count(&s.rejected)
		s.fail(w, 400, "InvalidParameterValueException", "InvalidParameterValue", msg)
		return
	}
	now := s.now()
	s.mu.Lock()
	for _, m := range in.MetricData {
		d := Datum{Namespace: *in.Namespace, Name: *m.MetricName, Value: m.Value, Stats: m.StatisticValues, Values: m.Values, Counts: m.Counts}
		var dims []string
		for _, x := range m.Dimensions {
			dims = append(dims, *x.Name+"="+*x.Value)
		}
		sort.Strings(dims)
		d.Dims = strings.Join(dims, ",")
		if m.Timestamp != nil {
			d.Time = m.Timestamp.Round(time.Millisecond).UTC() // tag-1 floats carry noise below 1 ms
		} else {
			d.Time = now.Truncate(time.Millisecond).UTC()
		}
		if m.Unit != nil {
			d.Unit = *m.Unit
		}
		if m.StorageResolution != nil {
			d.Resolution = *m.StorageResolution
		}
		s.datums = append(s.datums, d)
		s.seen[d.sig()]++
	}
	s.mu.Unlock()
	if resetAfter {
		hijackClose(w)
		return
	}
	s.ok(w, nil)
}

// validate applies PutMetricData's documented limits; the SDK checks
// almost none of them.
func (s *Server) validate(in *putMetricDataInput) string {
	s.mu.Lock()
	reject := s.reject
	s.mu.Unlock()
	now := s.now()
	if in.Namespace == nil || *in.Namespace == "" || len(*in.Namespace) > 255 || strings.HasPrefix(*in.Namespace, ":") || strings.HasPrefix(*in.Namespace, "AWS/") {
		return "The parameter Namespace is invalid."
	}
	if len(in.MetricData) == 0 || len(in.MetricData) > 1000 {
		return fmt.Sprintf("The collection MetricData must not have more than 1000 members (got %d).", len(in.MetricData))
	}
	for i, m := range in.MetricData {
		at := fmt.Sprintf("MetricData.member.%d", i+1)
		if m.MetricName == nil || *m.MetricName == "" || len(*m.MetricName) > 255 || reject[*m.MetricName] {
			return "The parameter " + at + ".MetricName is invalid."
		}
		if len(m.Dimensions) > 30 {
			return "The collection " + at + ".Dimensions must not have more than 30 members."
		}
		for _, d := range m.Dimensions {
			if d.Name == nil || d.Value == nil || *d.Name == "" || len(*d.Name) > 255 || *d.Value == "" || len(*d.Value) > 1024 {
				return "The parameter " + at + ".Dimensions is invalid."
			}
		}
		kinds := 0
		if m.Value != nil {
			kinds++
			if bad(*m.Value) {
				return "The value for parameter " + at + ".Value is invalid."
			}
		}
		if st := m.StatisticValues; st != nil {
			kinds++
			if st.SampleCount == nil || st.Sum == nil || st.Minimum == nil || st.Maximum == nil ||
				bad(*st.SampleCount) || bad(*st.Sum) || bad(*st.Minimum) || bad(*st.Maximum) || *st.SampleCount <= 0 || *st.Minimum > *st.Maximum {
				return "The parameter " + at + ".StatisticValues is invalid."
			}
		}
		if len(m.Values) > 0 {
			kinds++
			if len(m.Values) > 150 || (len(m.Counts) > 0 && len(m.Counts) != len(m.Values)) {
				return "The parameter " + at + ".Values is invalid."
			}
		}
		if kinds > 1 {
			return "The parameters " + at + ".Value, StatisticValues and Values are mutually exclusive."
		}
		if m.Timestamp != nil && (now.Sub(*m.Timestamp) > 14*24*time.Hour || m.Timestamp.Sub(now) > 2*time.Hour) {
			return "The parameter " + at + ".Timestamp must specify a time within the past two weeks."
		}
		if m.StorageResolution != nil && *m.StorageResolution != 1 && *m.StorageResolution != 60 {
			return "The parameter " + at + ".StorageResolution is invalid."
		}
		if m.Unit != nil && !units[*m.Unit] {
			return "The parameter " + at + ".Unit is invalid."
		}
	}
	return ""
}

func bad(v float64) bool {
	return math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > math.Ldexp(1, 360)
}

var enc, _ = cbor.EncOptions{Time: cbor.TimeUnixDynamic, TimeTag: cbor.EncTagRequired}.EncMode()

func (s *Server) ok(w http.ResponseWriter, v any) {
	h := w.Header()
	h.Set("Smithy-Protocol", "rpc-v2-cbor")
	h.Set("Content-Type", "application/cbor")
	h.Set("X-Amzn-Requestid", fmt.Sprintf("fake-%d", time.Now().UnixNano()))
	if v == nil {
		v = map[string]any{}
	}
	b, _ := enc.Marshal(v)
	w.Write(b)
}

// fail answers like CloudWatch: a CBOR {__type, message} body plus the
// query-compatible error header that sets the SDK's ErrorCode().
func (s *Server) fail(w http.ResponseWriter, status int, typ, queryCode, msg string) {
	h := w.Header()
	h.Set("Smithy-Protocol", "rpc-v2-cbor")
	h.Set("Content-Type", "application/cbor")
	h.Set("X-Amzn-Requestid", fmt.Sprintf("fake-%d", time.Now().UnixNano()))
	if queryCode != "" {
		fault := "Sender"
		if status >= 500 {
			fault = "Receiver"
		}
		h.Set("X-Amzn-Query-Error", queryCode+";"+fault)
	}
	if !strings.Contains(typ, "#") {
		typ = "com.amazonaws.cloudwatch#" + typ
	}
	b, _ := enc.Marshal(map[string]string{"__type": typ, "message": msg})
	w.WriteHeader(status)
	w.Write(b)
}
