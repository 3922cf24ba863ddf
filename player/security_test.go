package player_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/player"
)

// TestWrongBearerRateLimited: every failed check (a wrong bearer token, a
// wrong cookie, a wrong login) is charged to the same per-client budget;
// once it is spent the answer is 429. The right token still gets in.
func TestWrongBearerRateLimited(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{TURNDisabled: true})
	body := map[string]string{"channel": "cam"}
	limited := 0
	for i := range 30 {
		resp, b := f.request(t, "POST", "/api/session", body, map[string]string{"Authorization": "Bearer wrong-token-" + string(rune('a'+i%26))})
		switch resp.StatusCode {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("wrong bearer %d: %d %s", i, resp.StatusCode, b)
		}
	}
	if limited < 15 {
		t.Fatalf("30 wrong bearer tokens: only %d answered 429", limited)
	}
	// Wrong cookies and wrong logins draw on the same budget.
	resp, _ := f.request(t, "GET", "/metrics", nil, map[string]string{"Cookie": "kvsrtc_player=v2.1.forged"})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a forged cookie from a blocked client: %d", resp.StatusCode)
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	resp, _ = f.request(t, "POST", "/login", "token=another-wrong-guess", form)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a wrong login from a blocked client: %d", resp.StatusCode)
	}
	// The right token is not locked out by the guesses of someone else
	// behind the same address: it gets in once the gate that all blocked
	// clients share (a few checks a second) lets it be checked.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, resp, b := f.session(t, "cam", "")
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("the right bearer token from a blocked address: %d %s", resp.StatusCode, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var cookie *http.Cookie
	for cookie == nil {
		resp, _ = f.request(t, "POST", "/login", "token="+url.QueryEscape(testToken)+"&next=%2F", form)
		if resp.StatusCode == http.StatusSeeOther {
			cookie = cookieOf(t, resp)
		} else if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("the right login from a blocked address: %d", resp.StatusCode)
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	// A signed-in browser behind that address is not held up at all, and
	// neither is a one-time sign-in link.
	for range 20 {
		f.request(t, "POST", "/api/session", body, map[string]string{"Authorization": "Bearer still-guessing-123"})
	}
	if resp, _ := f.request(t, "GET", "/metrics", nil, map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}); resp.StatusCode != http.StatusOK {
		t.Errorf("a valid cookie from a blocked address: %d", resp.StatusCode)
	}
	code := f.srv.NewSignInCode(time.Minute)
	if resp, _ := f.request(t, "GET", "/?code="+code, nil, nil); resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
		t.Errorf("a sign-in code from a blocked address: %d", resp.StatusCode)
	}
}

// TestShortAuthRefused: a token shorter than 16 characters is refused,
// with a pointer to the generated one.
func TestShortAuthRefused(t *testing.T) {
	ctl := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{TURNDisabled: true}}).Control
	_, err := player.New(player.Config{Control: ctl, Channels: []string{"cam"}, Auth: "fifteen-chars15"})
	if !errors.Is(err, player.ErrInvalidConfig) || !strings.Contains(err.Error(), "16") || !strings.Contains(err.Error(), "generat") {
		t.Fatalf("a 15-character token: %v", err)
	}
	if _, err := player.New(player.Config{Control: ctl, Channels: []string{"cam"}, Auth: "sixteen-chars-16"}); err != nil {
		t.Fatalf("a 16-character token: %v", err)
	}
}

