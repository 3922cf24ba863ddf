package master

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// This file handles what the service relays from viewers: their offers
// (admitted by the policy in admission.go), ICE restarts and candidates,
// and the service's status responses.

// earlyQueue holds ICE candidates from a viewer whose offer has not come.
type earlyQueue struct {
	first time.Time
	cands []webrtc.ICECandidateInit
}

// onSignal handles one message of the service, from the current
// connection or (draining) from one being read after a renewal.
func (r *run) onSignal(ctx context.Context, ev signaling.Event, draining bool) {
	if r.onStorageSignal(ctx, ev) {
		return
	}
	switch ev.Type {
	case kvsproto.MessageSDPOffer:
		r.onOffer(ctx, ev)
	case kvsproto.MessageICECandidate:
		r.onRemoteCandidate(ev)
	case kvsproto.MessageGoAway:
		// The session renews (onSession logs it).
	case kvsproto.MessageReconnectICEServer:
		r.log.Info("RECONNECT_ICE_SERVER from the service; new viewers will get fresh ICE servers")
		r.ice.Invalidate(r.arn)
		select {
		case r.iceKick <- struct{}{}:
		default:
		}
		r.emit(Event{Kind: EventICERefreshed})
	case kvsproto.MessageStatusResponse:
		r.onStatus(ev)
	default:
		r.log.Debug("ignoring a signaling event", "type", ev.Type, "sender", ev.SenderClientID)
	}
}

func (r *run) onStatus(ev signaling.Event) {
	st := ev.Status
	if st == nil || st.Success {
		return
	}
	se := &StatusError{CorrelationID: st.CorrelationID, Code: st.StatusCode.Int(), Type: st.ErrorType, Description: st.Description}
	if st.CorrelationID != "" {
		for _, p := range r.peers.m {
			if p.corr == st.CorrelationID {
				se.ClientID = p.id
			}
		}
	}
	r.log.Warn("the service rejected a message", "correlation_id", se.CorrelationID, "viewer", se.ClientID,
		"error_type", se.Type, "status", se.Code, "description", se.Description)
	r.emit(Event{Kind: EventStatus, ClientID: se.ClientID, Err: se})
}

// onOffer answers a viewer's offer with a new peer, or restarts ICE on its
// current one; admission decides who gets a slot.
func (r *run) onOffer(ctx context.Context, ev signaling.Event) {
	id := ev.SenderClientID
	if id == "" || ev.SDP == nil {
		r.log.Warn("ignoring an SDP offer without senderClientId or SDP")
		return
	}
	sum, sumErr := summarizeOffer(ev.SDP.SDP, r.codec)
	if old := r.peers.get(id); old != nil {
		if r.admission.restarts(old.fingerprint, old.ufrag, sum, sumErr) && r.restartPeer(ctx, old, ev.SDP, sum) {
			return
		}
		r.log.Info("new offer from a connected viewer; replacing its peer", "viewer", id)
		r.removePeer(old, ErrReplaced)
	}
	fail := func(err error) {
		delete(r.early, id)
		r.emit(Event{Kind: EventViewerFailed, ClientID: id, Err: err})
	}
	if !r.admit(id) {
		n := r.peers.count()
		r.log.Warn("too many viewers; not answering the offer", "viewer", id, "max_viewers", r.cfg.MaxViewers)
		fail(fmt.Errorf("%w: %d of %d connected", ErrTooManyViewers, n, r.cfg.MaxViewers))
		return
	}
	if sumErr != nil {
		ne := &NegotiationError{ClientID: id, Want: r.codec.String(), Detail: "unparsable SDP: " + sumErr.Error(), Err: ErrBadOffer}
		r.log.Error("cannot answer the viewer's offer", "viewer", id, "err", ne)
		fail(ne)
		return
	}
	if ne := sum.negotiationError(id, r.codec); ne != nil {
		r.log.Error("cannot answer the viewer's offer", "viewer", id, "want", ne.Want, "offered", ne.Offered, "err", ne)
		fail(ne)
		return
	}
	p, answer, err := r.newPeer(ctx, id, ev.SDP, sum.audio && r.audio != nil)
	if err != nil {
		ne := &NegotiationError{ClientID: id, Want: r.codec.String(), Offered: sum.video, Err: fmt.Errorf("%w: %w", ErrBadOffer, err)}
		r.log.Error("cannot answer the viewer's offer", "viewer", id, "err", ne)
		fail(ne)
		return
	}
	p.ufrag, p.fingerprint = sum.ufrag, sum.fingerprint
	r.peers.put(p)
	p.corr = signaling.NewCorrelationID()
	r.send(ctx, outMsg{action: kvsproto.ActionSDPAnswer, sd: &kvsproto.SessionDescription{Type: "answer", SDP: answer}, to: id, corr: p.corr})
	r.flushEarly(p)
	r.log.Debug("answered a viewer's offer", "viewer", id, "correlation_id", p.corr, "audio", p.audio != nil)
	r.emit(Event{Kind: EventViewerAnswered, ClientID: id})
}

