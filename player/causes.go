package player

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
)

// Causes the web player adds to package cause's (the names the page and
// /metrics use are the same for both). They describe what only a browser
// and this server see; the causes of KVS itself are package cause's.
const (
	// CauseUnauthorized: the request carried no valid token or cookie.
	CauseUnauthorized cause.Cause = "unauthorized"
	// CauseNotServed: the channel is not one the server was told to serve.
	CauseNotServed cause.Cause = "channel-not-served"
	// CauseICEFailed: no network path between the browser and the camera.
	CauseICEFailed cause.Cause = "ice-failed"
	// CauseUnavailable: the server could not use the KVS control plane's
	// answer (package cause's ServiceError, under the player's old name).
	CauseUnavailable = cause.ServiceError
	// CauseBadRequest: the page sent a request the API cannot use.
	CauseBadRequest cause.Cause = "bad-request"
)

// errNotServed is returned for a channel outside Config.Channels.
var errNotServed = errors.New("player: channel not served")

// Diagnosis is the server's explanation of a failure, in words for the
// person in front of the page.
type Diagnosis struct {
	// Cause is the machine-readable cause (a cause.Cause name or one of the
	// player's own).
	Cause cause.Cause `json:"cause"`
	// Title is a short headline.
	Title string `json:"title"`
	// Message says what happened, naming the channel.
	Message string `json:"message"`
	// Advice says what to do about it.
	Advice string `json:"advice"`
	// Retryable tells the page whether another attempt can help.
	Retryable bool `json:"retryable"`
}

// playerCauses are the player's own causes.
var playerCauses = map[cause.Cause]bool{
	CauseUnauthorized: true, CauseNotServed: true, CauseICEFailed: true, CauseBadRequest: true, CauseNotAllowed: true,
}

// normCause maps a page-supplied cause to a known one (package cause's or
// the player's); anything else is "other" (this bounds the label values of
// /metrics).
func normCause(s string) cause.Cause {
	c := cause.Cause(s)
	if cause.Known(c) || playerCauses[c] {
		return c
	}
	return "other"
}

// classify maps a server-side error to a cause (package cause's
// classification), an HTTP status for the API and whether retrying can
// help.
func classify(err error) (cause.Cause, int, bool) {
	if errors.Is(err, errNotServed) {
		return CauseNotServed, http.StatusForbidden, false
	}
	c, fatal := cause.Classify(err)
	if c == cause.SignalingLost {
		// The server makes control-plane calls only: an error the
		// classification cannot place is the service's, not a lost
		// signaling connection.
		c = cause.ServiceError
	}
	switch c {
	case cause.ChannelNotFound:
		return c, http.StatusNotFound, !fatal
	case cause.Throttled:
		return c, http.StatusServiceUnavailable, !fatal
	case cause.Config, cause.ClientID:
		return c, http.StatusInternalServerError, !fatal
	}
	return c, http.StatusBadGateway, !fatal
}

// triedText is " (N attempts in S s)" for a diagnosis message, or "" when
// the page said nothing of its attempts.
func triedText(attempts int, spent time.Duration) string {
	if attempts <= 0 {
		return ""
	}
	tried := fmt.Sprintf(" (%d attempt%s", attempts, plural(attempts))
	if spent > 0 {
		tried += fmt.Sprintf(" in %.1f s", spent.Seconds())
	}
	return tried + ")"
}

