package viewer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// An attempt's signaling is a signaling.Session with the attempt's client
// id: it renews the connection at Config.SignalingRenewAfter, on GO_AWAY
// and when the connection ends (idle timeout, connection cap, a keepalive
// that goes unanswered), keeps the old connection until the new one is up
// and reads it for a grace period after, and queues what is sent while no
// connection is up. The attempt keeps the policy:
//   - the first connection is not retried: a failed dial ends the attempt
//     (the connect loop decides what comes next);
//   - a renewal that retrying cannot fix (the channel was deleted, the
//     credentials were revoked) ends the attempt; so do three failed
//     renewals in a row before media flows. While media flows, renewals
//     are retried with the retry policy's backoff and the media is left
//     alone;
//   - a newer connection with the same client id taking over ends the
//     attempt (cause client-id-reuse): the next one takes a fresh id
//     instead of taking this one back.

// attemptSignaling is an attempt's signaling session.
type attemptSignaling struct {
	sess   *signaling.Session
	events <-chan signaling.SessionEvent // nil once the session has ended
	done   chan error                    // the session's Run result
	stop   context.CancelFunc            // ends the session

	// Written by the session's dials, read by the attempt's goroutine.
	cur    atomic.Pointer[signaling.Client] // the latest connection
	dialed atomic.Bool                      // a connection was ever up

	// Owned by the session's goroutine (GiveUp, then Backoff).
	lastErr error
}

// up reports whether the current signaling connection is open (not after
// it ended, until a renewal replaced it).
func (g *attemptSignaling) up() bool {
	c := g.cur.Load()
	return c != nil && c.Err() == nil
}

// dial opens a signaling connection. A refusal for the signing time
// (clock skew) is retried once after the clock offset has been measured
// again with a control-plane call.
func (a *attemptRun) dial(ctx context.Context) (signaling.Conn, error) {
	ctl := a.s.cfg.Control
	cfg := signaling.Config{
		Endpoint:     a.ep.WSS,
		ChannelARN:   a.ch.ARN,
		Role:         kvsproto.RoleViewer,
		ClientID:     a.clientID,
		Region:       ctl.Region(),
		Credentials:  ctl.SigV4Credentials,
		Now:          ctl.Now,
		PingInterval: a.s.cfg.PingInterval,
		PongTimeout:  a.s.cfg.PongTimeout,
		HTTPClient:   a.s.cfg.HTTPClient,
		Logger:       a.s.log,
	}
	c, err := signaling.Dial(ctx, cfg)
	if err != nil && isSkewRefusal(err) && ctx.Err() == nil {
		before := ctl.ClockOffset()
		// Any answer of the control plane carries the service's time.
		_, _ = ctl.Endpoints(ctx, a.ch.ARN, kvsproto.RoleViewer)
		a.s.log.Warn("signaling refused the signing time; measured the clock offset again", "before", before, "now", ctl.ClockOffset())
		c, err = signaling.Dial(ctx, cfg)
	}
	if err != nil {
		if isSkewRefusal(err) {
			err = fmt.Errorf("%w: %w", control.ErrClockSkew, err)
		}
		return nil, err
	}
	a.sig.cur.Store(c)
	a.sig.dialed.Store(true)
	return c, nil
}

// giveUp is the session's GiveUp: see the rules at the top of this file.
func (a *attemptRun) giveUp(err error, failed int) bool {
	a.sig.lastErr = err
	if !a.sig.dialed.Load() {
		return true
	}
	_, fatal := classify(err)
	return fatal || (!a.streamingFlag.Load() && failed >= 3)
}

// renewBackoff is the session's Backoff: the retry policy's, longer after
// throttling.
func (a *attemptRun) renewBackoff(n int) time.Duration {
	s := a.s
	wait := s.cfg.Retry.Backoff(n, s.cfg.rand)
	if c, _ := classify(a.sig.lastErr); c == CauseThrottled {
		wait = max(wait, s.cfg.Retry.Throttled(n, s.cfg.rand))
	}
	return wait
}

// openSignaling starts the signaling session and waits for its first
// connection; it returns the dial's error when there is none.
func (a *attemptRun) openSignaling() error {
	s := a.s
	sess, err := signaling.NewSession(signaling.SessionConfig{
		Dialer:     signaling.DialerFunc(a.dial),
		RenewAfter: s.cfg.SignalingRenewAfter,
		Backoff:    a.renewBackoff,
		GiveUp:     a.giveUp,
		Logger:     s.log,
	})
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(a.actx)
	g := &a.sig
	g.sess, g.events, g.done, g.stop = sess, sess.Events(), make(chan error, 1), stop
	go func() { g.done <- sess.Run(ctx) }()
	for ev := range g.events {
		if ev.Kind == signaling.SessionConnected {
			return nil
		}
	}
	g.events = nil
	if err := a.sessionErr(); err != nil {
		return err
	}
	return signaling.ErrSessionClosed
}