// admit carries out admission's decision for an offer from a new viewer:
// it drops the viewer the policy names, if any, and reports whether the
// offer gets a slot.
func (r *run) admit(id string) bool {
	now := time.Now()
	grace := r.restartGrace()
	seats := make([]seat, 0, r.peers.count())
	for _, p := range r.peers.m {
		pc := p.conn.PC
		seats = append(seats, seat{
			id: p.id, joined: p.joined, since: p.since, down: p.downSince(now, grace),
			silent: func() time.Duration { return silence(pc) },
		})
	}
	ev, refuse := r.admission.admit(seats)
	if ev != nil {
		switch ev.rule {
		case evictNeverConnected:
			r.log.Info("viewer limit reached; dropping a viewer that never connected", "dropped", ev.id, "viewer", id)
		case evictDown:
			r.log.Info("viewer limit reached; dropping a viewer whose connection is down", "dropped", ev.id, "viewer", id,
				"down_for", now.Sub(ev.down).Round(time.Millisecond))
		case evictSilent:
			r.log.Info("viewer limit reached; dropping a viewer nothing has arrived from", "dropped", ev.id, "viewer", id,
				"silent_for", ev.silentFor.Round(time.Millisecond))
		}
		r.removePeer(r.peers.get(ev.id), ev.why)
	}
	return !refuse
}

// flushEarly adds the candidates the viewer sent before its offer.
func (r *run) flushEarly(p *peer) {
	if q := r.early[p.id]; q != nil {
		delete(r.early, p.id)
		for _, c := range q.cands {
			r.addRemoteCandidate(p, c)
		}
	}
}

// restartPeer applies an ICE-restart offer to a viewer's existing peer
// connection and answers it, so that the DTLS session and the media
// survive the viewer's change of network. It reports false if the offer
// could not be applied (the caller then replaces the peer).
func (r *run) restartPeer(ctx context.Context, p *peer, offer *kvsproto.SessionDescription, sum offerSummary) bool {
	if p.conn.PC.SignalingState() != webrtc.SignalingStateStable {
		return false
	}
	if err := p.conn.SetOffer(offer.SDP); err != nil {
		r.log.Warn("cannot apply the viewer's ICE restart; replacing its peer", "viewer", p.id, "err", err)
		return false
	}
	answer, err := p.conn.Answer(0) // announces trickle; see newPeer
	if err == nil {
		answer, err = r.receiveOnly(answer)
	}
	if err != nil {
		r.log.Warn("cannot answer the viewer's ICE restart; replacing its peer", "viewer", p.id, "err", err)
		return false
	}
	p.ufrag = sum.ufrag
	p.restartedAt = time.Now()
	p.corr = signaling.NewCorrelationID()
	r.send(ctx, outMsg{action: kvsproto.ActionSDPAnswer, sd: &kvsproto.SessionDescription{Type: "answer", SDP: answer}, to: p.id, corr: p.corr})
	r.flushEarly(p)
	r.log.Info("viewer restarted ICE; answered on its existing peer connection", "viewer", p.id)
	r.emit(Event{Kind: EventViewerRestarted, ClientID: p.id})
	return true
}

// onRemoteCandidate applies a viewer's ICE candidate, or queues it until
// the viewer's offer arrives.
func (r *run) onRemoteCandidate(ev signaling.Event) {
	id := ev.SenderClientID
	if id == "" || ev.Candidate == nil {
		return
	}
	c := webrtc.ICECandidateInit{
		Candidate: ev.Candidate.Candidate, SDPMid: ev.Candidate.SDPMid,
		SDPMLineIndex: ev.Candidate.SDPMLineIndex, UsernameFragment: ev.Candidate.UsernameFragment,
	}
	p := r.peers.get(id)
	// A candidate naming another ICE username fragment belongs to a newer
	// offer from the same viewer that has not arrived yet: hold it.
	newer := p != nil && c.UsernameFragment != nil && *c.UsernameFragment != "" && p.ufrag != "" && *c.UsernameFragment != p.ufrag
	if p != nil && !newer {
		r.addRemoteCandidate(p, c)
		return
	}
	q := r.early[id]
	if q == nil {
		if len(r.early) >= maxEarlyPeers {
			r.log.Debug("too many viewers with early ICE candidates; dropping one", "viewer", id)
			return
		}
		q = &earlyQueue{first: time.Now()}
		r.early[id] = q
	}
	if len(q.cands) >= maxEarlyPerPeer {
		r.log.Debug("too many early ICE candidates; dropping one", "viewer", id)
		return
	}
	q.cands = append(q.cands, c)
}

func (r *run) addRemoteCandidate(p *peer, c webrtc.ICECandidateInit) {
	if err := p.conn.AddCandidate(c); err != nil {
		r.log.Debug("ignoring a viewer's ICE candidate", "viewer", p.id, "candidate", c.Candidate, "err", err)
	}
}

func toKVS(c webrtc.ICECandidateInit) *kvsproto.ICECandidate {
	return &kvsproto.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
}
