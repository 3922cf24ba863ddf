package player

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cookieName is the name of the cookie a signed-in browser carries.
const cookieName = "kvsrtc_player"

// cookiePrefix starts every cookie value of this format.
const cookiePrefix = "v2."

// Sign-in codes: one-time, short-lived stand-ins for the token in a URL.
const (
	// DefaultSignInCodeTTL is how long a code from NewSignInCode lasts when
	// no lifetime is given.
	DefaultSignInCodeTTL = 10 * time.Minute
	maxSignInCodes       = 1024
)

// auth checks tokens, cookies and sign-in codes. A cookie holds its issue
// time and an HMAC of it under a key derived from the token and a random
// salt: nothing in the browser reveals the token, changing the token or the
// salt (RevokeSessions, a restart) signs every browser out, and a cookie
// older than the session lifetime is refused by the server whatever the
// browser keeps.
type auth struct {
	token  string
	maxAge time.Duration
	now    func() time.Time

	mu    sync.Mutex
	key   []byte               // cookie MAC key; rotated by revoke
	codes map[string]time.Time // one-time sign-in codes and their expiry
}

func newAuth(token string, maxAge time.Duration, now func() time.Time) *auth {
	a := &auth{token: token, maxAge: maxAge, now: now, codes: make(map[string]time.Time)}
	if token != "" {
		a.revoke()
	}
	return a
}

func (a *auth) off() bool { return a.token == "" }

// revoke draws a new salt: every cookie issued so far stops working.
func (a *auth) revoke() {
	var salt [32]byte
	_, _ = rand.Read(salt[:])
	mac := hmac.New(sha256.New, []byte(a.token))
	mac.Write([]byte("kvsrtc-player-cookie-v2\x00"))
	mac.Write(salt[:])
	a.mu.Lock()
	a.key = mac.Sum(nil)
	a.mu.Unlock()
}

// tokenOK compares a presented token in constant time.
func (a *auth) tokenOK(t string) bool {
	if a.off() {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(t), []byte(a.token)) == 1
}

// cookieMAC is the MAC of a cookie issued at the given Unix time.
func (a *auth) cookieMAC(issued string) string {
	a.mu.Lock()
	key := a.key
	a.mu.Unlock()
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(issued))
	return hex.EncodeToString(mac.Sum(nil))
}

// cookieValue is a fresh cookie value.
func (a *auth) cookieValue() string {
	issued := strconv.FormatInt(a.now().Unix(), 10)
	return cookiePrefix + issued + "." + a.cookieMAC(issued)
}

// cookieOK checks a cookie value: its MAC, and its age.
func (a *auth) cookieOK(v string) bool {
	rest, ok := strings.CutPrefix(v, cookiePrefix)
	if !ok {
		return false
	}
	issued, mac, ok := strings.Cut(rest, ".")
	if !ok || len(issued) > 12 {
		return false
	}
	if subtle.ConstantTimeCompare([]byte(mac), []byte(a.cookieMAC(issued))) != 1 {
		return false
	}
	secs, err := strconv.ParseInt(issued, 10, 64)
	if err != nil {
		return false
	}
	age := a.now().Sub(time.Unix(secs, 0))
	return age > -time.Minute && age < a.maxAge
}

// validCookie reports whether r carries a valid cookie.
func (a *auth) validCookie(r *http.Request) bool {
	for _, c := range r.Cookies() {
		if c.Name == cookieName && a.cookieOK(c.Value) {
			return true
		}
	}
	return false
}

// credential is what a request presents to sign in.
type credential int

const (
	credNone   credential = iota // nothing: not a failed attempt
	credValid                    // a valid bearer token or cookie
	credWrong                    // a wrong bearer token
	credCookie                   // a cookie that is wrong, revoked or too old
)

// check classifies the credentials r carries. A valid one wins over a
// wrong one (a stale cookie next to a right bearer token).
func (a *auth) check(r *http.Request) credential {
	if a.off() {
		return credValid
	}
	got := credNone
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok && a.tokenOK(strings.TrimSpace(t)) {
			return credValid
		}
		got = credWrong
	}
	for _, c := range r.Cookies() {
		if c.Name != cookieName {
			continue
		}
		if a.cookieOK(c.Value) {
			return credValid
		}
		if got == credNone {
			got = credCookie
		}
	}
	return got
}

