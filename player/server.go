package player

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsrtc/kvsrtc/retry"
)

//go:embed assets
var assetFS embed.FS

// configPlaceholder is replaced in the HTML pages by the page configuration
// (a JSON data block, which the Content-Security-Policy does not execute).
const configPlaceholder = "{{KVSRTC_CONFIG}}"

// Placeholders of the pages: the sessions minted for the page (a JSON data
// block), the inline bootstrap script that uses them at once, and the
// player's script.
const (
	sessionsPlaceholder  = "{{KVSRTC_SESSIONS}}"
	bootstrapPlaceholder = "{{KVSRTC_BOOTSTRAP}}"
	appPlaceholder       = "{{KVSRTC_APP}}"
	stylePlaceholder     = "{{KVSRTC_STYLE}}"
)

// appSources are the player's script files, joined in this order into one
// inline script (they share one function scope).
var appSources = []string{"signaling.js", "api.js", "twoway.js", "player.js", "attempt.js", "relay.js", "tile.js", "app.js"}

// Security headers of every response. The pages run only their two inline
// scripts, allowed by their hashes; the only outside connections are the
// signaling WebSockets.
const contentSecurityPolicy = "default-src 'none'; script-src %s; style-src 'self' %s; img-src 'self' data:; " +
	"media-src 'self' blob:; connect-src 'self' wss: ws:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// permissionsPolicy: the pages may use the microphone (push-to-talk asks
// for it only while its button is held), from this origin only; no frame
// and no other origin may, and nothing else is allowed.
const permissionsPolicy = "microphone=(self), camera=(), geolocation=(), display-capture=(), usb=(), payment=()"

// maxPageSessions bounds the sessions minted while rendering one page.
const maxPageSessions = 16

// pageMintTimeout bounds minting while rendering a page (normally the
// caches make it instant).
const pageMintTimeout = 3 * time.Second

// Limits of the HTTP server Serve runs.
const (
	shutdownTimeout = 5 * time.Second
	maxBodyBytes    = 16 << 10
	maxHeaderBytes  = 64 << 10
)

// serverLimits are the timeouts and the connection cap of Serve's HTTP
// server. Every response is small and every request body at most 16 KiB
// (the player serves no WebSocket: browsers open theirs to KVS), so short
// timeouts cost nothing and stop slow clients from holding connections.
type serverLimits struct {
	readHeader, read, write, idle time.Duration
	maxConns                      int
}

var defaultServerLimits = serverLimits{
	readHeader: 10 * time.Second,
	read:       20 * time.Second,
	write:      30 * time.Second,
	idle:       90 * time.Second,
	maxConns:   1024,
}

// Sign-in limits: each client address (IPv6: each /64) may fail 10 checks,
// then one every 5 s. A blocked client is still checked (so that the right
// token gets in from an address an attacker shares), but all blocked
// clients together get only a few checks a second.
const (
	loginRate         = 0.2
	loginBurst        = 10
	blockedCheckRate  = 2
	blockedCheckBurst = 10
)

// evictRate bounds how often the pages' reports may make the server forget
// a channel's cached ARN and endpoints (each costs control-plane calls
// against the account's small TPS limits): once per 10 s per channel.
const evictRate = 0.1

// hstsValue is the Strict-Transport-Security of responses over HTTPS.
const hstsValue = "max-age=15552000"

