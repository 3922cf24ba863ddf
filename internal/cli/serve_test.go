package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/whep"
)

func TestServeUsage(t *testing.T) {
	// Usage errors are found before any AWS configuration is read.
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for name, args := range map[string][]string{
		"no channel":                 {"serve", "--auth", "long-enough-token"},
		"short auth":                 {"serve", "--channel", "demo", "--auth", "short"},
		"auth and no-auth":           {"serve", "--channel", "demo", "--auth", "long-enough-token", "--no-auth"},
		"half of tls":                {"serve", "--channel", "demo", "--tls-cert", "cert.pem"},
		"bad channel":                {"serve", "--channel", "bad name", "--auth", "long-enough-token"},
		"api-only without auth":      {"serve", "--api-only", "--channel", "demo"},
		"api-only with both":         {"serve", "--api-only", "--channel", "demo", "--auth-callback", "http://127.0.0.1:1/", "--token-key-file", "k"},
		"api-only with --auth":       {"serve", "--api-only", "--channel", "demo", "--auth", "long-enough-token", "--auth-callback", "http://127.0.0.1:1/"},
		"api-only bad callback":      {"serve", "--api-only", "--channel", "demo", "--auth-callback", "ftp://x"},
		"api-only missing key":       {"serve", "--api-only", "--channel", "demo", "--token-key-file", "/nonexistent/kvs.key"},
		"callback without api-only":  {"serve", "--channel", "demo", "--auth", "long-enough-token", "--auth-callback", "http://127.0.0.1:1/"},
		"base path without api-only": {"serve", "--channel", "demo", "--auth", "long-enough-token", "--base-path", "/kvs/"},
		"api-only with --data":       {"serve", "--api-only", "--channel", "demo", "--token-key-file", "k", "--data"},
		"api-only with --whep":       {"serve", "--api-only", "--channel", "demo", "--token-key-file", "k", "--whep"},
		"api-only with --mode":       {"serve", "--api-only", "--channel", "demo", "--token-key-file", "k", "--mode", "relay"},
		"unknown mode":               {"serve", "--channel", "demo", "--auth", "long-enough-token", "--mode", "mesh"},
		"warm without relay":         {"serve", "--channel", "demo", "--auth", "long-enough-token", "--warm", "demo"},
		"warm other channel":         {"serve", "--channel", "demo", "--auth", "long-enough-token", "--mode", "relay", "--warm", "other"},
		"negative linger":            {"serve", "--channel", "demo", "--auth", "long-enough-token", "--mode", "relay", "--linger", "-1s"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(t.Context(), args, nil, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
		})
	}
}

// TestServe runs kvsrtc serve against a local service: it prints where to
// open it (with a generated token), serves the player behind the token,
// mints sessions for its channel only, and stops cleanly.
// runningServe is "kvsrtc serve" run by startServe.
type runningServe struct {
	env            *kvstest.Env
	srv            *emulator.Server // the local service it uses
	match          []string         // the submatches of the address line
	stdout, stderr *testutil.Buffer
	stop           func() // cancels it and checks that it exits 0
}

