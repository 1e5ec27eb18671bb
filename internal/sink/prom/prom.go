// Package prom serves the latest figures in the Prometheus text format on
// a loopback address, for people who scrape rather than use CloudWatch.
// The format is a few lines of text; a client library would add a large
// dependency for no gain here.
package prom

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
)

// Sink keeps gauges from samples and counts events.
type Sink struct {
	addr   string
	onErr  func(error)
	once   sync.Once
	mu     sync.Mutex
	gauges map[string]float64 // full series text -> value
	counts map[string]float64
	srv    *http.Server
	ln     net.Listener
}

// New checks addr and returns a sink that binds it on its first Write:
// on a reload the old pipeline still holds the port while the new one is
// built. A bind failure goes to onErr and the sink stays quiet.
func New(addr string, onErr func(error)) (*Sink, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	return &Sink{addr: addr, onErr: onErr, gauges: map[string]float64{}, counts: map[string]float64{}}, nil
}

// Listen binds addr now.
func Listen(addr string) (*Sink, error) {
	s, err := New(addr, nil)
	if err != nil {
		return nil, err
	}
	return s, s.bind()
}

// checkLoopback refuses anything but loopback: the endpoint has no
// authentication, and process and job names are not for the whole VPC.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("prometheus listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("prometheus listen address %q: only loopback addresses are allowed", addr)
	}
	return nil
}

func (s *Sink) bind() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("prometheus endpoint: %w", err)
	}
	s.serveOn(ln)
	return nil
}

func (s *Sink) serveOn(ln net.Listener) {
	s.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", s.serve)
	// Bounded: 1,005 idle keep-alive connections once took every
	// descriptor the agent had, and the recorder stopped for good.
	// Short: a scraper sends its request at once and needs no keep-alive
	// between scrapes; whoever holds a slot without doing so loses it.
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 5 * time.Second}
	go s.srv.Serve(&limitListener{Listener: ln, sem: make(chan struct{}, MaxConns), done: make(chan struct{})})
}

// Rebind is a prepared move of the endpoint to another address: the new
// listener is bound by PrepareRebind (an error changes nothing) and taken
// into use by Apply, which closes the old one. The figures stay.
type Rebind struct {
	s    *Sink
	addr string
	ln   net.Listener
}

// PrepareRebind binds addr for s.
func (s *Sink) PrepareRebind(addr string) (*Rebind, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("prometheus endpoint: %w", err)
	}
	return &Rebind{s: s, addr: addr, ln: ln}, nil
}

// Apply serves s's figures on the new address and closes the old one.
// Called only while no Write runs.
func (rb *Rebind) Apply(ctx context.Context) {
	s := rb.s
	s.once.Do(func() {})
	old := s.srv
	s.addr = rb.addr
	s.serveOn(rb.ln)
	if old != nil {
		old.Shutdown(ctx)
	}
}

// Discard closes the listener PrepareRebind bound.
func (rb *Rebind) Discard() { rb.ln.Close() }

// Addr is the bound address.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

func (s *Sink) Name() string { return "prometheus" }

func (s *Sink) Write(_ context.Context, batch []collectors.Record) error {
	s.once.Do(func() {
		if s.srv == nil {
			if err := s.bind(); err != nil && s.onErr != nil {
				s.onErr(err)
			}
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range batch {
		r := &batch[i]
		switch r.Kind {
		case collectors.KindSample:
			labels := ""
			if r.Dims["iface"] != "" {
				labels = fmt.Sprintf(`{interface=%q,kind=%q}`, r.Dims["iface"], r.Dims["kind"])
			}
			for k, v := range r.Metrics {
				s.gauges["ec2diag_"+clean(string(r.Source))+"_"+clean(k)+labels] = v
			}
		case collectors.KindEvent:
			s.counts[fmt.Sprintf(`ec2diag_events_total{type=%q}`, clean(string(r.Type)))]++
		}
	}
	return nil
}

func (s *Sink) Close(ctx context.Context) error {
	s.once.Do(func() {})
	if s.srv == nil {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Sink) serve(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	var lines []string
	for k, v := range s.gauges {
		lines = append(lines, fmt.Sprintf("%s %g", k, v))
	}
	for k, v := range s.counts {
		lines = append(lines, fmt.Sprintf("%s %g", k, v))
	}
	s.mu.Unlock()
	sort.Strings(lines)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	var b strings.Builder
	typed := map[string]bool{}
	for _, l := range lines {
		name := l[:strings.IndexAny(l, "{ ")]
		if !typed[name] {
			typed[name] = true
			kind := "gauge"
			if strings.HasSuffix(name, "_total") {
				kind = "counter"
			}
			fmt.Fprintf(&b, "# TYPE %s %s\n", name, kind)
		}
		b.WriteString(l + "\n")
	}
	w.Write([]byte(b.String()))
}

// clean keeps metric-name characters.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// MaxConns bounds the endpoint's open connections: a scraper needs one.
const MaxConns = 16

// limitListener holds at most cap(sem) connections at a time and closes
// the excess as it accepts it: left in the kernel's backlog, 300 idle or
// slow-header connections made /metrics time out for 30 s after they
// stopped, since each waited there for its turn at a slot.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
	shed atomic.Uint64
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			c.Close() // over the cap: shed at once
			l.shed.Add(1)
		}
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