// Server is the web player: it serves the embedded pages and the JSON API
// that mints viewer sessions for them. It is an http.Handler; Run keeps its
// caches fresh, Serve does both on a listener.
type Server struct {
	cfg      Config
	policy   retry.Policy
	auth     *auth
	chans    *channels
	ids      *retry.ClientIDs
	sessions *limiter
	logins   *limiter // failed sign-in checks (bearer, cookie, form, ?token=, ?code=) per client
	gate     *limiter // checks of blocked clients, all together
	reports  *limiter
	evicts   *limiter // channel cache evictions on the pages' reports, per channel
	proxies  proxies
	limits   serverLimits
	metrics  *metrics
	log      *slog.Logger
	mux      *http.ServeMux
	pages    map[string][]byte // HTML pages by name, with the configuration filled in
	assets   map[string]asset
	csp      string
	running  atomic.Bool
	module   moduleAssets // kvs-viewer.js and its types (module.go)

	mu     sync.Mutex
	issued map[string]issuedID // client ids minted, for renewals
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

type issuedID struct {
	channel string
	last    time.Time
}

// renewWindow is how long after its last use a client id may be renewed.
const renewWindow = 2 * time.Hour

// New validates cfg and returns a Server. Nothing runs before Run or Serve;
// ServeHTTP works without them, resolving channels on demand.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	policy, _ := c.Retry.WithDefaults()
	px, err := parseProxies(c.TrustedProxies)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      c,
		policy:   policy,
		auth:     newAuth(c.Auth, c.SessionMaxAge, c.Now),
		chans:    newChannels(c.Control, c.Channels, c.ChannelRefresh, c.Now),
		ids:      &retry.ClientIDs{Prefix: c.ClientIDPrefix, Now: c.Now},
		sessions: newLimiter(c.SessionRate, c.SessionBurst, c.Now),
		logins:   newLimiter(loginRate, loginBurst, c.Now),
		gate:     newLimiter(blockedCheckRate, blockedCheckBurst, c.Now),
		reports:  newLimiter(5, 50, c.Now),
		evicts:   newLimiter(evictRate, 1, c.Now),
		proxies:  px,
		limits:   defaultServerLimits,
		metrics:  newMetrics(),
		log:      c.Logger,
		issued:   make(map[string]issuedID),
	}
	if err := s.loadAssets(); err != nil {
		return nil, err
	}
	if err := s.loadModule(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Channels returns the served channel names, in the order configured.
func (s *Server) Channels() []string { return slices.Clone(s.cfg.Channels) }

// loadAssets reads the embedded files and renders the pages.
func (s *Server) loadAssets() error {
	cfgJSON, err := json.Marshal(s.pageConfig())
	if err != nil {
		return err
	}
	boot, err := assetFS.ReadFile("assets/bootstrap.js")
	if err != nil {
		return err
	}
	var app bytes.Buffer
	app.WriteString("(() => {\n'use strict';\n")
	for _, f := range appSources {
		b, err := assetFS.ReadFile("assets/" + f)
		if err != nil {
			return err
		}
		app.Write(b)
		app.WriteString("\n")
	}
	app.WriteString("})();\n")
	if bytes.Contains(boot, []byte("</script")) || bytes.Contains(app.Bytes(), []byte("</script")) {
		return errors.New("player: an inline script contains </script")
	}
	// The style sheet is inline too: an external one would hold the page's
	// parsing (and so the first connection's events) until it arrives.
	style, err := assetFS.ReadFile("assets/player.css")
	if err != nil {
		return err
	}
	tile, err := assetFS.ReadFile("assets/tile.css")
	if err != nil {
		return err
	}
	style = append(append(style, '\n'), tile...)
	if bytes.Contains(style, []byte("</style")) {
		return errors.New("player: the style sheet contains </style")
	}
	hash := func(b []byte) string {
		sum := sha256.Sum256(b)
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	s.csp = fmt.Sprintf(contentSecurityPolicy, hash(boot)+" "+hash(app.Bytes()), hash(style))
	s.pages = make(map[string][]byte)
	s.assets = make(map[string]asset)
	return fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "assets/")
		if strings.HasSuffix(name, ".html") {
			b = bytes.ReplaceAll(b, []byte(configPlaceholder), cfgJSON)
			b = bytes.ReplaceAll(b, []byte(bootstrapPlaceholder), boot)
			b = bytes.ReplaceAll(b, []byte(appPlaceholder), app.Bytes())
			b = bytes.ReplaceAll(b, []byte(stylePlaceholder), style)
			s.pages[strings.TrimSuffix(name, ".html")] = b
			return nil
		}
		if strings.HasSuffix(name, ".js") || strings.HasSuffix(name, ".ts") {
			return nil // inlined in the pages, or part of the module (module.go)
		}
		sum := sha256.Sum256(b)
		s.assets[name] = asset{body: b, ctype: contentType(name), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	}
	return "application/octet-stream"
}

// pagePolicy is the retry policy as the page reads it (milliseconds).
type pagePolicy struct {
	AnswerTimeoutMs   int64 `json:"answerTimeoutMs"`
	MediaTimeoutMs    int64 `json:"mediaTimeoutMs"`
	MaxAttempts       int   `json:"maxAttempts"`
	BackoffBaseMs     int64 `json:"backoffBaseMs"`
	BackoffCapMs      int64 `json:"backoffCapMs"`
	NoJitter          bool  `json:"noJitter"`
	BudgetMs          int64 `json:"budgetMs"` // <= 0: none
	StallTimeoutMs    int64 `json:"stallTimeoutMs"`
	ICERestartGraceMs int64 `json:"iceRestartGraceMs"`
	// LateAnswerWindowMs: see retry.Policy.LateAnswerWindow (<= 0: off).
	LateAnswerWindowMs int64 `json:"lateAnswerWindowMs"`
}

type pageConfig struct {
	Channels     []string   `json:"channels"`
	Policy       pagePolicy `json:"policy"`
	LoopbackOnly bool       `json:"loopbackOnly,omitempty"`
	// Talk: push-to-talk (a send-receive audio transceiver in every offer).
	Talk bool `json:"talk,omitempty"`
	// Data: a data channel in every offer, and its console.
	Data bool `json:"data,omitempty"`
}

func (s *Server) pageConfig() pageConfig {
	p := s.policy
	return pageConfig{Channels: s.cfg.Channels, LoopbackOnly: s.cfg.LoopbackOnly, Talk: !s.cfg.NoTalk, Data: s.cfg.Data, Policy: pagePolicy{
		AnswerTimeoutMs: p.AnswerTimeout.Milliseconds(), MediaTimeoutMs: p.MediaTimeout.Milliseconds(),
		MaxAttempts: p.MaxAttempts, BackoffBaseMs: p.BackoffBase.Milliseconds(), BackoffCapMs: p.BackoffCap.Milliseconds(),
		NoJitter: p.NoJitter, BudgetMs: p.TotalBudget.Milliseconds(),
		StallTimeoutMs: s.cfg.StallTimeout.Milliseconds(), ICERestartGraceMs: s.cfg.ICERestartGrace.Milliseconds(),
		LateAnswerWindowMs: p.LateAnswerWindow.Milliseconds(),
	}}
}

// routes builds the handler tree.
func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	m.HandleFunc("GET /login", s.handleLoginPage)
	m.HandleFunc("POST /login", s.handleLogin)
	m.HandleFunc("GET /assets/{file}", s.handleAsset)
	m.HandleFunc("GET /{$}", s.page("index"))
	m.HandleFunc("GET /grid", s.page("grid"))
	m.HandleFunc("GET /metrics", s.api(s.handleMetrics))
	// The API under /api/ is the same handler tree a Go app mounts with
	// NewHandler (handler.go), behind the token and the cookie.
	m.Handle("/api/", http.StripPrefix("/api", s.apiRoutes(s.api, false)))
	for prefix, h := range s.cfg.Mount {
		m.Handle(prefix, s.protect(h))
	}
	s.mux = m
}

