package player

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsrtc/kvsrtc/control"
)

const internalToken = "internal-test-token-0123"

// testServer is a Server whose control plane is a closed loopback port
// (nothing reaches AWS) with channel "cam" already resolved.
func testServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	ctl, err := control.New(context.Background(), control.Config{
		Region: "us-west-2", EndpointURL: "http://127.0.0.1:1", STUNURL: control.STUNNone,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "test-secret-test-secret", ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Control = ctl
	if cfg.Channels == nil {
		cfg.Channels = []string{"cam"}
	}
	if cfg.Auth == "" && !cfg.NoAuth {
		cfg.Auth = internalToken
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.chans.infos["cam"] = &channelInfo{
		arn: "arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam/1700000000000",
		ep:  control.Endpoints{WSS: "wss://127.0.0.1:1/ws/viewer", HTTPS: "http://127.0.0.1:1"}, resolved: time.Now(),
	}
	return s
}

// TestReportEvictionsRateLimited: a page's "channel-not-found" report makes
// the server forget the channel (the next session resolves it again, with
// control-plane calls), but at most once per channel every 10 s, however
// many pages report.
func TestReportEvictionsRateLimited(t *testing.T) {
	s := testServer(t, Config{})
	s.reports = newLimiter(1000, 1000, time.Now)
	evictions := 0
	for range 20 {
		s.chans.mu.Lock()
		s.chans.infos["cam"].resolved = time.Now()
		s.chans.mu.Unlock()
		req := httptest.NewRequest(http.MethodPost, "/api/report", strings.NewReader(`{"channel":"cam","event":"attempt-failed","cause":"channel-not-found"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+internalToken)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusNoContent {
			t.Fatalf("report: %d %s", w.Code, w.Body)
		}
		s.chans.mu.Lock()
		if s.chans.infos["cam"].resolved.IsZero() {
			evictions++
		}
		s.chans.mu.Unlock()
	}
	if evictions != 1 {
		t.Fatalf("20 reports evicted the channel %d times, want 1", evictions)
	}
}

// TestClientKeyIPv6Prefix: IPv6 clients are limited per /64 (a host holds
// a whole /64 and can rotate through it); IPv4 per address.
func TestClientKeyIPv6Prefix(t *testing.T) {
	s := testServer(t, Config{})
	key := func(remote string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		return s.clientKey(r)
	}
	if a, b := key("[2001:db8:1:2::1]:5000"), key("[2001:db8:1:2:ffff:ffff:ffff:fffe]:6000"); a != b {
		t.Errorf("one /64, two keys: %q %q", a, b)
	}
	if a, b := key("[2001:db8:1:2::1]:5000"), key("[2001:db8:1:3::1]:5000"); a == b {
		t.Errorf("two /64s, one key %q", a)
	}
	if a, b := key("192.0.2.1:1"), key("192.0.2.2:1"); a == b {
		t.Errorf("two IPv4 addresses, one key %q", a)
	}
	if a, b := key("[::ffff:192.0.2.1]:1"), key("192.0.2.1:2"); a != b {
		t.Errorf("IPv4-mapped: %q %q", a, b)
	}
}

// TestClientKeyTrustedProxy: X-Forwarded-For names the client only when a
// trusted proxy sent it.
func TestClientKeyTrustedProxy(t *testing.T) {
	s := testServer(t, Config{TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7"}})
	key := func(remote, xff string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return s.clientKey(r)
	}
	for _, tc := range []struct{ remote, xff, want string }{
		{"10.1.2.3:4000", "198.51.100.9", "198.51.100.9"},
		{"10.1.2.3:4000", "203.0.113.5, 198.51.100.9, 10.9.9.9", "198.51.100.9"}, // the rightmost hop the proxies did not add
		{"192.0.2.7:4000", "198.51.100.10", "198.51.100.10"},
		{"198.51.100.66:4000", "198.51.100.9", "198.51.100.66"}, // not a proxy: its header is a lie
		{"10.1.2.3:4000", "", "10.1.2.3"},
		{"10.1.2.3:4000", "not-an-address", "10.1.2.3"},
	} {
		if got := key(tc.remote, tc.xff); got != tc.want {
			t.Errorf("remote %s, X-Forwarded-For %q: key %q, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
	if _, err := New(Config{Control: s.cfg.Control, Channels: []string{"cam"}, Auth: internalToken, TrustedProxies: []string{"10.0.0.0/33"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a bad proxy prefix: %v", err)
	}
}

// TestLimiterKeepsBlockedBuckets: when the limiter is full, it forgets
// refilled clients and clients with tokens left, never a blocked one (an
// attacker who makes 10,000 new keys used to wipe every block).
func TestLimiterKeepsBlockedBuckets(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(0.2, 10, func() time.Time { return now })
	for range 10 {
		l.allow("attacker")
	}
	if b, _ := l.blocked("attacker"); !b {
		t.Fatal("not blocked after 10 failures")
	}
	for i := range 3 * maxBuckets {
		l.allow(fmt.Sprintf("rotating-%d", i)) // one failure each
	}
	if b, _ := l.blocked("attacker"); !b {
		t.Fatal("the attacker's block was dropped when the limiter filled up")
	}
	if len(l.buckets) > maxBuckets {
		t.Fatalf("%d buckets, the limit is %d", len(l.buckets), maxBuckets)
	}
	// Full of blocked clients only: a new client waits too (it cannot be
	// told apart from them), rather than a block being forgotten.
	full := newLimiter(0.2, 1, func() time.Time { return now })
	for i := range maxBuckets {
		full.allow(fmt.Sprintf("blocked-%d", i))
	}
	if ok, _ := full.allow("newcomer"); ok {
		t.Fatal("a limiter full of blocked clients let a new key in by dropping a block")
	}
	if b, _ := full.blocked("blocked-7"); !b {
		t.Fatal("a block was dropped")
	}
}

// closedWithin reports whether the server closes conn within d.
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestPlayerSlowClientsAreCut: slow headers, a body that never arrives on
// the unauthenticated POST /login, and idle keep-alive connections are cut
// by Serve's timeouts (slowloris); the connection cap holds.
func TestPlayerSlowClientsAreCut(t *testing.T) {
	s := testServer(t, Config{})
	s.limits = serverLimits{readHeader: time.Second, read: 2 * time.Second, write: 2 * time.Second, idle: time.Second, maxConns: 4}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	addr := ln.Addr().String()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// The connection cap: with 4 connections open, a 5th is closed unserved;
	// once they are gone, requests are served again.
	var held []net.Conn
	for range 4 {
		held = append(held, dial())
	}
	time.Sleep(200 * time.Millisecond) // let the server accept them
	c := dial()
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(900 * time.Millisecond)) // before the 1 s header timeout frees the 4
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		resp.Body.Close()
		t.Errorf("a 5th connection over the cap of 4 was served: %d", resp.StatusCode)
	}
	for _, h := range held {
		_ = h.Close()
	}
	served := false
	for deadline := time.Now().Add(10 * time.Second); !served && time.Now().Before(deadline); {
		c = dial()
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			resp.Body.Close()
			served = resp.StatusCode == http.StatusOK
		}
		_ = c.Close()
		if !served {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !served {
		t.Fatal("requests were not served again after the connections closed")
	}

	c = dial()
	_, _ = io.WriteString(c, "POST /login HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ntoken=")
	if !closedWithin(c, 20*time.Second) {
		t.Error("a login whose body never arrives kept its connection for 20 s")
	}
	c = dial()
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n")
	if !closedWithin(c, 20*time.Second) {
		t.Error("a request whose headers never end kept its connection for 20 s")
	}
	c = dial()
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !closedWithin(c, 20*time.Second) {
		t.Error("an idle keep-alive connection stayed open for 20 s")
	}
}

// browserOrigin is where a browser goes when a page at base answers with
// "Location: loc", as WHATWG URL parsing does it (the oracle of the open
// redirect tests, written from the standard, not from safeNext): leading
// and trailing C0 controls and spaces are dropped, tabs and newlines
// anywhere are removed, "\" counts as "/" in http(s) URLs, two slashes
// start an authority (any further slashes are skipped), and a scheme other
// than the page's leaves the origin.
func browserOrigin(base *url.URL, loc string) string {
	loc = strings.TrimFunc(loc, func(r rune) bool { return r <= 0x20 })
	loc = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, loc)
	same := base.Scheme + "://" + strings.ToLower(base.Host)
	slash := func(c byte) bool { return c == '/' || c == '\\' }
	if i := strings.IndexByte(loc, ':'); i > 0 && isSchemeName(loc[:i]) {
		scheme := strings.ToLower(loc[:i])
		if scheme != base.Scheme {
			return scheme + ":" // another scheme is another origin (javascript:, data:, https:)
		}
		loc = loc[i+1:]
		if !(len(loc) >= 2 && slash(loc[0]) && slash(loc[1])) {
			return same // "http:path" is relative
		}
	}
	if len(loc) >= 2 && slash(loc[0]) && slash(loc[1]) {
		auth := strings.TrimLeft(loc, `/\`)
		if end := strings.IndexAny(auth, `/\?#`); end >= 0 {
			auth = auth[:end]
		}
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			auth = auth[at+1:]
		}
		return base.Scheme + "://" + strings.ToLower(auth)
	}
	return same
}

func isSchemeName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !(alpha || i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// loginRedirect signs in with next and returns the Location the browser is
// sent to.
func loginRedirect(t testing.TB, s *Server, next string) string {
	t.Helper()
	form := url.Values{"token": {internalToken}, "next": {next}}
	req := httptest.NewRequest(http.MethodPost, "http://player.example:8080/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("login with next %q: %d", next, w.Code)
	}
	return w.Header().Get("Location")
}

var playerBase = &url.URL{Scheme: "http", Host: "player.example:8080", Path: "/login"}

// TestLoginRedirectStaysOnSite: after signing in, the browser lands on
// this site whatever next says (next=/%09/evil.example used to reach
// evil.example: the browser drops the tab).
func TestLoginRedirectStaysOnSite(t *testing.T) {
	s := testServer(t, Config{})
	for _, next := range []string{
		"/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example", "/\\evil.example", "\\/evil.example",
		"//evil.example", "///evil.example", "/ /evil.example", "http://evil.example", "http:/\\evil.example", "https://evil.example",
		"javascript:alert(1)", " //evil.example", "/\x00/evil.example", "/\x7f/evil.example", "/grid?channel=cam",
	} {
		loc := loginRedirect(t, s, next)
		if o := browserOrigin(playerBase, loc); o != "http://player.example:8080" {
			t.Errorf("next %q: Location %q takes the browser to %s", next, loc, o)
		}
	}
	if loc := loginRedirect(t, s, "/grid?channel=cam"); loc != "/grid?channel=cam" {
		t.Errorf("a good next became %q", loc)
	}
	// The oracle itself knows the attacks.
	for loc, want := range map[string]string{
		"/\t/evil.example": "http://evil.example", "/\\evil.example": "http://evil.example", "http:/\\evil.example": "http://evil.example",
		"//user@evil.example/x": "http://evil.example", "/ok": "http://player.example:8080", "https://evil.example": "https:",
	} {
		if got := browserOrigin(playerBase, loc); got != want {
			t.Errorf("oracle: %q -> %s, want %s", loc, got, want)
		}
	}
}
