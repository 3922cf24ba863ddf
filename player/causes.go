package player

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// Causes the web player adds to viewer's (the names the page and /metrics
// use are the same for both).
const (
	// CauseUnauthorized: the request carried no valid token or cookie.
	CauseUnauthorized viewer.Cause = "unauthorized"
	// CauseNotServed: the channel is not one the server was told to serve.
	CauseNotServed viewer.Cause = "channel-not-served"
	// CauseICEFailed: no network path between the browser and the camera.
	CauseICEFailed viewer.Cause = "ice-failed"
	// CauseUnavailable: the server could not reach the KVS control plane.
	CauseUnavailable viewer.Cause = "service-unavailable"
	// CauseBadRequest: the page sent a request the API cannot use.
	CauseBadRequest viewer.Cause = "bad-request"
)

// errNotServed is returned for a channel outside Config.Channels.
var errNotServed = errors.New("player: channel not served")

// Diagnosis is the server's explanation of a failure, in words for the
// person in front of the page.
type Diagnosis struct {
	// Cause is the machine-readable cause (a viewer.Cause name or one of the
	// player's own).
	Cause viewer.Cause `json:"cause"`
	// Title is a short headline.
	Title string `json:"title"`
	// Message says what happened, naming the channel.
	Message string `json:"message"`
	// Advice says what to do about it.
	Advice string `json:"advice"`
	// Retryable tells the page whether another attempt can help.
	Retryable bool `json:"retryable"`
}

// knownCauses are the causes a page may report; anything else is "other"
// (this bounds the label values of /metrics).
var knownCauses = map[viewer.Cause]bool{
	viewer.CauseCredentials: true, viewer.CauseChannelNotFound: true, viewer.CauseClientID: true,
	viewer.CauseClientIDReuse: true, viewer.CauseThrottled: true, viewer.CauseNetworkChange: true,
	viewer.CauseBadOffer: true, viewer.CauseChannelFull: true, viewer.CauseICEExpired: true,
	viewer.CauseNoAnswer: true, viewer.CauseMasterGone: true, viewer.CauseClockSkew: true,
	viewer.CauseSignalingLost: true, viewer.CauseGoAway: true, viewer.CauseNoMedia: true,
	CauseUnauthorized: true, CauseNotServed: true, CauseICEFailed: true, CauseUnavailable: true,
	CauseBadRequest: true, viewer.CauseUnreachable: true,
}

// normCause maps a page-supplied cause to a known one.
func normCause(s string) viewer.Cause {
	c := viewer.Cause(s)
	if knownCauses[c] {
		return c
	}
	return "other"
}

// classify maps a server-side error to a cause, an HTTP status for the API
// and whether retrying can help.
func classify(err error) (viewer.Cause, int, bool) {
	switch {
	case errors.Is(err, errNotServed):
		return CauseNotServed, http.StatusForbidden, false
	case errors.Is(err, control.ErrClockSkew):
		return viewer.CauseClockSkew, http.StatusBadGateway, false
	case errors.Is(err, control.ErrAccessDenied), errors.Is(err, control.ErrMissingCredentials):
		return viewer.CauseCredentials, http.StatusBadGateway, false
	case errors.Is(err, control.ErrChannelNotFound), errors.Is(err, control.ErrChannelDeleting):
		return viewer.CauseChannelNotFound, http.StatusNotFound, false
	case errors.Is(err, control.ErrThrottled):
		return viewer.CauseThrottled, http.StatusServiceUnavailable, true
	case errors.Is(err, control.ErrInvalidArgument), errors.Is(err, control.ErrMissingRegion):
		return viewer.CauseConfig, http.StatusInternalServerError, false
	case errors.Is(err, control.ErrUnreachable):
		var ue *control.UnreachableError
		retry := !errors.As(err, &ue) || (ue.Failure != "tls-unknown-ca" && ue.Failure != "tls-name-mismatch")
		return viewer.CauseUnreachable, http.StatusBadGateway, retry
	}
	return CauseUnavailable, http.StatusBadGateway, true
}

