package whep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/relay"
)

// Content types of WHEP requests and responses.
const (
	ContentTypeSDP     = "application/sdp"
	ContentTypeSDPFrag = "application/trickle-ice-sdpfrag"
)

// CauseHeader names, on a 503 answer to an offer, why the channel's camera
// sent no video (a package cause name such as "no-answer" or
// "channel-full"), for players that show it.
const CauseHeader = "X-Kvsrtc-Cause"

// EventsRel is the link relation of the server-sent events of a WHEP
// resource (the WHEP draft's extension).
const EventsRel = "urn:ietf:params:whep:ext:core:server-sent-events"

// ErrForbidden, wrapped by an error of Config.Auth, answers 403 instead
// of 401: the caller is known but may not watch that channel.
var ErrForbidden = errors.New("whep: forbidden")

// ErrInvalidConfig: NewHandler was given a configuration it cannot use.
var ErrInvalidConfig = errors.New("whep: invalid config")

// Config configures a [Handler]. Relay is required.
type Config struct {
	// Relay relays the channels.
	Relay *relay.Relay
	// Auth, if set, authenticates every request (POST, PATCH, DELETE,
	// GET) for channel as the mounting server does the rest of its API; a
	// non-nil error refuses it with 401 (403 if it wraps ErrForbidden) and
	// the error's text. Nil: every request is allowed, so mount the
	// handler behind the server's own authentication.
	Auth func(r *http.Request, channel string) error
	// Prefix is the path the handler is mounted at, with its trailing
	// slash (default "/whep/"). Locations are under it.
	Prefix string
	// MaxBodyBytes bounds offers and fragments (default 64 KiB).
	MaxBodyBytes int64
	// AllowOrigin, if set, is sent as Access-Control-Allow-Origin (with the
	// headers a browser player needs) for players on other origins.
	AllowOrigin string
	// Logger receives the handler's log (nil: discard).
	Logger *slog.Logger
}

// Handler is the WHEP endpoint of a relay; see the package documentation.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// NewHandler validates cfg and returns the handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Relay == nil {
		return nil, fmt.Errorf("%w: Config.Relay is required", ErrInvalidConfig)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/whep/"
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("%w: Prefix %q must start and end with a slash, as in /whep/", ErrInvalidConfig, cfg.Prefix)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: log.With("component", "whep")}, nil
}

// ServeHTTP serves WHEP requests under Config.Prefix.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.cors(w)
	rest, ok := strings.CutPrefix(r.URL.Path, h.cfg.Prefix)
	if !ok || rest == "" {
		httpError(w, http.StatusNotFound, "no channel in the path: use %s{channel}", h.cfg.Prefix)
		return
	}
	parts := strings.Split(rest, "/")
	channel := parts[0]
	switch {
	case len(parts) == 1:
		h.serveChannel(w, r, channel)
	case len(parts) == 2:
		h.serveResource(w, r, channel, parts[1])
	case len(parts) == 3 && parts[2] == "events":
		h.serveEvents(w, r, channel, parts[1])
	default:
		httpError(w, http.StatusNotFound, "%s is no WHEP endpoint or resource: use %s{channel}", r.URL.Path, h.cfg.Prefix)
	}
}

func (h *Handler) cors(w http.ResponseWriter) {
	if h.cfg.AllowOrigin == "" {
		return
	}
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", h.cfg.AllowOrigin)
	hd.Set("Access-Control-Allow-Methods", "OPTIONS, POST, PATCH, DELETE, GET")
	hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	hd.Set("Access-Control-Expose-Headers", "Location, Link, ETag, Accept-Patch, Retry-After, "+CauseHeader)
}

