package player_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// This file is over 500 lines on purpose: the player's HTTP API end to
// end (configuration, sessions and refusals, sign-in, diagnosis and
// reports, the channel and ICE caches), on one fixture.

func TestConfigValidation(t *testing.T) {
	ctl := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{TURNDisabled: true}}).Control
	ok := player.Config{Control: ctl, Channels: []string{"cam"}, Auth: testToken}
	cases := map[string]func(c *player.Config){
		"no control":        func(c *player.Config) { c.Control = nil },
		"no channels":       func(c *player.Config) { c.Channels = nil },
		"bad channel":       func(c *player.Config) { c.Channels = []string{"bad name"} },
		"no auth":           func(c *player.Config) { c.Auth = "" },
		"short auth":        func(c *player.Config) { c.Auth = "short" },
		"auth and no-auth":  func(c *player.Config) { c.NoAuth = true },
		"presign too long":  func(c *player.Config) { c.PresignExpiry = 10 * time.Minute },
		"presign too short": func(c *player.Config) { c.PresignExpiry = time.Second },
		"bad prefix":        func(c *player.Config) { c.ClientIDPrefix = "AWS_x" },
		"negative rate":     func(c *player.Config) { c.SessionRate = -1 },
		"cap below base": func(c *player.Config) {
			c.Retry = viewer.RetryPolicy{BackoffBase: time.Second, BackoffCap: time.Millisecond}
		},
		"negative stall":     func(c *player.Config) { c.StallTimeout = -time.Second },
		"refresh too often":  func(c *player.Config) { c.ChannelRefresh = time.Millisecond },
		"negative attempts ": func(c *player.Config) { c.Retry.MaxAttempts = -1 },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			c := ok
			mod(&c)
			if _, err := player.New(c); !errors.Is(err, player.ErrInvalidConfig) {
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := player.New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	noAuth := ok
	noAuth.Auth, noAuth.NoAuth = "", true
	if _, err := player.New(noAuth); err != nil {
		t.Fatalf("NoAuth config: %v", err)
	}
}

func TestSessionMintsFreshPresignedViewer(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{})
	s1, resp, b := f.session(t, "cam", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("session: %d %s", resp.StatusCode, b)
	}
	if strings.Contains(string(b), f.emu.Credentials().SecretAccessKey) {
		t.Fatal("the session response contains the secret access key")
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", resp.Header.Get("Cache-Control"))
	}
	if !strings.HasPrefix(s1.ClientID, player.DefaultClientIDPrefix) || !strings.HasPrefix(s1.SignalingURL, "ws://") {
		t.Fatalf("session %+v", s1)
	}
	u, err := url.Parse(s1.SignalingURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("X-Amz-ClientId") != s1.ClientID || q.Get("X-Amz-ChannelARN") != s1.ChannelARN || q.Get("X-Amz-Expires") != "60" {
		t.Fatalf("presigned query %v", q)
	}
	if len(s1.ICEServers) == 0 || s1.ICETransportPolicy != "all" {
		t.Fatalf("ICE servers %+v policy %q", s1.ICEServers, s1.ICETransportPolicy)
	}
	for _, is := range s1.ICEServers {
		for _, u := range is.URLs {
			if !strings.Contains(u, "127.0.0.1") {
				t.Errorf("ICE server %s is not on loopback", u)
			}
		}
	}
	if time.Until(s1.ExpiresAt) > time.Minute+time.Second || time.Until(s1.ExpiresAt) < 50*time.Second {
		t.Errorf("ExpiresAt %v", s1.ExpiresAt)
	}

	// The emulator accepts the URL as a viewer connection.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, hr, err := websocket.Dial(ctx, s1.SignalingURL, &websocket.DialOptions{HTTPClient: &http.Client{Transport: f.tr}})
	if err != nil {
		t.Fatalf("dialing the presigned URL: %v", err)
	}
	if hr.Body != nil {
		hr.Body.Close()
	}
	c.Close(websocket.StatusNormalClosure, "")

	s2, resp, b := f.session(t, "cam", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("second session: %d %s", resp.StatusCode, b)
	}
	if s2.ClientID == s1.ClientID || s2.SignalingURL == s1.SignalingURL {
		t.Fatalf("second session reuses the client id or URL: %s", s2.ClientID)
	}

	// Renewal keeps the client id, for a playing page.
	r, resp, b := f.session(t, "cam", s1.ClientID)
	if resp.StatusCode != http.StatusOK || r.ClientID != s1.ClientID {
		t.Fatalf("renewal: %d %s", resp.StatusCode, b)
	}
	// Only ids this server minted, for the same channel.
	for _, tc := range []struct{ channel, id string }{{"cam", "kvsrtc-web-someone-else"}, {"cam", "AWS_x"}} {
		_, resp, b = f.session(t, tc.channel, tc.id)
		if resp.StatusCode != http.StatusBadRequest || apiError(t, b).Cause != player.CauseBadRequest {
			t.Errorf("renewing %q: %d %s", tc.id, resp.StatusCode, b)
		}
	}
}

func TestSessionRefusals(t *testing.T) {
	f := newFixture(t, player.Config{SessionBurst: 3, SessionRate: 0.01}, emulator.Config{TURNDisabled: true})
	body := map[string]string{"channel": "cam"}

	resp, b := f.request(t, "POST", "/api/session", body, nil)
	if resp.StatusCode != http.StatusUnauthorized || apiError(t, b).Cause != player.CauseUnauthorized {
		t.Fatalf("without a token: %d %s", resp.StatusCode, b)
	}
	resp, b = f.request(t, "POST", "/api/session", body, map[string]string{"Authorization": "Bearer wrong-token-1"})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d %s", resp.StatusCode, b)
	}
	resp, b = f.request(t, "POST", "/api/session", map[string]string{"channel": "other"}, f.bearer())
	if d := apiError(t, b); resp.StatusCode != http.StatusForbidden || d.Cause != player.CauseNotServed || d.Retryable {
		t.Fatalf("unserved channel: %d %s", resp.StatusCode, b)
	}
	hdr := f.bearer()
	hdr["Origin"] = "https://evil.example"
	resp, b = f.request(t, "POST", "/api/session", body, hdr)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin: %d %s", resp.StatusCode, b)
	}
	hdr = f.bearer()
	hdr["Content-Type"] = "text/plain"
	resp, b = f.request(t, "POST", "/api/session", body, hdr)
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d %s", resp.StatusCode, b)
	}
	resp, b = f.request(t, "POST", "/api/session", "{not json", f.bearer())
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad JSON: %d %s", resp.StatusCode, b)
	}

	// Burst 3, then 429 with Retry-After.
	for i := range 3 {
		if _, resp, b := f.session(t, "cam", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("session %d: %d %s", i, resp.StatusCode, b)
		}
	}
	_, resp, b = f.session(t, "cam", "")
	if d := apiError(t, b); resp.StatusCode != http.StatusTooManyRequests || d.Cause != viewer.CauseThrottled || !d.Retryable {
		t.Fatalf("over the rate: %d %s", resp.StatusCode, b)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}

	resp, _ = f.request(t, "GET", "/metrics", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d", resp.StatusCode)
	}
	resp, b = f.request(t, "GET", "/metrics", nil, f.bearer())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	m := parseMetrics(t, string(b))
	for k, want := range map[string]float64{
		`kvsrtc_player_sessions_total{channel="cam"}`:              3,
		`kvsrtc_player_failures_total{cause="throttled"}`:          1,
		`kvsrtc_player_failures_total{cause="unauthorized"}`:       3,
		`kvsrtc_player_failures_total{cause="channel-not-served"}`: 1,
		`kvsrtc_player_rate_limited_total`:                         1,
		`kvsrtc_player_auth_failures_total`:                        3,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}