// ServeHTTP serves the pages, the assets, the API and /metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", permissionsPolicy)
	if s.proxies.https(r) {
		// Browsers that once reached the player over HTTPS never try it in
		// clear again (where the cookie and the token could be read).
		h.Set("Strict-Transport-Security", hstsValue)
	}
	s.mux.ServeHTTP(w, r)
}

// Run keeps every served channel's ARN, endpoints and ICE servers fresh
// (refreshing ICE servers ahead of their expiry) so that minting a session
// makes no control-plane call. It returns nil when ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("player: Run called twice")
	}
	s.chans.run(ctx, func(msg string, args ...any) {
		s.metrics.incRefreshError()
		s.log.Warn(msg, args...)
	})
	return nil
}

// Serve runs Run and an HTTP server on ln until ctx ends, then shuts the
// server down gracefully (in-flight requests get a few seconds) and
// returns nil; it closes ln. For HTTPS, pass a tls.NewListener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, s)
}

// serve is Serve with another handler (Handler.Serve).
func (s *Server) serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	lim := s.limits
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnState:         (&connCap{max: lim.maxConns}).connState,
	}
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Run(runCtx) }()
	errc := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); errc <- hs.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if serr := hs.Shutdown(sctx); serr != nil {
		_ = hs.Close()
	}
	stop()
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("player: %w", err)
	}
	return nil
}

