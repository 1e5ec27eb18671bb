// Package sigv4 verifies AWS Signature Version 4 on requests received by
// the test stand-ins, by re-signing them with the SDK's own signer.
package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The credentials every stand-in accepts, so one SDK environment serves
// CloudWatch, CloudWatch Logs and EC2 together.
const (
	TestAccessKey = "AKIDFAKECLOUDWATCH"
	TestSecretKey = "fake-secret-key"
)

// Verify checks that r (whose body was raw, as received: compressed if it
// was sent compressed) was signed by accessKey/secretKey for service.
// now is the server's clock: a request more than 15 minutes off fails.
func Verify(r *http.Request, raw []byte, accessKey, secretKey, service string, now time.Time) error {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
		return fmt.Errorf("missing SigV4 Authorization")
	}
	fields := map[string]string{}
	for _, p := range strings.Split(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[0] != accessKey || scope[3] != service || scope[4] != "aws4_request" {
		return fmt.Errorf("bad credential scope %q", fields["Credential"])
	}
	t, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || scope[1] != t.Format("20060102") {
		return fmt.Errorf("bad X-Amz-Date")
	}
	if d := now.Sub(t); d > 15*time.Minute || d < -15*time.Minute {
		return fmt.Errorf("signature expired")
	}
	req, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	req.Host = r.Host
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		if h == "host" {
			continue
		}
		if h == "content-length" {
			req.ContentLength = r.ContentLength
		}
		for _, v := range r.Header.Values(h) {
			req.Header.Add(h, v)
		}
	}
	sum := sha256.Sum256(raw)
	creds := aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), service, scope[2], t); err != nil {
		return err
	}
	want := req.Header.Get("Authorization")
	i, j := strings.Index(want, "Signature="), strings.Index(auth, "Signature=")
	if i < 0 || j < 0 || !hmac.Equal([]byte(want[i:]), []byte(auth[j:])) {
		return fmt.Errorf("signature mismatch")
	}
	return nil
}
