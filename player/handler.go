package player

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/retry"
)

// CauseNotAllowed: the app's authorization hook does not allow this user
// the channel (the channel is served, to someone else).
const CauseNotAllowed cause.Cause = "channel-not-allowed"

// Errors an AuthorizeFunc returns (or wraps) to refuse a request. Any other
// error counts as ErrUnauthorized.
var (
	// ErrUnauthorized: the request carries no valid credential of the app
	// (401; charged to the client address's sign-in budget like a wrong
	// token).
	ErrUnauthorized = errors.New("player: not signed in")
	// ErrExpired: the request's credential was valid but has expired (401,
	// worded as an expired session). It matches ErrUnauthorized too.
	ErrExpired error = &expiredError{}
	// ErrForbidden: the user is signed in but may use none of the channels
	// (403).
	ErrForbidden = errors.New("player: not allowed")
	// ErrAuthUnavailable: the app's authorization could not be asked (its
	// callback is down); 503, and the page may retry.
	ErrAuthUnavailable = errors.New("player: authorization service unavailable")
)

type expiredError struct{}

func (*expiredError) Error() string        { return "player: session expired" }
func (*expiredError) Is(target error) bool { return target == ErrUnauthorized }

// AuthorizeFunc decides who may use a Handler: it receives each API
// request (its cookies and headers, as the app's own handlers would) and
// returns the channels that user may watch, or an error (ErrUnauthorized,
// ErrExpired, ErrForbidden, ErrAuthUnavailable or one wrapping them). It
// must not read the body. Channels it returns that the Handler does not
// serve are ignored.
type AuthorizeFunc func(r *http.Request) (channels []string, err error)

// HandlerConfig configures a Handler. Control, Channels and Authorize are
// required; every other zero value works (the fields mean what they mean
// in Config).
type HandlerConfig struct {
	// Control is the control-plane client whose credentials presign the
	// signaling URLs; they never leave the server.
	Control *control.Client
	// Channels are every channel any user may be allowed; Authorize
	// narrows them per request.
	Channels []string
	// Authorize is the app's own access decision (see AuthorizeFunc,
	// TokenAuthorizer, CallbackAuthorizer).
	Authorize AuthorizeFunc
	// TrustedProxies: see Config.TrustedProxies.
	TrustedProxies []string

	// Retry, StallTimeout, ICERestartGrace, ForceRelay and LoopbackOnly are
	// the policy of every <kvs-viewer> this handler serves (see Config);
	// an element's attributes may override the policy's timeouts.
	Retry           retry.Policy
	StallTimeout    time.Duration
	ICERestartGrace time.Duration
	ForceRelay      bool
	LoopbackOnly    bool

	// PresignExpiry, ClientIDPrefix, SessionRate, SessionBurst,
	// ChannelRefresh, HTTPClient, Logger, Now: see Config.
	PresignExpiry  time.Duration
	ClientIDPrefix string
	SessionRate    float64
	SessionBurst   int
	ChannelRefresh time.Duration
	HTTPClient     *http.Client
	Logger         *slog.Logger
	Now            func() time.Time
}

// Handler is the web player's session and diagnosis API, and the
// <kvs-viewer> module, for an app to mount under a path of its own and
// protect with its own authentication. It serves, relative to where it is
// mounted (use http.StripPrefix):
//
//	GET  kvs-viewer.js     the ES module with the <kvs-viewer> element (public)
//	GET  kvs-viewer.d.ts   its TypeScript declarations (public)
//	GET  channels          the channels this user may watch
//	POST session           {"channel"} -> Session ({"channel","renew"} renews)
//	POST diagnose          what the page saw -> Diagnosis
//	POST report            first-frame / attempt-failed / reconnect (metrics)
//
// Every API request goes through HandlerConfig.Authorize first; POSTs must be
// same-origin JSON, sessions are rate limited per client address. It has
// no login page: the app's own sign-in sets whatever Authorize checks.
type Handler struct {
	s   *Server
	mux *http.ServeMux
}

// NewHandler validates cfg and returns a Handler. Call Run (or Serve) to
// keep the channel caches fresh; without it sessions resolve on demand.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Authorize == nil {
		return nil, invalid("Authorize", "an authorization hook is required: it returns the channels the request's user may watch (see player.TokenAuthorizer, player.CallbackAuthorizer)")
	}
	s, err := New(Config{
		Control: cfg.Control, Channels: cfg.Channels, NoAuth: true, TrustedProxies: cfg.TrustedProxies,
		Retry: cfg.Retry, StallTimeout: cfg.StallTimeout, ICERestartGrace: cfg.ICERestartGrace,
		ForceRelay: cfg.ForceRelay, LoopbackOnly: cfg.LoopbackOnly, PresignExpiry: cfg.PresignExpiry,
		ClientIDPrefix: cfg.ClientIDPrefix, SessionRate: cfg.SessionRate, SessionBurst: cfg.SessionBurst,
		ChannelRefresh: cfg.ChannelRefresh, HTTPClient: cfg.HTTPClient, Logger: cfg.Logger, Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	h := &Handler{s: s}
	h.mux = s.apiRoutes(func(next func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
		return s.hooked(cfg.Authorize, next)
	}, true)
	return h, nil
}

// ServeHTTP serves the API and the module.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if h.s.proxies.https(r) {
		hd.Set("Strict-Transport-Security", hstsValue)
	}
	h.mux.ServeHTTP(w, r)
}

