package imds

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIMDS speaks the IMDSv2 flow: a PUT for a token, then GETs that must
// carry it; requests without a token get 401 as on a real instance that
// requires IMDSv2.
func fakeIMDS(t *testing.T, hits *atomic.Int32) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "bad token request", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		w.Write([]byte("tok-123"))
	})
	mux.HandleFunc("/latest/dynamic/instance-identity/document", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("X-aws-ec2-metadata-token") != "tok-123" {
			http.Error(w, "", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1a","imageId":"ami-0abc","instanceId":"i-0123456789abcdef0","instanceType":"t3.medium","pendingTime":"2026-11-01T00:00:00Z","privateIp":"10.0.0.1","region":"eu-west-1","version":"2017-09-30"}`))
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func TestDetectIMDSv2(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	var hits atomic.Int32
	s := fakeIMDS(t, &hits)
	id, err := Detect(context.Background(), Options{Endpoint: s.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{InstanceID: "i-0123456789abcdef0", Region: "eu-west-1", AvailabilityZone: "eu-west-1a", InstanceType: "t3.medium", ImageID: "ami-0abc", AccountID: "123456789012"}
	if id != want {
		t.Errorf("Detect = %+v, want %+v", id, want)
	}
}

func TestDetectEnvEndpoint(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	var hits atomic.Int32
	s := fakeIMDS(t, &hits)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", s.URL)
	if _, err := Detect(context.Background(), Options{}); err != nil {
		t.Fatalf("SDK endpoint variable not honoured: %v", err)
	}
}

func TestDetectDisabledNeverCalls(t *testing.T) {
	var hits atomic.Int32
	s := fakeIMDS(t, &hits)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	if _, err := Detect(context.Background(), Options{Endpoint: s.URL}); !errors.Is(err, ErrDisabled) {
		t.Errorf("err = %v, want ErrDisabled", err)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	if _, err := Detect(context.Background(), Options{Endpoint: s.URL, Disabled: true}); !errors.Is(err, ErrDisabled) {
		t.Errorf("config disabled: err = %v, want ErrDisabled", err)
	}
	if hits.Load() != 0 {
		t.Errorf("IMDS was contacted %d times while disabled", hits.Load())
	}
}

// A silent endpoint (accepts, never answers) must cost about Timeout, not
// the SDK's retries and fallbacks.
func TestDetectTimesOutFast(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = Detect(context.Background(), Options{Endpoint: "http://" + ln.Addr().String(), Timeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("silent IMDS: want an error")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("detection took %s with a 300ms timeout", took)
	}
}
