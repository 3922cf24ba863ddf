package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator/internal/hub"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Signaling HTTPS API (kinesis-video-signaling 2019-12-04).
// https://docs.aws.amazon.com/kinesisvideostreams/latest/dg/API_signaling_GetIceServerConfig.html

func checkIDField(member, v string) *apiError {
	// Same pattern and length as a client id: 1-256 of [a-zA-Z0-9_.-].
	if err := kvsproto.ValidateCorrelationID(v); err != nil {
		return errInvalidArgument(validationMsg(member, v, "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 256"))
	}
	return nil
}

func (s *Server) opGetIceServerConfig(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.GetIceServerConfigInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.ClientID != "" {
		if e := checkIDField("clientId", in.ClientID); e != nil {
			return nil, e
		}
	}
	if in.Username != "" {
		if e := checkIDField("username", in.Username); e != nil {
			return nil, e
		}
	}
	if in.Service != "" && in.Service != "TURN" {
		return nil, errInvalidArgument(validationMsg("service", in.Service, "Member must satisfy enum value set: [TURN]"))
	}
	c, e := s.resolveARN("channelARN", in.ChannelARN)
	if e != nil {
		return nil, e
	}
	out := kvsproto.GetIceServerConfigOutput{IceServerList: []kvsproto.IceServer{}}
	if s.turn != nil {
		user, pass := s.turn.credentials(s.cfg.ICETTL)
		out.IceServerList = append(out.IceServerList, kvsproto.IceServer{
			Uris: s.turn.uris(), Username: user, Password: pass, Ttl: int(s.cfg.ICETTL / time.Second),
		})
		s.log.Debug("TURN credentials issued", "channel", c.Name, "client_id", in.ClientID, "username", user, "ttl", s.cfg.ICETTL)
	}
	return out, nil
}

// errAlexaSuperseded is returned when a newer SendAlexaOfferToMaster with the
// same SenderClientId displaced the waiting one.
var errAlexaSuperseded = errors.New("superseded")

// opSendAlexaOffer delivers the offer to the master as a viewer named
// SenderClientId (through the hub, so it is buffered while the master is
// offline) and waits for the master's SDP_ANSWER to that id. Without an
// answer within the channel's MessageTtlSeconds it fails with 404
// ResourceNotFoundException (kvs-protocol.md §9.12; see docs/EMULATOR.md).
func (s *Server) opSendAlexaOffer(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.SendAlexaOfferToMasterInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.SenderClientID == "" {
		return nil, missing("senderClientId")
	}
	if err := kvsproto.ValidateClientID(in.SenderClientID); err != nil {
		return nil, invalidFrom("senderClientId", err)
	}
	if in.MessagePayload == "" {
		return nil, missing("messagePayload")
	}
	if err := kvsproto.ValidatePayload(in.MessagePayload); err != nil {
		return nil, invalidFrom("messagePayload", err)
	}
	c, e := s.resolveARN("channelARN", in.ChannelARN)
	if e != nil {
		return nil, e
	}
	vc := &alexaConn{answer: make(chan string, 1), closed: make(chan struct{})}
	m, err := s.hub.Join(hub.JoinRequest{
		ChannelARN: c.ARN,
		MessageTTL: c.messageTTL(),
		Role:       kvsproto.RoleViewer,
		ClientID:   in.SenderClientID,
		RemoteAddr: r.RemoteAddr + " (SendAlexaOfferToMaster)",
		Conn:       vc,
	})
	if err != nil {
		return nil, joinError(err)
	}
	defer m.Leave()
	frame, _ := json.Marshal(kvsproto.ClientMessage{Action: kvsproto.ActionSDPOffer, MessagePayload: in.MessagePayload})
	m.Handle(frame)
	t := time.NewTimer(c.messageTTL())
	defer t.Stop()
	select {
	case a := <-vc.answer:
		return kvsproto.SendAlexaOfferToMasterOutput{Answer: a}, nil
	case <-vc.closed:
		if errors.Is(vc.reason(), errAlexaSuperseded) {
			return nil, errInvalidArgument("A newer offer from the same SenderClientId replaced this one.")
		}
		return nil, errNotFound("The signaling channel was deleted or the service is shutting down.")
	case <-t.C:
		return nil, errNotFound(fmt.Sprintf("The master did not answer within the channel's MessageTtlSeconds (%d s).", c.TTLSeconds))
	case <-r.Context().Done():
		return nil, errClientLimit("The request was cancelled.")
	}
}

// alexaConn is the hub connection of a SendAlexaOfferToMaster call: it
// keeps the first SDP_ANSWER and ignores everything else.
type alexaConn struct {
	answer chan string
	once   sync.Once
	closed chan struct{}
	mu     sync.Mutex
	why    error
}

func (a *alexaConn) Send(frame []byte) error {
	ev, err := kvsproto.DecodeEvent(frame)
	if err == nil && ev.MessageType == kvsproto.MessageSDPAnswer {
		select {
		case a.answer <- ev.MessagePayload:
		default:
		}
	}
	return nil
}

func (a *alexaConn) Close(code int, reason string, abrupt bool) {
	a.once.Do(func() {
		a.mu.Lock()
		if code == hub.CloseCodeReplaced {
			a.why = errAlexaSuperseded
		}
		a.mu.Unlock()
		close(a.closed)
	})
}

func (a *alexaConn) reason() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.why
}

// joinError maps a hub.Join error to the HTTP error of a connect.
func joinError(err error) *apiError {
	switch {
	case errors.Is(err, hub.ErrThrottled):
		return errClientLimit("Too many connection attempts on this channel; the limit is 3 per second.")
	case errors.Is(err, hub.ErrTooManyViewers):
		return errClientLimit("The channel already has the maximum number of viewers connected.")
	case errors.Is(err, hub.ErrChannelGone):
		return errNotFound(channelNotFoundMsg)
	case errors.Is(err, kvsproto.ErrInvalid):
		return errInvalidArgument(err.Error())
	case errors.Is(err, hub.ErrHubClosed):
		return &apiError{http.StatusServiceUnavailable, "ServiceUnavailableException", "The service is shutting down."}
	}
	return &apiError{http.StatusInternalServerError, "InternalFailure", err.Error()}
}
