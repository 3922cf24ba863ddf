package cause

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/internal/netdiag"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// Errors of a viewer session that are not errors of the service. The
// viewer returns them (wrapped); they live here so that Classify knows them
// without importing the viewer, and package viewer re-exports the public
// ones (viewer.ErrAnswerTimeout is ErrAnswerTimeout).
var (
	// ErrAnswerTimeout: no SDP answer before the answer timeout.
	ErrAnswerTimeout = errors.New("viewer: no SDP answer before the timeout")
	// ErrNoMedia: connected, but no video frame before the media timeout.
	ErrNoMedia = errors.New("viewer: no video frame before the timeout")
	// ErrClientIDTakenOver: the service closed the signaling connection
	// because a newer connection with the same client id took over.
	ErrClientIDTakenOver = errors.New("viewer: a newer connection with the same client id took over")
	// ErrBadOffer: the offer cannot be sent (no usable video section).
	ErrBadOffer = errors.New("viewer: the offer cannot be sent")
	// ErrBadAnswer: the master's answer cannot be used.
	ErrBadAnswer = errors.New("viewer: the master's answer cannot be used")
	// ErrMediaStalled: media stopped arriving while streaming.
	ErrMediaStalled = errors.New("viewer: media stopped arriving")
	// ErrICEFailed: ICE failed and an ICE restart did not recover it.
	ErrICEFailed = errors.New("viewer: ICE connection failed and the ICE restart did not recover it")
	// ErrNoRelay: a relay-only attempt got no TURN relay candidate.
	ErrNoRelay = errors.New("viewer: no TURN relay candidate")
	// ErrNoStorageOffer: the storage session sent no SDP offer before the
	// answer timeout after JoinStorageSessionAsViewer.
	ErrNoStorageOffer = errors.New("viewer: no SDP offer from the storage session before the timeout")
)

// StatusError is a STATUS_RESPONSE the service sent for a viewer's offer:
// throttled when its type is ClientLimitExceededException, else the offer
// was refused (BadOffer).
type StatusError struct {
	// Code is the HTTP-like status code (e.g. 400).
	Code int
	// Type is the error type (e.g. "InvalidArgumentException").
	Type string
	// Description is the service's explanation, if any.
	Description string
}

// Error formats the error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("service rejected the offer: %s (%d) %s", e.Type, e.Code, e.Description)
}

// CloseCodeReplaced is the WebSocket close code with which the local
// emulator closes a connection when a newer one with the same client id
// takes over (the service's own code is not documented; a close reason
// naming the replacement is recognised too).
const CloseCodeReplaced = 4001

// TakenOver reports whether a signaling connection ended because a newer
// connection with the same client id took over.
func TakenOver(err error) bool {
	var ce *signaling.CloseError
	return errors.As(err, &ce) && (ce.Code == CloseCodeReplaced || strings.Contains(strings.ToLower(ce.Reason), "replaced"))
}

// SkewRefusal reports whether the service refused a presigned signaling
// URL because of the signing time (AWS says "Signature expired" or
// "Signature not yet current"; the KVS C SDK looks for the same words).
func SkewRefusal(err error) bool {
	var he *signaling.HandshakeError
	return errors.As(err, &he) && errors.Is(err, signaling.ErrForbidden) && SkewMessage(he.Message)
}

// SkewMessage reports whether an AWS error message says that the request
// was signed with a time too far from the service's.
func SkewMessage(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "signature expired") || strings.Contains(m, "signature not yet current")
}

// Classify maps an error of kvsrtc (control plane, signaling, validation,
// a viewer session) to a cause, and reports whether retrying cannot fix it
// (fatal). An error it does not recognise is SignalingLost and not fatal:
// the viewer retries it.
func Classify(err error) (c Cause, fatal bool) {
	var ce *control.APIError
	var se *StatusError
	switch {
	case err == nil:
		return None, false

	// The viewer's own outcomes.
	case errors.Is(err, ErrMediaStalled):
		return MasterGone, false
	case errors.Is(err, ErrICEFailed):
		return NetworkChange, false
	case errors.Is(err, ErrBadAnswer), errors.Is(err, ErrBadOffer):
		return BadOffer, true
	case errors.Is(err, ErrNoRelay):
		return ICEExpired, false
	case errors.Is(err, ErrAnswerTimeout):
		return NoAnswer, false
	case errors.Is(err, ErrNoStorageOffer):
		return NoStorageOffer, false
	case errors.Is(err, ErrNoMedia):
		return NoMedia, false
	case errors.Is(err, ErrClientIDTakenOver), TakenOver(err):
		return ClientIDReuse, false
	case errors.As(err, &se):
		if se.Type == kvsproto.ErrCodeClientLimitExceeded {
			return Throttled, false
		}
		return BadOffer, true

	// The service's answers.
	// The storage path's answers (before the generic ones: the service
	// reuses their codes).
	case errors.Is(err, control.ErrStorageNotConfigured):
		return StorageNotConfigured, true
	case errors.Is(err, control.ErrStreamNotFound):
		return StreamMissing, true
	case errors.Is(err, control.ErrStorageViewerLimit):
		return StorageFull, true
	case errors.Is(err, control.ErrJoinerNotConnected):
		return SignalingLost, false

	case errors.Is(err, control.ErrClockSkew), SkewRefusal(err):
		return ClockSkew, true
	case errors.Is(err, control.ErrAccessDenied), errors.Is(err, signaling.ErrForbidden),
		errors.Is(err, control.ErrMissingCredentials):
		return Credentials, true
	case errors.Is(err, control.ErrMissingRegion):
		return Config, true
	case errors.Is(err, control.ErrChannelNotFound), errors.Is(err, control.ErrChannelDeleting),
		errors.Is(err, signaling.ErrNotFound):
		return ChannelNotFound, true
	case errors.Is(err, signaling.ErrChannelFull):
		return ChannelFull, true
	case errors.Is(err, control.ErrThrottled), errors.Is(err, signaling.ErrThrottled):
		return Throttled, false
	case errors.Is(err, kvsproto.ErrInvalid), errors.Is(err, signaling.ErrBadRequest):
		return ClientID, true
	case errors.Is(err, control.ErrInvalidArgument):
		return Config, true
	case errors.Is(err, control.ErrUnreachable), errors.Is(err, signaling.ErrUnreachable):
		// Retrying helps a service that is starting or a network that
		// comes back; no retry makes an untrusted certificate trusted.
		var ue *netdiag.Error
		fatal := errors.As(err, &ue) && (ue.Failure == netdiag.FailureTLSUnknownCA || ue.Failure == netdiag.FailureTLSName)
		return Unreachable, fatal
	case errors.As(err, &ce), errors.Is(err, control.ErrBadResponse):
		return ServiceError, false
	}
	return SignalingLost, false
}
