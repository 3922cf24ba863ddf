package player

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if s.auth.off() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	code, token := r.URL.Query().Get("code"), r.URL.Query().Get("token")
	if code != "" || token != "" {
		switch s.signIn(w, r, code, token) {
		case 0:
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		case http.StatusTooManyRequests:
			s.loginError(w, next, "Too many wrong attempts: wait a minute and try again.", http.StatusTooManyRequests)
			return
		}
		s.loginError(w, next, "That sign-in link is wrong, used or expired: sign in with the token.", http.StatusUnauthorized)
		return
	}
	body := bytes.ReplaceAll(s.pages["login"], []byte("{{NEXT}}"), []byte(htmlEscape(next)))
	body = bytes.ReplaceAll(body, []byte("{{ERROR}}"), nil)
	s.writePage(w, http.StatusUnauthorized, body)
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	if s.auth.off() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	switch s.signIn(w, r, "", r.PostForm.Get("token")) {
	case 0:
		http.Redirect(w, r, next, http.StatusSeeOther)
	case http.StatusTooManyRequests:
		s.loginError(w, next, "Too many wrong attempts: wait a minute and try again.", http.StatusTooManyRequests)
	default:
		s.log.Info("login refused", "client", s.clientKey(r))
		s.loginError(w, next, "Wrong token.", http.StatusUnauthorized)
	}
}

func (s *Server) loginError(w http.ResponseWriter, next, msg string, status int) {
	body := bytes.ReplaceAll(s.pages["login"], []byte("{{NEXT}}"), []byte(htmlEscape(safeNext(next))))
	body = bytes.ReplaceAll(body, []byte("{{ERROR}}"), []byte(`<p class="login-error" role="alert">`+htmlEscape(msg)+`</p>`))
	s.writePage(w, status, body)
}

// authorize checks the bearer token or cookie of r. A valid one passes
// (even from a blocked client); a wrong one is a failed attempt (see
// attempt), a stale cookie is also removed. It returns false and 401 or
// 429 (Retry-After set) otherwise; nothing presented is 401 and costs
// nothing.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (bool, int) {
	if s.auth.off() {
		return true, 0
	}
	if r.Header.Get("Authorization") == "" && !hasCookie(r, cookieName) {
		return false, http.StatusUnauthorized
	}
	if s.auth.validCookie(r) {
		return true, 0 // a signed-in browser passes, blocked address or not
	}
	var stale bool
	st := s.attempt(w, r, false, func() bool {
		c := s.auth.check(r)
		stale = c == credCookie
		return c == credValid
	})
	if stale {
		s.auth.clearCookie(w, s.proxies.https(r))
	}
	return st == 0, st
}

// signIn exchanges a one-time code or the token for the cookie: 0 when
// signed in, else 401 or 429.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, code, token string) int {
	// A code is 128 random bits, used once: checking one for a blocked
	// client teaches a guesser nothing, so it skips the shared gate.
	st := s.attempt(w, r, code != "", func() bool {
		if code != "" {
			return s.auth.useCode(code)
		}
		return s.auth.tokenOK(token)
	})
	if st == 0 {
		s.auth.setCookie(w, s.proxies.https(r))
	}
	return st
}

// attempt runs one credential check for r. Every failed check (a wrong
// bearer token, cookie, token or code) uses up the client's budget; once
// it is spent the answer is 429. A blocked client is still checked, so the
// right token gets in even from an address an attacker shares, but only as
// often as the gate shared by all blocked clients allows (unguessable
// credentials skip it). It returns 0 when check passed, else 401 or 429
// (with Retry-After).
func (s *Server) attempt(w http.ResponseWriter, r *http.Request, unguessable bool, check func() bool) int {
	key := s.clientKey(r)
	tooMany := func(wait time.Duration) int {
		s.metrics.incRateLimited()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		return http.StatusTooManyRequests
	}
	if blocked, wait := s.logins.blocked(key); blocked && !unguessable {
		if ok, _ := s.gate.allow(""); !ok {
			return tooMany(wait)
		}
	}
	if check() {
		return 0
	}
	s.metrics.incAuthFailure()
	s.logins.allow(key)
	if blocked, wait := s.logins.blocked(key); blocked {
		s.log.Info("sign-in attempts blocked", "client", key, "for", wait.Round(time.Second))
		return tooMany(wait)
	}
	return http.StatusUnauthorized
}

func hasCookie(r *http.Request, name string) bool {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return true
		}
	}
	return false
}

// clientKey is the rate-limit key of a request: the client's IPv4 address
// or IPv6 /64 (behind a trusted proxy, the address it forwarded).
func (s *Server) clientKey(r *http.Request) string {
	a, ok := s.proxies.client(r)
	if !ok {
		return r.RemoteAddr
	}
	return addrKey(a)
}

// NewSignInCode returns a one-time code that signs one browser in when it
// opens any page with ?code=CODE (the page address then drops it): a link
// to print instead of one that carries the token, which would stay in
// browser history, terminal scrollback and proxy logs. It lasts ttl (0:
// DefaultSignInCodeTTL); "" when the server has no access control.
func (s *Server) NewSignInCode(ttl time.Duration) string {
	if s.auth.off() {
		return ""
	}
	if ttl <= 0 {
		ttl = DefaultSignInCodeTTL
	}
	return s.auth.newCode(ttl)
}

// RevokeSessions signs every browser out: the cookies issued so far stop
// working (as they do when the server restarts or the token changes).
func (s *Server) RevokeSessions() {
	if !s.auth.off() {
		s.auth.revoke()
		s.log.Info("every browser session revoked")
	}
}

// safeNext keeps a post-login redirect on this site: it must be a path
// ("/..."), and nothing a browser would read as another host may be in it
// (browsers drop tabs and newlines from URLs and read "\" as "/", so
// "/\t/evil.example" goes to evil.example).
func safeNext(n string) string {
	if n == "" || len(n) > 2048 || n[0] != '/' {
		return "/"
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	if len(n) > 1 && n[1] == '/' {
		return "/"
	}
	return n
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}
