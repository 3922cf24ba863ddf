package player

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/retry"
)

// Defaults used for zero Config fields.
const (
	DefaultPresignExpiry   = 60 * time.Second
	DefaultSessionRate     = 2.0 // sessions per second and client address
	DefaultSessionBurst    = 20
	DefaultChannelRefresh  = 10 * time.Minute
	DefaultClientIDPrefix  = "kvsrtc-web-"
	DefaultStallTimeout    = 5 * time.Second
	DefaultICERestartGrace = 2 * time.Second
	DefaultSessionMaxAge   = 7 * 24 * time.Hour
	// MinAuthLen is the shortest Auth token New accepts.
	MinAuthLen = 16
)

// ErrInvalidConfig is matched (errors.Is) by every error New returns for a
// Config it cannot use; the message names the field and the fix.
var ErrInvalidConfig = errors.New("player: invalid config")

// Config configures a Server. Control and Channels are required, and so is
// Auth unless NoAuth says otherwise; every other zero value works.
type Config struct {
	// Control is the control-plane client. Its credentials (the standard
	// AWS chain) sign every presigned URL; they never leave the server.
	Control *control.Client
	// Channels are the signaling channel names the server serves; the API
	// refuses every other channel.
	Channels []string
	// Auth is the token (or password) that protects the pages, the API and
	// /metrics: at least MinAuthLen (16) characters. Browsers present it
	// once (login form, a one-time ?code= from NewSignInCode, or ?token=)
	// and then carry an HttpOnly cookie that reveals nothing of it; scripts
	// send "Authorization: Bearer TOKEN". Wrong tokens and cookies are
	// rate limited per client address.
	Auth string
	// NoAuth serves without any access control. It must be set explicitly
	// (and Auth left empty): cameras are private by default.
	NoAuth bool
	// SessionMaxAge is how long a browser stays signed in (0: 7 days). The
	// server enforces it; RevokeSessions, a restart or a new token sign
	// every browser out sooner.
	SessionMaxAge time.Duration
	// TrustedProxies are the reverse proxies (IP addresses or CIDR
	// prefixes) whose X-Forwarded-For and X-Forwarded-Proto are believed:
	// for the client address the rate limits use, and for HTTPS (a Secure
	// cookie, HSTS) when the proxy terminates TLS. Every other client's
	// forwarding headers are ignored.
	TrustedProxies []string

	// Retry is the page's answer timeout and retry policy (zero fields take
	// retry.Default's values).
	Retry retry.Policy
	// StallTimeout is how long the page may play without a new frame before
	// it reconnects (0: 5 s).
	StallTimeout time.Duration
	// ICERestartGrace is how long the page waits in ICE "disconnected"
	// before it restarts ICE (0: 2 s).
	ICERestartGrace time.Duration
	// ForceRelay makes the page use TURN relay candidates only.
	ForceRelay bool
	// LoopbackOnly makes the page send only its loopback (127.0.0.1, ::1)
	// ICE candidates, for tests and demos where camera, server and browser
	// share one machine and no traffic may leave loopback.
	LoopbackOnly bool
	// NoTalk takes the push-to-talk button off the built-in pages. With it
	// (the default) every offer carries a send-receive audio section
	// without a track; the browser asks for the microphone only while the
	// button is held. A camera that takes no talk-back declines it in its
	// answer and the button says so; video is not affected.
	NoTalk bool
	// Data opens a data channel in every offer of the built-in pages and
	// gives each tile a console for it (hidden until its Data button is
	// pressed, or ?console=1): type a line to send it, see what comes back.
	Data bool

	// Mount serves more handlers behind the same token and cookie as the
	// API, each at its path prefix (which must start and end with "/",
	// e.g. "/whep/" for a WHEP endpoint). Requests to them must come from
	// the same origin when the browser says where it came from. The player
	// does not look inside them: a mounted handler checks its own input.
	Mount map[string]http.Handler

	// Mode is how the built-in pages reach a camera: ModeDirect (the
	// default: every browser is a viewer of the channel), ModeRelay (every
	// browser watches through the relay at WHEP) or ModeAuto (direct until
	// the channel is full, or at once when the channel is already relayed;
	// see Relayed).
	Mode Mode
	// WHEP is the path prefix of a WHEP endpoint in Mount that relays the
	// served channels (e.g. "/whep/"): where relay mode sends browsers.
	// Required for ModeRelay and ModeAuto.
	WHEP string
	// Relayed reports, in ModeAuto, whether a channel's relay is open
	// already; new browsers then join it instead of adding a viewer of the
	// camera (nil: only a full channel sends browsers to the relay).
	Relayed func(channel string) bool
	// Storage is whether a channel linked to a KVS stream (WebRTC
	// ingestion: media storage configuration ENABLED) is watched through
	// its storage session (Multiviewer: the camera sends its media once, the
	// session forwards it to every viewer) instead of as a viewer of the
	// camera: StorageAuto (the default: when
	// DescribeMediaStorageConfiguration says ENABLED), StorageOn (every
	// channel) or StorageOff (never). Relay mode (Mode) comes first.
	Storage StorageMode
	// StorageClient makes the storage path's calls
	// (DescribeMediaStorageConfiguration, the WEBRTC endpoint,
	// JoinStorageSessionAsViewer) with the server's credentials. Nil:
	// Control.
	StorageClient StorageClient

	// Metrics, if set, writes more Prometheus text after the player's own
	// on /metrics (a relay's counters).
	Metrics func(w io.Writer) error

	// PresignExpiry is the lifetime of the presigned signaling URLs handed
	// to browsers (0: 60 s; at most 299 s, the JS SDK's value).
	PresignExpiry time.Duration
	// ClientIDPrefix starts every client id minted for a browser (""
	// = "kvsrtc-web-").
	ClientIDPrefix string
	// SessionRate and SessionBurst bound session minting per client address
	// (token bucket; 0: 2 per second, burst 20).
	SessionRate  float64
	SessionBurst int
	// ChannelRefresh is how often the channel ARNs and endpoints are
	// resolved again in the background (0: 10 min). ICE servers are
	// refreshed ahead of their own expiry.
	ChannelRefresh time.Duration

	// HTTPClient makes the server's own signaling probe (a diagnosis of a
	// WebSocket the browser could not open) with the TLS roots of the
	// signaling endpoint. Nil: http.DefaultClient.
	HTTPClient *http.Client

	// Logger receives the server's log (nil: discard). Presigned URLs and
	// credentials are never logged.
	Logger *slog.Logger
	// Now is the clock for rate limits and caches (nil: time.Now). Presigned
	// URLs use the control client's skew-corrected clock.
	Now func() time.Time
}

