package control_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func startEmulator(t *testing.T, cfg emulator.Config) *emulator.Server {
	t.Helper()
	if cfg.Channels == nil {
		cfg.Channels = []string{"demo"}
	}
	s, err := emulator.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// emuClient returns a control client for s; secret "" means the right one.
func emuClient(t *testing.T, s *emulator.Server, secret string, mut ...func(*control.Config)) *control.Client {
	t.Helper()
	isolateEnv(t)
	creds := s.Credentials()
	if secret == "" {
		secret = creds.SecretAccessKey
	}
	cfg := control.Config{
		Region:      s.Region(),
		EndpointURL: s.URL(),
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, secret, creds.SessionToken),
		HTTPClient:  testHTTPClient(t),
	}
	for _, m := range mut {
		m(&cfg)
	}
	c, err := control.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEmulatorResolveChannel(t *testing.T) {
	s := startEmulator(t, emulator.Config{})
	c := emuClient(t, s, "")
	ctx := context.Background()
	ch, err := c.ResolveChannel(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	a, err := kvsproto.ParseChannelARN(ch.ARN)
	if err != nil || a.Name != "demo" || a.Region != s.Region() {
		t.Fatalf("ARN %q: %v", ch.ARN, err)
	}
	if ch.Name != "demo" || ch.Status != kvsproto.StatusActive || ch.MessageTTL != 60*time.Second || ch.Version == "" || ch.CreationTime.IsZero() {
		t.Fatalf("channel = %+v", ch)
	}
	byARN, err := c.ResolveChannel(ctx, ch.ARN)
	if err != nil || byARN != ch {
		t.Fatalf("by ARN: %+v %v", byARN, err)
	}

	_, err = c.ResolveChannel(ctx, "no-such-channel")
	var ae *control.APIError
	if !errors.As(err, &ae) || !errors.Is(err, control.ErrChannelNotFound) || ae.StatusCode != 404 ||
		ae.Code != "ResourceNotFoundException" || ae.Op != "DescribeSignalingChannel" || ae.RequestID == "" {
		t.Fatalf("unknown channel: %v (%+v)", err, ae)
	}
	var rnf *types.ResourceNotFoundException
	if !errors.As(err, &rnf) {
		t.Fatal("the SDK's typed exception is not reachable")
	}
	// Local validation, before any call.
	for _, bad := range []string{"bad name", "arn:aws:kinesisvideo:eu-west-1:123456789012:channel/demo/1", "arn:nope"} {
		if _, err := c.ResolveChannel(ctx, bad); !errors.Is(err, control.ErrInvalidArgument) || errors.As(err, &ae) {
			t.Errorf("ResolveChannel(%q) = %v", bad, err)
		}
	}
}

func TestEmulatorEndpointsAndICE(t *testing.T) {
	s := startEmulator(t, emulator.Config{ICETTL: 120 * time.Second})
	c := emuClient(t, s, "")
	ctx := context.Background()
	ch, err := c.ResolveChannel(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Endpoints(ctx, ch.ARN, kvsproto.RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Endpoints(ctx, ch.ARN, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range []control.Endpoints{m, v} {
		if !strings.HasPrefix(ep.WSS, "ws") || !strings.HasPrefix(ep.HTTPS, "http") {
			t.Fatalf("endpoints %+v", ep)
		}
	}
	if m.WSS == v.WSS {
		t.Fatalf("master and viewer share the WSS endpoint %q", m.WSS)
	}
	if _, err := c.Endpoints(ctx, ch.ARN, "OBSERVER"); !errors.Is(err, control.ErrInvalidArgument) {
		t.Fatalf("bad role: %v", err)
	}

	before := time.Now()
	ice, err := c.ICEServers(ctx, ch.ARN, v.HTTPS, "viewer-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ice.Servers) < 2 || ice.Servers[0].URLs[0] != control.DefaultSTUNURL(s.Region()) || ice.Servers[0].Username != "" {
		t.Fatalf("servers %+v", ice.Servers)
	}
	for _, srv := range ice.Servers[1:] {
		if srv.Username == "" || srv.Credential == "" || len(srv.URLs) == 0 || !strings.HasPrefix(srv.URLs[0], "turn") {
			t.Fatalf("TURN server %+v", srv)
		}
	}
	if !ice.HasTURN() || ice.TTL != 120*time.Second || ice.FetchedAt.Before(before) ||
		ice.Expires.Sub(ice.FetchedAt) != 120*time.Second || ice.Expires.Sub(ice.RefreshAt) != 30*time.Second {
		t.Fatalf("ICE times: %+v", ice)
	}
	// The master's HTTPS endpoint works too, without a client id.
	if _, err := c.ICEServers(ctx, ch.ARN, m.HTTPS, ""); err != nil {
		t.Fatal(err)
	}
	// An unknown channel on the HTTPS endpoint.
	a, _ := kvsproto.ParseChannelARN(ch.ARN)
	a.Name = "gone"
	if _, err := c.ICEServers(ctx, a.String(), v.HTTPS, ""); !errors.Is(err, control.ErrChannelNotFound) {
		t.Fatalf("unknown channel: %v", err)
	}
}

func TestEmulatorICECache(t *testing.T) {
	s := startEmulator(t, emulator.Config{})
	c := emuClient(t, s, "")
	ctx := context.Background()
	ch, err := c.ResolveChannel(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.Endpoints(ctx, ch.ARN, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	cache := control.NewICECache(c)
	clock := &fakeClock{t: time.Now()}
	cache.SetCacheClock(clock.Now)
	first, err := cache.Get(ctx, ch.ARN, kvsproto.RoleViewer, ep.HTTPS, "viewer-1")
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(200 * time.Second)
	same, err := cache.Get(ctx, ch.ARN, kvsproto.RoleViewer, ep.HTTPS, "viewer-1")
	if err != nil || same.Servers[1].Username != first.Servers[1].Username {
		t.Fatalf("cached: %v", err)
	}
	clock.Advance(60 * time.Second) // 260 s of 300: refresh ahead of expiry
	fresh, err := cache.Get(ctx, ch.ARN, kvsproto.RoleViewer, ep.HTTPS, "viewer-1")
	if err != nil || !fresh.FetchedAt.After(first.FetchedAt) || !clock.Now().Before(fresh.RefreshAt) {
		t.Fatalf("refreshed: %+v %v", fresh, err)
	}
}

func TestEmulatorErrors(t *testing.T) {
	s := startEmulator(t, emulator.Config{})
	ctx := context.Background()

	// Wrong secret.
	bad := emuClient(t, s, "wrong-secret")
	_, err := bad.ResolveChannel(ctx, "demo")
	var ae *control.APIError
	if !errors.As(err, &ae) || !errors.Is(err, control.ErrAccessDenied) || errors.Is(err, control.ErrClockSkew) || ae.StatusCode != 403 {
		t.Fatalf("wrong secret: %v", err)
	}
	// Unknown access key.
	isolateEnv(t)
	unknown, err := control.New(ctx, control.Config{Region: s.Region(), EndpointURL: s.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDUNKNOWN", "x", ""), HTTPClient: testHTTPClient(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unknown.ResolveChannel(ctx, "demo"); !errors.Is(err, control.ErrAccessDenied) {
		t.Fatalf("unknown key: %v", err)
	}

	// Throttling.
	c := emuClient(t, s, "")
	if _, err := s.Inject(emulator.Fault{Kind: emulator.FaultThrottleAPI, Target: "DescribeSignalingChannel", Count: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = c.ResolveChannel(ctx, "demo")
	if !errors.As(err, &ae) || !errors.Is(err, control.ErrThrottled) || ae.Code != "ClientLimitExceededException" || ae.StatusCode != 400 {
		t.Fatalf("throttled: %v", err)
	}
	if _, err := c.ResolveChannel(ctx, "demo"); err != nil {
		t.Fatalf("after the throttle: %v", err)
	}
}

func TestEmulatorClockSkew(t *testing.T) {
	s := startEmulator(t, emulator.Config{})
	s.SetClockSkew(10 * time.Minute)
	c := emuClient(t, s, "")
	ctx := context.Background()
	ch, err := c.ResolveChannel(ctx, "demo")
	if err != nil {
		t.Fatalf("skewed service: %v", err)
	}
	if off := c.ClockOffset(); off < 9*time.Minute || off > 11*time.Minute {
		t.Fatalf("ClockOffset = %v", off)
	}
	if d := time.Until(c.Now()); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("Now is off by %v", d)
	}
	ep, err := c.Endpoints(ctx, ch.ARN, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ICEServers(ctx, ch.ARN, ep.HTTPS, ""); err != nil {
		t.Fatal(err)
	}
	// The service's clock goes back: the offset heals.
	s.SetClockSkew(-8 * time.Minute)
	if _, err := c.ICEServers(ctx, ch.ARN, ep.HTTPS, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResolveChannel(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if off := c.ClockOffset(); off > -7*time.Minute {
		t.Fatalf("ClockOffset after the change = %v", off)
	}
}

func TestEmulatorCreateDelete(t *testing.T) {
	s := startEmulator(t, emulator.Config{})
	c := emuClient(t, s, "")
	ctx := context.Background()
	arn, err := c.CreateChannel(ctx, "made-here", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.ResolveChannel(ctx, "made-here")
	if err != nil || ch.ARN != arn || ch.MessageTTL != 30*time.Second {
		t.Fatalf("%+v %v", ch, err)
	}
	if _, err := c.CreateChannel(ctx, "made-here", 0); !errors.Is(err, control.ErrResourceInUse) {
		t.Fatalf("duplicate: %v", err)
	}
	for _, ttl := range []time.Duration{time.Second, 121 * time.Second, 1500 * time.Millisecond} {
		if _, err := c.CreateChannel(ctx, "x", ttl); !errors.Is(err, control.ErrInvalidArgument) {
			t.Fatalf("ttl %v: %v", ttl, err)
		}
	}
	if err := c.DeleteChannel(ctx, arn); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResolveChannel(ctx, arn); !errors.Is(err, control.ErrChannelNotFound) && !errors.Is(err, control.ErrChannelDeleting) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestEmulatorEndpointFromEnv(t *testing.T) {
	s := startEmulator(t, emulator.Config{})
	isolateEnv(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS_VIDEO", s.URL())
	t.Setenv("AWS_REGION", s.Region())
	t.Setenv("AWS_ACCESS_KEY_ID", s.Credentials().AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.Credentials().SecretAccessKey)
	c, err := control.New(context.Background(), control.Config{HTTPClient: testHTTPClient(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResolveChannel(context.Background(), "demo"); err != nil {
		t.Fatal(err)
	}
	// The SDK client is reachable for other operations.
	out, err := c.Kinesisvideo().ListSignalingChannels(context.Background(), nil)
	if err != nil || len(out.ChannelInfoList) != 1 || aws.ToString(out.ChannelInfoList[0].ChannelName) != "demo" {
		t.Fatalf("list: %v", err)
	}
}
