package testkit

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// AEMM identity served by StartAEMM.
const (
	AEMMInstanceID = "i-1234567890abcdef0"
	AEMMRegion     = "eu-west-1"
	AEMMImageID    = "ami-0123456789abcdef0"
	AEMMAccount    = "123456789012"
)

// AEMMOptions adjust the mock.
type AEMMOptions struct {
	// AccessKey, SecretKey, Token are the role credentials IMDS serves.
	AccessKey, SecretKey, Token string
	// Args select the mode, e.g. {"spot", "-d", "3600"} (the default: a
	// quiet instance; AEMM's bare default has every event active at once).
	Args []string
}

// StartAEMM runs the real amazon-ec2-metadata-mock (installed by .ci/run,
// pinned) on a loopback port, IMDSv2-only, with a consistent identity
// (its defaults contradict themselves), and returns its base URL.
func StartAEMM(t testing.TB, o AEMMOptions) string {
	t.Helper()
	bin := RequireTool(t, "ec2-metadata-mock")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	home := t.TempDir()
	cfg := map[string]any{
		"imdsv2": true,
		"server": map[string]any{"hostname": "127.0.0.1", "port": fmt.Sprint(port)},
		"metadata": map[string]any{"values": map[string]any{
			"ami-id": AEMMImageID, "instance-id": AEMMInstanceID, "instance-type": "m5.large",
			"placement-availability-zone": AEMMRegion + "a", "placement-region": AEMMRegion, "mac-owner-id": AEMMAccount,
			"iam-security-credentials": map[string]any{"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": o.AccessKey,
				"SecretAccessKey": o.SecretKey, "Token": o.Token, "LastUpdated": "2026-11-26T00:00:00Z", "Expiration": "2099-01-01T00:00:00Z"},
		}},
		"dynamic": map[string]any{"values": map[string]any{"instance-identity-document": map[string]any{
			"accountId": AEMMAccount, "imageId": AEMMImageID, "availabilityZone": AEMMRegion + "a", "region": AEMMRegion,
			"instanceId": AEMMInstanceID, "instanceType": "m5.large", "privateIp": "10.0.7.10", "architecture": "x86_64",
			"version": "2017-09-30", "pendingTime": "2026-11-26T00:00:00Z"}}},
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(home, "aemm.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	args := o.Args
	if args == nil {
		args = []string{"spot", "-d", "3600", "--rebalance-delay-sec", "3600"}
	}
	args = append(args, "-c", cfgPath, "-n", "127.0.0.1", "-p", fmt.Sprint(port), "-I")
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	log := &Lines{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("AEMM output:\n%s", log.String())
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodPut, url+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("AEMM did not come up:\n%s", log.String())
	return ""
}
