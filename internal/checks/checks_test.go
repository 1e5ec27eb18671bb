package checks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/ec2diag/ec2diag/internal/testkit/fakeec2"
)

const (
	instanceID = "i-0123456789abcdef0"
	imageID    = "ami-0abcdef1234567890"
)

// env wires the checks to the EC2 stand-in on loopback, as the CLI wires
// them to the API, with IMDS answers from a map.
func env(t *testing.T, inst fakeec2.Instance, meta map[string]string) (Env, *fakeec2.Server) {
	t.Helper()
	fake := fakeec2.Start(t, inst)
	client := ec2.New(ec2.Options{Region: "eu-west-1", BaseEndpoint: aws.String(fake.URL),
		Credentials: credentials.NewStaticCredentialsProvider(fakeec2.AccessKey, fakeec2.SecretKey, "")})
	return Env{InstanceID: instanceID, AccountID: "123456789012", ImageID: imageID, EC2: client, AllowedOwners: DefaultAllowedOwners,
		Meta: func(_ context.Context, p string) (string, bool, error) {
			v, ok := meta[p]
			return v, ok, nil
		},
		Credentials: func(context.Context) (string, bool, error) { return "EC2RoleProvider", false, nil },
		Containers:  func() bool { return false },
		Homes:       []string{t.TempDir()},
	}, fake
}

func ubuntu() fakeec2.Instance {
	return fakeec2.Instance{ID: instanceID, ImageID: imageID, ImageName: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20251001",
		ImageOwnerID: "099720109477", ImagePublic: true, AllowedImages: "enabled", ManagedBy: "account", HTTPTokens: "required", HopLimit: 1}
}

func byName(rs []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

func TestHealthyInstancePasses(t *testing.T) {
	e, _ := env(t, ubuntu(), map[string]string{"ami-id": imageID, "iam/info": `{"InstanceProfileArn":"arn:aws:iam::123456789012:instance-profile/web"}`,
		"placement/availability-zone": "eu-west-1a"})
	rs := Run(context.Background(), e)
	for name, r := range byName(rs) {
		if r.Status != Pass && name != "hibernation" && name != "placement" {
			t.Errorf("%s: %s: %s", name, r.Status, r.Reason)
		}
	}
	if Worst(rs) == Fail {
		t.Errorf("worst is fail: %+v", rs)
	}
}

// The whoAMI attack from inside: a public AMI of an unknown owner fails;
// static keys in a home fail the credentials check.
func TestUnknownPublicAMIAndStaticKeysFail(t *testing.T) {
	inst := ubuntu()
	inst.ImageOwnerID = "999988887777"
	e, _ := env(t, inst, map[string]string{"ami-id": imageID})
	home := e.Homes[0]
	if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".aws", "credentials"), []byte("[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.Credentials = func(context.Context) (string, bool, error) { return "SharedConfigCredentials", true, nil }
	m := byName(Run(context.Background(), e))
	if r := m["ami-provenance"]; r.Status != Fail || !strings.Contains(r.Reason, "whoAMI") {
		t.Errorf("ami-provenance: %+v", r)
	}
	if r := m["credentials"]; r.Status != Fail {
		t.Errorf("credentials: %+v", r)
	}
}

// A permission the role lacks is a warn that names it, never a fail.
func TestMissingPermissionIsAWarnNamingIt(t *testing.T) {
	e, fake := env(t, ubuntu(), map[string]string{"ami-id": imageID})
	fake.Deny("DescribeInstanceImageMetadata")
	fake.Deny("GetAllowedImagesSettings")
	m := byName(Run(context.Background(), e))
	for name, perm := range map[string]string{"ami-provenance": "ec2:DescribeInstanceImageMetadata", "allowed-amis": "ec2:GetAllowedImagesSettings"} {
		if r := m[name]; r.Status != Warn || !strings.Contains(r.Reason, perm) {
			t.Errorf("%s: %+v, want a warn naming %s", name, r, perm)
		}
	}
}
