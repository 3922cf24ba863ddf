package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// Defaults of the Config fields left zero.
const (
	DefaultLinger       = 30 * time.Second
	DefaultRestartDelay = 2 * time.Second
	DefaultJoinTimeout  = 20 * time.Second
	DefaultPeerTimeout  = 30 * time.Second
	DefaultMaxPeers     = 200
)

// Config configures a [Relay]. Control is required; every other zero
// value works.
type Config struct {
	// Control is the control-plane client of the upstream sessions
	// (credentials, region, endpoint).
	Control *control.Client
	// ICECache shares ICE server configurations between upstream sessions
	// (nil: the Relay keeps one).
	ICECache *control.ICECache
	// HTTPClient is used for the upstream signaling WebSocket handshakes
	// (nil: http.DefaultClient).
	HTTPClient *http.Client

	// Audio also relays the camera's audio (Opus) to peers whose offer has
	// an audio section.
	Audio bool
	// Talk passes talk-back through: the upstream session sends the
	// camera an audio track (viewer.Config.Talk, sendrecv with Audio), fed
	// with the Opus audio of the downstream peers whose offer has an audio
	// section that sends (sendrecv or sendonly). One speaker at a time:
	// the first peer whose sound arrives holds the floor until it has sent
	// none for FloorIdle (or leaves), and the others' audio is dropped
	// meanwhile; Status.Talker names the holder. Opus packets of 3 bytes
	// or less (silence: what a muted browser track sends; DTX) neither
	// take nor keep the floor. A camera that declines talk-back is
	// reported in the Status (TalkDeclined, Detail) and peers' audio is
	// dropped; video is not affected.
	Talk bool
	// FloorIdle is how long the peer holding the talk-back floor may send
	// no sound before the floor is free for another (0: DefaultFloorIdle,
	// 1 s).
	FloorIdle time.Duration
	// Data passes data channels through: the upstream session opens the
	// camera's data channel (viewer.Config.Data), every data channel a
	// downstream peer opens (any label) is accepted, messages from any
	// peer go to the camera unchanged (binary or text), and messages from
	// the camera go to every peer with an open data channel. Messages
	// over 64 KiB are dropped and logged, and so is a peer's message the
	// camera's data channel does not take within 10 s (while it opens, or
	// across a reconnect): a command must not reach the camera late.
	Data bool
	// OnMessage, if set with Data, is called with every data channel
	// message a peer sends to the camera of channel, before it is
	// forwarded. It runs on the peer's data channel reader: a slow hook
	// holds back that peer's messages. data must not be modified.
	OnMessage func(channel, peerID string, data []byte, text bool)
	// VideoCodecs are the video codecs the upstream session offers the
	// camera, in order of preference (nil: H.264, then VP8). Downstream
	// peers get the codec the camera chose.
	VideoCodecs []string
	// LoopbackOnly gathers loopback ICE candidates only, upstream and
	// downstream (tests, demo).
	LoopbackOnly bool

	// ICEServers are given to downstream peer connections (STUN, TURN)
	// for peers that are not on the relay's network. Nil: host candidates
	// only.
	ICEServers []webrtc.ICEServer
	// ICEPortMin and ICEPortMax restrict the UDP ports of downstream peer
	// connections (both zero: any port), for a firewall or a load
	// balancer in front of the relay.
	ICEPortMin, ICEPortMax uint16

	// Linger is how long a channel's upstream session stays open after its
	// last peer leaves, so that a reload or the next viewer starts at once
	// (0: DefaultLinger; negative: it closes at once).
	Linger time.Duration
	// Warm lists channels whose upstream sessions open when the Relay is
	// created and stay open until Close, peers or not: their peers always
	// join a running stream.
	Warm []string
	// Allow, if set, decides which channels may be relayed: a non-nil
	// error refuses the channel (Join returns it wrapped in
	// ErrUnknownChannel). Nil: any channel the control plane knows.
	Allow func(channel string) error
	// RestartDelay is how long the Relay waits, after an upstream session
	// gave up (the camera is offline), before it opens the next one
	// (0: DefaultRestartDelay).
	RestartDelay time.Duration
	// JoinTimeout bounds how long Join waits for the upstream's first
	// video frame (which tells the codec to answer with) on a channel that
	// is not streaming yet (0: DefaultJoinTimeout).
	JoinTimeout time.Duration
	// PeerTimeout is how long a downstream peer may take to connect, or
	// stay disconnected or failed without an ICE restart bringing it back,
	// before the Relay closes it (0: DefaultPeerTimeout).
	PeerTimeout time.Duration
	// MaxPeers bounds the peers of one channel (0: DefaultMaxPeers).
	MaxPeers int
	// QueueSamples bounds each peer's queue of samples waiting to be sent
	// (0: media.DefaultQueueSamples); a peer that falls further behind
	// loses what is queued and restarts on the cached GOP.
	QueueSamples int

	// Viewer, if set, changes each upstream session's configuration last
	// (retry policy, timeouts, WaitForSlot...). Channel, Sinks, OnEvent,
	// Talk and Data are the Relay's and are restored after it.
	Viewer func(*viewer.Config)
	// Logger receives the Relay's log (nil: discard).
	Logger *slog.Logger
}

