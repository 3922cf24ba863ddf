// Package hub is the in-memory message router of the KVS signaling emulator:
// channels, their master and viewer connections, routing of SDP offers,
// answers and ICE candidates with KVS semantics, undelivered-message
// buffering for the channel's message TTL, connection and message quotas,
// STATUS_RESPONSE on failures, and injected faults. It knows nothing about
// WebSockets or HTTP: the emulator hands it connections as Conn values.
package hub

// NOTE: this file fixes the API the emulator package codes against. The hub
// helper implements it (and may add to it, but must keep these signatures).

import (
	"errors"
	"log/slog"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Errors returned by Join. The emulator maps them to HTTP responses on the
// WebSocket upgrade.
var (
	ErrTooManyViewers = errors.New("hub: the channel already has the maximum number of viewers")
	ErrThrottled      = errors.New("hub: too many connection attempts on this channel")
	ErrChannelGone    = errors.New("hub: channel deleted")
)

// Conn is one client connection as the hub sees it. Implementations must be
// safe for concurrent use and must not block: Send queues the frame (or drops
// and closes the connection when its queue is full).
type Conn interface {
	// Send queues one text frame for the client.
	Send(frame []byte) error
	// Close closes the connection with a WebSocket close code and reason.
	// Abrupt=true drops the TCP connection without a close frame.
	Close(code int, reason string, abrupt bool)
}

// Config configures a Hub. Zero values get the documented defaults.
type Config struct {
	MaxViewers    int     // per channel; 0 = 10
	ConnectRate   float64 // connects per second per channel (master and viewer separately); 0 = 3
	ConnectBurst  int     // 0 = 3
	OfferRate     float64 // SDP_OFFER per second per connection; 0 = 5
	AnswerRate    float64 // SDP_ANSWER per second per connection; 0 = 5
	ICERate       float64 // ICE_CANDIDATE per second per connection; 0 = 20
	MessageBurst  int     // token bucket burst for message rates; 0 = 2x rate
	DisableQuotas bool    // no connect or message rate limits (benchmarks)
	Now           func() time.Time
	Logger        *slog.Logger
	SweepInterval time.Duration // how often expired buffered messages are dropped; 0 = 1s
}

// Hub routes signaling messages between the connections of many channels.
type Hub struct{ impl *hubImpl }

// Member is one joined connection. Its methods are safe for concurrent use.
type Member struct{ impl *memberImpl }

// JoinRequest describes a connection that passed authentication.
type JoinRequest struct {
	ChannelARN string
	MessageTTL time.Duration // the channel's MessageTtlSeconds
	Role       kvsproto.Role
	ClientID   string // viewers only
	RemoteAddr string // for logs
	Conn       Conn
}

// FaultKind names an injectable fault.
type FaultKind string

// Fault kinds.
const (
	FaultDrop           FaultKind = "drop"          // drop the next Count messages of Action on the channel
	FaultDelay          FaultKind = "delay"         // delay the next Count messages of Action by Delay
	FaultGoAway         FaultKind = "goaway"        // send GO_AWAY to matching connections (then close after grace)
	FaultReconnectICE   FaultKind = "reconnect-ice" // send RECONNECT_ICE_SERVER to matching connections
	FaultClose          FaultKind = "close"         // close matching connections abruptly (no close frame)
	FaultRefuseThrottle FaultKind = "throttle"      // refuse the next Count connects as throttled
	FaultRefuseFull     FaultKind = "full"          // refuse the next Count viewer connects as over the viewer limit
)

// Fault is one fault to inject. Channel is a channel ARN or name ("" = any
// channel). Target selects connections: "master", "viewer", a client id, or
// "" for all.
type Fault struct {
	Kind    FaultKind       `json:"kind"`
	Channel string          `json:"channel,omitempty"`
	Action  kvsproto.Action `json:"action,omitempty"` // drop/delay: SDP_OFFER, SDP_ANSWER or ICE_CANDIDATE
	Count   int             `json:"count,omitempty"`  // drop/delay/throttle/full: how many; 0 = 1
	Delay   time.Duration   `json:"delay,omitempty"`
	Target  string          `json:"target,omitempty"`
	Grace   time.Duration   `json:"grace,omitempty"` // goaway: close after this long; 0 = 60s
}

// Stats is a snapshot of the hub's counters.
type Stats struct {
	Channels, Masters, Viewers                 int
	Routed, Buffered, Expired, Dropped, Errors uint64
}

type hubImpl struct{}
type memberImpl struct{}

// New returns a Hub. Call Close when done.
func New(cfg Config) *Hub { panic("hub: not implemented yet") }

// Join admits a connection: enforces the connect rate, the viewer limit and
// newest-wins for the master and for a repeated viewer client id (the older
// connection is closed), then delivers the messages buffered for it.
func (h *Hub) Join(req JoinRequest) (*Member, error) { panic("hub: not implemented yet") }

// Handle processes one text frame the member sent.
func (m *Member) Handle(frame []byte) { panic("hub: not implemented yet") }

// Leave removes the member (idempotent). Messages for it are buffered again.
func (m *Member) Leave() { panic("hub: not implemented yet") }

// Inject applies a fault now (connection faults) or arms it (message and
// connect faults). It returns how many connections it affected.
func (h *Hub) Inject(f Fault) (int, error) { panic("hub: not implemented yet") }

// CloseChannel disconnects every connection of a channel and drops its
// buffered messages (the channel was deleted).
func (h *Hub) CloseChannel(channelARN string) { panic("hub: not implemented yet") }

// Stats returns the counters.
func (h *Hub) Stats() Stats { panic("hub: not implemented yet") }

// Close stops the hub's background work and closes every connection.
func (h *Hub) Close() { panic("hub: not implemented yet") }