// WriteMetrics writes the /metrics page (Prometheus text format) to w.
func (s *Server) WriteMetrics(w io.Writer) error {
	if err := s.metrics.write(w); err != nil || s.cfg.Metrics == nil {
		return err
	}
	return s.cfg.Metrics(w)
}

// --- pages and assets -------------------------------------------------------

func (s *Server) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, status := s.authorize(w, r); !ok {
			q := r.URL.Query()
			code, token := q.Get("code"), q.Get("token")
			q.Del("code")
			q.Del("token")
			rest := r.URL.Path
			if len(q) > 0 {
				rest += "?" + q.Encode()
			}
			if code != "" || token != "" {
				if st := s.signIn(w, r, code, token); st == 0 {
					// Signed in: drop the code or token from the address bar.
					http.Redirect(w, r, rest, http.StatusSeeOther)
					return
				} else if st == http.StatusTooManyRequests {
					status = st
				}
			}
			if status == http.StatusTooManyRequests {
				s.loginError(w, rest, "Too many wrong attempts: wait a minute and try again.", status)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(rest), http.StatusSeeOther)
			return
		}
		sessions := s.pageSessions(r, name)
		js, err := json.Marshal(sessions)
		if err != nil {
			js = []byte("{}")
		}
		// Let the browser resolve the signaling endpoints' names while it
		// parses the page. Not rel=preconnect: a WebSocket opened no sooner
		// after one (measured in Chromium), and the extra TLS handshake
		// costs CPU while the page connects.
		origins := map[string]bool{}
		for _, sess := range sessions {
			if o := signalingOrigin(sess.SignalingURL); o != "" && !origins[o] {
				origins[o] = true
				w.Header().Add("Link", "<"+o+">; rel=dns-prefetch")
			}
		}
		s.writePage(w, http.StatusOK, bytes.Replace(s.pages[name], []byte(sessionsPlaceholder), js, 1))
	}
}

// signalingOrigin is the https:// or http:// origin of a ws(s):// URL.
func signalingOrigin(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	switch p.Scheme {
	case "wss":
		return "https://" + p.Host
	case "ws":
		return "http://" + p.Host
	}
	return ""
}

// pageSessions mints the sessions of the channels a page will play, so that
// its bootstrap connects before the scripts load. Failures are left to the
// page, which then asks the API (and shows the refusal).
func (s *Server) pageSessions(r *http.Request, page string) map[string]Session {
	q := r.URL.Query()
	var chans []string
	switch page {
	case "index":
		if c := q.Get("channel"); c != "" {
			chans = []string{c}
		} else if len(s.cfg.Channels) == 1 {
			chans = s.cfg.Channels
		}
	case "grid":
		for _, c := range q["channel"] {
			if slices.Contains(s.cfg.Channels, c) && !slices.Contains(chans, c) {
				chans = append(chans, c)
			}
		}
		if len(chans) == 0 {
			chans = s.cfg.Channels
		}
	}
	out := make(map[string]Session)
	ctx, cancel := context.WithTimeout(r.Context(), pageMintTimeout)
	defer cancel()
	for _, c := range chans {
		if len(out) == maxPageSessions || !s.chans.served(c) {
			continue
		}
		if ok, _ := s.sessions.allow(s.clientKey(r)); !ok {
			break
		}
		if s.relayed(ctx, c, "") {
			// The bootstrap POSTs its offer to the relay at once.
			s.metrics.inc(s.metrics.relayed, c)
			out[c] = s.relaySession(c)
			continue
		}
		sess, err := s.mint(ctx, c, "")
		if err != nil {
			s.log.Debug("no session for the page; it will ask the API", "channel", c, "err", err)
			continue
		}
		s.metrics.inc(s.metrics.sessions, c)
		out[c] = sess
	}
	return out
}

func (s *Server) writePage(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// publicAssets may be fetched before signing in (the login page's style).
var publicAssets = map[string]bool{"player.css": true}

func (s *Server) handleAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	a, ok := s.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !publicAssets[name] {
		if ok, status := s.authorize(w, r); !ok {
			http.Error(w, "sign in first", status)
			return
		}
	}
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("ETag", a.etag)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}

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
