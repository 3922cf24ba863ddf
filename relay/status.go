package relay

import (
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// State is the state of a channel's upstream session, as its peers see it.
type State string

// Upstream states.
const (
	// StateConnecting: the first session is connecting to the camera.
	StateConnecting State = "connecting"
	// StateStreaming: video flows.
	StateStreaming State = "streaming"
	// StateReconnecting: the upstream lost the camera and is recovering
	// (signaling renewal, ICE restart or a new attempt); Cause says why.
	StateReconnecting State = "reconnecting"
	// StateOffline: the upstream session gave up (the camera is offline,
	// not answering, or the channel is full); the Relay keeps trying
	// every Config.RestartDelay while peers remain. Cause says why.
	StateOffline State = "offline"
	// StateClosed: the upstream session is closed (no peers, or the Relay
	// is closing); peers still attached are being closed.
	StateClosed State = "closed"
)

// Status is the state of a channel's upstream, sent to every peer of the
// channel when it changes.
type Status struct {
	// Seq numbers the statuses of one channel's upstream from 1.
	Seq     uint64      `json:"seq"`
	Channel string      `json:"channel"`
	State   State       `json:"state"`
	Cause   cause.Cause `json:"cause,omitempty"`
	// Advice is what the cause means and what fixes it (empty without a
	// cause).
	Advice string `json:"advice,omitempty"`
	// Detail is a human-readable detail (the upstream viewer's).
	Detail string `json:"detail,omitempty"`
	// Talker is the ID (Peer.ID) of the peer whose audio goes to the
	// camera as talk-back (Config.Talk), empty when nobody talks. Players
	// show "someone else is talking" when it is not their own.
	Talker string `json:"talker,omitempty"`
	// TalkDeclined: the camera declined talk-back (viewer
	// ErrTalkbackDeclined, Detail says why); peers' audio is dropped.
	TalkDeclined bool `json:"talkDeclined,omitempty"`
	// DataDeclined: the camera declined the data channel (viewer
	// ErrDataChannelDeclined); peers' messages are dropped.
	DataDeclined bool      `json:"dataDeclined,omitempty"`
	Time         time.Time `json:"time"`
}

// stateFor maps an upstream viewer state to what peers see, given the
// current one: once offline, the channel stays offline until video flows
// again; before the first frame it is connecting, after it reconnecting.
func stateFor(v viewer.State, cur State, streamed bool) State {
	switch v {
	case viewer.StateStreaming:
		return StateStreaming
	case viewer.StateFailed:
		return StateOffline
	case viewer.StateStopped:
		return StateClosed
	}
	if cur == StateOffline {
		return StateOffline
	}
	if streamed || v == viewer.StateReconnecting {
		return StateReconnecting
	}
	return StateConnecting
}
