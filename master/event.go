package master

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors carried by Events and returned by Run.
var (
	// ErrTooManyViewers: an offer from a new viewer arrived while
	// MaxViewers viewers were connected; it was not answered.
	ErrTooManyViewers = errors.New("master: too many viewers")
	// ErrCodecMismatch: the viewer's offer cannot carry the source's codec
	// (for example a VP8-only offer for an H.264 source); it was not
	// answered. The error is a *NegotiationError.
	ErrCodecMismatch = errors.New("master: the offer does not support the source's codec")
	// ErrBadOffer: the offer could not be used (unparsable SDP, no video
	// section the viewer can receive on, refused by the WebRTC stack).
	ErrBadOffer = errors.New("master: unusable SDP offer")
	// ErrReplaced: the viewer sent a new offer; its old peer was closed.
	ErrReplaced = errors.New("master: replaced by a new offer from the same viewer")
	// ErrConnectTimeout: an answered viewer did not connect within
	// Config.ConnectTimeout.
	ErrConnectTimeout = errors.New("master: viewer did not connect in time")
	// ErrDisconnected: a viewer stayed disconnected (or failed, without
	// the ICE restart that would have recovered it) longer than
	// Config.DisconnectedTimeout, or was dropped at the viewer limit
	// because its connection was down.
	ErrDisconnected = errors.New("master: viewer disconnected for too long")
	// ErrPeerFailed: the viewer's peer connection failed (ICE or DTLS).
	ErrPeerFailed = errors.New("master: peer connection failed")
	// ErrPeerClosed: the viewer closed its peer connection.
	ErrPeerClosed = errors.New("master: peer connection closed")
	// ErrShutdown: the master is stopping (Run's context ended).
	ErrShutdown = errors.New("master: shutting down")
	// ErrAlreadyStarted: Run was called more than once.
	ErrAlreadyStarted = errors.New("master: Run called more than once")
)

// NegotiationError explains why an offer could not be answered. It wraps
// ErrCodecMismatch or ErrBadOffer.
type NegotiationError struct {
	// ClientID is the viewer that sent the offer.
	ClientID string
	// Want is the codec the master sends (e.g. "H264").
	Want string
	// Offered lists the video codecs of the offer (e.g. ["VP8"]).
	Offered []string
	// Detail says what is wrong, and how to fix it.
	Detail string
	// Err is ErrCodecMismatch or ErrBadOffer (possibly wrapping the WebRTC
	// stack's error).
	Err error
}

func (e *NegotiationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "viewer %s: %v", e.ClientID, e.Err)
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *NegotiationError) Unwrap() error { return e.Err }