// diagnose builds the words for a cause. region is the server's region;
// attempts and spent describe what the page tried (0 when unknown).
func diagnose(cause viewer.Cause, channel, region string, attempts int, spent time.Duration, err error) Diagnosis {
	d := Diagnosis{Cause: cause}
	tried := ""
	if attempts > 0 {
		tried = fmt.Sprintf(" (%d attempt%s", attempts, plural(attempts))
		if spent > 0 {
			tried += fmt.Sprintf(" in %.1f s", spent.Seconds())
		}
		tried += ")"
	}
	switch cause {
	case viewer.CauseNoAnswer:
		d.Title = "The camera did not answer"
		d.Message = fmt.Sprintf("The camera (the master of channel %q) did not answer the connection request%s. It is offline, or not connected to this channel.", channel, tried)
		d.Advice = "Check that the camera is powered, online and streaming to this channel, then press Retry."
		d.Retryable = true
	case viewer.CauseNoMedia:
		d.Title = "No video arrived"
		d.Message = fmt.Sprintf("The camera of channel %q answered, but no video arrived%s.", channel, tried)
		d.Advice = "Check the camera's video source. A firewall that blocks UDP can also cause this: the operator can run kvsrtc serve with --relay."
		d.Retryable = true
	case CauseICEFailed:
		d.Title = "Could not reach the camera"
		d.Message = fmt.Sprintf("No network path between this browser and the camera of channel %q was found (ICE failed)%s.", channel, tried)
		d.Advice = "A firewall may block UDP between you and the camera; the operator can run kvsrtc serve with --relay to go through TURN."
		d.Retryable = true
	case viewer.CauseMasterGone:
		d.Title = "The camera stopped"
		d.Message = fmt.Sprintf("The camera of channel %q stopped sending video and did not come back%s.", channel, tried)
		d.Advice = "Check the camera, then press Retry."
		d.Retryable = true
	case viewer.CauseSignalingLost, viewer.CauseGoAway:
		d.Title = "Lost the signaling connection"
		d.Message = fmt.Sprintf("The connection to the KVS signaling service for channel %q closed before the camera could be reached%s.", channel, tried)
		d.Advice = "Check your network connection and press Retry."
		d.Retryable = true
	case viewer.CauseCredentials:
		d.Title = "The server's AWS credentials were refused"
		d.Message = fmt.Sprintf("Kinesis Video Streams in %s refused the credentials of this server.", region)
		d.Advice = "The operator must fix the AWS credentials (or the region) of kvsrtc serve; nothing can be done in the browser."
	case viewer.CauseChannelNotFound:
		d.Title = "Channel not found"
		d.Message = fmt.Sprintf("The signaling channel %q does not exist in %s (or is being deleted).", channel, region)
		d.Advice = "The operator should check the channel name and region given to kvsrtc serve."
	case CauseNotServed:
		d.Title = "Channel not served here"
		d.Message = fmt.Sprintf("This server does not serve the channel %q.", channel)
		d.Advice = "Open one of the channels listed on the start page."
	case viewer.CauseThrottled:
		d.Title = "Too many connection attempts"
		d.Message = fmt.Sprintf("Too many connection attempts for channel %q in a short time%s.", channel, tried)
		d.Advice = "Wait a few seconds, then press Retry."
		d.Retryable = true
	case viewer.CauseChannelFull:
		d.Title = "Too many viewers"
		d.Message = fmt.Sprintf("Channel %q already has its maximum number of viewers.", channel)
		d.Advice = "Close another viewer of this camera, then press Retry."
		d.Retryable = true
	case viewer.CauseClockSkew:
		d.Title = "The server's clock is wrong"
		d.Message = "Kinesis Video Streams refused the server's signatures because its clock is too far off."
		d.Advice = "The operator must set the server's clock right (NTP)."
	case viewer.CauseBadOffer:
		d.Title = "The camera cannot play to this browser"
		d.Message = fmt.Sprintf("The camera of channel %q refused this browser's offer, or offers no codec this browser can decode.", channel)
		d.Advice = "Try another browser, or configure the camera for H.264 or VP8."
	case CauseUnauthorized:
		d.Title = "Not signed in"
		d.Message = "This page needs the access token of the server."
		d.Advice = "Reload the page and sign in."
	case viewer.CauseUnreachable:
		d.Title = "Kinesis Video Streams is unreachable"
		d.Message = fmt.Sprintf("The server could not reach Kinesis Video Streams for channel %q%s.", channel, tried)
		d.Advice = "The operator should check the server's network and its endpoint settings (AWS_ENDPOINT_URL_KINESIS_VIDEO, AWS_CA_BUNDLE); press Retry once fixed."
		d.Retryable = true
		var ue *control.UnreachableError
		if errors.As(err, &ue) {
			// The same words as kvsrtc view and kvsrtc doctor.
			d.Message = fmt.Sprintf("The server could not reach the %s at %s%s: %s: %s.", ue.Service, ue.Endpoint, tried, ue.What(), ue.Detail())
			d.Advice = "The operator of kvsrtc serve: " + ue.Advice() + "."
			d.Retryable = ue.Failure != "tls-unknown-ca" && ue.Failure != "tls-name-mismatch"
		}
	case CauseUnavailable:
		d.Title = "Kinesis Video Streams is unreachable"
		d.Message = fmt.Sprintf("The server could not reach Kinesis Video Streams in %s.", region)
		d.Advice = "Wait a moment and press Retry; if it persists the operator should check the server's network."
		d.Retryable = true
	default:
		d.Title = "Connection failed"
		d.Message = fmt.Sprintf("Could not connect to the camera of channel %q%s.", channel, tried)
		d.Advice = strings.TrimSpace(cause.Advice())
		if d.Advice == "" {
			d.Advice = "Press Retry."
		}
		d.Retryable = true
	}
	if err != nil && d.Cause != CauseNotServed && d.Cause != viewer.CauseUnreachable {
		var api *control.APIError
		if errors.As(err, &api) && api.Code != "" {
			d.Message += " (" + api.Code + ")"
		} else if errors.Is(err, context.DeadlineExceeded) {
			d.Message += " (timed out)"
		}
	}
	return d
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
