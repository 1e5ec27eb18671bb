// Package checks runs instance hygiene checks from inside the instance:
// AMI provenance (the 2025 "whoAMI" name-confusion attack), the account's
// Allowed AMIs setting, where credentials come from, IMDSv2 enforcement
// and hop limit, hibernation and placement. Each result is pass, warn or
// fail with a reason in words.
package checks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/ec2diag/ec2diag/internal/checks/result"
)

// Statuses.
const (
	Pass = result.Pass
	Warn = result.Warn
	Fail = result.Fail
)

// Result is one check's outcome; the JSON is a contract.
type Result = result.Result

// EC2API is what the checks call; *ec2.Client satisfies it.
type EC2API interface {
	DescribeInstanceImageMetadata(ctx context.Context, in *ec2.DescribeInstanceImageMetadataInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstanceImageMetadataOutput, error)
	GetAllowedImagesSettings(ctx context.Context, in *ec2.GetAllowedImagesSettingsInput, optFns ...func(*ec2.Options)) (*ec2.GetAllowedImagesSettingsOutput, error)
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// Env is what the checks look at.
type Env struct {
	InstanceID, AccountID, ImageID string
	EC2                            EC2API
	// Meta reads an IMDS meta-data path; found=false is a 404.
	Meta func(ctx context.Context, path string) (value string, found bool, err error)
	// Credentials says where the SDK's default chain found credentials.
	Credentials func(ctx context.Context) (source string, static bool, err error)
	// AllowedOwners: "amazon", "aws-marketplace" (owner aliases) or
	// 12-digit account ids. The instance's own account is always allowed.
	AllowedOwners []string
	// Containers reports a container runtime on the host (hop limit).
	Containers func() bool
	// Homes are searched for static keys in .aws/credentials.
	Homes []string
}

// DefaultAllowedOwners: Amazon (and its verified providers), Canonical
// (Ubuntu) and Debian.
var DefaultAllowedOwners = []string{"amazon", "099720109477", "136693071363"}

// Run runs every check.
func Run(ctx context.Context, e Env) []Result {
	var inst *types.Instance
	var instErr error
	if e.EC2 != nil {
		out, err := e.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{e.InstanceID}})
		instErr = err
		if err == nil && len(out.Reservations) > 0 && len(out.Reservations[0].Instances) > 0 {
			inst = &out.Reservations[0].Instances[0]
		} else if err == nil {
			instErr = fmt.Errorf("DescribeInstances returned no instance %s", e.InstanceID)
		}
	} else {
		instErr = errors.New("no EC2 API client (no credentials or region)")
	}
	return []Result{
		e.amiProvenance(ctx),
		e.allowedAMIs(ctx),
		e.credentials(ctx),
		imdsv2(inst, instErr),
		e.hopLimit(inst, instErr),
		e.hibernation(ctx, inst),
		e.placement(ctx),
	}
}

// why explains an API error in terms of the permission it needs.
func why(err error, perm string) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "UnauthorizedOperation", "AccessDenied", "AccessDeniedException":
			return fmt.Sprintf("not allowed to call it (the role needs %s)", perm)
		}
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	return err.Error()
}

