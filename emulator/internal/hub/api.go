package hub

// This file fixes the API the emulator package codes against.

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

// ErrHubClosed is returned by Join and Inject after Close.
var ErrHubClosed = errors.New("hub: closed")

// ErrInvalidFault is matched (errors.Is) by the errors Inject returns for a
// fault that cannot be applied; the message names the field to fix.
var ErrInvalidFault = errors.New("hub: invalid fault")

// WebSocket close codes and reasons the hub uses. The service's own codes are
// not documented (kvs-protocol.md §9, open questions 2 and 3); the 4xxx codes
// are private-use codes (RFC 6455 §7.4.2) chosen here. The official C SDK
// treats any server-initiated close as "reconnect"; the JS SDK just reports
// the close.
const (
	// CloseCodeReplaced closes a master connection, or a viewer connection,
	// when a newer connection for the same role (and viewer client id)
	// joins the channel: newest wins (ConnectAsMaster, ConnectAsViewer).
	CloseCodeReplaced = 4001
	// CloseReasonMasterReplaced is the close reason of a displaced master.
	CloseReasonMasterReplaced = "replaced by a newer master connection"
	// CloseReasonViewerReplaced is the close reason of a displaced viewer.
	CloseReasonViewerReplaced = "replaced by a newer viewer connection with the same client id"

	// CloseCodeChannelDeleted closes the connections of a channel that was
	// deleted (CloseChannel).
	CloseCodeChannelDeleted = 4004
	// CloseReasonChannelDeleted is its reason.
	CloseReasonChannelDeleted = "signaling channel deleted"

	// CloseCodeGoAway closes a connection when the grace period after a
	// GO_AWAY is over (a normal closure).
	CloseCodeGoAway = 1000
	// CloseReasonGoAway is its reason.
	CloseReasonGoAway = "connection closed after GO_AWAY"

	// CloseCodeShutdown closes every connection when the hub closes.
	CloseCodeShutdown = 1001
	// CloseReasonShutdown is its reason.
	CloseReasonShutdown = "service shutting down"

	// CloseCodeSendFailed closes a connection whose Send returned an error.
	CloseCodeSendFailed = 1011
	// CloseReasonSendFailed is its reason.
	CloseReasonSendFailed = "could not queue a message for this connection"

	// CloseCodeAbrupt is passed to Conn.Close (with abrupt=true) by the
	// "close" fault; no close frame is sent, so the client sees 1006.
	CloseCodeAbrupt = 1006
)

// Conn is one client connection as the hub sees it. Implementations must be
// safe for concurrent use and must not block: Send queues the frame (or drops
// and closes the connection when its queue is full).
//
// The hub may call Send while it holds the lock of the connection's channel
// (that is how it keeps each recipient's messages in order), so Send must not
// call back into the hub. Close is never called with a hub lock held.
type Conn interface {
	// Send queues one text frame for the client. The hub does not modify
	// the frame after the call.
	Send(frame []byte) error
	// Close closes the connection with a WebSocket close code and reason.
	// Abrupt=true drops the TCP connection without a close frame.
	Close(code int, reason string, abrupt bool)
}

// Config configures a Hub. Zero values get the documented defaults; negative
// values are treated as zero.
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

	// MaxBufferedPerRecipient bounds the undelivered messages held for one
	// recipient; 0 = 100. Messages beyond it are dropped (and answered with
	// a ClientLimitExceededException STATUS_RESPONSE if they carry a
	// correlationId).
	MaxBufferedPerRecipient int
	// MaxBufferedPerChannel bounds the undelivered messages held for all
	// recipients of one channel; 0 = 1000.
	MaxBufferedPerChannel int
	// Intercept, if set, sees each valid client message before it is
	// routed (and before the master's recipientClientId is required);
	// returning true consumes it. The emulator uses it to hand a channel's
	// storage session the messages meant for it (WebRTC ingestion). It is
	// called without a hub lock held and must not block.
	Intercept func(channelARN string, role kvsproto.Role, clientID string, msg kvsproto.ClientMessage) bool
	// ChannelTombstone is how long Join keeps returning ErrChannelGone for
	// the ARN of a channel closed with CloseChannel (this closes the race
	// between the emulator's existence check and Join); 0 = 5s. The
	// emulator must not reuse an ARN within this time.
	ChannelTombstone time.Duration
}

// Hub routes signaling messages between the connections of many channels.
type Hub struct{ impl *hubImpl }

