package master

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// Defaults of Config.
const (
	// DefaultMaxViewers is the viewer limit of a KVS channel.
	DefaultMaxViewers = kvsproto.MaxViewersPerChannel
	// DefaultDisconnectedTimeout is how long a viewer may stay disconnected
	// (ICE lost its path) before it is removed.
	DefaultDisconnectedTimeout = 10 * time.Second
	// DefaultConnectTimeout is how long an answered viewer has to connect.
	DefaultConnectTimeout = 30 * time.Second
	// DefaultRenewAfter is when the signaling connection is renewed
	// proactively, ahead of the service's 1-hour limit.
	DefaultRenewAfter = 50 * time.Minute
)

// ICE transport policies (Config.ICETransportPolicy).
const (
	// ICEPolicyAll uses every candidate type (host, srflx, relay).
	ICEPolicyAll = "all"
	// ICEPolicyRelay uses TURN relays only.
	ICEPolicyRelay = "relay"
)

// ErrInvalidConfig is matched (errors.Is) by every error New returns; the
// message names the field and how to fix it.
var ErrInvalidConfig = errors.New("master: invalid config")

// Config configures a Master. Channel, Control and Video are required; the
// other zero values work.
type Config struct {
	// Channel is the signaling channel's name or ARN (a value starting
	// with "arn:" is an ARN).
	Channel string
	// Control is the control-plane client: it resolves the channel, finds
	// its MASTER endpoints, fetches ICE servers and signs the WSS URL.
	Control *control.Client
	// HTTPClient is used for the signaling WebSocket handshake (TLS roots,
	// proxies). Nil: http.DefaultClient.
	HTTPClient *http.Client

	// Video is the video source (H.264 or VP8), fanned out to every viewer
	// through a media.Broadcaster so that each viewer starts on a
	// keyframe. Run takes ownership of it and closes it when it returns;
	// if Run is never called, the caller closes it. Required.
	Video media.Source
	// Audio is an optional Opus source, sent to viewers whose offer has an
	// audio section; ownership as for Video.
	Audio media.Source

	// MaxViewers is the number of concurrent viewers. 0: 10 (the KVS
	// channel limit). An offer from a new viewer beyond the limit is not
	// answered (the protocol has no way to refuse one): it is logged and
	// reported as an EventViewerFailed with ErrTooManyViewers. A new offer
	// from a viewer that already has a peer is always accepted; it
	// replaces the old peer.
	MaxViewers int
	// LoopbackOnly makes the peers gather only 127.0.0.1 candidates (for
	// tests; see rtc.Config).
	LoopbackOnly bool
	// ICETransportPolicy is "all" (default) or "relay" (TURN only).
	ICETransportPolicy string
	// ICEPortMin and ICEPortMax restrict the local UDP ports (both or
	// neither; see rtc.Config).
	ICEPortMin, ICEPortMax uint16

	// DisconnectedTimeout is how long a viewer's connection may stay
	// disconnected (or a viewer's ICE restart may go without connecting)
	// before the viewer is removed; brief interruptions that ICE recovers
	// from are tolerated. 0: 10 s.
	DisconnectedTimeout time.Duration
	// ConnectTimeout is how long an answered viewer has to connect before
	// it is removed. 0: 30 s.
	ConnectTimeout time.Duration
	// RenewAfter is the age at which the signaling connection is replaced
	// by a new one, ahead of the service's 1-hour limit. 0: 50 min.
	RenewAfter time.Duration
	// PingInterval is the signaling keepalive interval: a connection that
	// dies without a close frame is noticed within PingInterval +
	// PongTimeout and renewed. 0: 10 s.
	PingInterval time.Duration
	// PongTimeout is how long a keepalive ping may go unanswered. 0: 5 s.
	PongTimeout time.Duration

	// Talkback, if set, accepts the audio viewers send (talk-back, as a
	// doorbell's viewer does): it is called when a viewer's audio track
	// arrives, from that track's reader goroutine, and returns where its
	// Opus RTP packets go (RecordTalkback, PipeTalkback, or your own);
	// the sink is closed when the viewer stops sending, leaves, or Run
	// ends. An error drops that viewer's audio. Nil: talk-back is declined
	// in the answer (the audio section does not receive), so a viewer
	// knows it at once.
	Talkback func(clientID string) (TalkbackSink, error)
	// OnMessage, if set, accepts the data channels viewers open and is
	// called for every message on them (up to MaxMessageSize), on that
	// channel's reader goroutine: while it blocks, that viewer's channel
	// is held (back-pressure). Reply with Master.Send.
	OnMessage func(Message)
	// EchoData accepts data channels and sends every message back on the
	// channel it came from (kvsrtc master --data echo). Without it and
	// without OnMessage, a viewer's data channel is closed as soon as it
	// opens (declined).
	EchoData bool

	// Ingest joins the channel's storage session (WebRTC ingestion: the
	// channel must be linked to a stream with
	// UpdateMediaStorageConfiguration) after each signaling connection,
	// and streams the sources to it once; it records them and forwards
	// them to Multiviewer viewers, whose talk-back comes back to
	// Config.Talkback. Direct viewers are still served. Needs an H.264
	// video source. See ingest.go's rules, Master.Storage and the
	// EventStorage* events.
	Ingest bool

	// Logger receives the master's log. pion's messages go there too:
	// all of them when it is enabled for debug, else only pion's errors.
	// Nil: discard.
	Logger *slog.Logger
	// OnEvent, if set, is called for every Event, from Run's goroutine and
	// in order. It must return quickly and must not call Run; it may call
	// Viewers.
	OnEvent func(Event)
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// withDefaults checks cfg and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Channel == "" {
		return c, invalid("Channel", "set the signaling channel's name or ARN")
	}
	if strings.HasPrefix(c.Channel, "arn:") {
		if _, err := kvsproto.ParseChannelARN(c.Channel); err != nil {
			return c, fmt.Errorf("%w: Channel: %w", ErrInvalidConfig, err)
		}
	} else if err := kvsproto.ValidateChannelName(c.Channel); err != nil {
		return c, fmt.Errorf("%w: Channel: %w", ErrInvalidConfig, err)
	}
	if c.Control == nil {
		return c, invalid("Control", "set a control-plane client (control.New)")
	}
	if c.Video == nil {
		return c, invalid("Video", "set a video source (media.NewTestSource, media.OpenFile, media.NewH264Stream)")
	}
	if vc := c.Video.Codec(); vc != rtc.CodecH264 && vc != rtc.CodecVP8 {
		return c, invalid("Video", "the source's codec is %q; it must be H264 or VP8 (use Audio for Opus)", vc)
	}
	if c.Ingest && c.Video.Codec() != rtc.CodecH264 {
		return c, invalid("Ingest", "the storage session takes H.264 video and the source is %s", c.Video.Codec())
	}
	if c.Audio != nil && c.Audio.Codec() != rtc.CodecOpus {
		return c, invalid("Audio", "the source's codec is %q; it must be opus", c.Audio.Codec())
	}
	if c.MaxViewers == 0 {
		c.MaxViewers = DefaultMaxViewers
	}
	if c.MaxViewers < 0 {
		return c, invalid("MaxViewers", "%d must not be negative (0 = %d)", c.MaxViewers, DefaultMaxViewers)
	}
	switch strings.ToLower(c.ICETransportPolicy) {
	case "", ICEPolicyAll:
		c.ICETransportPolicy = ICEPolicyAll
	case ICEPolicyRelay:
		c.ICETransportPolicy = ICEPolicyRelay
	default:
		return c, invalid("ICETransportPolicy", "%q: want %q or %q", c.ICETransportPolicy, ICEPolicyAll, ICEPolicyRelay)
	}
	if (c.ICEPortMin == 0) != (c.ICEPortMax == 0) || c.ICEPortMin > c.ICEPortMax {
		return c, invalid("ICEPortMin/ICEPortMax", "%d-%d: set both, with min <= max", c.ICEPortMin, c.ICEPortMax)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DisconnectedTimeout", &c.DisconnectedTimeout, DefaultDisconnectedTimeout},
		{"ConnectTimeout", &c.ConnectTimeout, DefaultConnectTimeout},
		{"RenewAfter", &c.RenewAfter, DefaultRenewAfter},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return c, invalid(d.name, "%v must not be negative", *d.v)
		}
	}
	if c.PingInterval < 0 || c.PongTimeout < 0 {
		return c, invalid("PingInterval/PongTimeout", "must not be negative (0 = the defaults, 10 s and 5 s)")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// policy returns the pion ICE transport policy.
func (c Config) policy() webrtc.ICETransportPolicy {
	if c.ICETransportPolicy == ICEPolicyRelay {
		return webrtc.ICETransportPolicyRelay
	}
	return webrtc.ICETransportPolicyAll
}
