package cloudwatch

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/smithy-go/logging"
	"github.com/ec2diag/ec2diag/internal/escape"
	"go.uber.org/zap"
)

// ClientOptions say where and how to reach CloudWatch.
type ClientOptions struct {
	Region string
	// Endpoint overrides the SDK's; empty keeps its resolution, which
	// honours AWS_ENDPOINT_URL_CLOUDWATCH and AWS_ENDPOINT_URL.
	Endpoint string
	// IMDSEndpoint is where the credential chain asks for the role's
	// credentials (empty: the SDK's default or its environment variable).
	IMDSEndpoint string
	Timeout      time.Duration
	// Log gets the SDK's own messages (its retries, a response body it
	// could not discard); nil drops them. The SDK's default logger wrote
	// raw lines to stderr, which broke --log-format json.
	Log *zap.Logger
}

// sdkLogger hands the SDK's messages to zap.
type sdkLogger struct{ log *zap.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	msg := escape.Control(fmt.Sprintf(format, v...))
	if c == logging.Warn {
		l.log.Warn("AWS SDK", zap.String("sdk_message", msg))
		return
	}
	l.log.Debug("AWS SDK", zap.String("sdk_message", msg))
}

// AWSConfig loads the SDK's default configuration: credentials from its
// default chain (on EC2, the instance's IAM role via IMDSv2).
//
// The SDK's retries are kept (3 attempts with jittered back-off) but its
// client-side retry quota is not: in a long outage the quota drains and
// every call then fails at once, while the spool already owns the long
// back-off.
func AWSConfig(ctx context.Context, o ClientOptions) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) { so.RateLimiter = ratelimit.None })
		}),
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(o.Timeout)),
		config.WithLogger(logging.Nop{}),
	}
	if o.Log != nil {
		opts = append(opts, config.WithLogger(sdkLogger{o.Log}))
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.IMDSEndpoint != "" {
		opts = append(opts, config.WithEC2IMDSEndpoint(o.IMDSEndpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS SDK configuration: %w", err)
	}
	return cfg, nil
}

// NewClient returns a CloudWatch client for cfg.
func NewClient(cfg aws.Config, endpoint string) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// CredentialSource retrieves credentials once and says where they came
// from. static is true for anything but the instance role (keys in the
// environment or in files), which on EC2 deserves a warning. The
// credentials themselves never leave this function.
func CredentialSource(ctx context.Context, cfg aws.Config) (source string, static bool, err error) {
	if cfg.Credentials == nil {
		return "", false, fmt.Errorf("no credentials provider")
	}
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return "", false, fmt.Errorf("retrieve credentials: %w", err)
	}
	return c.Source, c.Source != ec2rolecreds.ProviderName, nil
}
