package signaling

import (
	"fmt"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// OfferMessage builds an SDP_OFFER message. recipient is "" for viewers and
// the viewer's client id for the master; correlationID is optional (see
// NewCorrelationID): with one, the service reports a failure as a
// STATUS_RESPONSE event. Send it with Client.Send or Session.Send.
func OfferMessage(sd kvsproto.SessionDescription, recipient, correlationID string) (kvsproto.ClientMessage, error) {
	if sd.Type == "" {
		sd.Type = "offer"
	}
	return payloadMessage(kvsproto.ActionSDPOffer, sd, recipient, correlationID)
}

// AnswerMessage builds an SDP_ANSWER message; see OfferMessage for the
// arguments.
func AnswerMessage(sd kvsproto.SessionDescription, recipient, correlationID string) (kvsproto.ClientMessage, error) {
	if sd.Type == "" {
		sd.Type = "answer"
	}
	return payloadMessage(kvsproto.ActionSDPAnswer, sd, recipient, correlationID)
}

// CandidateMessage builds an ICE_CANDIDATE message; see OfferMessage for
// the arguments.
func CandidateMessage(cand kvsproto.ICECandidate, recipient, correlationID string) (kvsproto.ClientMessage, error) {
	return payloadMessage(kvsproto.ActionICECandidate, cand, recipient, correlationID)
}

func payloadMessage(action kvsproto.Action, v any, recipient, correlationID string) (kvsproto.ClientMessage, error) {
	p, err := kvsproto.EncodePayload(v)
	if err != nil {
		return kvsproto.ClientMessage{}, fmt.Errorf("signaling: send %s: %w", action, err)
	}
	return kvsproto.ClientMessage{Action: action, MessagePayload: p, RecipientClientID: recipient, CorrelationID: correlationID}, nil
}
