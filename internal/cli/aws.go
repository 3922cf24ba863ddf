package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"

	"github.com/kvsrtc/kvsrtc/control"
)

// awsFlags are the flags of every command that talks to KVS.
type awsFlags struct {
	region      string
	endpointURL string
	stun        string
}

func (a *awsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.region, "region", "", "AWS region (default: AWS_REGION or the profile's region)")
	fs.StringVar(&a.endpointURL, "endpoint-url", "", "control-plane endpoint (default: AWS_ENDPOINT_URL_KINESIS_VIDEO, else AWS)")
	fs.StringVar(&a.stun, "stun", "", `STUN server URL; "-" for none (default: stun:stun.kinesisvideo.REGION.amazonaws.com:443 on AWS, none on other endpoints)`)
}

// checkCABundle checks that AWS_CA_BUNDLE, when set, names a readable file
// with a PEM certificate, and returns its path. It does not parse the
// certificates: the AWS SDK does that once, and httpClient reuses its pool
// (parsing a system-sized bundle costs tens of milliseconds at every start).
func checkCABundle(env *Env) (string, error) {
	path := env.Getenv("AWS_CA_BUNDLE")
	if path == "" {
		return "", nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("AWS_CA_BUNDLE: %w", err)
	}
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			return "", fmt.Errorf("AWS_CA_BUNDLE %s holds no PEM certificate", path)
		}
		if b.Type == "CERTIFICATE" {
			return path, nil
		}
	}
}

// httpClient returns an HTTP client for the WebSocket handshake that trusts
// what the AWS SDK client c trusts: the AWS_CA_BUNDLE pool the SDK built
// (the SDK, like the AWS CLI, trusts exactly the bundle). Nil when
// AWS_CA_BUNDLE is unset. Should the SDK's pool not be reachable, the
// bundle is parsed here, on top of the system roots.
func httpClient(c *control.Client, path string) (*http.Client, error) {
	if path == "" {
		return nil, nil
	}
	var pool *x509.CertPool
	if bc, ok := c.Kinesisvideo().Options().HTTPClient.(*awshttp.BuildableClient); ok {
		if tc := bc.GetTransport().TLSClientConfig; tc != nil {
			pool = tc.RootCAs
		}
	}
	if pool == nil {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("AWS_CA_BUNDLE: %w", err)
		}
		if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("AWS_CA_BUNDLE %s holds no PEM certificate", path)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// isAWSEndpoint reports whether u is an AWS-operated endpoint.
func isAWSEndpoint(u string) bool {
	if u == "" {
		return true
	}
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	return strings.HasSuffix(h, ".amazonaws.com") || strings.HasSuffix(h, ".amazonaws.com.cn") || strings.HasSuffix(h, ".api.aws")
}

// control builds the control-plane client from the flags and environment.
func (a *awsFlags) control(ctx context.Context, env *Env, cfg control.Config) (*control.Client, *http.Client, error) {
	bundle, err := checkCABundle(env)
	if err != nil {
		return nil, nil, err
	}
	cfg.Region = a.region
	cfg.EndpointURL = a.endpointURL
	// The AWS SDK reads AWS_CA_BUNDLE itself (and refuses a plain
	// *http.Client alongside it); hc is for the WebSocket handshake.
	endpoint := a.endpointURL
	if endpoint == "" {
		endpoint = env.Getenv("AWS_ENDPOINT_URL_KINESIS_VIDEO")
	}
	if endpoint == "" {
		endpoint = env.Getenv("AWS_ENDPOINT_URL")
	}
	switch {
	case a.stun != "":
		cfg.STUNURL = a.stun
	case !isAWSEndpoint(endpoint):
		// The KVS STUN convention names an AWS host; a local or private
		// endpoint has its own TURN servers (which also answer STUN).
		cfg.STUNURL = control.STUNNone
	}
	c, err := control.New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	hc, err := httpClient(c, bundle)
	if err != nil {
		return nil, nil, err
	}
	return c, hc, nil
}

// channelFlags are --channel and --channel-arn.
type channelFlags struct {
	name string
	arn  string
}

func (c *channelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.name, "channel", "", "signaling channel name (or ARN)")
	fs.StringVar(&c.arn, "channel-arn", "", "signaling channel ARN (instead of --channel)")
}

// value returns the channel name or ARN the user gave, or a usage error.
func (c *channelFlags) value() (string, error) {
	switch {
	case c.name != "" && c.arn != "":
		return "", fmt.Errorf("%w: give --channel or --channel-arn, not both", ErrUsage)
	case c.arn != "":
		if !strings.HasPrefix(c.arn, "arn:") {
			return "", fmt.Errorf("%w: --channel-arn %q is not an ARN (use --channel for a name)", ErrUsage, c.arn)
		}
		return c.arn, nil
	case c.name == "":
		return "", fmt.Errorf("%w: --channel NAME or --channel-arn ARN is required", ErrUsage)
	}
	return c.name, nil
}
