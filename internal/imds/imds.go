// Package imds finds out, quickly, whether the agent runs on EC2 and who the
// instance is, using IMDSv2 only through the SDK's imds client.
package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// Identity is what the agent needs to know about its instance.
type Identity struct {
	InstanceID       string `json:"instance_id"`
	Region           string `json:"region"`
	AvailabilityZone string `json:"availability_zone"`
	InstanceType     string `json:"instance_type"`
	ImageID          string `json:"image_id"`
	AccountID        string `json:"account_id"`
	// AutoScalingGroup comes from instance tags in IMDS, when allowed.
	AutoScalingGroup string `json:"auto_scaling_group,omitempty"`
}

// ErrDisabled means IMDS was switched off by configuration or by the SDK's
// standard AWS_EC2_METADATA_DISABLED=true.
var ErrDisabled = errors.New("IMDS disabled (AWS_EC2_METADATA_DISABLED or imds.disabled)")

// Options configure Detect.
type Options struct {
	Disabled bool
	// Endpoint overrides the SDK default; empty honours the SDK's
	// AWS_EC2_METADATA_SERVICE_ENDPOINT and then 169.254.169.254.
	Endpoint string
	Timeout  time.Duration
}

// DisabledByEnv reports the SDK's standard switch, which the agent honours
// everywhere, demos and tests included.
func DisabledByEnv() bool {
	return strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true")
}

// Client returns an IMDSv2 client (the SDK never falls back to IMDSv1 unless
// asked) with a bounded timeout and no retries, so detection off EC2 costs
// at most Timeout.
func Client(o Options) *imds.Client {
	opts := imds.Options{
		Retryer:               aws.NopRetryer{},
		ClientEnableState:     imds.ClientEnabled,
		EnableFallback:        aws.FalseTernary,
		DisableDefaultTimeout: false,
	}
	if ep := o.Endpoint; ep != "" {
		opts.Endpoint = ep
	} else if ep := os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT"); ep != "" {
		opts.Endpoint = ep
	}
	return imds.New(opts)
}

// Detect returns the identity, ErrDisabled, or an error meaning "not on EC2
// (or IMDS unreachable)"; the caller then runs in local mode.
func Detect(ctx context.Context, o Options) (Identity, error) {
	if o.Disabled || DisabledByEnv() {
		return Identity{}, ErrDisabled
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	doc, err := Client(o).GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		return Identity{}, fmt.Errorf("instance identity from IMDS: %w", err)
	}
	return Identity{
		InstanceID:       doc.InstanceID,
		Region:           doc.Region,
		AvailabilityZone: doc.AvailabilityZone,
		InstanceType:     doc.InstanceType,
		ImageID:          doc.ImageID,
		AccountID:        doc.AccountID,
	}, nil
}

// Tag reads an instance tag through IMDS (only when the instance allows
// tags in metadata); ok is false when it is not there.
func Tag(ctx context.Context, o Options, key string) (string, bool) {
	v, found, err := Get(ctx, o, "tags/instance/"+key)
	return v, err == nil && found && v != ""
}

// Get reads one meta-data path. found is false on 404 (not configured on
// this instance), which is an answer, not an error.
func Get(ctx context.Context, o Options, path string) (value string, found bool, err error) {
	if o.Disabled || DisabledByEnv() {
		return "", false, ErrDisabled
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	out, err := Client(o).GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
			return "", false, nil
		}
		return "", false, err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 64<<10))
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(string(b)), true, nil
}
