package player

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// Session is what POST /api/session returns: everything a browser needs for
// one connection attempt, and nothing that lasts. The presigned URL is valid
// for Config.PresignExpiry; it carries the access key id (and, with
// temporary credentials, the session token) but never the secret key.
type Session struct {
	// Channel is the channel name.
	Channel string `json:"channel"`
	// ChannelARN is the channel's ARN.
	ChannelARN string `json:"channelArn"`
	// ClientID is the fresh viewer client id of this attempt.
	ClientID string `json:"clientId"`
	// SignalingURL is the presigned wss:// URL to open as that viewer.
	SignalingURL string `json:"signalingUrl"`
	// ICEServers are the channel's STUN/TURN servers (RTCIceServer form).
	ICEServers []ICEServer `json:"iceServers"`
	// ICETransportPolicy is "all" or "relay".
	ICETransportPolicy string `json:"iceTransportPolicy"`
	// ExpiresAt is when SignalingURL stops being accepted.
	ExpiresAt time.Time `json:"expiresAt"`
	// ICEExpiresAt is when the TURN credentials expire.
	ICEExpiresAt time.Time `json:"iceExpiresAt"`
	// Mode is "relay" when the browser is to watch through the server's
	// relay: then only Channel, WHEP and ICEServers are set (no client id,
	// no signaling URL). "storage" (ModeStorage) when it is to watch
	// through the channel's storage session: every field is set as for a
	// direct session, and once its WebSocket is open the page asks POST
	// /api/storage-join and answers the offer that comes. Empty: a direct
	// session.
	Mode string `json:"mode,omitempty"`
	// WHEP is the URL path of the relay's WHEP endpoint for the channel:
	// where a relay session POSTs its offer, and (auto mode) where a direct
	// session goes when the channel is full.
	WHEP string `json:"whep,omitempty"`
}

// ICEServer is one RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// APIError is the body of every refused API request.
type APIError struct {
	Error Diagnosis `json:"error"`
}

// sessionRequest is the body of POST /api/session.
type sessionRequest struct {
	Channel string `json:"channel"`
	// Renew asks for a new signaling URL for a client id this server
	// minted (a playing page renewing its signaling connection), instead
	// of a fresh client id.
	Renew string `json:"renew,omitempty"`
	// After is the cause of the page's previous, failed attempt. In auto
	// mode the server then checks whether the channel is full (a browser
	// cannot read why its WebSocket was refused) and, if it is, sends the
	// page to the relay.
	After string `json:"after,omitempty"`
}

// diagnoseRequest is the body of POST /api/diagnose: what the page saw when
// it gave up.
type diagnoseRequest struct {
	Channel   string  `json:"channel"`
	ClientID  string  `json:"clientId"`
	Cause     string  `json:"cause"`
	Stage     string  `json:"stage"`
	Attempts  int     `json:"attempts"`
	ElapsedMs float64 `json:"elapsedMs"`
}

// reportRequest is the body of POST /api/report.
type reportRequest struct {
	Channel  string  `json:"channel"`
	ClientID string  `json:"clientId"`
	Event    string  `json:"event"` // first-frame, attempt-failed, reconnect
	Cause    string  `json:"cause"`
	Ms       float64 `json:"ms"`
}

// diagnoseMaxAge: a diagnosis re-checks the channel with the control plane
// unless it was resolved this recently.
const diagnoseMaxAge = 3 * time.Second

// api wraps an API handler: authentication, same-origin and JSON checks.
func (s *Server) api(h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !s.signedIn(w, r) || !s.postChecks(w, r) {
			return
		}
		h(w, r)
	}
}

// signedIn checks r's token or cookie; when it fails it answers 401 or 429
// with the diagnosis and returns false.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) bool {
	ok, status := s.authorize(w, r)
	if ok {
		return true
	}
	if status == http.StatusTooManyRequests {
		d := diagnose(cause.Throttled, "", "", 0, 0, nil)
		d.Message = "Too many wrong tokens or stale cookies came from this address."
		d.Advice = "Wait a minute, then sign in again with the token."
		s.metrics.inc(s.metrics.failures, string(cause.Throttled))
		s.apiError(w, status, d)
		return false
	}
	if r.Header.Get("Authorization") == "" && !hasCookie(r, cookieName) {
		s.metrics.incAuthFailure() // a wrong one was counted by attempt
	}
	s.metrics.inc(s.metrics.failures, string(CauseUnauthorized))
	w.Header().Set("WWW-Authenticate", `Bearer realm="kvsrtc"`)
	s.apiError(w, http.StatusUnauthorized, diagnose(CauseUnauthorized, "", "", 0, 0, nil))
	return false
}