// setCookie signs the browser in. secure marks the cookie Secure (the
// request came over HTTPS, directly or through a trusted proxy).
func (a *auth) setCookie(w http.ResponseWriter, secure bool) {
	if a.off() {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: a.cookieValue(), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: secure, MaxAge: int(a.maxAge / time.Second),
	})
}

// clearCookie removes a cookie that no longer works, so that the browser
// stops presenting it (and being charged for it).
func (a *auth) clearCookie(w http.ResponseWriter, secure bool) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure, MaxAge: -1})
}

// newCode mints a one-time sign-in code valid for ttl.
func (a *auth) newCode(ttl time.Duration) string {
	code := rand.Text()
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.codes) >= maxSignInCodes {
		for k, exp := range a.codes {
			if !now.Before(exp) {
				delete(a.codes, k)
			}
		}
	}
	if len(a.codes) >= maxSignInCodes {
		for k := range a.codes { // the oldest are as good as any: drop one
			delete(a.codes, k)
			break
		}
	}
	a.codes[code] = now.Add(ttl)
	return code
}

// useCode consumes a sign-in code; false if it is unknown, used or
// expired.
func (a *auth) useCode(code string) bool {
	if code == "" || len(code) > 64 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.codes[code]
	if !ok {
		return false
	}
	delete(a.codes, code)
	return a.now().Before(exp)
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

// maxBuckets bounds the limiter's memory. Refilled buckets are dropped
// first, then ones with tokens left; empty (blocking) ones never are.
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
		if len(l.buckets) >= maxBuckets {
			// Full of blocked clients: a new one cannot be told apart from
			// them (an attacker rotating addresses), so it waits too.
			return false, time.Duration(1 / l.rate * float64(time.Second))
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
		if len(l.buckets) >= maxBuckets {
			l.prune(l.now())
			if len(l.buckets) >= maxBuckets {
				return true, time.Duration(1 / l.rate * float64(time.Second))
			}
		}
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
// the limit); if that is not enough, buckets that still have a token. A
// bucket that blocks its client is never dropped: forgetting it would
// unblock the client.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < maxBuckets {
		return
	}
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= 1 {
			delete(l.buckets, k)
			if len(l.buckets) < maxBuckets*9/10 {
				return
			}
		}
	}
}

// addrKey is the rate-limit key of a client address: the address for IPv4,
// its /64 network for IPv6 (one host, or one customer, holds a whole /64
// and could rotate through it).
func addrKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// remoteAddr parses r.RemoteAddr; ok false when it is not an IP address.
func remoteAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone(""), true
}

// proxies are the trusted reverse proxies (Config.TrustedProxies): only
// their X-Forwarded-For and X-Forwarded-Proto headers are believed.
type proxies []netip.Prefix

func (p proxies) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range p {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// client is the address of the client: the connection's peer, or, when
// that is a trusted proxy, the last address in X-Forwarded-For that is not
// one.
func (p proxies) client(r *http.Request) (netip.Addr, bool) {
	a, ok := remoteAddr(r)
	if !ok || !p.trusted(a) {
		return a, ok
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return a, true // garbage: stay with the proxy's own address
		}
		if !p.trusted(h) {
			return h.WithZone(""), true
		}
		a = h
	}
	return a, true
}

// https reports whether the browser reached the server over HTTPS: r came
// over TLS, or from a trusted proxy that says so in X-Forwarded-Proto.
func (p proxies) https(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	a, ok := remoteAddr(r)
	if !ok || !p.trusted(a) {
		return false
	}
	vals := r.Header.Values("X-Forwarded-Proto")
	if len(vals) == 0 {
		return false
	}
	last := vals[len(vals)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}

// parseProxies parses Config.TrustedProxies: IP addresses or CIDR
// prefixes.
func parseProxies(list []string) (proxies, error) {
	var out proxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, invalid("TrustedProxies", "%q is not an IP address or a CIDR prefix like 10.0.0.0/8", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