// startServe runs "kvsrtc serve args..." against a new local service with a
// "demo" channel, waits until stdout matches addrLine, and stops it when the
// test ends (stop stops it sooner).
func startServe(t *testing.T, addrLine string, args ...string) *runningServe {
	t.Helper()
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"demo"}, TURNDisabled: true}})
	env.Setenv(t)
	srv := env.Server
	t.Setenv(authEnv, "")

	ctx, cancel := context.WithCancel(t.Context())
	r := &runningServe{env: env, srv: srv, stdout: &testutil.Buffer{}, stderr: &testutil.Buffer{}}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, append([]string{"serve"}, args...), nil, r.stdout, r.stderr) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("kvsrtc serve: exit %d; stderr:\n%s", code, r.stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Error("kvsrtc serve did not stop")
			}
		})
	}
	t.Cleanup(r.stop)
	re := regexp.MustCompile(addrLine)
	deadline := time.Now().Add(15 * time.Second)
	for r.match = re.FindStringSubmatch(r.stdout.String()); r.match == nil; r.match = re.FindStringSubmatch(r.stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %q; stdout:\n%s\nstderr:\n%s", addrLine, r.stdout.String(), r.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

func TestServe(t *testing.T) {
	r := startServe(t, `open (http://127\.0\.0\.1:\d+)/\?code=([A-Za-z0-9]+) .*\naccess token for other browsers and for scripts \(Authorization: Bearer\): ([A-Za-z0-9_-]+) `,
		"--listen", "127.0.0.1:0", "--channel", "demo", "--log-level", "debug")
	srv, stderr := r.srv, r.stderr
	base, signInCode, token := r.match[1], r.match[2], r.match[3]
	if strings.Contains(r.stdout.String(), "token="+token) || strings.Contains(r.stdout.String(), "/?token") {
		t.Fatalf("the token is printed in a URL:\n%s", r.stdout.String())
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, body, bearer string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/healthz", "", ""); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := do("GET", "/", "", ""); code != http.StatusSeeOther {
		t.Fatalf("/ without the token: %d", code)
	}
	// The printed link signs one browser in, once.
	for i, wantCookie := range []bool{true, false} {
		req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/?code="+signInCode, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := len(resp.Cookies()) > 0; got != wantCookie || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in link, use %d: %d, cookies %v", i+1, resp.StatusCode, resp.Header.Values("Set-Cookie"))
		}
	}
	if code, _ := do("POST", "/api/session", `{"channel":"demo"}`, "not-the-token"); code != http.StatusUnauthorized {
		t.Fatalf("session with a wrong token: %d", code)
	}
	code, body := do("POST", "/api/session", `{"channel":"demo"}`, token)
	var sess struct {
		ClientID     string `json:"clientId"`
		SignalingURL string `json:"signalingUrl"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &sess) != nil || sess.ClientID == "" || !strings.HasPrefix(sess.SignalingURL, "ws://") {
		t.Fatalf("session: %d %s", code, body)
	}
	if strings.Contains(body, srv.Credentials().SecretAccessKey) {
		t.Fatal("the session contains the secret key")
	}
	if code, _ := do("POST", "/api/session", `{"channel":"other"}`, token); code != http.StatusForbidden {
		t.Fatalf("session for another channel: %d", code)
	}
	if code, body := do("GET", "/metrics", "", token); code != http.StatusOK || !strings.Contains(body, `kvsrtc_player_sessions_total{channel="demo"} 1`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}

	r.stop()
	if strings.Contains(stderr.String(), srv.Credentials().SecretAccessKey) {
		t.Fatal("the log contains the secret key")
	}
}

func TestServeToken(t *testing.T) {
	env := &Env{Getenv: func(k string) string {
		if k == authEnv {
			return "from-the-environment"
		}
		return ""
	}}
	f := serveFlags{}
	if tok, gen, err := f.token(env); err != nil || gen || tok != "from-the-environment" {
		t.Fatalf("env token: %q %v %v", tok, gen, err)
	}
	f = serveFlags{auth: "from-the-flag-123"}
	if tok, gen, err := f.token(env); err != nil || gen || tok != "from-the-flag-123" {
		t.Fatalf("flag token: %q %v %v", tok, gen, err)
	}
	f = serveFlags{noAuth: true}
	if tok, gen, err := f.token(env); err != nil || gen || tok != "" {
		t.Fatalf("no auth: %q %v %v", tok, gen, err)
	}
	f = serveFlags{}
	env.Getenv = func(string) string { return "" }
	tok, gen, err := f.token(env)
	if err != nil || !gen || len(tok) < 20 {
		t.Fatalf("generated: %q %v %v", tok, gen, err)
	}
	if _, _, err := (&serveFlags{auth: "short"}).token(env); !errors.Is(err, ErrUsage) {
		t.Fatalf("short token: %v", err)
	}
	// 15 characters are too few; the message points at the generated token.
	if _, _, err := (&serveFlags{auth: "fifteen-chars15"}).token(env); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "generated") {
		t.Fatalf("15-character token: %v", err)
	}
}

// writeTestCert writes a certificate for 127.0.0.1 in a new directory.
func writeTestCert(t *testing.T) testutil.Cert {
	t.Helper()
	c, err := testutil.WriteCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServeTLS: with --tls-cert/--tls-key kvsrtc serve speaks HTTPS only,
// prints an https:// address, and its sign-in cookie is Secure.
func TestServeTLS(t *testing.T) {
	cert := writeTestCert(t)
	const token = "a-token-for-tls-tests"
	r := startServe(t, `open (https://127\.0\.0\.1:\d+) and sign in`, "--listen", "127.0.0.1:0", "--channel", "demo",
		"--auth", token, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile)
	base := r.match[1]

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: cert.Pool, MinVersion: tls.VersionTLS12}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(base + "/healthz"); resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("/healthz over HTTPS: %d (TLS %v)", resp.StatusCode, resp.TLS != nil)
	}
	// Signing in sets a Secure cookie (it never travels over plain HTTP).
	resp := get(base + "/?channel=demo&token=" + token)
	var secure bool
	for _, c := range resp.Cookies() {
		secure = secure || (c.Secure && c.HttpOnly)
	}
	if resp.StatusCode != http.StatusSeeOther || !secure {
		t.Fatalf("sign-in: %d, cookies %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS over HTTPS: %q", resp.Header.Get("Strict-Transport-Security"))
	}
	// Plain HTTP on the same port is refused.
	plain := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	if r, err := plain.Get("http" + strings.TrimPrefix(base, "https") + "/healthz"); err == nil {
		r.Body.Close()
		if r.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served")
		}
	}

	r.stop()
}