// protect serves h (a Config.Mount handler) to requests with the token or
// the cookie, from the same origin when the browser names one (a page on
// another site cannot drive it with the cookie). The body is h's to check.
func (s *Server) protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !s.signedIn(w, r) {
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
			s.apiError(w, http.StatusForbidden, Diagnosis{Cause: CauseBadRequest, Title: "Cross-site request refused",
				Message: "The request came from another site.", Advice: "Use the player's own pages."})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// postChecks refuses a POST that is cross-site or not JSON, and bounds its
// body (CSRF: a form on another site cannot send application/json without
// a preflight, and a browser's fetch says where it came from in Origin).
func (s *Server) postChecks(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		return true
	}
	if !sameOrigin(r) {
		s.apiError(w, http.StatusForbidden, Diagnosis{Cause: CauseBadRequest, Title: "Cross-site request refused",
			Message: "The request came from another site.", Advice: "Use the player's own pages."})
		return false
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		s.apiError(w, http.StatusUnsupportedMediaType, Diagnosis{Cause: CauseBadRequest, Title: "Bad request",
			Message: "The API takes application/json.", Advice: "Send a JSON body."})
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	return true
}

// sameOrigin refuses requests whose Origin names another site. Requests
// without an Origin (curl, scripts with a bearer token) pass.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s *Server) apiError(w http.ResponseWriter, status int, d Diagnosis) {
	writeJSON(w, status, APIError{Error: d})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		s.apiError(w, http.StatusBadRequest, Diagnosis{Cause: CauseBadRequest, Title: "Bad request",
			Message: "The request body is not the JSON the API expects.", Advice: "Reload the page."})
		return false
	}
	return true
}

func (s *Server) handleMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_ = s.WriteMetrics(w)
}

