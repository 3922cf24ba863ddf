package viewer

import (
	"errors"
	"fmt"
	"time"
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
}

// Cause names why a viewer did not get (or lost) its answer or media, in the
// terms of the nine reasons listed by the blog post kvsrtc started from, plus
// the ones the service adds.
type Cause string

// Causes.
const (
	CauseNone            Cause = ""
	CauseCredentials     Cause = "credentials"       // 1. wrong access key, secret, token or region
	CauseChannelNotFound Cause = "channel-not-found" // 2. channel name or ARN does not exist (or is being deleted)
	CauseClientID        Cause = "client-id"         // 3. client id breaks the format rules
	CauseClientIDReuse   Cause = "client-id-reuse"   // 4. same client id reused; a newer connection took over
	CauseThrottled       Cause = "throttled"         // 5. too many connection attempts or messages
	CauseNetworkChange   Cause = "network-change"    // 6. ICE disconnected/failed while streaming
	CauseBadOffer        Cause = "bad-offer"         // 7. master rejected the offer (STATUS_RESPONSE) or cannot use its codecs
	CauseChannelFull     Cause = "channel-full"      // 8. the channel's viewer limit is reached
	CauseICEExpired      Cause = "ice-expired"       // 9. ICE server credentials expired
	CauseNoAnswer        Cause = "no-answer"         // no answer within the timeout (master absent or offer lost)
	CauseMasterGone      Cause = "master-gone"       // media stopped / master left mid-session
	CauseClockSkew       Cause = "clock-skew"        // client clock too far from the service's
	CauseSignalingLost   Cause = "signaling-lost"    // the signaling socket closed or died
	CauseGoAway          Cause = "go-away"           // the service asked for a reconnect
	CauseNoMedia         Cause = "no-media"          // connected, but no frame arrived in time
	CauseConfig          Cause = "config"            // invalid configuration
)

// Causes kvsrtc adds for what real setups run into.
const (
	// CauseUnreachable: the control plane or the signaling endpoint gave
	// no answer at all (DNS, dial, TLS, proxy, timeout); the error is a
	// control.UnreachableError / signaling.UnreachableError naming the
	// endpoint, what failed and the fix.
	CauseUnreachable Cause = "service-unreachable"
	// CauseSlowAnswer: the master answers, but only after the answer
	// timeout (kvsrtc doctor's finding).
	CauseSlowAnswer Cause = "slow-answer"
)

// String returns the cause's name.
func (c Cause) String() string { return string(c) }

// Advice returns what the user can do about the cause.
func (c Cause) Advice() string {
	switch c {
	case CauseCredentials:
		return "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and AWS_REGION: the service rejected the request signature"
	case CauseChannelNotFound:
		return "check the channel name or ARN and the region (kvsrtc doctor --channel NAME lists what exists)"
	case CauseClientID:
		return "use a client id of 1-256 characters from letters, digits, '-', '_' and '.', not starting with AWS_ (or let kvsrtc generate one)"
	case CauseClientIDReuse:
		return "another connection with the same client id took over (the service routes to the newest one): give every viewer its own client id; kvsrtc continues with a fresh one"
	case CauseThrottled:
		return "too many connection attempts or messages in a short time: wait a few seconds before retrying (the channel allows 3 connects/s)"
	case CauseNetworkChange:
		return "the network path changed; kvsrtc restarts ICE and reconnects automatically"
	case CauseBadOffer:
		return "the master could not use the offer: check the codecs it supports (--codec) and that audio is only requested when the camera sends it"
	case CauseChannelFull:
		return "the channel already has its maximum number of viewers (10): close another viewer or retry with --wait-for-slot"
	case CauseICEExpired:
		return "the TURN server refused the relay allocation: expired ICE server credentials are fetched again automatically; if this persists the TURN servers are unreachable (allow UDP and TCP 443 to them, or drop --relay)"
	case CauseNoAnswer:
		return "the master did not answer: check that the camera (master) is connected to this channel and running"
	case CauseMasterGone:
		return "the camera stopped sending or disconnected; check the master"
	case CauseClockSkew:
		return "set the system clock right (NTP); signatures are only valid within 5 minutes of the service's time"
	case CauseSignalingLost, CauseGoAway:
		return "the signaling connection was renewed; no action needed unless this repeats"
	case CauseNoMedia:
		return "the connection was set up but no video arrived: check the master's source and a firewall for UDP (try --relay)"
	case CauseConfig:
		return "fix the command-line flags or Config"
	case CauseSlowAnswer:
		return "the master answers, but only after the viewer's answer timeout: raise it above the master's answer time (kvsrtc view --answer-timeout) to connect on the first attempt, and make the camera answer before its ICE gathering ends (trickle ICE)"
	case CauseUnreachable:
		return "the service endpoint could not be reached: is `kvsrtc local` running, and does AWS_ENDPOINT_URL_KINESIS_VIDEO (--endpoint-url) point at it? For TLS failures set AWS_CA_BUNDLE to the CA that signed the server's certificate; otherwise check the network, proxy and DNS"
	}
	return ""
}

// Sentinel errors of a viewer session; SessionError wraps one of them, or
// the underlying error, so errors.Is works on Run's result.
var (
	ErrAnswerTimeout = errors.New("viewer: no SDP answer before the timeout")
	ErrNoMedia       = errors.New("viewer: no video frame before the timeout")
	ErrGaveUp        = errors.New("viewer: gave up after the configured attempts")
	ErrBudget        = errors.New("viewer: the total time budget ran out")
	// ErrClientIDTakenOver: the service closed the signaling connection
	// because a newer connection with the same client id took over.
	ErrClientIDTakenOver = errors.New("viewer: a newer connection with the same client id took over")
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