// diagnose builds the words for a cause. region is the server's region;
// attempts and spent describe what the page tried (0 when unknown).
func diagnose(c cause.Cause, channel, region string, attempts int, spent time.Duration, err error) Diagnosis {
	d := Diagnosis{Cause: c}
	tried := triedText(attempts, spent)
	switch c {
	case cause.NoAnswer:
		d.Title = "The camera did not answer"
		d.Message = fmt.Sprintf("The camera (the master of channel %q) did not answer the connection request%s. It is offline, or not connected to this channel.", channel, tried)
		d.Advice = "Check that the camera is powered, online and streaming to this channel, then press Retry."
		d.Retryable = true
	case cause.NoMedia:
		d.Title = "No video arrived"
		d.Message = fmt.Sprintf("The camera of channel %q answered, but no video arrived%s.", channel, tried)
		d.Advice = "Check the camera's video source. A firewall that blocks UDP can also cause this: the operator can run kvsrtc serve with --relay."
		d.Retryable = true
	case CauseICEFailed:
		d.Title = "Could not reach the camera"
		d.Message = fmt.Sprintf("No network path between this browser and the camera of channel %q was found (ICE failed)%s.", channel, tried)
		d.Advice = "A firewall may block UDP between you and the camera; the operator can run kvsrtc serve with --relay to go through TURN."
		d.Retryable = true
	case cause.MasterGone:
		d.Title = "The camera stopped"
		d.Message = fmt.Sprintf("The camera of channel %q stopped sending video and did not come back%s.", channel, tried)
		d.Advice = "Check the camera, then press Retry."
		d.Retryable = true
	case cause.SignalingLost, cause.GoAway:
		d.Title = "Lost the signaling connection"
		d.Message = fmt.Sprintf("The connection to the KVS signaling service for channel %q closed before the camera could be reached%s.", channel, tried)
		d.Advice = "Check your network connection and press Retry."
		d.Retryable = true
	case cause.Credentials:
		d.Title = "The server's AWS credentials were refused"
		d.Message = fmt.Sprintf("Kinesis Video Streams in %s refused the credentials of this server.", region)
		d.Advice = "The operator must fix the AWS credentials (or the region) of kvsrtc serve; nothing can be done in the browser."
	case cause.ChannelNotFound:
		d.Title = "Channel not found"
		d.Message = fmt.Sprintf("The signaling channel %q does not exist in %s (or is being deleted).", channel, region)
		d.Advice = "The operator should check the channel name and region given to kvsrtc serve."
	case CauseNotServed:
		d.Title = "Channel not served here"
		d.Message = fmt.Sprintf("This server does not serve the channel %q.", channel)
		d.Advice = "Open one of the channels listed on the start page."
	case CauseNotAllowed:
		d.Title = "Not allowed to watch this camera"
		d.Message = fmt.Sprintf("Your account may not watch the channel %q.", channel)
		d.Advice = "Ask the site's administrator for access to this camera, or sign in as another user."
	case cause.Throttled:
		d.Title = "Too many connection attempts"
		d.Message = fmt.Sprintf("Too many connection attempts for channel %q in a short time%s.", channel, tried)
		d.Advice = "Wait a few seconds, then press Retry."
		d.Retryable = true
	case cause.ChannelFull:
		d.Title = "Too many viewers"
		d.Message = fmt.Sprintf("Channel %q already has its maximum number of viewers.", channel)
		d.Advice = "Close another viewer of this camera, then press Retry."
		d.Retryable = true
	case cause.ClockSkew:
		d.Title = "The server's clock is wrong"
		d.Message = "Kinesis Video Streams refused the server's signatures because its clock is too far off."
		d.Advice = "The operator must set the server's clock right (NTP)."
	case cause.BadOffer:
		d.Title = "The camera cannot play to this browser"
		d.Message = fmt.Sprintf("The camera of channel %q refused this browser's offer, or offers no codec this browser can decode.", channel)
		d.Advice = "Try another browser, or configure the camera for H.264 or VP8."
	case CauseUnauthorized:
		d.Title = "Not signed in"
		d.Message = "This page needs the access token of the server."
		d.Advice = "Reload the page and sign in."
	case cause.Unreachable:
		d.Title = "Kinesis Video Streams is unreachable"
		d.Message = fmt.Sprintf("The server could not reach Kinesis Video Streams for channel %q%s.", channel, tried)
		d.Advice = "The operator should check the server's network and its endpoint settings (AWS_ENDPOINT_URL_KINESIS_VIDEO, AWS_CA_BUNDLE); press Retry once fixed."
		d.Retryable = true
		var ue *control.UnreachableError
		if errors.As(err, &ue) {
			// The same words as kvsrtc view and kvsrtc doctor.
			d.Message = fmt.Sprintf("The server could not reach the %s at %s%s: %s: %s.", ue.Service, ue.Endpoint, tried, ue.What(), ue.Detail())
			d.Advice = "The operator of kvsrtc serve: " + ue.Advice() + "."
			_, fatal := cause.Classify(err)
			d.Retryable = !fatal
		}
	case CauseUnavailable:
		d.Title = "Kinesis Video Streams is unreachable"
		d.Message = fmt.Sprintf("The server could not reach Kinesis Video Streams in %s.", region)
		d.Advice = "Wait a moment and press Retry; if it persists the operator should check the server's network."
		d.Retryable = true
	default:
		d.Title = "Connection failed"
		d.Message = fmt.Sprintf("Could not connect to the camera of channel %q%s.", channel, tried)
		d.Advice = strings.TrimSpace(c.Advice())
		if d.Advice == "" {
			d.Advice = "Press Retry."
		}
		d.Retryable = true
	}
	if err != nil && d.Cause != CauseNotServed && d.Cause != CauseNotAllowed && d.Cause != cause.Unreachable {
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
