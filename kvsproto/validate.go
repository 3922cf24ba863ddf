package kvsproto

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of the KVS WebRTC service that both clients and the emulator
// respect. Sources: the KVS service model and the KVS WebRTC quotas page.
const (
	// MaxClientIDLen is the longest viewer client id (X-Amz-ClientId).
	MaxClientIDLen = 256
	// MaxChannelNameLen is the longest channel name.
	MaxChannelNameLen = 256
	// MaxCorrelationIDLen is the longest correlation id.
	MaxCorrelationIDLen = 256
	// MaxARNLen is the longest resource ARN the service model admits.
	MaxARNLen = 1024
	// MaxMessagePayloadLen is the longest base64 messagePayload ("10K" in
	// the quotas table; 10,000 characters in the signaling HTTPS model).
	MaxMessagePayloadLen = 10000
	// MaxFrameLen is the largest WebSocket frame the official C SDK can
	// receive (MAX_SIGNALING_MESSAGE_LEN); the service never sends more.
	MaxFrameLen = 18750
	// MaxViewersPerChannel is the default limit of concurrent viewer
	// connections on one channel.
	MaxViewersPerChannel = 10
	// MinMessageTTLSeconds and MaxMessageTTLSeconds bound MessageTtlSeconds.
	MinMessageTTLSeconds = 5
	// MaxMessageTTLSeconds is the upper bound of MessageTtlSeconds.
	MaxMessageTTLSeconds = 120
	// DefaultMessageTTLSeconds is used when a channel is created without one.
	DefaultMessageTTLSeconds = 60
	// ReservedClientIDPrefix may not start a client id (any letter case).
	ReservedClientIDPrefix = "AWS_"
)

// ErrInvalid is matched (with errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("kvsproto: invalid value")

// ValidationError says which field is wrong and why, in words a user can act
// on. It matches ErrInvalid with errors.Is.
type ValidationError struct {
	Field  string // e.g. "clientId", "ChannelName", "correlationId"
	Value  string // the offending value (truncated to 64 characters)
	Reason string // what is wrong and how to fix it
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, value, reason string) *ValidationError {
	if len(value) > 64 {
		value = value[:64] + "..."
	}
	return &ValidationError{Field: field, Value: value, Reason: reason}
}

// isIDChar reports whether c is in [a-zA-Z0-9_.-].
func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// checkIDChars validates the [a-zA-Z0-9_.-]{1,max} pattern shared by client
// ids, channel names and correlation ids.
func checkIDChars(field, s string, maxLen int) error {
	if s == "" {
		return invalid(field, s, "must not be empty")
	}
	if len(s) > maxLen {
		return invalid(field, s, fmt.Sprintf("is %d characters long; the limit is %d", len(s), maxLen))
	}
	for i := 0; i < len(s); i++ {
		if !isIDChar(s[i]) {
			r, _ := utf8.DecodeRuneInString(s[i:])
			return invalid(field, s, fmt.Sprintf("character %q at position %d is not allowed; use only letters, digits, '-', '_' and '.'", r, i))
		}
	}
	return nil
}

// ValidateClientID checks a viewer client id: 1 to 256 characters from
// [a-zA-Z0-9_.-], not starting with "AWS_" in any letter case.
func ValidateClientID(id string) error {
	if err := checkIDChars("clientId", id, MaxClientIDLen); err != nil {
		return err
	}
	if len(id) >= len(ReservedClientIDPrefix) && strings.EqualFold(id[:len(ReservedClientIDPrefix)], ReservedClientIDPrefix) {
		return invalid("clientId", id, "must not start with \"AWS_\" (reserved by the service); choose another prefix")
	}
	return nil
}

// ValidateChannelName checks a channel name: 1 to 256 characters from
// [a-zA-Z0-9_.-].
func ValidateChannelName(name string) error {
	return checkIDChars("ChannelName", name, MaxChannelNameLen)
}

// ValidateCorrelationID checks a correlation id: 1 to 256 characters from
// [a-zA-Z0-9_.-].
func ValidateCorrelationID(id string) error {
	return checkIDChars("correlationId", id, MaxCorrelationIDLen)
}

// ValidateMessageTTL checks MessageTtlSeconds (5 to 120).
func ValidateMessageTTL(seconds int) error {
	if seconds < MinMessageTTLSeconds || seconds > MaxMessageTTLSeconds {
		return invalid("MessageTtlSeconds", fmt.Sprint(seconds), fmt.Sprintf("must be between %d and %d", MinMessageTTLSeconds, MaxMessageTTLSeconds))
	}
	return nil
}

// ValidatePayload checks a messagePayload: non-empty standard base64 of at
// most MaxMessagePayloadLen characters.
func ValidatePayload(p string) error {
	if p == "" {
		return invalid("messagePayload", p, "must not be empty")
	}
	if len(p) > MaxMessagePayloadLen {
		return invalid("messagePayload", p[:16], fmt.Sprintf("is %d characters long; the limit is %d", len(p), MaxMessagePayloadLen))
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return invalid("messagePayload", p[:min(len(p), 16)], fmt.Sprintf("character %q at position %d is not base64", c, i))
		}
	}
	return nil
}