func (e Env) amiProvenance(ctx context.Context) Result {
	r := Result{Name: "ami-provenance", Details: map[string]string{}}
	ami := e.ImageID
	if e.Meta != nil {
		if v, ok, err := e.Meta(ctx, "ami-id"); err == nil && ok {
			if ami != "" && v != ami {
				r.Details["identity_document_image_id"] = ami
			}
			ami = v
		}
	}
	r.Details["image_id"] = ami
	if e.EC2 == nil {
		r.Status, r.Reason = Warn, "cannot tell who owns "+ami+": no EC2 API access (IMDS alone does not say)"
		return r
	}
	out, err := e.EC2.DescribeInstanceImageMetadata(ctx, &ec2.DescribeInstanceImageMetadataInput{InstanceIds: []string{e.InstanceID}})
	if err != nil || len(out.InstanceImageMetadata) == 0 || out.InstanceImageMetadata[0].ImageMetadata == nil {
		if err == nil {
			err = errors.New("no image metadata returned")
		}
		r.Status, r.Reason = Warn, "cannot tell who owns "+ami+": DescribeInstanceImageMetadata: "+why(err, "ec2:DescribeInstanceImageMetadata")
		return r
	}
	m := out.InstanceImageMetadata[0].ImageMetadata
	owner, alias, public := aws.ToString(m.OwnerId), aws.ToString(m.ImageOwnerAlias), aws.ToBool(m.IsPublic)
	r.Details["owner_id"], r.Details["owner_alias"], r.Details["name"] = owner, alias, aws.ToString(m.Name)
	r.Details["public"] = fmt.Sprint(public)
	known := owner != "" && owner == e.AccountID
	for _, a := range e.AllowedOwners {
		known = known || (alias != "" && a == alias) || a == owner
	}
	switch {
	case known && m.ImageAllowed != nil && !*m.ImageAllowed:
		r.Status, r.Reason = Warn, fmt.Sprintf("AMI %s is from a trusted owner but not allowed by the account's Allowed AMIs criteria", ami)
	case known:
		who := owner
		if alias != "" {
			who = alias + " (" + owner + ")"
		}
		r.Status, r.Reason = Pass, fmt.Sprintf("AMI %s (%s) is owned by %s, an allowed provider", ami, aws.ToString(m.Name), who)
	case public:
		r.Status, r.Reason = Fail, fmt.Sprintf("AMI %s (%s) is PUBLIC and owned by account %s, which is not an allowed provider: "+
			"the signature of the whoAMI name-confusion attack; check how this AMI was chosen (owner filter) and replace the instance", ami, aws.ToString(m.Name), owner)
	default:
		r.Status, r.Reason = Warn, fmt.Sprintf("AMI %s is private and owned by account %s, not in checks.allowed_ami_owners (shared within your organisation?)", ami, owner)
	}
	return r
}

func (e Env) allowedAMIs(ctx context.Context) Result {
	r := Result{Name: "allowed-amis"}
	if e.EC2 == nil {
		r.Status, r.Reason = Warn, "cannot read the Allowed AMIs setting: no EC2 API access"
		return r
	}
	out, err := e.EC2.GetAllowedImagesSettings(ctx, &ec2.GetAllowedImagesSettingsInput{})
	if err != nil {
		r.Status, r.Reason = Warn, "cannot read the Allowed AMIs setting: "+why(err, "ec2:GetAllowedImagesSettings")
		return r
	}
	st, by := aws.ToString(out.State), string(out.ManagedBy)
	r.Details = map[string]string{"state": st, "managed_by": by}
	switch st {
	case "enabled":
		r.Status, r.Reason = Pass, "Allowed AMIs is enabled in this account and region (managed by "+by+")"
	case "audit-mode":
		r.Status, r.Reason = Pass, "Allowed AMIs is in audit mode: disallowed AMIs are reported, not blocked (managed by "+by+")"
	default:
		r.Status, r.Reason = Warn, "Allowed AMIs is off in this account and region: any public AMI can be launched; enable it (audit-mode first) to limit AMI providers"
	}
	return r
}

func (e Env) credentials(ctx context.Context) Result {
	r := Result{Name: "credentials", Details: map[string]string{}}
	var onDisk []string
	for _, h := range e.Homes {
		p := filepath.Join(h, ".aws", "credentials")
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "aws_secret_access_key") {
			onDisk = append(onDisk, p)
		}
	}
	if len(onDisk) > 0 {
		r.Details["static_key_files"] = strings.Join(onDisk, ",")
	}
	if os.Getenv("AWS_ACCESS_KEY_ID") != "" {
		r.Details["env"] = "AWS_ACCESS_KEY_ID is set"
	}
	role, hasRole := "", false
	if e.Meta != nil {
		if v, ok, err := e.Meta(ctx, "iam/info"); err == nil && ok {
			role, hasRole = v, true
		}
	}
	if hasRole {
		r.Details["instance_profile"] = profileArn(role)
	}
	src, static, err := "", false, errors.New("not checked")
	if e.Credentials != nil {
		src, static, err = e.Credentials(ctx)
	}
	r.Details["source"] = src
	switch {
	case err == nil && static:
		r.Status, r.Reason = Fail, "static access keys are in use ("+src+"), not the instance's IAM role: keys on a machine leak and do not rotate"
	case len(onDisk) > 0:
		r.Status, r.Reason = Fail, "static access keys are stored on disk ("+strings.Join(onDisk, ", ")+"); use the instance's IAM role and delete them"
	case err == nil:
		r.Status, r.Reason = Pass, "credentials come from the instance's IAM role"
	case !hasRole:
		r.Status, r.Reason = Warn, "no IAM role is attached and no credentials were found: the agent cannot publish metrics"
	default:
		r.Status, r.Reason = Warn, "an IAM role is attached but credentials could not be retrieved: "+err.Error()
	}
	return r
}