func (s *Server) handleChannels(w http.ResponseWriter, r *http.Request) {
	chans := make([]string, 0, len(s.cfg.Channels))
	for _, c := range s.cfg.Channels {
		if permitted(r, c) {
			chans = append(chans, c)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": chans})
}

// admit answers a request for channel that the caller may not make (a
// channel it is not permitted, or over the per-browser rate limit, whose
// refusal says tooMany) and reports whether the request may go on.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, channel, tooMany string) bool {
	if c := s.refusal(r, channel); c != "" {
		s.metrics.inc(s.metrics.failures, string(c))
		s.apiError(w, http.StatusForbidden, diagnose(c, channel, "", 0, 0, nil))
		return false
	}
	if ok, wait := s.sessions.allow(s.clientKey(r)); !ok {
		s.metrics.incRateLimited()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		d := diagnose(cause.Throttled, channel, "", 0, 0, nil)
		d.Message = tooMany
		s.apiError(w, http.StatusTooManyRequests, d)
		return false
	}
	return true
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	var req sessionRequest
	if !s.decode(w, r, &req) {
		return
	}
	if !s.admit(w, r, req.Channel, "This browser asked for too many sessions in a short time.") {
		return
	}
	if req.Renew == "" && s.relayed(r.Context(), req.Channel, req.After) {
		s.metrics.inc(s.metrics.relayed, req.Channel)
		s.log.Debug("relay session", "channel", req.Channel)
		writeJSON(w, http.StatusOK, s.relaySession(req.Channel))
		return
	}
	sess, err := s.mint(r.Context(), req.Channel, req.Renew)
	if err != nil {
		var bad *badRenewError
		if errors.As(err, &bad) {
			s.metrics.inc(s.metrics.failures, string(CauseBadRequest))
			s.apiError(w, http.StatusBadRequest, Diagnosis{Cause: CauseBadRequest, Title: "Bad request",
				Message: bad.Error(), Advice: "Reload the page.", Retryable: true})
			return
		}
		c, status, _ := classify(err)
		s.metrics.inc(s.metrics.failures, string(c))
		s.log.Warn("minting a session failed", "channel", req.Channel, "cause", c, "err", err)
		s.apiError(w, storageStatus(c, status), diagnoseStorage(c, req.Channel, s.cfg.Control.Region(), 0, 0, err))
		return
	}
	if req.Renew != "" {
		s.metrics.inc(s.metrics.renewals, req.Channel)
	} else {
		s.metrics.inc(s.metrics.sessions, req.Channel)
	}
	s.log.Debug("session minted", "channel", req.Channel, "client_id", sess.ClientID, "renewal", req.Renew != "")
	writeJSON(w, http.StatusOK, sess)
}

// relayed reports whether a browser asking for channel goes through the
// relay: always in relay mode; in auto mode when the channel is relayed
// already, or when the page's previous attempt failed (after) because the
// channel is full.
func (s *Server) relayed(ctx context.Context, channel, after string) bool {
	switch s.cfg.Mode {
	case ModeRelay:
		return true
	case ModeAuto:
	default:
		return false
	}
	if s.cfg.Relayed != nil && s.cfg.Relayed(channel) {
		return true
	}
	switch cause.Cause(after) {
	case cause.ChannelFull:
		return true
	case cause.SignalingLost:
		c, _, _ := s.probeSignaling(ctx, channel)
		return c == cause.ChannelFull
	}
	return false
}

// relaySession is the session of a browser that watches through the relay.
func (s *Server) relaySession(channel string) Session {
	return Session{Channel: channel, Mode: string(ModeRelay), WHEP: s.cfg.WHEP + url.PathEscape(channel), ICEServers: []ICEServer{}}
}

// badRenewError refuses to renew a client id this server did not mint.
type badRenewError struct{ id string }

func (e *badRenewError) Error() string {
	return fmt.Sprintf("client id %q was not issued by this server for this channel (or too long ago)", e.id)
}

// mint builds a session from the cached channel data: a fresh client id (or
// the renewed one), a presigned viewer URL and the ICE servers.
func (s *Server) mint(ctx context.Context, channel, renew string) (Session, error) {
	now := s.cfg.Now()
	var id string
	if renew != "" {
		s.mu.Lock()
		is, ok := s.issued[renew]
		if ok && is.channel == channel && now.Sub(is.last) < renewWindow {
			is.last = now
			s.issued[renew] = is
			id = renew
		}
		s.mu.Unlock()
		if id == "" {
			return Session{}, &badRenewError{id: renew}
		}
	} else {
		var err error
		if id, err = s.ids.Next(); err != nil {
			return Session{}, err
		}
		s.remember(id, channel, now)
	}
	arn, ep, err := s.chans.get(ctx, channel, s.cfg.ChannelRefresh+time.Minute)
	if err != nil {
		return Session{}, err
	}
	ice, err := s.chans.iceServers(ctx, arn, ep)
	if err != nil {
		return Session{}, err
	}
	creds, err := s.cfg.Control.SigV4Credentials(ctx)
	if err != nil {
		return Session{}, fmt.Errorf("%w: %w", control.ErrMissingCredentials, err)
	}
	signedAt := s.cfg.Control.Now()
	u, err := sigv4.PresignURL(ep.WSS, map[string]string{
		"X-Amz-ChannelARN": arn,
		"X-Amz-ClientId":   id,
	}, creds, s.cfg.Control.Region(), signedAt, s.cfg.PresignExpiry)
	if err != nil {
		return Session{}, fmt.Errorf("%w: presigning: %w", control.ErrInvalidArgument, err)
	}
	sess := Session{
		Channel: channel, ChannelARN: arn, ClientID: id, SignalingURL: u,
		ICEServers: make([]ICEServer, 0, len(ice.Servers)), ICETransportPolicy: "all",
		ExpiresAt: signedAt.Truncate(time.Second).Add(s.cfg.PresignExpiry).UTC(), ICEExpiresAt: ice.Expires.UTC(),
	}
	if s.cfg.ForceRelay {
		sess.ICETransportPolicy = "relay"
	}
	if s.chans.storageOf(channel) {
		sess.Mode = ModeStorage
	} else if s.cfg.Mode == ModeAuto {
		sess.WHEP = s.cfg.WHEP + url.PathEscape(channel)
	}
	for _, is := range ice.Servers {
		sess.ICEServers = append(sess.ICEServers, ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return sess, nil
}

// remember records a minted client id for renewals and forgets old ones.
func (s *Server) remember(id, channel string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.issued) >= 4096 {
		for k, v := range s.issued {
			if now.Sub(v.last) >= renewWindow {
				delete(s.issued, k)
			}
		}
	}
	if len(s.issued) >= 65536 {
		clear(s.issued) // pathological; renewals then fall back to fresh sessions
	}
	s.issued[id] = issuedID{channel: channel, last: now}
}

func (s *Server) handleDiagnose(w http.ResponseWriter, r *http.Request) {
	var req diagnoseRequest
	if !s.decode(w, r, &req) {
		return
	}
	if ok, _ := s.reports.allow(s.clientKey(r)); !ok {
		s.metrics.incRateLimited()
		s.apiError(w, http.StatusTooManyRequests, diagnose(cause.Throttled, req.Channel, "", 0, 0, nil))
		return
	}
	region := s.cfg.Control.Region()
	elapsed := time.Duration(req.ElapsedMs * float64(time.Millisecond))
	var d Diagnosis
	if c := s.refusal(r, req.Channel); c != "" {
		d = diagnose(c, req.Channel, region, 0, 0, nil)
	} else if _, _, err := s.chans.get(r.Context(), req.Channel, diagnoseMaxAge); err != nil {
		// The page's trouble started on the server's side.
		c, _, _ := classify(err)
		d = diagnoseStorage(c, req.Channel, region, req.Attempts, elapsed, err)
	} else {
		c := normCause(req.Cause)
		if req.Cause == "" {
			c = cause.NoAnswer
		}
		var code string
		var probeErr error
		if c == cause.SignalingLost && req.Stage == "signaling" {
			// The browser saw its WebSocket fail and cannot say why: ask
			// the service the same way.
			if pc, pcode, perr := s.probeSignaling(r.Context(), req.Channel); pc != "" {
				c, code, probeErr = pc, pcode, perr
			}
		}
		d = diagnoseStorage(c, req.Channel, region, req.Attempts, elapsed, probeErr)
		if code != "" {
			d.Message += " (" + code + ")"
		}
	}
	s.metrics.inc(s.metrics.giveUps, string(d.Cause))
	s.log.Info("page gave up", "channel", req.Channel, "client_id", req.ClientID, "cause", d.Cause,
		"page_cause", req.Cause, "stage", req.Stage, "attempts", req.Attempts)
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	var req reportRequest
	if !s.decode(w, r, &req) {
		return
	}
	if c := s.refusal(r, req.Channel); c != "" {
		s.apiError(w, http.StatusForbidden, diagnose(c, req.Channel, "", 0, 0, nil))
		return
	}
	if ok, _ := s.reports.allow(s.clientKey(r)); !ok {
		w.WriteHeader(http.StatusNoContent) // reports are best effort
		return
	}
	label := string(normCause(req.Cause))
	switch req.Event {
	case "first-frame":
		if req.Ms > 0 && req.Ms < 10*60*1000 {
			s.metrics.observeTTFF(req.Channel, time.Duration(req.Ms*float64(time.Millisecond)))
		}
	case "attempt-failed":
		s.metrics.inc(s.metrics.failures, label)
		if c := cause.Cause(label); c == cause.ChannelNotFound || c == cause.Credentials || c == cause.SignalingLost || c == cause.StorageNotConfigured || c == cause.StreamMissing {
			// Each eviction costs control-plane calls against the account's
			// small TPS limits, and any signed-in page may report: at most
			// one per channel every 10 s.
			if ok, _ := s.evicts.allow(req.Channel); ok {
				s.chans.forget(req.Channel)
			}
		}
	case "reconnect":
		s.metrics.inc(s.metrics.reconnects, label)
	default:
		s.apiError(w, http.StatusBadRequest, Diagnosis{Cause: CauseBadRequest, Title: "Bad request",
			Message: "Unknown report event.", Advice: "Reload the page."})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
