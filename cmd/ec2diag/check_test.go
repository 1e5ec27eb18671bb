package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ec2diag/ec2diag/internal/checks"
	"github.com/ec2diag/ec2diag/internal/testkit"
	"github.com/ec2diag/ec2diag/internal/testkit/fakecw"
	"github.com/ec2diag/ec2diag/internal/testkit/fakeec2"
)

type checkOut struct {
	Results []checks.Result `json:"results"`
	Worst   string          `json:"worst"`
}

func (c checkOut) get(name string) checks.Result {
	for _, r := range c.Results {
		if r.Name == name {
			return r
		}
	}
	return checks.Result{}
}

// runCheck runs `ec2diag check` on an "instance": the real IMDS mock with
// role credentials, and the EC2 API stand-in.
func runCheck(t *testing.T, inst fakeec2.Instance, deny ...string) (checkOut, int, *fakeec2.Server) {
	t.Helper()
	aemm := testkit.StartAEMM(t, testkit.AEMMOptions{AccessKey: fakecw.AccessKey, SecretKey: fakecw.SecretKey, Token: "tok"})
	fake := fakeec2.Start(t, inst)
	for _, d := range deny {
		fake.Deny(d)
	}
	cmd := []string{"AWS_EC2_METADATA_DISABLED=false", "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + aemm, "AWS_ENDPOINT_URL_EC2=" + fake.URL,
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}
	out, code := runCLI(t, cmd, "check", "--format", "json", "--host-root", crashReadyHost(t, true))
	var c checkOut
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("exit %d, not JSON: %v\n%s", code, err, out)
	}
	if fake.SigFailures() != 0 {
		t.Errorf("%d EC2 requests failed SigV4", fake.SigFailures())
	}
	return c, code, fake
}

func healthy() fakeec2.Instance {
	return fakeec2.Instance{ID: testkit.AEMMInstanceID, ImageID: testkit.AEMMImageID, ImageName: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20251001",
		ImageOwnerID: "099720109477", ImagePublic: true, AllowedImages: "enabled", ManagedBy: "account", HTTPTokens: "required", HopLimit: 2}
}

func TestCheckHealthyInstance(t *testing.T) {
	c, code, fake := runCheck(t, healthy())
	for _, name := range []string{"ami-provenance", "allowed-amis", "credentials", "imdsv2-required", "imds-hop-limit", "hibernation", "placement"} {
		if r := c.get(name); r.Status != checks.Pass {
			t.Errorf("%s: %s: %s", name, r.Status, r.Reason)
		}
	}
	if code != 0 || c.Worst != "pass" {
		t.Errorf("exit %d, worst %s", code, c.Worst)
	}
	if r := c.get("metric-cost"); r.Status != checks.Pass || r.Details["per_instance"] != "20" || !strings.Contains(r.Reason, "for 10,000") {
		t.Errorf("metric-cost at the default config: %+v", r)
	}
	if c.get("credentials").Details["source"] != "EC2RoleProvider" {
		t.Errorf("credentials: %+v", c.get("credentials"))
	}
	if got := strings.Join(fake.Actions(), ","); !strings.Contains(got, "DescribeInstanceImageMetadata") || !strings.Contains(got, "GetAllowedImagesSettings") {
		t.Errorf("EC2 actions called: %s", got)
	}
}

// A public AMI from an unknown account is what the whoAMI attack looks
// like from inside: fail, exit 1. IMDSv1 left on fails too.
func TestCheckWhoAMIAndIMDSv1Fail(t *testing.T) {
	inst := healthy()
	inst.ImageOwnerID, inst.ImageName = "999988887777", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20251002"
	inst.HTTPTokens, inst.AllowedImages = "optional", "disabled"
	c, code, _ := runCheck(t, inst)
	if r := c.get("ami-provenance"); r.Status != checks.Fail || !strings.Contains(r.Reason, "whoAMI") {
		t.Errorf("ami-provenance: %+v", r)
	}
	if r := c.get("imdsv2-required"); r.Status != checks.Fail {
		t.Errorf("imdsv2-required: %+v", r)
	}
	if r := c.get("allowed-amis"); r.Status != checks.Warn {
		t.Errorf("allowed-amis: %+v", r)
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}

// Missing permissions are a warning that names the permission, never a
// failure the operator cannot act on from the instance.
func TestCheckWithoutPermissionsWarns(t *testing.T) {
	c, code, _ := runCheck(t, healthy(), "DescribeInstanceImageMetadata", "DescribeInstances", "GetAllowedImagesSettings")
	if r := c.get("ami-provenance"); r.Status != checks.Warn || !strings.Contains(r.Reason, "ec2:DescribeInstanceImageMetadata") {
		t.Errorf("ami-provenance: %+v", r)
	}
	if r := c.get("imdsv2-required"); r.Status != checks.Warn || !strings.Contains(r.Reason, "ec2:DescribeInstances") {
		t.Errorf("imdsv2-required: %+v", r)
	}
	if code != 0 {
		t.Errorf("exit %d, want 0 (warnings only)", code)
	}
}

// crashReadyHost is a host tree ready, or not, for EC2's diagnostic
// interrupt: NMI panics, a panic reboots, pstore and kdump are there.
func crashReadyHost(t *testing.T, ready bool) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"proc/sys/kernel/unknown_nmi_panic": "0\n", "proc/sys/kernel/panic": "0\n", "proc/meminfo": "MemTotal:        1024 kB\n"}
	if ready {
		files["proc/sys/kernel/unknown_nmi_panic"], files["proc/sys/kernel/panic"] = "1\n", "10\n"
		files["sys/module/pstore/parameters/backend"] = "efi_pstore\n"
		files["sys/kernel/kexec_crash_loaded"], files["sys/kernel/kexec_crash_size"] = "1\n", "268435456\n"
		files["var/crash/.keep"] = ""
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Off EC2, --local says whether a hang could be made to leave a record;
// each missing piece is a warn that says what to do, never a fail.
func TestCheckLocalCrashReadiness(t *testing.T) {
	for _, ready := range []bool{false, true} {
		out, code := runCLI(t, []string{"AWS_EC2_METADATA_DISABLED=true"}, "check", "--local", "--format", "json", "--host-root", crashReadyHost(t, ready))
		var c checkOut
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatalf("exit %d, not JSON: %v\n%s", code, err, out)
		}
		want := checks.Warn
		if ready {
			want = checks.Pass
		}
		for _, name := range []string{"nmi-panic", "panic-reboot", "pstore", "crash-dump"} {
			if r := c.get(name); r.Status != want {
				t.Errorf("ready=%v: %s: %s (%s), want %s", ready, name, r.Status, r.Reason, want)
			}
		}
		if code != 0 || len(c.Results) != 4 {
			t.Errorf("ready=%v: exit %d, %d results", ready, code, len(c.Results))
		}
		if r := c.get("nmi-panic"); !ready && !strings.Contains(r.Reason, "60-ec2diag-nmi-panic.conf") {
			t.Errorf("nmi-panic does not point at the drop-in: %s", r.Reason)
		}
	}
}