func profileArn(iamInfo string) string {
	if i := strings.Index(iamInfo, `"InstanceProfileArn"`); i >= 0 {
		rest := iamInfo[i+len(`"InstanceProfileArn"`):]
		if a := strings.Index(rest, `"`); a >= 0 {
			if b := strings.Index(rest[a+1:], `"`); b >= 0 {
				return rest[a+1 : a+1+b]
			}
		}
	}
	return ""
}

func imdsv2(inst *types.Instance, err error) Result {
	r := Result{Name: "imdsv2-required"}
	if inst == nil || inst.MetadataOptions == nil {
		r.Status, r.Reason = Warn, "cannot read the instance's metadata options: "+why(err, "ec2:DescribeInstances")
		return r
	}
	tok := string(inst.MetadataOptions.HttpTokens)
	r.Details = map[string]string{"http_tokens": tok, "http_endpoint": string(inst.MetadataOptions.HttpEndpoint)}
	if tok == "required" {
		r.Status, r.Reason = Pass, "IMDSv2 is required (IMDSv1 is off)"
	} else {
		r.Status, r.Reason = Fail, "IMDSv1 is enabled (HttpTokens "+tok+"): an SSRF bug in any service here can read the role's credentials; "+
			"set it with aws ec2 modify-instance-metadata-options --http-tokens required"
	}
	return r
}

func (e Env) hopLimit(inst *types.Instance, err error) Result {
	r := Result{Name: "imds-hop-limit"}
	if inst == nil || inst.MetadataOptions == nil {
		r.Status, r.Reason = Warn, "cannot read the hop limit: "+why(err, "ec2:DescribeInstances")
		return r
	}
	hops := aws.ToInt32(inst.MetadataOptions.HttpPutResponseHopLimit)
	containers := e.Containers != nil && e.Containers()
	r.Details = map[string]string{"hop_limit": fmt.Sprint(hops), "containers": fmt.Sprint(containers)}
	switch {
	case hops == 1 && containers:
		r.Status, r.Reason = Warn, "hop limit 1 with a container runtime present: containers on bridged networks cannot get IMDSv2 tokens (use 2, or host networking)"
	case hops > 2:
		r.Status, r.Reason = Warn, fmt.Sprintf("hop limit %d: IMDS answers further away than any container needs (1 for the host, 2 for containers)", hops)
	default:
		r.Status, r.Reason = Pass, fmt.Sprintf("hop limit %d fits (containers present: %t)", hops, containers)
	}
	return r
}

func (e Env) hibernation(ctx context.Context, inst *types.Instance) Result {
	r := Result{Name: "hibernation", Status: Pass}
	conf, known := false, false
	if inst != nil && inst.HibernationOptions != nil {
		conf, known = aws.ToBool(inst.HibernationOptions.Configured), true
	} else if e.Meta != nil {
		if v, ok, err := e.Meta(ctx, "hibernation/configured"); err == nil && ok {
			conf, known = v == "true", true
		}
	}
	switch {
	case !known:
		r.Reason = "unknown (no EC2 API access and IMDS did not say)"
	case conf:
		r.Reason = "hibernation is configured: suspend/resume gaps are recorded and not reported as hangs"
	default:
		r.Reason = "hibernation is not configured"
	}
	r.Details = map[string]string{"configured": fmt.Sprint(conf), "known": fmt.Sprint(known)}
	return r
}

func (e Env) placement(ctx context.Context) Result {
	r := Result{Name: "placement", Status: Pass, Details: map[string]string{}}
	if e.Meta == nil {
		r.Reason = "unknown (no IMDS)"
		return r
	}
	for _, p := range []string{"placement/availability-zone", "placement/group-name", "placement/partition-number"} {
		if v, ok, err := e.Meta(ctx, p); err == nil && ok {
			r.Details[strings.TrimPrefix(p, "placement/")] = v
		}
	}
	parts := []string{"availability zone " + r.Details["availability-zone"]}
	if g := r.Details["group-name"]; g != "" {
		parts = append(parts, "placement group "+g)
		if p := r.Details["partition-number"]; p != "" {
			parts = append(parts, "partition "+p)
		}
	} else {
		parts = append(parts, "no placement group")
	}
	r.Reason = strings.Join(parts, ", ")
	return r
}

// Containers reports a container runtime's socket on this host.
func Containers() bool {
	for _, p := range []string{"/run/containerd/containerd.sock", "/var/run/docker.sock", "/run/podman/podman.sock"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// Worst returns the worst status among results.
func Worst(rs []Result) string { return result.Worst(rs) }
