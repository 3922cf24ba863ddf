package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/kvsrtc/kvsrtc/sigv4"
)

// DefaultRequestTimeout is Config.RequestTimeout's default. The control
// plane answers within a second; a request that times out is not retried
// by the SDK (the caller's retry policy decides).
const DefaultRequestTimeout = 10 * time.Second

// STUNNone as Config.STUNURL leaves the conventional STUN server out of
// ICE configurations.
const STUNNone = "-"

// skewTolerance is the smallest clock offset that is corrected. The Date
// header has a resolution of one second and the measurement includes the
// round trip, so smaller offsets are noise; SigV4 allows five minutes.
const skewTolerance = 2 * time.Second

// Config configures a Client. The zero value loads everything from the
// standard AWS configuration (environment, shared config files, credential
// chain).
type Config struct {
	// Region overrides the region of the AWS configuration (AWS_REGION,
	// AWS_DEFAULT_REGION, the profile's region).
	Region string
	// EndpointURL overrides the control-plane endpoint, e.g. the URL of a
	// local emulator. Empty: the SDK's resolution, which honours
	// AWS_ENDPOINT_URL_KINESIS_VIDEO and AWS_ENDPOINT_URL.
	EndpointURL string
	// Credentials overrides the credential chain. Nil: the default chain
	// (environment, shared files, SSO, container and instance roles).
	Credentials aws.CredentialsProvider
	// HTTPClient is used for every call. Nil: the SDK's default client,
	// which honours AWS_CA_BUNDLE, with RequestTimeout.
	HTTPClient *http.Client
	// RequestTimeout bounds each HTTP request of the default client
	// (connect, TLS, answer), so that a service that accepts connections
	// but never answers fails with ErrUnreachable instead of hanging.
	// 0: DefaultRequestTimeout. Ignored with HTTPClient.
	RequestTimeout time.Duration
	// STUNURL is the STUN server put first in every ICE configuration.
	// Empty: stun:stun.kinesisvideo.{region}.amazonaws.com:443 (the
	// convention of the official clients); STUNNone ("-"): none.
	STUNURL string
	// Logger receives debug logs. Nil: discard.
	Logger *slog.Logger
	// Now is the local clock. Nil: time.Now.
	Now func() time.Time
}

// Client is the KVS control-plane client: channels, their endpoints and
// their ICE servers. It is safe for concurrent use.
type Client struct {
	kv       *kinesisvideo.Client
	awsCfg   aws.Config
	creds    aws.CredentialsProvider
	region   string
	endpoint string // control-plane endpoint override ("" = SDK default)
	stun     string // "" = none
	log      *slog.Logger
	now      func() time.Time
	httpc    aws.HTTPClient
	signer   *v4.Signer
	offset   atomic.Int64 // server time - local time, nanoseconds
}

// New loads the AWS configuration, applies cfg's overrides and checks that
// a region and credentials are available. It retrieves the credentials
// once, so that a missing or broken credential chain is reported here and
// not on the first call.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.EndpointURL != "" {
		u, err := url.Parse(cfg.EndpointURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: endpoint URL %q must be an absolute http:// or https:// URL", ErrInvalidArgument, cfg.EndpointURL)
		}
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(cfg.HTTPClient))
	} else {
		rt := cfg.RequestTimeout
		if rt <= 0 {
			rt = DefaultRequestTimeout
		}
		opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(rt)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("control: loading the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("%w: set AWS_REGION or --region (e.g. us-west-2)", ErrMissingRegion)
	}
	c := &Client{
		awsCfg:   awsCfg,
		region:   awsCfg.Region,
		endpoint: strings.TrimRight(cfg.EndpointURL, "/"),
		log:      cfg.Logger,
		now:      cfg.Now,
		signer:   v4.NewSigner(),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	switch cfg.STUNURL {
	case "":
		c.stun = DefaultSTUNURL(c.region)
	case STUNNone:
	default:
		c.stun = cfg.STUNURL
	}
	c.creds = awsCfg.Credentials
	if c.creds == nil {
		return nil, fmt.Errorf("%w: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE", ErrMissingCredentials)
	}
	if _, ok := c.creds.(*aws.CredentialsCache); !ok {
		c.creds = aws.NewCredentialsCache(c.creds)
	}
	if _, err := c.creds.Retrieve(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("control: retrieving AWS credentials: %w", ctx.Err())
		}
		return nil, fmt.Errorf("%w: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run 'aws configure': %w", ErrMissingCredentials, err)
	}
	c.httpc = awsCfg.HTTPClient
	if c.httpc == nil {
		c.httpc = http.DefaultClient
	}
	c.kv = kinesisvideo.NewFromConfig(awsCfg, func(o *kinesisvideo.Options) {
		o.Credentials = c.creds
		if c.endpoint != "" {
			o.BaseEndpoint = aws.String(c.endpoint)
		}
		o.HTTPSignerV4 = skewSigner{c}
		o.APIOptions = append(o.APIOptions, c.addDateObserver)
		if r, ok := o.Retryer.(aws.RetryerV2); ok {
			o.Retryer = noTimeoutRetry{r}
		}
	})
	return c, nil
}