// TestServeBadCertificate: unreadable or mismatched files are a usage error
// naming the flags, found before any AWS configuration is read.
func TestServeBadCertificate(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir := t.TempDir()
	certFile, otherKey := writeTestCert(t).CertFile, writeTestCert(t).KeyFile
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, files := range map[string][2]string{
		"missing":    {filepath.Join(dir, "nope.pem"), filepath.Join(dir, "nope.key")},
		"not pem":    {garbage, garbage},
		"wrong key":  {certFile, otherKey},
		"key as crt": {otherKey, otherKey},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), []string{"serve", "--channel", "demo", "--auth", "long-enough-token",
				"--tls-cert", files[0], "--tls-key", files[1]}, nil, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), "--tls-cert/--tls-key") {
				t.Fatalf("exit %d, stderr: %s", code, stderr.String())
			}
		})
	}
}

// TestServeAPIOnly runs "kvsrtc serve --api-only" with signed tokens under
// a base path: it serves the module and the API there and nothing else (no
// pages, no login), mints sessions for the token's channels only, and
// tells an expired token from a wrong one.
func TestServeAPIOnly(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef-test")
	keyFile := filepath.Join(t.TempDir(), "kvs.key")
	if err := os.WriteFile(keyFile, append(key, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startServe(t, `kvsrtc serve --api-only: channels demo at (http://127\.0\.0\.1:\d+)/kvs/ \(module http://[^)]*/kvs/kvs-viewer\.js\); access decided by signed tokens`,
		"--api-only", "--listen", "127.0.0.1:0", "--channel", "demo", "--base-path", "/kvs", "--token-key-file", keyFile)
	base := r.match[1]
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, body, bearer string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	sign := func(channels []string, exp time.Time) string {
		tok, err := player.SignToken(key, player.TokenClaims{Subject: "t", Channels: channels, Expires: exp.Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign([]string{"demo"}, time.Now().Add(time.Minute))
	for _, c := range []struct {
		method, path, body, bearer string
		want                       int
		has                        string
	}{
		{"GET", "/healthz", "", "", http.StatusOK, "ok"},
		{"GET", "/kvs/kvs-viewer.js", "", "", http.StatusOK, "customElements"},
		{"GET", "/kvs/kvs-viewer.d.ts", "", "", http.StatusOK, "KvsViewerElement"},
		{"GET", "/", "", good, http.StatusNotFound, ""},
		{"GET", "/login", "", "", http.StatusNotFound, ""},
		{"POST", "/kvs/session", `{"channel":"demo"}`, "", http.StatusUnauthorized, `"unauthorized"`},
		{"POST", "/kvs/session", `{"channel":"demo"}`, sign([]string{"demo"}, time.Now().Add(-time.Hour)), http.StatusUnauthorized, "Your session expired"},
		{"POST", "/kvs/session", `{"channel":"demo"}`, sign([]string{"other"}, time.Now().Add(time.Minute)), http.StatusForbidden, `"channel-not-allowed"`},
		{"POST", "/kvs/session", `{"channel":"demo"}`, good, http.StatusOK, `"signalingUrl":"ws://`},
		{"GET", "/kvs/channels", "", good, http.StatusOK, `{"channels":["demo"]}`},
	} {
		code, body := do(c.method, c.path, c.body, c.bearer)
		if code != c.want || !strings.Contains(body, c.has) {
			t.Errorf("%s %s: %d %.200s, want %d with %q", c.method, c.path, code, body, c.want, c.has)
		}
		if strings.Contains(body, r.srv.Credentials().SecretAccessKey) {
			t.Errorf("%s %s: the answer holds the secret key", c.method, c.path)
		}
	}
	r.stop()
	if strings.Contains(r.stderr.String(), r.srv.Credentials().SecretAccessKey) {
		t.Fatal("the log contains the secret key")
	}
}

// TestServeTwoWayFlags: --data and --no-talk reach the pages.
func TestServeTwoWayFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		talk, data bool
	}{
		{"default", nil, true, false},
		{"data, no talk", []string{"--data", "--no-talk"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--listen", "127.0.0.1:0", "--channel", "demo", "--auth", "long-enough-token-1234"}, tc.args...)
			r := startServe(t, `open (http://127\.0\.0\.1:\d+)`, args...)
			req, err := http.NewRequestWithContext(t.Context(), "GET", r.match[1]+"/?channel=demo", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer long-enough-token-1234")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page := string(b)
			if resp.StatusCode != http.StatusOK || strings.Contains(page, `"talk":true`) != tc.talk || strings.Contains(page, `"data":true`) != tc.data {
				t.Fatalf("page %d: talk %v (want %v), data %v (want %v)", resp.StatusCode,
					strings.Contains(page, `"talk":true`), tc.talk, strings.Contains(page, `"data":true`), tc.data)
			}
			r.stop()
		})
	}
}

// TestServeWHEP: kvsrtc serve --whep relays a camera to a WHEP client
// behind the same token as the rest of the player; without the token, for
// a channel it does not serve, or from another site it refuses.
func TestServeWHEP(t *testing.T) {
	const token = "long-enough-token-1234"
	r := startServe(t, `WHEP: (http://127\.0\.0\.1:\d+)/whep/\{channel\}`,
		"--listen", "127.0.0.1:0", "--channel", "demo", "--auth", token, "--whep", "--loopback-only")
	r.env.StartMaster(t, kvstest.MasterOptions{Channel: "demo"})
	base := r.match[1]
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	c, err := whep.Dial(ctx, base+"/whep/demo", whep.ClientConfig{LoopbackOnly: true, Header: bearer(token)})
	if err != nil {
		t.Fatalf("WHEP with the token: %v", err)
	}
	select {
	case <-c.FirstFrame():
	case <-ctx.Done():
		t.Fatal("no frame through kvsrtc serve --whep within 30 s")
	}
	if err := c.Close(ctx); err != nil {
		t.Errorf("DELETE: %v", err)
	}

	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
		want   int
	}{
		{"no token", base + "/whep/demo", nil, http.StatusUnauthorized},
		{"wrong token", base + "/whep/demo", bearer("not-the-token-at-all"), http.StatusUnauthorized},
		{"other channel", base + "/whep/other", bearer(token), http.StatusNotFound},
		{"other site", base + "/whep/demo", http.Header{"Authorization": {"Bearer " + token}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
	} {
		_, err := whep.Dial(ctx, tc.url, whep.ClientConfig{LoopbackOnly: true, Header: tc.header})
		var he *whep.HTTPError
		if !errors.As(err, &he) || he.StatusCode != tc.want {
			t.Errorf("%s: %v, want HTTP %d", tc.name, err, tc.want)
		}
	}
}

// TestServeRelayMode: kvsrtc serve --mode relay says so, hands browsers
// relay sessions (no client id, the WHEP endpoint of the channel) and serves
// the relay's WHEP endpoint and counters; --warm keeps the channel's relay
// connected before any browser comes.
func TestServeRelayMode(t *testing.T) {
	const token = "long-enough-token-1234"
	r := startServe(t, `WHEP: (http://127\.0\.0\.1:\d+)/whep/\{channel\}`,
		"--listen", "127.0.0.1:0", "--channel", "demo", "--auth", token, "--mode", "relay", "--warm", "demo", "--loopback-only")
	r.env.StartMaster(t, kvstest.MasterOptions{Channel: "demo"})
	base := r.match[1]
	if out := r.stdout.String(); !strings.Contains(out, "mode relay: this server is each camera's one viewer") {
		t.Errorf("stdout does not say the mode:\n%s", out)
	}
	sess := playsThroughRelay(t, base, "demo", token)
	if sess.WHEP != "/whep/demo" || sess.ClientID != "" || sess.SignalingURL != "" {
		t.Errorf("relay session %+v: want the channel's WHEP endpoint and no client id or signaling URL", sess)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kvsrtc_player_relay_sessions_total{channel="demo"} 1`, "kvsrtc_relay_"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
}

// playsThroughRelay asks the player at base for a session of channel with
// the token: it must be a relay session, whose WHEP endpoint plays the
// camera (a Go WHEP client's first frame within 30 s).
func playsThroughRelay(t *testing.T, base, channel, token string) player.Session {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/api/session", strings.NewReader(`{"channel":"`+channel+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sess player.Session
	err = json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || sess.Mode != "relay" {
		t.Fatalf("session: HTTP %d, %+v, %v; want a relay session", resp.StatusCode, sess, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := whep.Dial(ctx, base+sess.WHEP, whep.ClientConfig{LoopbackOnly: true, Header: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatalf("WHEP: %v", err)
	}
	defer func() { _ = c.Close(ctx) }()
	select {
	case <-c.FirstFrame():
	case <-ctx.Done():
		t.Fatalf("no frame through the relay at %s within 30 s", base)
	}
	return sess
}
