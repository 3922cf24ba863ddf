package signaling

import (
	"fmt"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Event is one event the service sent, parsed.
type Event struct {
	// Type is SDP_OFFER, SDP_ANSWER, ICE_CANDIDATE, GO_AWAY,
	// RECONNECT_ICE_SERVER or STATUS_RESPONSE.
	Type kvsproto.MessageType
	// SenderClientID is the viewer that sent the message; "" means the
	// master (the service leaves senderClientId out on the master's
	// messages).
	SenderClientID string
	// SDP is set on SDP_OFFER and SDP_ANSWER. An empty type in the payload
	// is filled in from the message type.
	SDP *kvsproto.SessionDescription
	// Candidate is set on ICE_CANDIDATE.
	Candidate *kvsproto.ICECandidate
	// Status is set on STATUS_RESPONSE (never nil there).
	Status *kvsproto.StatusResponse
	// Raw is the frame as received.
	Raw []byte
}

// FromMaster reports whether the event came from the master (or from the
// service itself: GO_AWAY, RECONNECT_ICE_SERVER, STATUS_RESPONSE).
func (e Event) FromMaster() bool { return e.SenderClientID == "" }

// ParseEvent parses a frame from the service leniently, as the official
// clients do. It returns an error wrapping ErrUnknownEvent for frames that
// are no known event (unknown messageType, API Gateway notices without one)
// and kvsproto.ErrMalformedMessage for frames that are not JSON or whose
// SDP or ICE payload cannot be decoded. A STATUS_RESPONSE is always
// returned, whatever its payload.
func ParseEvent(frame []byte) (Event, error) {
	m, err := kvsproto.DecodeEvent(frame)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Type: m.MessageType, SenderClientID: m.SenderClientID, Raw: frame}
	switch m.MessageType {
	case kvsproto.MessageSDPOffer, kvsproto.MessageSDPAnswer:
		var sd kvsproto.SessionDescription
		if err := kvsproto.DecodePayload(m.MessagePayload, &sd); err != nil {
			return Event{}, fmt.Errorf("%s: %w", m.MessageType, err)
		}
		if sd.SDP == "" {
			return Event{}, fmt.Errorf("%w: %s payload has no sdp", kvsproto.ErrMalformedMessage, m.MessageType)
		}
		if sd.Type == "" {
			if m.MessageType == kvsproto.MessageSDPOffer {
				sd.Type = "offer"
			} else {
				sd.Type = "answer"
			}
		}
		ev.SDP = &sd
	case kvsproto.MessageICECandidate:
		var c kvsproto.ICECandidate
		if err := kvsproto.DecodePayload(m.MessagePayload, &c); err != nil {
			return Event{}, fmt.Errorf("%s: %w", m.MessageType, err)
		}
		ev.Candidate = &c
	case kvsproto.MessageStatusResponse:
		ev.Status = m.StatusResponse
		if ev.Status == nil {
			ev.Status = &kvsproto.StatusResponse{}
		}
	case kvsproto.MessageGoAway, kvsproto.MessageReconnectICEServer:
	case "":
		return Event{}, fmt.Errorf("%w: frame without messageType", ErrUnknownEvent)
	default:
		return Event{}, fmt.Errorf("%w: messageType %q", ErrUnknownEvent, m.MessageType)
	}
	return ev, nil
}

// Limits of early-candidate holding, so that a misbehaving peer cannot make
// the client hold memory without bound.
const (
	maxHeldPerSender = 256
	maxHeldSenders   = 1024
)

// candidateHolder holds ICE candidates of a sender until that sender's SDP
// has been delivered, as the JS SDK does.
type candidateHolder struct {
	sdpSeen map[string]bool
	held    map[string][]Event
}

// add returns the events to deliver now, in order, for ev.
func (h *candidateHolder) add(ev Event) (out []Event, dropped bool) {
	if h.sdpSeen == nil {
		h.sdpSeen = make(map[string]bool)
		h.held = make(map[string][]Event)
	}
	switch ev.Type {
	case kvsproto.MessageSDPOffer, kvsproto.MessageSDPAnswer:
		if !h.sdpSeen[ev.SenderClientID] {
			if len(h.sdpSeen) >= maxHeldSenders {
				clear(h.sdpSeen) // forget old senders rather than grow forever
			}
			h.sdpSeen[ev.SenderClientID] = true
		}
		out = append([]Event{ev}, h.held[ev.SenderClientID]...)
		delete(h.held, ev.SenderClientID)
		return out, false
	case kvsproto.MessageICECandidate:
		if h.sdpSeen[ev.SenderClientID] {
			return []Event{ev}, false
		}
		q := h.held[ev.SenderClientID]
		if len(q) >= maxHeldPerSender || (q == nil && len(h.held) >= maxHeldSenders) {
			return nil, true
		}
		h.held[ev.SenderClientID] = append(q, ev)
		return nil, false
	}
	return []Event{ev}, false
}