// Mode is how the built-in pages reach a camera (Config.Mode).
type Mode string

// Modes.
const (
	// ModeDirect: each browser is a viewer of the channel (a presigned
	// URL per connection attempt).
	ModeDirect Mode = "direct"
	// ModeRelay: each browser watches through the server's relay over WHEP;
	// the server is the camera's one viewer.
	ModeRelay Mode = "relay"
	// ModeAuto: direct until the channel is full, then relay; relay at
	// once for a channel that is relayed already.
	ModeAuto Mode = "auto"
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// withDefaults checks cfg and fills its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Control == nil {
		return c, invalid("Control", "a control-plane client is required (control.New)")
	}
	if len(c.Channels) == 0 {
		return c, invalid("Channels", "name at least one channel to serve (--channel NAME)")
	}
	seen := make(map[string]bool)
	var chans []string
	for _, n := range c.Channels {
		if err := kvsproto.ValidateChannelName(n); err != nil {
			return c, invalid("Channels", "%v", err)
		}
		if !seen[n] {
			seen[n] = true
			chans = append(chans, n)
		}
	}
	c.Channels = chans
	switch {
	case c.NoAuth && c.Auth != "":
		return c, invalid("Auth", "give a token or NoAuth, not both")
	case !c.NoAuth && c.Auth == "":
		return c, invalid("Auth", "a token or password is required (--auth); cameras are private")
	case !c.NoAuth && len(c.Auth) < MinAuthLen:
		return c, invalid("Auth", "the token has %d characters; use at least %d (a random one is best: leave --auth unset and kvsrtc serve generates one)", len(c.Auth), MinAuthLen)
	}
	if c.SessionMaxAge == 0 {
		c.SessionMaxAge = DefaultSessionMaxAge
	}
	if c.SessionMaxAge < time.Minute || c.SessionMaxAge > 400*24*time.Hour {
		return c, invalid("SessionMaxAge", "%v is outside 1m..400 days", c.SessionMaxAge)
	}
	if _, err := parseProxies(c.TrustedProxies); err != nil {
		return c, err
	}
	for prefix, h := range c.Mount {
		switch {
		case h == nil:
			return c, invalid("Mount", "%s has no handler", prefix)
		case len(prefix) < 3 || !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || strings.ContainsAny(prefix, "{} \t"):
			return c, invalid("Mount", "%q must be a path like /whep/ (starting and ending with a slash)", prefix)
		case slices.Contains([]string{"/api/", "/assets/", "/login/", "/grid/", "/metrics/", "/healthz/", "/favicon.ico/"}, prefix):
			return c, invalid("Mount", "%s is the player's own path", prefix)
		}
	}
	switch c.Mode {
	case "":
		c.Mode = ModeDirect
	case ModeDirect, ModeRelay, ModeAuto:
	default:
		return c, invalid("Mode", "%q is not direct, relay or auto", c.Mode)
	}
	if c.Mode != ModeDirect && c.Mount[c.WHEP] == nil {
		return c, invalid("WHEP", "mode %s needs the path of a WHEP endpoint in Mount (got %q)", c.Mode, c.WHEP)
	}
	switch c.Storage {
	case "":
		c.Storage = StorageAuto
	case StorageAuto, StorageOn, StorageOff:
	default:
		return c, invalid("Storage", "%q is not auto, on or off", c.Storage)
	}
	if c.StorageClient == nil {
		c.StorageClient = c.Control
	}
	if _, err := c.Retry.WithDefaults(); err != nil {
		return c, invalid("Retry", "%v", err)
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.ICERestartGrace == 0 {
		c.ICERestartGrace = DefaultICERestartGrace
	}
	if c.StallTimeout < 0 || c.ICERestartGrace < 0 {
		return c, invalid("StallTimeout/ICERestartGrace", "must not be negative")
	}
	if c.PresignExpiry == 0 {
		c.PresignExpiry = DefaultPresignExpiry
	}
	if c.PresignExpiry < 5*time.Second || c.PresignExpiry > 299*time.Second {
		return c, invalid("PresignExpiry", "%v is outside 5s..299s", c.PresignExpiry)
	}
	if c.ClientIDPrefix == "" {
		c.ClientIDPrefix = DefaultClientIDPrefix
	}
	if err := kvsproto.ValidateClientID(c.ClientIDPrefix + "0"); err != nil {
		return c, invalid("ClientIDPrefix", "%v", err)
	}
	if len(c.ClientIDPrefix)+16 > kvsproto.MaxClientIDLen {
		return c, invalid("ClientIDPrefix", "too long")
	}
	if c.SessionRate == 0 {
		c.SessionRate = DefaultSessionRate
	}
	if c.SessionBurst == 0 {
		c.SessionBurst = DefaultSessionBurst
	}
	if c.SessionRate < 0 || c.SessionBurst < 1 {
		return c, invalid("SessionRate/SessionBurst", "rate must be positive and burst at least 1")
	}
	if c.ChannelRefresh == 0 {
		c.ChannelRefresh = DefaultChannelRefresh
	}
	if c.ChannelRefresh < time.Second {
		return c, invalid("ChannelRefresh", "%v is shorter than 1s", c.ChannelRefresh)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
