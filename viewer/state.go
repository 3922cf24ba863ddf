package viewer

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
)

// State is a step of a viewer session's life.
type State string

// Viewer states, in the order a healthy session passes them.
const (
	StateConnecting     State = "connecting"      // resolving the channel, endpoints, ICE servers; opening signaling
	StateAwaitingAnswer State = "awaiting-answer" // offer sent, waiting for the master's answer
	StateConnected      State = "connected"       // answer applied, ICE/DTLS connected, waiting for the first frame
	StateStreaming      State = "streaming"       // a complete keyframe arrived; media flows
	StateReconnecting   State = "reconnecting"    // recovering (signaling renewal, ICE restart or a full new attempt)
	StateFailed         State = "failed"          // gave up; see Event.Err
	StateStopped        State = "stopped"         // ended normally (context cancelled or duration reached)
)

// String returns the state's name.
func (s State) String() string { return string(s) }

// ParseState parses a state name.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case StateConnecting, StateAwaitingAnswer, StateConnected, StateStreaming, StateReconnecting, StateFailed, StateStopped:
		return st, nil
	}
	return "", fmt.Errorf("viewer: unknown state %q", s)
}

// Event is one state change of a session.
type Event struct {
	Time     time.Time
	State    State
	Attempt  int    // 1-based attempt number
	ClientID string // the attempt's client id
	Cause    Cause  // why (reconnecting, failed)
	Detail   string // human-readable detail
	Err      error  // failed: the error Run returns
	// TimeToFirstFrame is set on StateStreaming: from Run's start to the
	// first complete keyframe.
	TimeToFirstFrame time.Duration
	// Declined is set when the master declined talk-back
	// (ErrTalkbackDeclined) or the data channel (ErrDataChannelDeclined);
	// the state does not change and video goes on.
	Declined error
}

// Cause names why a viewer did not get (or lost) its answer or media: see
// package cause, which holds the causes, their wording and the one
// classification of errors.
type Cause = cause.Cause

// Causes (package cause's, under the viewer's names).
const (
	CauseNone            = cause.None
	CauseCredentials     = cause.Credentials
	CauseChannelNotFound = cause.ChannelNotFound
	CauseClientID        = cause.ClientID
	CauseClientIDReuse   = cause.ClientIDReuse
	CauseThrottled       = cause.Throttled
	CauseNetworkChange   = cause.NetworkChange
	CauseBadOffer        = cause.BadOffer
	CauseChannelFull     = cause.ChannelFull
	CauseICEExpired      = cause.ICEExpired
	CauseNoAnswer        = cause.NoAnswer
	CauseMasterGone      = cause.MasterGone
	CauseClockSkew       = cause.ClockSkew
	CauseSignalingLost   = cause.SignalingLost
	CauseGoAway          = cause.GoAway
	CauseNoMedia         = cause.NoMedia
	CauseConfig          = cause.Config
	CauseUnreachable     = cause.Unreachable
	CauseSlowAnswer      = cause.SlowAnswer
	CauseServiceError    = cause.ServiceError
)

// Sentinel errors of a viewer session; SessionError wraps one of them, or
// the underlying error, so errors.Is works on Run's result. The ones a
// cause is classified from are package cause's.
var (
	ErrAnswerTimeout = cause.ErrAnswerTimeout
	ErrNoMedia       = cause.ErrNoMedia
	ErrGaveUp        = errors.New("viewer: gave up after the configured attempts")
	ErrBudget        = errors.New("viewer: the total time budget ran out")
	// ErrClientIDTakenOver: the service closed the signaling connection
	// because a newer connection with the same client id took over.
	ErrClientIDTakenOver = cause.ErrClientIDTakenOver
)

// SessionError is what Run returns when the viewer gives up: at which stage,
// for which cause, after how many attempts.
type SessionError struct {
	Stage    string // "control", "signaling", "answer", "ice", "media"
	Cause    Cause
	Attempts int
	Err      error
}

func (e *SessionError) Error() string {
	msg := fmt.Sprintf("%s failed after %d attempt(s): %v", e.Stage, e.Attempts, e.Err)
	if e.Cause != CauseNone {
		msg += " [cause: " + string(e.Cause) + "]"
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *SessionError) Unwrap() error { return e.Err }

// Diagnosis is a one-paragraph explanation with the fix: the error's own
// advice when it has one (an unreachable endpoint names its fix), else the
// cause's.
func (e *SessionError) Diagnosis() string {
	var adv interface{ Advice() string }
	if errors.As(e.Err, &adv) {
		if a := adv.Advice(); a != "" {
			return e.Error() + ": " + a
		}
	}
	if a := e.Cause.Advice(); a != "" {
		return e.Error() + ": " + a
	}
	return e.Error()
}
