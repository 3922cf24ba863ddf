package kvsproto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// ErrMalformedMessage is returned (wrapped) when a WebSocket frame is not a
// JSON object of the expected shape.
var ErrMalformedMessage = errors.New("kvsproto: malformed message")

// ClientMessage is a frame a client sends to the service (SendSdpOffer,
// SendSdpAnswer, SendIceCandidate). Key matching on decode is
// case-insensitive (the C SDK sends "RecipientClientId", the JS SDK
// "recipientClientId"); unknown fields are ignored.
type ClientMessage struct {
	Action            Action `json:"action"`
	MessagePayload    string `json:"messagePayload"`
	RecipientClientID string `json:"recipientClientId,omitempty"`
	CorrelationID     string `json:"correlationId,omitempty"`
}

// Encode returns the JSON frame, with the lowercase keys the JS SDK sends and
// empty optional fields left out.
func (m *ClientMessage) Encode() ([]byte, error) {
	return json.Marshal(m)
}

// Validate checks every field of m against the service's rules.
func (m *ClientMessage) Validate() error {
	if _, err := ParseAction(string(m.Action)); err != nil {
		return err
	}
	if err := ValidatePayload(m.MessagePayload); err != nil {
		return err
	}
	if m.RecipientClientID != "" {
		if err := checkIDChars("recipientClientId", m.RecipientClientID, MaxClientIDLen); err != nil {
			return err
		}
	}
	if m.CorrelationID != "" {
		if err := ValidateCorrelationID(m.CorrelationID); err != nil {
			return err
		}
	}
	return nil
}

// DecodeClientMessage parses and validates a client frame. On a validation
// error it still returns what it could decode, so the service can answer a
// STATUS_RESPONSE carrying the message's correlationId.
func DecodeClientMessage(frame []byte) (ClientMessage, error) {
	var m ClientMessage
	frame = bytes.TrimSpace(frame)
	if len(frame) == 0 || frame[0] != '{' {
		return m, fmt.Errorf("%w: not a JSON object", ErrMalformedMessage)
	}
	if err := json.Unmarshal(frame, &m); err != nil {
		var m2 ClientMessage
		return m2, fmt.Errorf("%w: %w", ErrMalformedMessage, err)
	}
	return m, m.Validate()
}

// StatusResponse is the body of a STATUS_RESPONSE event: the service reports
// that a client message sent with a correlationId failed.
type StatusResponse struct {
	CorrelationID string     `json:"correlationId,omitempty"`
	ErrorType     string     `json:"errorType,omitempty"`
	StatusCode    FlexString `json:"statusCode,omitempty"`
	Description   string     `json:"description,omitempty"`
	Success       bool       `json:"success"`
}

// FlexString is a string on the wire that also accepts a JSON number on
// decode (the service sends statusCode as "400"; some clients send 400).
type FlexString string

// UnmarshalJSON accepts a JSON string, number or null.
func (f *FlexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*f = ""
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = FlexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = FlexString(n.String())
	return nil
}

// Int returns the value as an integer, or 0.
func (f FlexString) Int() int {
	n, _ := strconv.Atoi(string(f))
	return n
}

// Event is a frame the service sends to a client. Fields are declared in the
// key order the service uses on the wire.
type Event struct {
	MessagePayload string          `json:"messagePayload,omitempty"`
	MessageType    MessageType     `json:"messageType"`
	SenderClientID string          `json:"senderClientId,omitempty"`
	StatusResponse *StatusResponse `json:"statusResponse,omitempty"`
}

// Encode returns the JSON frame.
func (e *Event) Encode() ([]byte, error) {
	return json.Marshal(e)
}

// FromMaster reports whether the event came from the channel's master: the
// service leaves senderClientId out on those.
func (e *Event) FromMaster() bool { return e.SenderClientID == "" }

// DecodeEvent parses a service frame leniently, as the official clients do:
// keys are matched case-insensitively, unknown fields are ignored and an
// unknown messageType is returned as is (check MessageType.Known). Frames
// that are not events at all (such as an API Gateway notice without a
// messageType) decode with an empty MessageType. Only invalid JSON is an
// error.
func DecodeEvent(frame []byte) (Event, error) {
	var e Event
	frame = bytes.TrimSpace(frame)
	if len(frame) == 0 || frame[0] != '{' {
		return e, fmt.Errorf("%w: not a JSON object", ErrMalformedMessage)
	}
	if err := json.Unmarshal(frame, &e); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrMalformedMessage, err)
	}
	return e, nil
}

// SessionDescription is the payload of SDP_OFFER and SDP_ANSWER: the JSON
// form of a browser RTCSessionDescription.
type SessionDescription struct {
	Type string `json:"type"` // "offer" or "answer"
	SDP  string `json:"sdp"`
}

// ICECandidate is the payload of ICE_CANDIDATE: the JSON form of a browser
// RTCIceCandidateInit.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// EncodePayload returns base64(JSON(v)), the messagePayload encoding.
func EncodePayload(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodePayload decodes a messagePayload (base64 of JSON, padding optional)
// into v.
func DecodePayload(p string, v any) error {
	b, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(p)
		if err != nil {
			return fmt.Errorf("%w: messagePayload is not base64: %v", ErrMalformedMessage, err)
		}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: messagePayload is not JSON: %v", ErrMalformedMessage, err)
	}
	return nil
}
