package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/imds"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
)

// awsTarget is the instance a chore acts on: from flags (off EC2, or for
// another instance) or from this instance's IMDS.
type awsTarget struct {
	InstanceID, Region string
	Identity           *imds.Identity
}

func resolveTarget(ctx context.Context, cfg config.Config, instanceID, region string) (awsTarget, error) {
	t := awsTarget{InstanceID: instanceID, Region: region}
	if t.Region == "" {
		t.Region = cfg.CloudWatch.Region
	}
	if t.InstanceID != "" && t.Region != "" {
		return t, nil
	}
	id, err := imds.Detect(ctx, imds.Options{Disabled: cfg.IMDS.Disabled, Endpoint: cfg.IMDS.Endpoint, Timeout: cfg.IMDS.Timeout.D()})
	if err != nil {
		if errors.Is(err, imds.ErrDisabled) {
			return t, &exitError{code: exitUsage, err: errors.New("not on EC2 (IMDS disabled): give --instance-id and --region")}
		}
		return t, &exitError{code: exitUsage, err: fmt.Errorf("not on EC2 (%v): give --instance-id and --region", err)}
	}
	if t.InstanceID == "" {
		t.InstanceID = id.InstanceID
	}
	if t.Region == "" {
		t.Region = id.Region
	}
	t.Identity = &id
	return t, nil
}

func awsConfig(ctx context.Context, cfg config.Config, region string) (aws.Config, error) {
	return cwsink.AWSConfig(ctx, cwsink.ClientOptions{Region: region, IMDSEndpoint: cfg.IMDS.Endpoint, Timeout: 30 * time.Second})
}
