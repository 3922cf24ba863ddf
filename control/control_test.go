package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testHTTPClient returns an HTTP client whose idle connections are closed
// at the end of the test, so that goleak sees no transport goroutines.
func testHTTPClient(t *testing.T) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

const (
	testAKID   = "AKIDEXAMPLE"
	testSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	testARN    = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/demo/1700000000000"
)

// isolateEnv removes every AWS setting of the machine from the test's view.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS_VIDEO", "AWS_CA_BUNDLE",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
	} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func staticCreds(secret string) credentials.StaticCredentialsProvider {
	return credentials.NewStaticCredentialsProvider(testAKID, secret, "")
}

func TestNewMissingRegionAndCredentials(t *testing.T) {
	isolateEnv(t)
	ctx := context.Background()
	_, err := control.New(ctx, control.Config{Credentials: staticCreds(testSecret)})
	if !errors.Is(err, control.ErrMissingRegion) {
		t.Fatalf("no region: %v", err)
	}
	_, err = control.New(ctx, control.Config{Region: "us-west-2"})
	if !errors.Is(err, control.ErrMissingCredentials) {
		t.Fatalf("no credentials: %v", err)
	}
	_, err = control.New(ctx, control.Config{Region: "us-west-2", Credentials: staticCreds(testSecret), EndpointURL: "127.0.0.1:80"})
	if !errors.Is(err, control.ErrInvalidArgument) {
		t.Fatalf("bad endpoint: %v", err)
	}
	// The environment is honoured.
	t.Setenv("AWS_REGION", "eu-central-1")
	t.Setenv("AWS_ACCESS_KEY_ID", testAKID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	c, err := control.New(ctx, control.Config{HTTPClient: testHTTPClient(t)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Region() != "eu-central-1" {
		t.Fatalf("region %q", c.Region())
	}
	sc, err := c.SigV4Credentials(ctx)
	if err != nil || sc.AccessKeyID != testAKID || sc.SecretAccessKey != testSecret {
		t.Fatalf("credentials %v %v", sc, err)
	}
}

func TestDefaultSTUNURL(t *testing.T) {
	if got := control.DefaultSTUNURL("us-west-2"); got != "stun:stun.kinesisvideo.us-west-2.amazonaws.com:443" {
		t.Fatal(got)
	}
	if got := control.DefaultSTUNURL("cn-north-1"); got != "stun:stun.kinesisvideo.cn-north-1.amazonaws.com.cn:443" {
		t.Fatal(got)
	}
}

// iceService is a small HTTPS-endpoint stand-in for GetIceServerConfig
// tests: it verifies SigV4 with the sigv4 package against its own clock and
// answers with a configurable Ttl or error.
type iceService struct {
	srv   *httptest.Server
	calls atomic.Int32
	mu    sync.Mutex
	ttl   int
	fail  string // error code to answer with ("" = success)
	skew  time.Duration
	block chan struct{} // if set, requests wait for it
}

func newICEService(t *testing.T) *iceService {
	s := &iceService{ttl: 300}
	v := &sigv4.Verifier{
		Lookup: func(id string) (sigv4.Credentials, bool) {
			return sigv4.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret}, id == testAKID
		},
		Now: func() time.Time { return time.Now().Add(s.getSkew()) },
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		s.mu.Lock()
		ttl, fail, block := s.ttl, s.fail, s.block
		s.mu.Unlock()
		if block != nil {
			<-block
		}
		w.Header().Set("Date", time.Now().Add(s.getSkew()).UTC().Format(http.TimeFormat))
		w.Header().Set("x-amzn-RequestId", "req-1")
		body, _ := io.ReadAll(r.Body)
		if _, err := v.VerifyRequest(r, body); err != nil {
			var se *sigv4.Error
			errors.As(err, &se)
			w.Header().Set("x-amzn-ErrorType", se.Code)
			w.WriteHeader(se.HTTPStatus())
			json.NewEncoder(w).Encode(map[string]string{"Message": se.Message})
			return
		}
		var in kvsproto.GetIceServerConfigInput
		if r.URL.Path != kvsproto.PathGetIceServerConfig || json.Unmarshal(body, &in) != nil || in.ChannelARN != testARN || in.Service != "TURN" {
			w.Header().Set("x-amzn-ErrorType", "InvalidArgumentException")
			w.WriteHeader(400)
			io.WriteString(w, `{"Message":"bad request"}`)
			return
		}
		if fail != "" {
			w.Header().Set("x-amzn-ErrorType", fail+":http://internal.amazon.com/coral/")
			w.WriteHeader(400)
			io.WriteString(w, `{"message":"injected"}`)
			return
		}
		json.NewEncoder(w).Encode(kvsproto.GetIceServerConfigOutput{IceServerList: []kvsproto.IceServer{
			{Uris: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "u1", Password: "p1", Ttl: ttl},
			{Uris: []string{"turn:127.0.0.1:3479?transport=udp", "turns:127.0.0.1:5349?transport=tcp"}, Username: "u2", Password: "p2", Ttl: ttl + 100},
			{Uris: nil, Username: "skip", Ttl: 10},
		}})
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *iceService) getSkew() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skew
}

func (s *iceService) set(f func(*iceService)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func newClient(t *testing.T, cfg control.Config) *control.Client {
	t.Helper()
	isolateEnv(t)
	if cfg.Region == "" {
		cfg.Region = "us-west-2"
	}
	if cfg.Credentials == nil {
		cfg.Credentials = staticCreds(testSecret)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = testHTTPClient(t)
	}
	c, err := control.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestICEServersParsing(t *testing.T) {
	svc := newICEService(t)
	c := newClient(t, control.Config{EndpointURL: "http://127.0.0.1:1"})
	cfg, err := c.ICEServers(context.Background(), testARN, svc.srv.URL, "viewer-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Servers) != 3 || cfg.Servers[0].URLs[0] != "stun:stun.kinesisvideo.us-west-2.amazonaws.com:443" || cfg.Servers[0].Username != "" {
		t.Fatalf("servers = %+v", cfg.Servers)
	}
	if cfg.Servers[1].Username != "u1" || cfg.Servers[1].Credential != "p1" || len(cfg.Servers[2].URLs) != 2 || !cfg.HasTURN() {
		t.Fatalf("servers = %+v", cfg.Servers)
	}
	if cfg.TTL != 300*time.Second || cfg.Expires.Sub(cfg.FetchedAt) != 300*time.Second || cfg.Expires.Sub(cfg.RefreshAt) != 45*time.Second {
		t.Fatalf("times: ttl %v fetched %v refresh %v expires %v", cfg.TTL, cfg.FetchedAt, cfg.RefreshAt, cfg.Expires)
	}
	// STUN overridable and removable.
	c2 := newClient(t, control.Config{STUNURL: control.STUNNone})
	cfg, err = c2.ICEServers(context.Background(), testARN, svc.srv.URL+"/", "")
	if err != nil || len(cfg.Servers) != 2 || cfg.Servers[0].Username != "u1" {
		t.Fatalf("no STUN: %+v %v", cfg.Servers, err)
	}
	c3 := newClient(t, control.Config{STUNURL: "stun:127.0.0.1:3478"})
	cfg, err = c3.ICEServers(context.Background(), testARN, svc.srv.URL, "")
	if err != nil || cfg.Servers[0].URLs[0] != "stun:127.0.0.1:3478" {
		t.Fatalf("custom STUN: %+v %v", cfg.Servers, err)
	}
	// Ttl 40 s: 30 s margin; Ttl 20 s: refresh half-way.
	svc.set(func(s *iceService) { s.ttl = 40 })
	cfg, err = c.ICEServers(context.Background(), testARN, svc.srv.URL, "")
	if err != nil || cfg.TTL != 40*time.Second || cfg.Expires.Sub(cfg.RefreshAt) != 30*time.Second {
		t.Fatalf("ttl 40: %v %v %v", cfg.TTL, cfg.Expires.Sub(cfg.RefreshAt), err)
	}
	svc.set(func(s *iceService) { s.ttl = 20 })
	cfg, err = c.ICEServers(context.Background(), testARN, svc.srv.URL, "")
	if err != nil || cfg.TTL != 20*time.Second || cfg.Expires.Sub(cfg.RefreshAt) != 10*time.Second {
		t.Fatalf("short ttl: %v %v %v", cfg.TTL, cfg.Expires.Sub(cfg.RefreshAt), err)
	}
	// Long Ttl: 15 %.
	svc.set(func(s *iceService) { s.ttl = 1000 })
	cfg, err = c.ICEServers(context.Background(), testARN, svc.srv.URL, "")
	if err != nil || cfg.Expires.Sub(cfg.RefreshAt) != 150*time.Second {
		t.Fatalf("long ttl: %v %v", cfg.Expires.Sub(cfg.RefreshAt), err)
	}
	// Bad arguments fail before any request.
	n := svc.calls.Load()
	for _, args := range [][3]string{
		{"not-an-arn", svc.srv.URL, ""},
		{testARN, "ftp://x", ""},
		{testARN, svc.srv.URL, "bad id"},
	} {
		if _, err := c.ICEServers(context.Background(), args[0], args[1], args[2]); !errors.Is(err, control.ErrInvalidArgument) {
			t.Errorf("ICEServers%v = %v", args, err)
		}
	}
	if svc.calls.Load() != n {
		t.Fatal("invalid arguments reached the service")
	}
}

func TestICEServersErrors(t *testing.T) {
	svc := newICEService(t)
	c := newClient(t, control.Config{})
	for code, want := range map[string]error{
		"ClientLimitExceededException": control.ErrThrottled,
		"ResourceNotFoundException":    control.ErrChannelNotFound,
		"NotAuthorizedException":       control.ErrAccessDenied,
		"InvalidArgumentException":     control.ErrInvalidArgument,
	} {
		svc.set(func(s *iceService) { s.fail = code })
		_, err := c.ICEServers(context.Background(), testARN, svc.srv.URL, "")
		var ae *control.APIError
		if !errors.As(err, &ae) || !errors.Is(err, want) || ae.Code != code || ae.Op != "GetIceServerConfig" || ae.StatusCode != 400 || ae.RequestID != "req-1" || ae.Message != "injected" {
			t.Errorf("%s: %v (%+v)", code, err, ae)
		}
	}
	svc.set(func(s *iceService) { s.fail = "" })
	bad := newClient(t, control.Config{Credentials: staticCreds("wrong-secret")})
	_, err := bad.ICEServers(context.Background(), testARN, svc.srv.URL, "")
	var ae *control.APIError
	if !errors.As(err, &ae) || !errors.Is(err, control.ErrAccessDenied) || ae.StatusCode != 403 {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestICEServersClockSkew(t *testing.T) {
	svc := newICEService(t)
	svc.set(func(s *iceService) { s.skew = 10 * time.Minute })
	c := newClient(t, control.Config{})
	before := svc.calls.Load()
	if _, err := c.ICEServers(context.Background(), testARN, svc.srv.URL, ""); err != nil {
		t.Fatal(err)
	}
	if got := svc.calls.Load() - before; got != 2 {
		t.Fatalf("%d calls, want 2 (refused, then retried with the corrected clock)", got)
	}
	if off := c.ClockOffset(); off < 9*time.Minute || off > 11*time.Minute {
		t.Fatalf("ClockOffset = %v", off)
	}
	if d := time.Until(c.Now()); d < 9*time.Minute {
		t.Fatalf("Now is not corrected: %v", d)
	}
	// Later calls are signed right the first time.
	before = svc.calls.Load()
	if _, err := c.ICEServers(context.Background(), testARN, svc.srv.URL, ""); err != nil || svc.calls.Load()-before != 1 {
		t.Fatalf("second call: %v, %d calls", err, svc.calls.Load()-before)
	}
}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func TestICECache(t *testing.T) {
	svc := newICEService(t)
	c := newClient(t, control.Config{})
	cache := control.NewICECache(c)
	clock := &fakeClock{t: time.Now()}
	cache.SetCacheClock(clock.Now)
	ctx := context.Background()
	get := func() (control.ICEConfig, error) {
		return cache.Get(ctx, testARN, kvsproto.RoleViewer, svc.srv.URL, "")
	}
	calls := func() int32 { return svc.calls.Load() }

	first, err := get()
	if err != nil || calls() != 1 {
		t.Fatalf("first: %v, %d calls", err, calls())
	}
	clock.Advance(250 * time.Second) // before RefreshAt (255 s)
	if cfg, err := get(); err != nil || calls() != 1 || !cfg.FetchedAt.Equal(first.FetchedAt) {
		t.Fatalf("cached: %v, %d calls", err, calls())
	}
	// Another role is another entry.
	if _, err := cache.Get(ctx, testARN, kvsproto.RoleMaster, svc.srv.URL, ""); err != nil || calls() != 2 {
		t.Fatalf("master: %v, %d calls", err, calls())
	}
	clock.Advance(10 * time.Second) // 260 s: past RefreshAt, before Expires
	second, err := get()
	if err != nil || calls() != 3 || !second.FetchedAt.After(first.FetchedAt) {
		t.Fatalf("refresh ahead of expiry: %v, %d calls", err, calls())
	}
	// A failing refresh falls back to the old configuration until it expires.
	svc.set(func(s *iceService) { s.fail = "ClientLimitExceededException" })
	clock.Advance(260 * time.Second)
	if cfg, err := get(); err != nil || !cfg.FetchedAt.Equal(second.FetchedAt) {
		t.Fatalf("fallback: %+v, %v", cfg, err)
	}
	clock.Advance(60 * time.Second) // past Expires
	if _, err := get(); !errors.Is(err, control.ErrThrottled) {
		t.Fatalf("expired and refresh failing: %v", err)
	}
	svc.set(func(s *iceService) { s.fail = "" })

	// Invalidate forces a fetch.
	if _, err := get(); err != nil {
		t.Fatal(err)
	}
	n := calls()
	cache.Invalidate(testARN)
	if _, err := get(); err != nil || calls() != n+1 {
		t.Fatalf("after Invalidate: %v, %d calls (want %d)", err, calls(), n+1)
	}

	// Concurrent callers share one fetch.
	cache.Invalidate(testARN)
	block := make(chan struct{})
	svc.set(func(s *iceService) { s.block = block })
	n = calls()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := get()
			errs <- err
		}()
	}
	for calls() == n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the other callers queue up
	close(block)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls() != n+1 {
		t.Fatalf("%d fetches for 8 concurrent callers", calls()-n)
	}
	svc.set(func(s *iceService) { s.block = nil })
}

// TestServiceAnswers covers answers the emulator does not give: a channel
// being deleted and an endpoint list without HTTPS.
func TestServiceAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case kvsproto.PathDescribeSignalingChannel:
			io.WriteString(w, `{"ChannelInfo":{"ChannelARN":"`+testARN+`","ChannelName":"demo","ChannelStatus":"DELETING","ChannelType":"SINGLE_MASTER","CreationTime":1.7E9,"Version":"v1"}}`)
		case kvsproto.PathGetSignalingChannelEndpoint:
			io.WriteString(w, `{"ResourceEndpointList":[{"Protocol":"WSS","ResourceEndpoint":"wss://m-1.example"}]}`)
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	c := newClient(t, control.Config{EndpointURL: srv.URL})
	ch, err := c.ResolveChannel(context.Background(), "demo")
	if !errors.Is(err, control.ErrChannelDeleting) || ch.ARN != testARN || ch.Status != kvsproto.StatusDeleting {
		t.Fatalf("deleting: %+v %v", ch, err)
	}
	if _, err := c.Endpoints(context.Background(), testARN, kvsproto.RoleMaster); !errors.Is(err, control.ErrBadResponse) {
		t.Fatalf("missing HTTPS: %v", err)
	}
}
