package player_test

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// Unresolvable host names in these tests have a 64-character label: Go's
// resolver refuses such a name as "no such host" before sending any query,
// so the tests send no DNS traffic off the machine.

// serve runs a player with cfg behind an httptest server.
func serve(t *testing.T, cfg player.Config) *fixture {
	t.Helper()
	f := &fixture{logs: &testutil.Buffer{}, token: cfg.Auth}
	cfg.Logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := player.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv, f.ctl = srv, cfg.Control
	f.ts = httptest.NewServer(srv)
	t.Cleanup(f.ts.Close)
	f.tr = http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(f.tr.CloseIdleConnections)
	return f
}

// TestSessionServiceUnreachable: a control plane nobody listens on is
// diagnosed as service-unreachable with the endpoint, what failed and the
// same fix kvsrtc view and kvsrtc doctor give (it used to be a generic
// "service-unavailable ... wait a moment").
func TestSessionServiceUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	_ = l.Close()
	ctl, err := control.New(t.Context(), control.Config{Region: "us-west-2", EndpointURL: endpoint, STUNURL: control.STUNNone,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDKVSRTCTEST", "secret", "")})
	if err != nil {
		t.Fatal(err)
	}
	f := serve(t, player.Config{Control: ctl, Channels: []string{"cam"}, NoAuth: true})
	resp, b := f.request(t, "POST", "/api/session", map[string]string{"channel": "cam"}, nil)
	d := apiError(t, b)
	if resp.StatusCode != http.StatusBadGateway || d.Cause != viewer.CauseUnreachable || !d.Retryable {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	for _, w := range []string{"KVS control plane at " + endpoint + ": dial: connection refused"} {
		if !strings.Contains(d.Message, w) {
			t.Errorf("message lacks %q: %s", w, d.Message)
		}
	}
	for _, w := range []string{"nothing accepts connections on " + strings.TrimPrefix(endpoint, "http://"), "kvsrtc local", "AWS_ENDPOINT_URL_KINESIS_VIDEO"} {
		if !strings.Contains(d.Advice, w) {
			t.Errorf("advice lacks %q: %s", w, d.Advice)
		}
	}
	t.Logf("%s / %s / %s", d.Title, d.Message, d.Advice)
}

// TestDiagnoseSignalingUnreachable: the control plane answers, but the
// signaling endpoints it hands out do not resolve: the diagnosis of a page
// whose WebSocket failed names that endpoint.
func TestDiagnoseSignalingUnreachable(t *testing.T) {
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, Hostname: "kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid"}})
	// The emulator's URL names the unresolvable host: talk to its address.
	ctl := env.NewControl(t, func(c *control.Config) { c.EndpointURL = "http://" + env.Server.Addr().String() })
	f := serve(t, player.Config{Control: ctl, Channels: []string{"cam"}, Auth: testToken})
	resp, b := f.request(t, "POST", "/api/diagnose", map[string]any{"channel": "cam", "cause": "signaling-lost", "stage": "signaling", "attempts": 3}, f.bearer())
	var d player.Diagnosis
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &d) != nil || d.Cause != viewer.CauseUnreachable {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if !strings.Contains(d.Message, "KVS signaling endpoint at http://kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid:") || !strings.Contains(d.Message, "DNS: lookup failed") ||
		!strings.Contains(d.Advice, "kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid does not resolve") {
		t.Fatalf("diagnosis %+v", d)
	}
	t.Logf("%s / %s / %s", d.Title, d.Message, d.Advice)
}
