package player

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
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
var appSources = []string{"signaling.js", "api.js", "twoway.js", "player.js", "attempt.js", "relay.js", "storage.js", "tile.js", "app.js"}

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
	s.chans.useStorage(c.Storage, c.StorageClient, s.log)
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