// sessionErr returns the session's Run result once it has ended (and
// keeps it for closeSignaling).
func (a *attemptRun) sessionErr() error {
	err := <-a.sig.done
	a.sig.done <- err
	if err == nil && a.actx.Err() == nil {
		err = signaling.ErrSessionClosed
	}
	return err
}

// closeSignaling ends the session and waits until its connections are
// closed.
func (a *attemptRun) closeSignaling() {
	g := &a.sig
	if g.sess == nil {
		return
	}
	g.stop()
	if err := <-g.done; err != nil {
		a.s.log.Debug("signaling session ended", "clientId", a.clientID, "err", err)
	}
}

// onSession handles an event of the signaling session; a non-nil result
// ends the attempt.
func (a *attemptRun) onSession(ctx context.Context, ev signaling.SessionEvent) *attemptResult {
	s := a.s
	switch ev.Kind {
	case signaling.SessionMessage:
		if ev.Event.Type == kvsproto.MessageGoAway {
			if !ev.Draining { // the session renews the connection
				s.emit(Event{State: a.renewState(), Attempt: a.n, ClientID: a.clientID, Cause: CauseGoAway, Detail: "GO_AWAY from the service: renewing the signaling connection"})
			}
			return nil
		}
		return a.handle(ctx, ev.Event)

	case signaling.SessionRenewing:
		if ev.Why == signaling.RenewClosed {
			s.emit(Event{State: a.renewState(), Attempt: a.n, ClientID: a.clientID, Cause: CauseSignalingLost, Detail: "renewing the signaling connection: " + errString(ev.Err)})
		}

	case signaling.SessionRenewed:
		s.emit(Event{State: a.liveState(), Attempt: a.n, ClientID: a.clientID, Detail: "signaling renewed"})
		if a.restartWanted {
			a.restartWanted = false
			return a.iceRestart(ctx, "ICE restart after the signaling renewal")
		}

	case signaling.SessionRenewFailed:
		if ev.RetryIn == 0 || a.sig.up() {
			// Given up (the session's end follows with the error), or the
			// old connection still works (GO_AWAY grace): keep it.
			return nil
		}
		c, _ := classify(ev.Err)
		s.emit(Event{State: a.renewState(), Attempt: a.n, ClientID: a.clientID, Cause: c, Detail: fmt.Sprintf("renewing the signaling connection failed (%v); again in %v", ev.Err, ev.RetryIn.Round(time.Millisecond))})

	case signaling.SessionTakenOver:
		return a.end("signaling", fmt.Errorf("%w (client id %s): %w", ErrClientIDTakenOver, a.clientID, ev.Err))

	case signaling.SessionOutboxDropped:
		if m := ev.Message; m != nil {
			s.log.Debug("a message waited too long for signaling; dropped", "action", m.Action)
		}
	}
	return nil
}

// onSessionEnd handles the end of the signaling session: the context
// ended, or a renewal failed for good.
func (a *attemptRun) onSessionEnd(ctx context.Context) *attemptResult {
	a.sig.events = nil
	err := a.sessionErr()
	if ctx.Err() != nil {
		return a.stopped()
	}
	if errors.Is(err, signaling.ErrTakenOver) {
		err = fmt.Errorf("%w (client id %s): %w", ErrClientIDTakenOver, a.clientID, err)
	}
	return a.end("signaling", err)
}

// sendOffer creates and sends an offer (an ICE restart offer when restart).
// An offer the master could not use is never sent: it fails with
// errBadOffer. What is sent announces trickle ICE: without it the C SDK
// (most cameras) treats the offer as non-trickle and answers only when its
// own candidate gathering ends, 10 s later.
func (a *attemptRun) sendOffer(ctx context.Context, restart bool) error {
	sent, err := a.peer.Offer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		return err
	}
	if err := checkOffer(sent); err != nil {
		return err
	}
	a.remoteSet = false
	a.relays = 0
	a.offerCorrelation = signaling.NewCorrelationID()
	msg, err := signaling.OfferMessage(kvsproto.SessionDescription{Type: "offer", SDP: sent}, "", a.offerCorrelation)
	if err == nil {
		err = a.sig.sess.Send(ctx, msg) // queued while no connection is up
	}
	if errors.Is(err, kvsproto.ErrInvalid) {
		return fmt.Errorf("%w: %w", errBadOffer, err)
	}
	return err
}

