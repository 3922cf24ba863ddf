package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kvsrtc/kvsrtc/internal/netdiag"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Sentinel errors of the handshake (wrapped by *HandshakeError) and of the
// connection's end (returned by Client.Err).
var (
	// ErrForbidden: the service refused the presigned URL (HTTP 401/403):
	// wrong or expired credentials, a bad signature or a skewed clock.
	ErrForbidden = errors.New("signaling: forbidden")
	// ErrNotFound: the channel or the endpoint does not exist (HTTP 404).
	ErrNotFound = errors.New("signaling: channel or endpoint not found")
	// ErrThrottled: too many connection attempts (HTTP 400
	// ClientLimitExceededException).
	ErrThrottled = errors.New("signaling: connection attempts throttled")
	// ErrChannelFull: the channel already has the maximum number of
	// viewers.
	ErrChannelFull = errors.New("signaling: channel has the maximum number of viewers")
	// ErrBadRequest: the service rejected the request (other HTTP 400).
	ErrBadRequest = errors.New("signaling: bad request")
	// ErrServer: the service failed (HTTP 5xx).
	ErrServer = errors.New("signaling: service error")

	// ErrClosed: the connection was closed by Close.
	ErrClosed = errors.New("signaling: connection closed")
	// ErrKeepaliveTimeout: no pong arrived within PongTimeout after a ping;
	// the connection is considered dead.
	ErrKeepaliveTimeout = errors.New("signaling: keepalive timeout (no pong)")
	// ErrConnectionLost: the connection broke without a close frame
	// (network error, abrupt close); the cause is wrapped too.
	ErrConnectionLost = errors.New("signaling: connection lost")
	// ErrEventOverflow: the Events channel was not read and too many events
	// were queued; the connection was closed.
	ErrEventOverflow = errors.New("signaling: events not consumed")
	// ErrUnknownEvent is returned by ParseEvent for frames that are not a
	// known event (unknown messageType, API Gateway notices).
	ErrUnknownEvent = errors.New("signaling: not a known event")
	// ErrUnreachable: Dial got no answer at all from the endpoint: its
	// host name did not resolve, nothing listened, the TLS handshake or a
	// proxy failed, or it timed out. The error is an *UnreachableError
	// that names the endpoint, what failed and the fix.
	ErrUnreachable = errors.New("signaling: endpoint unreachable")
)

// UnreachableError is a Dial that got no answer from the signaling
// endpoint: its Endpoint (scheme, host and port only: the presigned query
// carries credentials), what failed (Failure: "dns", "proxy", "refused",
// "dial", "tls-unknown-ca", "tls-name-mismatch", "tls", "closed",
// "timeout") and, from Advice, what to do. It unwraps to ErrUnreachable and
// to the underlying error. package control's UnreachableError is the same
// type (unwrapping to control.ErrUnreachable).
type UnreachableError = netdiag.Error

// dialError wraps a failed WebSocket dial of endpoint (the unsigned WSS
// URL): an *UnreachableError when no answer came, else a plain wrap of
// err naming the redacted URL.
func dialError(endpoint, redacted string, err error) error {
	if e := netdiag.Wrap(err, ErrUnreachable, "signaling: ", netdiag.ServiceSignaling, "dial", netdiag.Endpoint(endpoint)); e != nil {
		return e
	}
	return fmt.Errorf("signaling: dial %s: %w", redacted, err)
}

// HandshakeError is a failed WebSocket upgrade: the service answered the
// presigned GET with an HTTP error instead of 101. It unwraps to ErrForbidden,
// ErrNotFound, ErrThrottled, ErrChannelFull, ErrBadRequest or ErrServer.
type HandshakeError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Code is the AWS error code from x-amzn-ErrorType or the body ("" if
	// none).
	Code string
	// Message is the message of the body ("" if none).
	Message string
}

// Error formats the error.
func (e *HandshakeError) Error() string {
	s := fmt.Sprintf("signaling: WebSocket handshake refused: HTTP %d", e.StatusCode)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the sentinel for the status and code.
func (e *HandshakeError) Unwrap() error {
	switch {
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		return ErrForbidden
	case e.StatusCode == http.StatusNotFound:
		return ErrNotFound
	case e.StatusCode == http.StatusTooManyRequests:
		return ErrThrottled
	case e.StatusCode == http.StatusBadRequest:
		if e.Code == kvsproto.ErrCodeClientLimitExceeded {
			// The service uses ClientLimitExceededException both for the
			// connect rate and for the viewer limit; only the message
			// tells them apart. This is the one place that looks at it.
			if strings.Contains(strings.ToLower(e.Message), "viewer") {
				return ErrChannelFull
			}
			return ErrThrottled
		}
		return ErrBadRequest
	case e.StatusCode >= 500 && e.StatusCode < 600:
		return ErrServer
	}
	return nil
}

// parseHandshakeError reads the AWS error of a refused upgrade: the code
// from x-amzn-ErrorType (or the body's code/__type), the message from the
// body's message/Message (or the body text).
func parseHandshakeError(resp *http.Response, body []byte) *HandshakeError {
	e := &HandshakeError{StatusCode: resp.StatusCode}
	code := resp.Header.Get("X-Amzn-ErrorType")
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) == nil {
		lower := make(map[string]string, len(fields))
		for k, v := range fields {
			var s string
			if json.Unmarshal(v, &s) == nil {
				lower[strings.ToLower(k)] = s
			}
		}
		if code == "" {
			code = lower["code"]
		}
		if code == "" {
			code = lower["__type"]
		}
		e.Message = lower["message"]
	} else {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 256 {
			e.Message = e.Message[:256] + "..."
		}
	}
	if i := strings.IndexAny(code, ":,"); i >= 0 {
		code = code[:i]
	}
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	e.Code = strings.TrimSpace(code)
	return e
}

// CloseError is returned by Client.Err when the service closed the
// connection with a close frame.
type CloseError struct {
	// Code is the WebSocket close code (1000 normal, 1001 going away, ...).
	Code int
	// Reason is the close reason text.
	Reason string
}

// Error formats the error.
func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("signaling: closed by the service (code %d)", e.Code)
	}
	return fmt.Sprintf("signaling: closed by the service (code %d: %s)", e.Code, e.Reason)
}