func (h *Handler) auth(w http.ResponseWriter, r *http.Request, channel string) bool {
	if h.cfg.Auth == nil {
		return true
	}
	err := h.cfg.Auth(r, channel)
	if err == nil {
		return true
	}
	if errors.Is(err, ErrForbidden) {
		httpError(w, http.StatusForbidden, "%v", err)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="whep"`)
		httpError(w, http.StatusUnauthorized, "%v", err)
	}
	return false
}

func (h *Handler) serveChannel(w http.ResponseWriter, r *http.Request, channel string) {
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Accept-Post", ContentTypeSDP)
		w.Header().Set("Allow", "OPTIONS, POST")
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost:
		if !h.auth(w, r, channel) {
			return
		}
		h.post(w, r, channel)
	default:
		w.Header().Set("Allow", "OPTIONS, POST")
		httpError(w, http.StatusMethodNotAllowed, "%s is not allowed on a WHEP endpoint: POST an SDP offer", r.Method)
	}
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request, channel string) {
	if !hasType(r, ContentTypeSDP) {
		httpError(w, http.StatusUnsupportedMediaType, "the offer's Content-Type is %q: send the SDP offer as %s", r.Header.Get("Content-Type"), ContentTypeSDP)
		return
	}
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	p, err := h.cfg.Relay.Join(r.Context(), channel, body)
	if err != nil {
		h.joinError(w, r, channel, err)
		return
	}
	loc := h.cfg.Prefix + channel + "/" + p.ID()
	hd := w.Header()
	hd.Set("Content-Type", ContentTypeSDP)
	hd.Set("Location", loc)
	hd.Set("ETag", `"`+p.ID()+`"`)
	hd.Set("Accept-Patch", ContentTypeSDPFrag)
	hd.Add("Link", fmt.Sprintf(`<%s/events>; rel=%q; events="status"`, loc, EventsRel))
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, p.Answer())
	h.log.Debug("whep: peer joined", "channel", channel, "peer", p.ID(), "remote", r.RemoteAddr)
}

func (h *Handler) joinError(w http.ResponseWriter, r *http.Request, channel string, err error) {
	switch {
	case errors.Is(err, relay.ErrUnknownChannel):
		httpError(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, relay.ErrBadOffer):
		httpError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, relay.ErrUnavailable), errors.Is(err, relay.ErrClosed):
		w.Header().Set("Retry-After", "5")
		if ue, ok := errors.AsType[*relay.UnavailableError](err); ok && ue.Status.Cause != "" {
			w.Header().Set(CauseHeader, string(ue.Status.Cause))
		}
		httpError(w, http.StatusServiceUnavailable, "%v", err)
	case r.Context().Err() != nil:
		// the client left; nobody reads the response
	default:
		h.log.Warn("whep: join failed", "channel", channel, "err", err)
		httpError(w, http.StatusInternalServerError, "%v", err)
	}
}

// peer finds the resource id of channel, answering 404 if there is none.
func (h *Handler) peer(w http.ResponseWriter, channel, id string) *relay.Peer {
	p := h.cfg.Relay.Peer(id)
	if p == nil || p.Channel() != channel {
		httpError(w, http.StatusNotFound, "no WHEP session %s%s/%s: it ended, or was never created; POST a new offer to %s%s",
			h.cfg.Prefix, channel, id, h.cfg.Prefix, channel)
		return nil
	}
	return p
}

func (h *Handler) serveResource(w http.ResponseWriter, r *http.Request, channel, id string) {
	const allow = "OPTIONS, PATCH, DELETE"
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Accept-Patch", ContentTypeSDPFrag)
		w.Header().Set("Allow", allow)
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPatch, http.MethodDelete:
	default:
		w.Header().Set("Allow", allow)
		httpError(w, http.StatusMethodNotAllowed, "%s is not allowed on a WHEP session: PATCH a fragment or DELETE it", r.Method)
		return
	}
	if !h.auth(w, r, channel) {
		return
	}
	p := h.peer(w, channel, id)
	if p == nil {
		return
	}
	if r.Method == http.MethodDelete {
		_ = p.Close()
		w.WriteHeader(http.StatusOK)
		return
	}
	if !hasType(r, ContentTypeSDPFrag) {
		httpError(w, http.StatusUnsupportedMediaType, "the fragment's Content-Type is %q: send %s", r.Header.Get("Content-Type"), ContentTypeSDPFrag)
		return
	}
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	reply, err := p.Patch(r.Context(), body)
	switch {
	case errors.Is(err, relay.ErrClosed):
		httpError(w, http.StatusNotFound, "the WHEP session ended: POST a new offer to %s%s", h.cfg.Prefix, channel)
	case errors.Is(err, relay.ErrOtherSession):
		httpError(w, http.StatusUnprocessableEntity, "%v", err)
	case errors.Is(err, relay.ErrBadFragment):
		httpError(w, http.StatusBadRequest, "%v", err)
	case err != nil:
		if r.Context().Err() == nil {
			httpError(w, http.StatusInternalServerError, "%v", err)
		}
	case reply != "":
		w.Header().Set("Content-Type", ContentTypeSDPFrag)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, reply)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// statusKeepalive is the interval of comments on an idle event stream,
// so proxies keep it open.
const statusKeepalive = 15 * time.Second

func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request, channel, id string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		httpError(w, http.StatusMethodNotAllowed, "%s is not allowed on the events of a WHEP session: GET them", r.Method)
		return
	}
	if !h.auth(w, r, channel) {
		return
	}
	p := h.peer(w, channel, id)
	if p == nil {
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var seq uint64
	for {
		ctx, cancel := context.WithTimeout(r.Context(), statusKeepalive)
		st, err := p.NextStatus(ctx, seq)
		cancel()
		switch {
		case err == nil:
			seq = st.Seq
			b, _ := json.Marshal(st)
			_, err = fmt.Fprintf(w, "event: status\nid: %d\ndata: %s\n\n", st.Seq, b)
		case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
			_, err = io.WriteString(w, ": keepalive\n\n")
		default: // the client left, or the peer closed
			return
		}
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}

// body reads a request body within Config.MaxBodyBytes.
func (h *Handler) body(w http.ResponseWriter, r *http.Request) (string, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "the body is over %d bytes", h.cfg.MaxBodyBytes)
		} else {
			httpError(w, http.StatusBadRequest, "reading the body: %v", err)
		}
		return "", false
	}
	return string(b), true
}

// hasType reports whether the request's Content-Type is want.
func hasType(r *http.Request, want string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && strings.EqualFold(mt, want)
}

// httpError answers with a plain-text message.
func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "whep: "+format+"\n", args...)
}
