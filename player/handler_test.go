package player_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/player"
)

// newHandler mounts a Handler for channels cam and other under /cams/ of
// an app's own mux, with authz as its hook.
func newHandler(t *testing.T, authz player.AuthorizeFunc) *fixture {
	t.Helper()
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam", "other"}}})
	h, err := player.NewHandler(player.HandlerConfig{Control: env.Control, Channels: []string{"cam", "other"}, Authorize: authz})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/cams/", http.StripPrefix("/cams", h))
	f := &fixture{emu: env.Server, ctl: env.Control, ts: httptest.NewServer(mux), tr: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(f.ts.Close)
	t.Cleanup(f.tr.CloseIdleConnections)
	return f
}

// TestHandlerAuthorize: the app's hook decides; its channels narrow what
// the handler serves; its errors become 401 (expired: its own words), 403
// and 503; the module is public and carries the policy.
func TestHandlerAuthorize(t *testing.T) {
	users := map[string][]string{"alice": {"cam", "other"}, "bob": {"other"}}
	f := newHandler(t, func(r *http.Request) ([]string, error) {
		c, err := r.Cookie("app_user")
		switch {
		case err != nil:
			return nil, player.ErrUnauthorized
		case c.Value == "old":
			return nil, player.ErrExpired
		case c.Value == "down":
			return nil, player.ErrAuthUnavailable
		case c.Value == "nobody":
			return nil, player.ErrForbidden
		}
		return users[c.Value], nil
	})
	as := func(user string) map[string]string { return map[string]string{"Cookie": "app_user=" + user} }
	post := func(user, channel string) (int, player.Diagnosis, player.Session) {
		resp, b := f.request(t, "POST", "/cams/session", map[string]string{"channel": channel}, as(user))
		var s player.Session
		var d player.Diagnosis
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
		} else {
			d = apiError(t, b)
		}
		return resp.StatusCode, d, s
	}
	if st, _, s := post("alice", "cam"); st != http.StatusOK || s.ClientID == "" || !strings.HasPrefix(s.SignalingURL, "ws") {
		t.Fatalf("alice, cam: %d %+v", st, s)
	}
	if st, d, _ := post("bob", "cam"); st != http.StatusForbidden || d.Cause != player.CauseNotAllowed || !strings.Contains(d.Message, `"cam"`) {
		t.Fatalf("bob, cam: %d %+v", st, d)
	}
	if st, _, _ := post("bob", "other"); st != http.StatusOK {
		t.Fatalf("bob, other: %d", st)
	}
	if st, d, _ := post("nobody", "other"); st != http.StatusForbidden || d.Cause != player.CauseNotAllowed {
		t.Fatalf("forbidden user: %d %+v", st, d)
	}
	if st, d, _ := post("old", "cam"); st != http.StatusUnauthorized || d.Cause != player.CauseUnauthorized || d.Title != "Your session expired" {
		t.Fatalf("expired: %d %+v", st, d)
	}
	if st, d, _ := post("down", "cam"); st != http.StatusServiceUnavailable || !d.Retryable {
		t.Fatalf("callback down: %d %+v", st, d)
	}
	resp, b := f.request(t, "POST", "/cams/session", map[string]string{"channel": "cam"}, nil)
	if resp.StatusCode != http.StatusUnauthorized || apiError(t, b).Cause != player.CauseUnauthorized {
		t.Fatalf("no cookie: %d %s", resp.StatusCode, b)
	}
	// The channel list is the user's.
	resp, b = f.request(t, "GET", "/cams/channels", nil, as("bob"))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != `{"channels":["other"]}` {
		t.Fatalf("bob's channels: %d %s", resp.StatusCode, b)
	}
	// Cross-site POSTs are refused as by the built-in player.
	resp, _ = f.request(t, "POST", "/cams/session", map[string]string{"channel": "cam"}, map[string]string{"Cookie": "app_user=alice", "Origin": "https://evil.example"})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site: %d", resp.StatusCode)
	}
	// The module: public, an ES module with the policy, and its types.
	resp, b = f.request(t, "GET", "/cams/kvs-viewer.js", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(string(b), `"answerTimeoutMs":2500`) || !strings.Contains(string(b), "export { KvsViewerElement") ||
		!strings.Contains(string(b), "class Attempt") {
		t.Fatalf("kvs-viewer.js: %d %q %.300s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	resp, b = f.request(t, "GET", "/cams/kvs-viewer.d.ts", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "class KvsViewerElement extends HTMLElement") {
		t.Fatalf("kvs-viewer.d.ts: %d", resp.StatusCode)
	}
}

// TestHandlerRefusalsAreRateLimited: a client the hook keeps refusing is
// answered 429 after the sign-in budget, like wrong tokens.
func TestHandlerRefusalsAreRateLimited(t *testing.T) {
	f := newHandler(t, func(*http.Request) ([]string, error) { return nil, errors.New("who are you") })
	var last int
	for range 12 {
		resp, _ := f.request(t, "POST", "/cams/session", map[string]string{"channel": "cam"}, nil)
		last = resp.StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("12th refused request: %d, want 429", last)
	}
}

func TestNewHandlerNeedsAuthorize(t *testing.T) {
	_, err := player.NewHandler(player.HandlerConfig{Channels: []string{"cam"}})
	if !errors.Is(err, player.ErrInvalidConfig) || !strings.Contains(err.Error(), "Authorize") {
		t.Fatalf("err %v", err)
	}
}

// TestSignedTokens: SignToken and TokenAuthorizer agree; a wrong key, a
// tampered token, an expired one and one valid for too long are refused.
func TestSignedTokens(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	authz, err := player.TokenAuthorizer(key, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	req := func(tok string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		return r
	}
	sign := func(k []byte, exp time.Time) string {
		tok, err := player.SignToken(k, player.TokenClaims{Subject: "alice", Channels: []string{"cam"}, Expires: exp.Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(key, now.Add(5*time.Minute))
	if ch, err := authz(req(good)); err != nil || len(ch) != 1 || ch[0] != "cam" {
		t.Fatalf("good token: %v %v", ch, err)
	}
	for name, c := range map[string]struct {
		tok  string
		want error
	}{
		"none":      {"", player.ErrUnauthorized},
		"wrong key": {sign([]byte("another key of thirty-two bytes!"), now.Add(time.Minute)), player.ErrUnauthorized},
		"tampered":  {strings.Replace(good, "kvs1.e", "kvs1.f", 1), player.ErrUnauthorized},
		"expired":   {sign(key, now.Add(-time.Minute)), player.ErrExpired},
		"too long":  {sign(key, now.Add(48*time.Hour)), player.ErrUnauthorized},
	} {
		if _, err := authz(req(c.tok)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := player.TokenAuthorizer([]byte("short"), nil); !errors.Is(err, player.ErrInvalidConfig) {
		t.Errorf("short key: %v", err)
	}
}

// TestCallbackAuthorizer: the app's callback sees the browser's cookie and
// answers with channels, 401 (expired), 403 or an error.
func TestCallbackAuthorizer(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie("sid")
		switch {
		case c == nil:
			w.WriteHeader(http.StatusUnauthorized)
		case c.Value == "old":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"expired": true}`))
		case c.Value == "bob":
			w.WriteHeader(http.StatusForbidden)
		case c.Value == "alice":
			_, _ = w.Write([]byte(`{"channels": ["cam"]}`))
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer app.Close()
	authz, err := player.CallbackAuthorizer(app.URL+"/kvs-auth", nil)
	if err != nil {
		t.Fatal(err)
	}
	req := func(sid string) *http.Request {
		r := httptest.NewRequest("POST", "/session", nil)
		if sid != "" {
			r.AddCookie(&http.Cookie{Name: "sid", Value: sid})
		}
		return r
	}
	if ch, err := authz(req("alice")); err != nil || len(ch) != 1 || ch[0] != "cam" {
		t.Fatalf("alice: %v %v", ch, err)
	}
	for sid, want := range map[string]error{"": player.ErrUnauthorized, "old": player.ErrExpired, "bob": player.ErrForbidden, "x": player.ErrAuthUnavailable} {
		if _, err := authz(req(sid)); !errors.Is(err, want) {
			t.Errorf("sid %q: %v, want %v", sid, err, want)
		}
	}
	// A callback that does not answer at all.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dead, _ := player.CallbackAuthorizer("http://"+addr+"/", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := dead(req("alice").WithContext(ctx)); !errors.Is(err, player.ErrAuthUnavailable) {
		t.Errorf("dead callback: %v", err)
	}
	if _, err := player.CallbackAuthorizer("ftp://x", nil); !errors.Is(err, player.ErrInvalidConfig) {
		t.Errorf("bad URL: %v", err)
	}
}

// TestBuiltinServesTheModule: the built-in server mounts the same API tree
// at /api/, with the module behind its token like every other script.
func TestBuiltinServesTheModule(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{})
	if resp, _ := f.request(t, "GET", "/api/kvs-viewer.js", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the module without the token: %d", resp.StatusCode)
	}
	resp, b := f.request(t, "GET", "/api/kvs-viewer.js", nil, f.bearer())
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "customElements.define") {
		t.Fatalf("the module with the token: %d", resp.StatusCode)
	}
}
