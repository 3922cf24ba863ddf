package player

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// cookieName is the name of the cookie a signed-in browser carries.
const cookieName = "kvsrtc_player"

// cookieMaxAge is how long the cookie lasts.
const cookieMaxAge = 30 * 24 * time.Hour

// auth checks tokens and cookies. The cookie holds an HMAC of a fixed label
// keyed with the token, so neither the token nor anything that reveals it is
// stored in the browser, and changing the token signs every browser out.
type auth struct {
	token  string
	cookie string // expected cookie value; "" when auth is off
}

func newAuth(token string) *auth {
	if token == "" {
		return &auth{}
	}
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("kvsrtc-player-cookie-v1"))
	return &auth{token: token, cookie: hex.EncodeToString(mac.Sum(nil))}
}

func (a *auth) off() bool { return a.token == "" }

// tokenOK compares a presented token in constant time.
func (a *auth) tokenOK(t string) bool {
	if a.off() {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(t), []byte(a.token)) == 1
}

// request reports whether r carries a valid bearer token or cookie.
func (a *auth) request(r *http.Request) bool {
	if a.off() {
		return true
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok && a.tokenOK(strings.TrimSpace(t)) {
			return true
		}
	}
	for _, c := range r.Cookies() {
		if c.Name == cookieName && subtle.ConstantTimeCompare([]byte(c.Value), []byte(a.cookie)) == 1 {
			return true
		}
	}
	return false
}

// setCookie signs the browser in.
func (a *auth) setCookie(w http.ResponseWriter, r *http.Request) {
	if a.off() {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: a.cookie, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(cookieMaxAge / time.Second),
	})
}

// limiter is a per-client token bucket.
type limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the limiter's memory; full buckets are dropped first.
const maxBuckets = 10000

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: make(map[string]*tokenBucket)}
}

// allow takes a token for key; when there is none it says how long until
// there will be one.
func (l *limiter) allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &tokenBucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// blocked reports whether key has no token left, without taking one (for
// limits that count only failures, such as wrong logins).
func (l *limiter) blocked(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		return false, 0
	}
	now := l.now()
	tokens := min(l.burst, b.tokens+max(0, now.Sub(b.last).Seconds())*l.rate)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) / l.rate * float64(time.Second))
}

// prune drops buckets that have refilled (forgetting them lets nobody past
// the limit); if that is not enough, it drops them all.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
}

// clientKey is the rate-limit key of a request: its remote IP address.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