// Member is one joined connection. Its methods are safe for concurrent use.
type Member struct{ impl *memberImpl }

// JoinRequest describes a connection that passed authentication.
type JoinRequest struct {
	ChannelARN string
	MessageTTL time.Duration // the channel's MessageTtlSeconds; 0 = 60s
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
// "" for all. For drop and delay, Target selects the sending connection and
// an empty Action matches every action; for throttle and full it selects the
// connecting client.
type Fault struct {
	Kind    FaultKind       `json:"kind"`
	Channel string          `json:"channel,omitempty"`
	Action  kvsproto.Action `json:"action,omitempty"` // drop/delay: SDP_OFFER, SDP_ANSWER or ICE_CANDIDATE
	Count   int             `json:"count,omitempty"`  // drop/delay/throttle/full: how many; 0 = 1
	Delay   time.Duration   `json:"delay,omitempty"`
	Target  string          `json:"target,omitempty"`
	Grace   time.Duration   `json:"grace,omitempty"` // goaway: close after this long; 0 = 60s
}

// Stats is a snapshot of the hub's counters. Channels, Masters and Viewers
// are current values; the others count since New:
//   - Routed: messages handed to a live connection (buffered ones included);
//   - Buffered: messages held for a recipient that was not connected;
//   - Expired: buffered messages dropped because the channel's TTL passed;
//   - Dropped: accepted messages never delivered for another reason (drop
//     fault, buffer bound, sender displaced, channel deleted, hub closed);
//   - Errors: client messages rejected (malformed, invalid, missing
//     recipient, rate exceeded).
type Stats struct {
	Channels, Masters, Viewers                 int
	Routed, Buffered, Expired, Dropped, Errors uint64
}

// New returns a Hub. Call Close when done.
func New(cfg Config) *Hub { return &Hub{impl: newHub(cfg)} }

// Join admits a connection: enforces the connect rate, the viewer limit and
// newest-wins for the master and for a repeated viewer client id (the older
// connection is closed), then delivers the messages buffered for it.
//
// Besides the sentinels above, it returns an error matching
// kvsproto.ErrInvalid for a request without a connection, channel ARN or
// valid role, or with an invalid viewer client id.
func (h *Hub) Join(req JoinRequest) (*Member, error) {
	m, err := h.impl.join(req)
	if err != nil {
		return nil, err
	}
	return &Member{impl: m}, nil
}

// Handle processes one text frame the member sent.
func (m *Member) Handle(frame []byte) { m.impl.handle(frame) }

// Leave removes the member (idempotent). Messages for it are buffered again.
func (m *Member) Leave() { m.impl.leave() }

// Role returns the member's role.
func (m *Member) Role() kvsproto.Role { return m.impl.role }

// ClientID returns the viewer's client id ("" for the master).
func (m *Member) ClientID() string { return m.impl.clientID }

// ChannelARN returns the ARN of the member's channel.
func (m *Member) ChannelARN() string { return m.impl.arn }

// Inject applies a fault now (connection faults) or arms it (message and
// connect faults). It returns how many connections it affected.
func (h *Hub) Inject(f Fault) (int, error) { return h.impl.inject(f) }

// CloseChannel disconnects every connection of a channel and drops its
// buffered messages (the channel was deleted).
func (h *Hub) CloseChannel(channelARN string) { h.impl.closeChannel(channelARN) }

// Connected reports whether the channel has a joined master (role MASTER)
// or a joined viewer with this client id (role VIEWER).
func (h *Hub) Connected(channelARN string, role kvsproto.Role, clientID string) bool {
	return h.impl.connected(channelARN, role, clientID)
}

// ErrNotConnected is returned by Deliver when the recipient has no
// connection on the channel.
var ErrNotConnected = errors.New("hub: recipient not connected")

// Deliver sends an event to the channel's master (role MASTER) or to the
// viewer with clientID now, in order with the messages the hub routes to it.
// Nothing is buffered: it returns ErrNotConnected when the recipient has no
// connection. The storage session of a channel uses it to signal.
func (h *Hub) Deliver(channelARN string, role kvsproto.Role, clientID string, ev kvsproto.Event) error {
	return h.impl.deliver(channelARN, role, clientID, ev)
}

// Stats returns the counters.
func (h *Hub) Stats() Stats { return h.impl.stats() }

// Close stops the hub's background work and closes every connection.
func (h *Hub) Close() { h.impl.close() }