// StatusError is a STATUS_RESPONSE the service sent for one of the
// master's messages (only failures are reported, and only for messages
// with a correlation id: the answers).
type StatusError struct {
	// CorrelationID is the id of the failed message.
	CorrelationID string
	// ClientID is the viewer the message was for, when known.
	ClientID string
	// Code is the HTTP-like status code (e.g. 400).
	Code int
	// Type is the error type (e.g. "InvalidArgumentException").
	Type string
	// Description is the service's explanation, if any.
	Description string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("service rejected message %s: %s (%d)", e.CorrelationID, e.Type, e.Code)
	if e.ClientID != "" {
		s += " for viewer " + e.ClientID
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// EventKind names an Event.
type EventKind string

// Event kinds.
const (
	// EventReady: the channel was resolved and signaling is connected; the
	// master waits for viewers.
	EventReady EventKind = "ready"
	// EventViewerAnswered: an offer was accepted and answered; the viewer
	// is connecting. Followed by EventViewerJoined or EventViewerFailed.
	EventViewerAnswered EventKind = "viewer-answered"
	// EventViewerJoined: a viewer's peer connection is connected and media
	// flows. Followed by exactly one EventViewerLeft.
	EventViewerJoined EventKind = "viewer-joined"
	// EventViewerRestarted: a joined viewer restarted ICE (its network
	// changed); the master answered on the existing peer connection, so
	// its session and media continue.
	EventViewerRestarted EventKind = "viewer-restarted"
	// EventViewerLeft: a joined viewer was removed; Err says why
	// (ErrPeerClosed, ErrPeerFailed, ErrDisconnected, ErrReplaced,
	// ErrShutdown).
	EventViewerLeft EventKind = "viewer-left"
	// EventViewerFailed: an offer was not answered (ErrTooManyViewers,
	// ErrCodecMismatch, ErrBadOffer), or an answered viewer never joined
	// (ErrConnectTimeout, ErrPeerFailed, ErrReplaced, ErrShutdown, ...).
	EventViewerFailed EventKind = "viewer-failed"
	// EventSignalingRenewed: a new signaling connection replaced the old
	// one; Reason says why ("go-away", "connection-lost", "scheduled").
	// Existing viewers are not affected.
	EventSignalingRenewed EventKind = "signaling-renewed"
	// EventSignalingLost: the signaling connection ended (Err says why)
	// before a replacement was ready; the master is reconnecting.
	EventSignalingLost EventKind = "signaling-lost"
	// EventICERefreshed: RECONNECT_ICE_SERVER arrived; future viewers get
	// freshly fetched ICE servers.
	EventICERefreshed EventKind = "ice-refreshed"
	// EventStatus: the service reported a failed message; Err is a
	// *StatusError.
	EventStatus EventKind = "status"
	// EventTalkStarted: a viewer's talk-back audio started arriving
	// (Config.Talkback): ClientID is who is talking.
	EventTalkStarted EventKind = "talk-started"
	// EventTalkStopped: a viewer's talk-back audio paused for 2 s, its
	// track ended or the viewer left.
	EventTalkStopped EventKind = "talk-stopped"
	// EventDataChannelOpened: a viewer's data channel is open (Reason is
	// its label); Master.Send reaches the viewer from now on.
	EventDataChannelOpened EventKind = "data-channel-opened"
)

// String returns the kind's name.
func (k EventKind) String() string { return string(k) }

// Event is something that happened to the master.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// Time is when it happened.
	Time time.Time
	// ClientID is the viewer, for viewer events (and EventStatus when
	// known).
	ClientID string
	// ChannelARN is the channel's ARN.
	ChannelARN string
	// Reason is a short machine-friendly reason (EventSignalingRenewed),
	// or the data channel's label (EventDataChannelOpened).
	Reason string
	// Err says why, for failures and departures (nil otherwise).
	Err error
}

// ViewerState is the state of a viewer's peer connection.
type ViewerState string

// Viewer states.
const (
	// ViewerConnecting: answered, ICE and DTLS are under way.
	ViewerConnecting ViewerState = "connecting"
	// ViewerConnected: media flows.
	ViewerConnected ViewerState = "connected"
	// ViewerDisconnected: ICE lost its path; the viewer is removed if it
	// does not recover within Config.DisconnectedTimeout.
	ViewerDisconnected ViewerState = "disconnected"
)

// String returns the state's name.
func (s ViewerState) String() string { return string(s) }

// ParseViewerState parses a state name.
func ParseViewerState(s string) (ViewerState, error) {
	switch v := ViewerState(strings.ToLower(s)); v {
	case ViewerConnecting, ViewerConnected, ViewerDisconnected:
		return v, nil
	}
	return "", fmt.Errorf("master: unknown viewer state %q (want connecting, connected or disconnected)", s)
}

// ViewerInfo describes one current viewer.
type ViewerInfo struct {
	// ClientID is the viewer's client id (the senderClientId of its offer).
	ClientID string
	// State is the state of its peer connection.
	State ViewerState
	// Since is when its offer was answered.
	Since time.Time
	// ConnectedAt is when it first connected (zero before).
	ConnectedAt time.Time
	// Audio reports whether it is sent audio.
	Audio bool
	// BytesSent counts the media payload bytes handed to its tracks
	// (before RTP and SRTP overhead).
	BytesSent uint64
	// Samples counts the media samples (frames and audio packets) handed to
	// its tracks.
	Samples uint64
}