// sendCandidate counts a local candidate and trickles it to the master.
func (a *attemptRun) sendCandidate(ctx context.Context, c *webrtc.ICECandidate) {
	if c.Typ == webrtc.ICECandidateTypeRelay {
		a.relays++
	}
	init := c.ToJSON()
	cand := kvsproto.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment}
	msg, err := signaling.CandidateMessage(cand, "", "")
	if err == nil {
		err = a.sig.sess.Send(ctx, msg) // queued while no connection is up
	}
	if err != nil {
		a.s.log.Debug("send candidate", "err", err)
	}
}

// StatusError is a STATUS_RESPONSE the service sent for the viewer's offer
// (cause.StatusError, which Classify knows).
type StatusError = cause.StatusError

// handle processes one message of the master or the service; a non-nil
// result ends the attempt.
func (a *attemptRun) handle(ctx context.Context, ev signaling.Event) *attemptResult {
	s := a.s
	if a.offerFromStorage(ev) {
		return a.onStorageOffer(ctx, ev.SDP.SDP)
	}
	switch ev.Type {
	case kvsproto.MessageSDPAnswer:
		if ev.SDP != nil {
			return a.onAnswer(ev.SDP.SDP)
		}

	case kvsproto.MessageICECandidate:
		if ev.Candidate == nil {
			return nil
		}
		a.remoteCands++
		init := webrtc.ICECandidateInit{Candidate: ev.Candidate.Candidate, SDPMid: ev.Candidate.SDPMid, SDPMLineIndex: ev.Candidate.SDPMLineIndex, UsernameFragment: ev.Candidate.UsernameFragment}
		if err := a.peer.AddCandidate(init); err != nil {
			s.log.Debug("add candidate", "err", err)
		}

	case kvsproto.MessageStatusResponse:
		st := ev.Status
		s.log.Warn("status response", "correlationId", st.CorrelationID, "errorType", st.ErrorType, "statusCode", string(st.StatusCode), "description", st.Description)
		if st.CorrelationID != "" && st.CorrelationID == a.offerCorrelation && !st.Success {
			return a.end("signaling", &StatusError{Code: st.StatusCode.Int(), Type: st.ErrorType, Description: st.Description})
		}

	case kvsproto.MessageReconnectICEServer:
		// The relay is going away: fetch fresh ICE servers now, so that an
		// ICE restart (when the relay path ends) and future connects use
		// them. A connected peer keeps its current path meanwhile.
		s.ice.Invalidate(a.ch.ARN)
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.ice.Get(gctx, a.ch.ARN, kvsproto.RoleViewer, a.ep.HTTPS, a.clientID)
		cancel()
		s.log.Info("RECONNECT_ICE_SERVER: ICE servers refreshed", "err", err)
	}
	return nil
}

// onAnswer applies the master's answer to the outstanding offer (the
// first attempt to get one wins the session's claim).
func (a *attemptRun) onAnswer(answer string) *attemptResult {
	s := a.s
	if a.peer.PC.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		s.log.Debug("ignoring an answer without an outstanding offer")
		return nil
	}
	if !a.claim() {
		s.log.Debug("ignoring an answer: another attempt got one first", "clientId", a.clientID)
		return nil
	}
	if err := checkAnswer(answer); err != nil {
		return a.end("answer", err)
	}
	fp := fingerprint(answer)
	if a.remoteFingerprint != "" && fp != a.remoteFingerprint {
		// The master answered the restart with a new peer connection:
		// the DTLS session cannot carry over, so start afresh.
		return a.end("ice", fmt.Errorf("%w: the master answered the ICE restart with a new session", errICEFailed))
	}
	a.beforeAnswer(answer)
	if err := a.peer.SetAnswer(answer); err != nil {
		if !errors.Is(err, rtc.ErrCandidate) {
			return a.end("answer", fmt.Errorf("%w: %w", errBadAnswer, err))
		}
		s.log.Debug("add queued candidate", "err", err)
	}
	a.remoteApplied(answer, fp, "answer received; connecting ICE")
	return nil
}

// remoteApplied records a remote description that was applied (the
// master's answer, or the storage session's offer): its fingerprint and
// candidates, the end of the answer timeout and the start of the media
// timeout, and whether the remote side takes talk-back and data.
func (a *attemptRun) remoteApplied(sdp, fingerprint, detail string) {
	s := a.s
	a.remoteFingerprint = fingerprint
	a.remoteSet = true
	if sum, err := rtc.Summarize(sdp); err == nil {
		a.remoteCands += sum.Candidates
	}
	a.timers.answer.stop()
	if !a.streaming && a.timers.media.t == nil {
		a.timers.media.set(s.cfg.Retry.MediaTimeout)
		s.emit(Event{State: StateConnected, Attempt: a.n, ClientID: a.clientID, Detail: detail})
	}
	a.checkTwoWayAnswer(sdp)
}
