// Package fakeec2 is an EC2 API stand-in for tests speaking the EC2 Query
// protocol the SDK uses (form-encoded POST, SigV4 with signing name
// "ec2", XML answers), for the few read-only actions `ec2diag check`
// calls.
package fakeec2

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit/sigv4"
)

// Test credentials the fake accepts (the same as fakecw's).
const (
	AccessKey = sigv4.TestAccessKey
	SecretKey = sigv4.TestSecretKey
)

// Instance is what the fake says about the one instance it knows.
type Instance struct {
	ID                 string
	ImageID, ImageName string
	ImageOwnerID       string
	ImageOwnerAlias    string // "amazon" or ""
	ImagePublic        bool
	ImageAllowed       *bool
	AllowedImages      string // disabled | audit-mode | enabled
	ManagedBy          string
	HTTPTokens         string // required | optional
	HopLimit           int
	Hibernation        bool
}

// Server is the fake.
type Server struct {
	URL string

	mu      sync.Mutex
	inst    Instance
	deny    map[string]bool
	actions []string
	sigFail int
}

// Start runs the fake on loopback.
func Start(t testing.TB, inst Instance) *Server {
	s := &Server{inst: inst, deny: map[string]bool{}}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	s.URL = hs.URL
	return s
}

// Deny makes an action fail with UnauthorizedOperation, as when the role
// lacks the permission.
func (s *Server) Deny(action string) {
	s.mu.Lock()
	s.deny[action] = true
	s.mu.Unlock()
}

// Actions lists the actions called, in order.
func (s *Server) Actions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.actions...)
}

// SigFailures counts requests whose signature did not verify.
func (s *Server) SigFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sigFail
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	if err := sigv4.Verify(r, raw, AccessKey, SecretKey, "ec2", time.Now()); err != nil {
		s.mu.Lock()
		s.sigFail++
		s.mu.Unlock()
		s.fail(w, 401, "AuthFailure", err.Error())
		return
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil || r.Method != http.MethodPost || form.Get("Version") != "2016-11-15" {
		s.fail(w, 400, "InvalidRequest", "not an EC2 Query request")
		return
	}
	action := form.Get("Action")
	s.mu.Lock()
	s.actions = append(s.actions, action)
	denied := s.deny[action]
	in := s.inst
	s.mu.Unlock()
	if denied {
		s.fail(w, 403, "UnauthorizedOperation", "You are not authorized to perform this operation.")
		return
	}
	if id := form.Get("InstanceId.1"); id != "" && id != in.ID {
		s.fail(w, 400, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", id))
		return
	}
	var body string
	switch action {
	case "DescribeInstanceImageMetadata":
		allowed := ""
		if in.ImageAllowed != nil {
			allowed = fmt.Sprintf("<imageAllowed>%t</imageAllowed>", *in.ImageAllowed)
		}
		alias := ""
		if in.ImageOwnerAlias != "" {
			alias = "<imageOwnerAlias>" + x(in.ImageOwnerAlias) + "</imageOwnerAlias>"
		}
		body = fmt.Sprintf(`<instanceImageMetadataSet><item><instanceId>%s</instanceId><imageMetadata><imageId>%s</imageId><name>%s</name><imageOwnerId>%s</imageOwnerId>%s<isPublic>%t</isPublic>%s<imageState>available</imageState></imageMetadata></item></instanceImageMetadataSet>`,
			x(in.ID), x(in.ImageID), x(in.ImageName), x(in.ImageOwnerID), alias, in.ImagePublic, allowed)
	case "GetAllowedImagesSettings":
		body = fmt.Sprintf(`<state>%s</state><managedBy>%s</managedBy>`, x(in.AllowedImages), x(in.ManagedBy))
	case "DescribeInstances":
		body = fmt.Sprintf(`<reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>%s</instanceId><imageId>%s</imageId><metadataOptions><state>applied</state><httpTokens>%s</httpTokens><httpPutResponseHopLimit>%d</httpPutResponseHopLimit><httpEndpoint>enabled</httpEndpoint></metadataOptions><hibernationOptions><configured>%t</configured></hibernationOptions></item></instancesSet></item></reservationSet>`,
			x(in.ID), x(in.ImageID), x(in.HTTPTokens), in.HopLimit, in.Hibernation)
	default:
		s.fail(w, 400, "InvalidAction", "The action "+action+" is not valid for this web service.")
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>fake-%d</requestId>%s</%sResponse>`, action, time.Now().UnixNano(), body, action)
}

func x(s string) string { return html.EscapeString(s) }

func (s *Server) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>fake</RequestID></Response>`, x(code), x(msg))
}