// DefaultSTUNURL returns the STUN server the official KVS clients use for a
// region: stun:stun.kinesisvideo.{region}.amazonaws.com:443 (".com.cn" in
// the China regions).
func DefaultSTUNURL(region string) string {
	suffix := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = "amazonaws.com.cn"
	}
	return "stun:stun.kinesisvideo." + region + "." + suffix + ":443"
}

// Region returns the region the client signs for.
func (c *Client) Region() string { return c.region }

// Kinesisvideo returns the underlying aws-sdk-go-v2 client, for operations
// this package does not wrap. It signs with the corrected clock too.
func (c *Client) Kinesisvideo() *kinesisvideo.Client { return c.kv }

// ClockOffset returns the measured difference between the service's clock
// and the local clock (service minus local), from the Date header of the
// latest response. Offsets under two seconds are reported as zero.
func (c *Client) ClockOffset() time.Duration { return time.Duration(c.offset.Load()) }

// Now returns the local time corrected by ClockOffset: the time to sign
// requests with, including presigned WSS URLs.
func (c *Client) Now() time.Time { return c.now().Add(c.ClockOffset()) }

// Credentials returns the current AWS credentials (refreshed by the
// credential cache when they expire).
func (c *Client) Credentials(ctx context.Context) (aws.Credentials, error) {
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("%w: %w", ErrMissingCredentials, err)
	}
	return creds, nil
}

// SigV4Credentials returns the current credentials in the form the sigv4
// and signaling packages take (signaling.Config.Credentials).
func (c *Client) SigV4Credentials(ctx context.Context) (sigv4.Credentials, error) {
	creds, err := c.Credentials(ctx)
	if err != nil {
		return sigv4.Credentials{}, err
	}
	return sigv4.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}, nil
}

// observeDate updates the clock offset from a response's Date header.
func (c *Client) observeDate(h http.Header, local time.Time) {
	d := h.Get("Date")
	if d == "" {
		return
	}
	server, err := http.ParseTime(d)
	if err != nil {
		return
	}
	measured := server.Sub(local)
	if measured.Abs() < skewTolerance {
		measured = 0
	}
	old := time.Duration(c.offset.Load())
	if (measured - old).Abs() < skewTolerance {
		return
	}
	c.offset.Store(int64(measured))
	c.log.Info("clock offset to the KVS service measured", "offset", measured, "previous", old)
}

// addDateObserver adds a deserialize middleware that measures the clock
// offset from every response the SDK receives, errors included.
func (c *Client) addDateObserver(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("kvsrtcClockOffset",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleDeserialize(ctx, in)
			if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp != nil {
				c.observeDate(resp.Header, c.now())
			}
			return out, md, err
		}), middleware.After)
}

// skewSigner signs the SDK's requests with the client's corrected clock
// instead of the SDK's own, so that one measurement (by any call) serves
// every call and the WSS presign alike.
type skewSigner struct{ c *Client }

func (s skewSigner) SignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, _ time.Time, optFns ...func(*v4.SignerOptions)) error {
	return s.c.signer.SignHTTP(ctx, creds, r, payloadHash, service, region, s.c.Now(), optFns...)
}

// retrySkew runs call, and once more if it failed with ErrClockSkew after
// the clock offset changed (the failed answer carried the service's time).
func (c *Client) retrySkew(call func() error) error {
	before := c.ClockOffset()
	err := call()
	if err != nil && errors.Is(err, ErrClockSkew) && c.ClockOffset() != before {
		c.log.Debug("retrying after clock-skew error with the corrected clock", "offset", c.ClockOffset())
		err = call()
	}
	return err
}

// noTimeoutRetry does not retry a request that timed out: each one already
// waited RequestTimeout, and the caller's retry policy decides.
type noTimeoutRetry struct{ aws.RetryerV2 }

func (r noTimeoutRetry) IsErrorRetryable(err error) bool {
	var te interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &te) && te.Timeout()) {
		return false
	}
	return r.RetryerV2.IsErrorRetryable(err)
}