// parseMetrics checks the text exposition format and returns the samples.
func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	typed := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf("bad TYPE line %q", line)
			}
			typed[f[2]] = true
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad sample line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad value in %q", line)
		}
		name := line[:i]
		base, _, _ := strings.Cut(name, "{")
		fam := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(base, "_bucket"), "_sum"), "_count")
		if !typed[base] && !typed[fam] {
			t.Errorf("sample %q has no TYPE line", name)
		}
		out[name] = v
	}
	return out
}

func TestPagesNeedSignIn(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{TURNDisabled: true})
	resp, _ := f.request(t, "GET", "/?channel=cam", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2F%3Fchannel%3Dcam" {
		t.Fatalf("GET / without sign-in: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/grid", "/api/channels", "/metrics"} {
		resp, b := f.request(t, "GET", p, nil, nil)
		if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without sign-in: %d", p, resp.StatusCode)
		}
		if strings.Contains(string(b), "kvsrtc-config") || strings.Contains(string(b), "RTCPeerConnection") {
			t.Errorf("GET %s without sign-in leaks the page", p)
		}
	}
	for _, p := range []string{"/healthz", "/assets/player.css", "/login"} {
		resp, _ := f.request(t, "GET", p, nil, nil)
		if resp.StatusCode >= 400 && !(p == "/login" && resp.StatusCode == http.StatusUnauthorized) {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	resp, _ = f.request(t, "GET", "/?token=wrong-token-123", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong ?token: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// ?token signs in and is dropped from the address.
	resp, _ = f.request(t, "GET", "/?channel=cam&token="+url.QueryEscape(testToken), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/?channel=cam" {
		t.Fatalf("?token: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookie := cookieOf(t, resp)
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || strings.Contains(cookie.Value, testToken) {
		t.Fatalf("cookie %+v", cookie)
	}
	hdr := map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}
	resp, b := f.request(t, "GET", "/?channel=cam", nil, hdr)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"channels":["cam"]`) {
		t.Fatalf("GET / signed in: %d %s", resp.StatusCode, b)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	// Every inline script is allowed by its hash, and nothing else runs.
	scripts := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(string(b), -1)
	if len(scripts) != 2 {
		t.Fatalf("%d inline scripts, want the bootstrap and the player", len(scripts))
	}
	for _, m := range scripts {
		sum := sha256.Sum256([]byte(m[1]))
		if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, h) {
			t.Errorf("inline script %.60q is not allowed by the CSP %q", m[1], csp)
		}
	}
	// The style sheet is inline (nothing holds the parser), allowed by its
	// hash.
	styles := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(string(b), -1)
	if len(styles) != 1 || !strings.Contains(styles[0][1], ".player video") || strings.Contains(string(b), `rel="stylesheet"`) {
		t.Fatalf("%d inline style sheets (want the player's, and no external one)", len(styles))
	}
	sum := sha256.Sum256([]byte(styles[0][1]))
	if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, "style-src 'self' "+h) {
		t.Errorf("the inline style sheet is not allowed by the CSP %q", csp)
	}
	if strings.Contains(string(b), `<script src=`) || strings.Contains(string(b), `type="module"`) {
		t.Error("the page loads scripts from elsewhere")
	}
	// The browser may resolve the signaling endpoint's name while it parses.
	if l := resp.Header.Get("Link"); l != "<"+f.emu.URL()+">; rel=dns-prefetch" {
		t.Errorf("Link %q", l)
	}
	// The page carries a session for its channel, minted while rendering.
	if !strings.Contains(string(b), `"signalingUrl":"ws://`) || !strings.Contains(string(b), `"clientId":"kvsrtc-web-`) {
		t.Error("the page has no session for its channel")
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("Referrer-Policy %q", resp.Header.Get("Referrer-Policy"))
	}
	resp, b = f.request(t, "GET", "/assets/player.css", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || len(b) == 0 {
		t.Fatalf("player.css: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := f.request(t, "GET", "/assets/player.css", nil, map[string]string{"If-None-Match": resp.Header.Get("ETag")}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}
	if resp, _ := f.request(t, "GET", "/assets/player.js", nil, hdr); resp.StatusCode != http.StatusNotFound {
		t.Errorf("player.js is served on its own: %d", resp.StatusCode)
	}

	// The login form.
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	resp, b = f.request(t, "POST", "/login", "token=nope-nope-nope&next=%2Fgrid", form)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "Wrong token") || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong login: %d", resp.StatusCode)
	}
	resp, _ = f.request(t, "POST", "/login", "token="+url.QueryEscape(testToken)+"&next=%2Fgrid", form)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/grid" {
		t.Fatalf("login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookieOf(t, resp)
	resp, _ = f.request(t, "POST", "/login", "token="+url.QueryEscape(testToken)+"&next=%2F%2Fevil.example", form)
	if resp.Header.Get("Location") != "/" {
		t.Errorf("open redirect: %q", resp.Header.Get("Location"))
	}
}

func cookieOf(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == "kvsrtc_player" {
			return c
		}
	}
	t.Fatalf("no cookie in %v", resp.Header.Values("Set-Cookie"))
	return nil
}

func TestLoginRateLimited(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{TURNDisabled: true})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	limited := false
	for range 15 {
		resp, _ := f.request(t, "POST", "/login", "token=guess-guess-guess", form)
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("15 wrong logins in a row were not rate limited")
	}
}

func TestDiagnoseAndReports(t *testing.T) {
	f := newFixture(t, player.Config{Channels: []string{"cam", "gone"}}, emulator.Config{TURNDisabled: true, Channels: []string{"cam", "gone"}})
	post := func(path string, body any) (*http.Response, []byte) {
		return f.request(t, "POST", path, body, f.bearer())
	}
	diag := func(body map[string]any) player.Diagnosis {
		t.Helper()
		resp, b := post("/api/diagnose", body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("diagnose: %d %s", resp.StatusCode, b)
		}
		var d player.Diagnosis
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := diag(map[string]any{"channel": "cam", "cause": "no-answer", "stage": "answer", "attempts": 3, "elapsedMs": 7500})
	if d.Cause != viewer.CauseNoAnswer || !d.Retryable || !strings.Contains(d.Message, `"cam"`) || !strings.Contains(d.Message, "3 attempts") || d.Advice == "" {
		t.Fatalf("no-answer diagnosis %+v", d)
	}
	d = diag(map[string]any{"channel": "nope", "cause": "no-answer"})
	if d.Cause != player.CauseNotServed {
		t.Fatalf("unserved diagnosis %+v", d)
	}
	d = diag(map[string]any{"channel": "cam", "cause": "made-up"})
	if d.Cause != "other" {
		t.Fatalf("unknown cause diagnosis %+v", d)
	}

	// A channel deleted under the page: the server's re-check names it.
	if _, resp, b := f.session(t, "gone", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("session: %d %s", resp.StatusCode, b)
	}
	ch, err := f.ctl.ResolveChannel(t.Context(), "gone")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ctl.DeleteChannel(t.Context(), ch.ARN); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3100 * time.Millisecond) // past the diagnosis cache
	d = diag(map[string]any{"channel": "gone", "cause": "no-answer", "attempts": 2})
	if d.Cause != viewer.CauseChannelNotFound || d.Retryable || !strings.Contains(d.Message, "ResourceNotFoundException") {
		t.Fatalf("deleted channel diagnosis %+v", d)
	}

	for _, r := range []map[string]any{
		{"channel": "cam", "event": "first-frame", "ms": 180},
		{"channel": "cam", "event": "first-frame", "ms": 900},
		{"channel": "cam", "event": "attempt-failed", "cause": "no-answer"},
		{"channel": "cam", "event": "reconnect", "cause": "network-change"},
	} {
		if resp, b := post("/api/report", r); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("report %v: %d %s", r, resp.StatusCode, b)
		}
	}
	if resp, _ := post("/api/report", map[string]any{"channel": "cam", "event": "bogus"}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bogus report: %d", resp.StatusCode)
	}
	if resp, _ := post("/api/report", map[string]any{"channel": "nope", "event": "first-frame", "ms": 1}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("unserved report: %d", resp.StatusCode)
	}
	_, b := f.request(t, "GET", "/metrics", nil, f.bearer())
	m := parseMetrics(t, string(b))
	for k, want := range map[string]float64{
		`kvsrtc_player_time_to_first_frame_seconds_count`:             2,
		`kvsrtc_player_time_to_first_frame_seconds_sum`:               1.08,
		`kvsrtc_player_time_to_first_frame_seconds_bucket{le="0.2"}`:  1,
		`kvsrtc_player_time_to_first_frame_seconds_bucket{le="1"}`:    2,
		`kvsrtc_player_time_to_first_frame_seconds_bucket{le="+Inf"}`: 2,
		`kvsrtc_player_failures_total{cause="no-answer"}`:             1,
		`kvsrtc_player_reconnects_total{cause="network-change"}`:      1,
		`kvsrtc_player_give_ups_total{cause="no-answer"}`:             1,
		`kvsrtc_player_give_ups_total{cause="channel-not-found"}`:     1,
		`kvsrtc_player_first_frames_total{channel="cam"}`:             2,
	} {
		if got := m[k]; got < want-1e-9 || got > want+1e-9 {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
}

// TestMintingUsesTheCache: once Run has warmed up, minting makes no
// control-plane call, so it works while the control plane refuses every
// call.
func TestMintingUsesTheCache(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	waitFor(t, 10*time.Second, func() bool {
		_, b := f.request(t, "GET", "/metrics", nil, f.bearer())
		return strings.Contains(string(b), "kvsrtc_player_refresh_errors_total 0") && warm(t, f)
	})
	flt, err := emulator.ParseFault("throttle-api,count=1000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.emu.Inject(flt); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ctl.ResolveChannel(t.Context(), "cam"); err == nil {
		t.Fatal("the control plane is not throttled")
	}
	for range 3 {
		if _, resp, b := f.session(t, "cam", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("session with a throttled control plane: %d %s", resp.StatusCode, b)
		}
	}
}

// warm reports whether a session can be minted (the cache is filled).
func warm(t *testing.T, f *fixture) bool {
	_, resp, _ := f.session(t, "cam", "")
	return resp.StatusCode == http.StatusOK
}

// TestICERefreshedAheadOfExpiry: with 2 s TURN credentials, Run fetches new
// ones before the old expire, so sessions a second apart get different
// credentials that are all still valid.
func TestICERefreshedAheadOfExpiry(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{ICETTL: 2 * time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	seen := map[string]bool{}
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) && len(seen) < 3 {
		s, resp, b := f.session(t, "cam", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("session: %d %s", resp.StatusCode, b)
		}
		if len(s.ICEServers) == 0 {
			t.Fatal("no ICE servers")
		}
		if left := time.Until(s.ICEExpiresAt); left < 400*time.Millisecond {
			t.Fatalf("session handed out ICE credentials expiring in %v", left)
		}
		seen[s.ICEServers[0].Username] = true
		time.Sleep(300 * time.Millisecond)
	}
	if len(seen) < 3 {
		t.Fatalf("saw %d TURN credentials in 6 s with a 2 s TTL; want refreshes", len(seen))
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDiagnoseProbesSignaling: when the browser's WebSocket failed (it
// cannot see why), the server's diagnosis makes the same upgrade and names
// the service's refusal.
func TestDiagnoseProbesSignaling(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{TURNDisabled: true})
	cases := []struct {
		fault emulator.FaultKind
		want  viewer.Cause
	}{
		{emulator.FaultRefuseFull, viewer.CauseChannelFull},
		{emulator.FaultRefuseThrottle, viewer.CauseThrottled},
	}
	for _, tc := range cases {
		if _, err := f.emu.Inject(emulator.Fault{Kind: tc.fault, Channel: "cam", Count: 1}); err != nil {
			t.Fatal(err)
		}
		resp, b := f.request(t, "POST", "/api/diagnose", map[string]any{"channel": "cam", "cause": "signaling-lost", "stage": "signaling", "attempts": 3}, f.bearer())
		var d player.Diagnosis
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &d) != nil || d.Cause != tc.want || !strings.Contains(d.Message, "ClientLimitExceededException") {
			t.Fatalf("%s: %d %s", tc.fault, resp.StatusCode, b)
		}
	}
	// Nothing refused: the page's own cause stands.
	resp, b := f.request(t, "POST", "/api/diagnose", map[string]any{"channel": "cam", "cause": "signaling-lost", "stage": "signaling"}, f.bearer())
	var d player.Diagnosis
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &d) != nil || d.Cause != viewer.CauseSignalingLost {
		t.Fatalf("no fault: %d %s", resp.StatusCode, b)
	}
}