// Channels returns the served channel names, in the order configured.
func (h *Handler) Channels() []string { return h.s.Channels() }

// Run keeps the channels' ARNs, endpoints and ICE servers fresh until ctx
// ends (see Server.Run).
func (h *Handler) Run(ctx context.Context) error { return h.s.Run(ctx) }

// Serve runs Run and an HTTP server for the handler alone on ln until ctx
// ends, with the same timeouts and connection cap as Server.Serve; it
// closes ln. The handler answers under mount (a path such as "/kvs/"; ""
// is "/"), and GET /healthz answers "ok".
func (h *Handler) Serve(ctx context.Context, ln net.Listener, mount string) error {
	base := "/" + strings.Trim(mount, "/") + "/"
	if base == "//" {
		base = "/"
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	m.Handle(base, http.StripPrefix(strings.TrimSuffix(base, "/"), h))
	return h.s.serve(ctx, ln, m)
}

// WriteMetrics writes the handler's metrics (Prometheus text format).
func (h *Handler) WriteMetrics(w io.Writer) error {
	return h.s.metrics.write(w)
}

// allowedKey is the request context key of the channels a hook allowed.
type allowedKey struct{}

// permitted reports whether the request's hook (if any) allowed channel.
func permitted(r *http.Request, channel string) bool {
	allowed, ok := r.Context().Value(allowedKey{}).([]string)
	return !ok || slices.Contains(allowed, channel)
}

// refusal is why channel may not be used by r ("" when it may).
func (s *Server) refusal(r *http.Request, channel string) cause.Cause {
	if !s.chans.served(channel) {
		return CauseNotServed
	}
	if !permitted(r, channel) {
		return CauseNotAllowed
	}
	return ""
}

// hooked wraps an API handler with the app's hook: a refused request gets
// the same kind of answer as a wrong token (401, or 429 once the client
// address has failed too often), ErrForbidden 403, ErrAuthUnavailable 503;
// then the same-origin and JSON checks; the allowed channels travel in the
// request's context.
func (s *Server) hooked(hook AuthorizeFunc, next func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		var allowed []string
		var herr error
		st := s.attempt(w, r, false, func() bool {
			allowed, herr = hook(r)
			return herr == nil || errors.Is(herr, ErrForbidden) || errors.Is(herr, ErrAuthUnavailable)
		})
		switch {
		case st == http.StatusTooManyRequests:
			d := diagnose(cause.Throttled, "", "", 0, 0, nil)
			d.Message = "Too many refused requests came from this address."
			d.Advice = "Wait a minute, then sign in again."
			s.metrics.inc(s.metrics.failures, string(cause.Throttled))
			s.apiError(w, st, d)
			return
		case st != 0:
			s.log.Info("API request refused by the app's authorization", "client", s.clientKey(r), "err", herr)
			s.metrics.inc(s.metrics.failures, string(CauseUnauthorized))
			d := diagnose(CauseUnauthorized, "", "", 0, 0, nil)
			if errors.Is(herr, ErrExpired) {
				d.Title = "Your session expired"
				d.Message = "Your sign-in to this site has expired."
				d.Advice = "Sign in again (reload the page)."
			} else {
				d.Message = "This site did not recognise your sign-in."
				d.Advice = "Sign in to the site, then reload the page."
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="kvsrtc"`)
			s.apiError(w, http.StatusUnauthorized, d)
			return
		case errors.Is(herr, ErrAuthUnavailable):
			s.log.Warn("the app's authorization is unavailable", "err", herr)
			s.apiError(w, http.StatusServiceUnavailable, Diagnosis{Cause: cause.ServiceError, Title: "Sign-in service unavailable",
				Message: "The site could not check your sign-in just now.", Advice: "Wait a moment and press Retry.", Retryable: true})
			return
		case herr != nil: // ErrForbidden
			allowed = []string{}
		}
		if allowed == nil {
			allowed = []string{}
		}
		if !s.postChecks(w, r) {
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), allowedKey{}, allowed)))
	}
}