// Errors of the package; every error Join and Patch return wraps one of
// them (or the context's error), for errors.Is.
var (
	// ErrInvalidConfig: New was given a configuration it cannot use.
	ErrInvalidConfig = errors.New("relay: invalid config")
	// ErrUnknownChannel: the channel does not exist, is not a valid name,
	// or Config.Allow refused it.
	ErrUnknownChannel = errors.New("relay: unknown channel")
	// ErrBadOffer: the offer is not an SDP offer the relay can answer (not
	// SDP, no video section to receive on, none of the channel's codecs).
	ErrBadOffer = errors.New("relay: bad offer")
	// ErrBadFragment: a trickle ICE / ICE restart fragment is malformed or
	// names another ICE session.
	ErrBadFragment = errors.New("relay: bad ICE fragment")
	// ErrOtherSession: a fragment names another ICE session (its
	// a=ice-ufrag is not the peer's, and it is no ICE restart). It wraps
	// ErrBadFragment.
	ErrOtherSession = fmt.Errorf("%w: for another ICE session", ErrBadFragment)
	// ErrUnavailable: the channel's camera has not sent video within
	// Config.JoinTimeout, or the channel has Config.MaxPeers peers; try
	// again later. The error says which, with the upstream's cause.
	ErrUnavailable = errors.New("relay: channel unavailable")
	// ErrClosed: the Relay or the Peer is closed.
	ErrClosed = errors.New("relay: closed")
)

func (c Config) withDefaults() (Config, error) {
	if c.Control == nil {
		return c, fmt.Errorf("%w: Config.Control is required (the control-plane client of the upstream sessions)", ErrInvalidConfig)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RestartDelay", &c.RestartDelay, DefaultRestartDelay},
		{"JoinTimeout", &c.JoinTimeout, DefaultJoinTimeout},
		{"PeerTimeout", &c.PeerTimeout, DefaultPeerTimeout},
		{"FloorIdle", &c.FloorIdle, DefaultFloorIdle},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("%w: %s %v must not be negative (0 = %v)", ErrInvalidConfig, d.name, *d.v, d.def)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.MaxPeers < 0 || c.QueueSamples < 0 {
		return c, fmt.Errorf("%w: MaxPeers and QueueSamples must not be negative (0 = default)", ErrInvalidConfig)
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	for _, ch := range c.Warm {
		if err := validChannel(ch); err != nil {
			return c, fmt.Errorf("%w: Warm: %w", ErrInvalidConfig, err)
		}
	}
	if c.ICECache == nil {
		c.ICECache = control.NewICECache(c.Control)
	}
	return c, nil
}

// validChannel checks a channel name or ARN.
func validChannel(ch string) error {
	if len(ch) > 4 && ch[:4] == "arn:" {
		_, err := kvsproto.ParseChannelARN(ch)
		return err
	}
	return kvsproto.ValidateChannelName(ch)
}