// TestSignInCode: a one-time code in the page address signs one browser
// in and is dropped from the address; it does not work twice, nor late.
func TestSignInCode(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{TURNDisabled: true})
	code := f.srv.NewSignInCode(0)
	if len(code) < 20 || strings.Contains(code, testToken) {
		t.Fatalf("code %q", code)
	}
	resp, _ := f.request(t, "GET", "/?channel=cam&code="+url.QueryEscape(code), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/?channel=cam" {
		t.Fatalf("?code: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookie := cookieOf(t, resp)
	if resp, _ := f.request(t, "GET", "/?channel=cam", nil, map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in by code: %d", resp.StatusCode)
	}
	// Used: the second browser goes to the login page without a cookie.
	resp, _ = f.request(t, "GET", "/?channel=cam&code="+url.QueryEscape(code), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") || len(resp.Cookies()) != 0 {
		t.Fatalf("a used code: %d %q %v", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Values("Set-Cookie"))
	}
	// Through /login too, and an expired one fails there.
	code = f.srv.NewSignInCode(time.Nanosecond)
	time.Sleep(10 * time.Millisecond)
	resp, b := f.request(t, "GET", "/login?next=%2Fgrid&code="+url.QueryEscape(code), nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(string(b), "expired") {
		t.Fatalf("an expired code: %d", resp.StatusCode)
	}
	code = f.srv.NewSignInCode(time.Minute)
	resp, _ = f.request(t, "GET", "/login?next=%2Fgrid&code="+url.QueryEscape(code), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/grid" {
		t.Fatalf("/login?code: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookieOf(t, resp)
}

// TestCookieRevocationAndLifetime: the cookie is checked by the server:
// RevokeSessions signs every browser out (the refused cookie is cleared),
// and a cookie older than SessionMaxAge is refused whatever the browser
// kept. Without HTTPS it is not Secure and there is no HSTS.
func TestCookieRevocationAndLifetime(t *testing.T) {
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	f := newFixture(t, player.Config{SessionMaxAge: time.Hour, Now: now}, emulator.Config{TURNDisabled: true})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	login := func() string {
		t.Helper()
		resp, _ := f.request(t, "POST", "/login", "token="+url.QueryEscape(testToken)+"&next=%2F", form)
		c := cookieOf(t, resp)
		if c.Secure || resp.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("plain HTTP: Secure %v, HSTS %q", c.Secure, resp.Header.Get("Strict-Transport-Security"))
		}
		if c.MaxAge != 3600 {
			t.Errorf("cookie Max-Age %d, want 3600", c.MaxAge)
		}
		return c.Name + "=" + c.Value
	}
	metrics := func(cookie string) *http.Response {
		t.Helper()
		resp, _ := f.request(t, "GET", "/metrics", nil, map[string]string{"Cookie": cookie})
		return resp
	}
	c := login()
	if resp := metrics(c); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	f.srv.RevokeSessions()
	resp := metrics(c)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after RevokeSessions: %d", resp.StatusCode)
	}
	cleared := false
	for _, k := range resp.Cookies() {
		cleared = cleared || (k.Name == "kvsrtc_player" && k.MaxAge < 0)
	}
	if !cleared {
		t.Errorf("the revoked cookie was not cleared: %v", resp.Header.Values("Set-Cookie"))
	}
	c = login()
	skew.Store(int64(59 * time.Minute))
	if resp := metrics(c); resp.StatusCode != http.StatusOK {
		t.Fatalf("59 min old: %d", resp.StatusCode)
	}
	skew.Store(int64(61 * time.Minute))
	if resp := metrics(c); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("61 min old, SessionMaxAge 1h: %d", resp.StatusCode)
	}
}

// TestTrustedProxyHTTPS: behind a TLS-terminating proxy the player is
// reached over HTTPS: the cookie is Secure and HSTS is sent, but only when
// the proxy is trusted (anyone can send X-Forwarded-Proto).
func TestTrustedProxyHTTPS(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		cfg := player.Config{}
		if trusted {
			cfg.TrustedProxies = []string{"127.0.0.1", "::1"}
		}
		f := newFixture(t, cfg, emulator.Config{TURNDisabled: true})
		resp, _ := f.request(t, "POST", "/login", "token="+url.QueryEscape(testToken)+"&next=%2F",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https"})
		c := cookieOf(t, resp)
		hsts := resp.Header.Get("Strict-Transport-Security")
		if trusted != c.Secure || trusted != strings.HasPrefix(hsts, "max-age=") {
			t.Errorf("trusted proxy %v: cookie Secure %v, HSTS %q", trusted, c.Secure, hsts)
		}
	}
}
