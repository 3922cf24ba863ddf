package viewer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// Errors of one attempt that the retry loop acts on: package cause's, so
// that its one classification knows them.
var (
	errMediaStalled = cause.ErrMediaStalled
	errICEFailed    = cause.ErrICEFailed
	errBadAnswer    = cause.ErrBadAnswer
	errBadOffer     = cause.ErrBadOffer
	errNoRelay      = cause.ErrNoRelay
)

// isTakenOver reports whether a signaling connection ended because a newer
// connection with the same client id took over (cause.TakenOver).
func isTakenOver(err error) bool { return cause.TakenOver(err) }

// isSkewRefusal reports whether the service refused a presigned URL
// because of the signing time (cause.SkewRefusal).
func isSkewRefusal(err error) bool { return cause.SkewRefusal(err) }

// attemptResult is how one attempt ended.
type attemptResult struct {
	err      error // nil: the session is done (context ended or Duration streamed)
	stage    string
	cause    Cause
	fatal    bool
	streamed bool // a keyframe arrived in this attempt
}

// attemptRun is one attempt: one client id, one signaling connection (renewed
// as needed), one peer connection.
type attemptRun struct {
	s        *Session
	n        int
	clientID string
	ch       control.Channel
	ep       control.Endpoints

	sig      *signaling.Client
	sigEv    <-chan signaling.Event // sig's events; nil once they ended
	sigSince time.Time              // when sig was dialed
	renewing bool                   // a replacement is being dialed
	renewed  chan renewal           // the dialer's result
	renewN   int                    // failed renewals in a row
	pc       *webrtc.PeerConnection
	wg       sync.WaitGroup // receivers, dialers, closers
	actx     context.Context
	abort    context.CancelFunc

	// pion callbacks forward here.
	candidates chan *webrtc.ICECandidate
	gathered   chan struct{} // a gathering phase completed
	pcClosed   chan struct{} // the peer connection closed (the master ended the DTLS session)
	iceStates  chan webrtc.ICEConnectionState
	tracks     chan trackArrival
	firstKey   chan time.Time
	recvDone   chan error

	offerCorrelation  string
	remoteSet         bool
	remoteFingerprint string // DTLS fingerprint of the first answer
	pending           []webrtc.ICECandidateInit
	streaming         bool
	relays            int  // relay candidates gathered in the current phase
	restartWanted     bool // an ICE restart waits for signaling

	// The stall watchdog's ICE restart: for the stall that began after
	// stallFrame, started (then completed) at stallRestartAt.
	stallFrame     time.Time
	stallRestartAt time.Time

	// Late answers (RetryPolicy.LateAnswerWindow): notes tells the
	// session's connect loop that this attempt timed out (the next one may
	// start while this one lingers) or got its answer (the other one is
	// torn down). claimed: this attempt won the session's answer claim.
	notes     chan<- attemptNote
	lingering bool
	claimed   bool

	remoteCands int // ICE candidates from the master: in its answer and trickled

	tw attemptTwoWay // talk-back and data channel (twoway.go)
}

// noCandidatesHint explains a connection that never came up when the master
// gave no ICE candidate at all.
func (a *attemptRun) noCandidatesHint() string {
	if !a.remoteSet || a.remoteCands > 0 {
		return ""
	}
	return "; the master sent no ICE candidates, neither in its answer nor trickled, so it cannot be reached: check the camera's network and its STUN/TURN configuration"
}

// noteKind is what an attempt tells the connect loop while it runs.
type noteKind int

const (
	noteTimedOut noteKind = iota + 1 // no answer within AnswerTimeout; still listening
	noteAnswered                     // this attempt took an answer
)

type attemptNote struct {
	a    *attemptRun
	kind noteKind
}

// note tells the connect loop something (never blocks past the attempt's
// end).
func (a *attemptRun) note(k noteKind) {
	if a.notes == nil {
		return
	}
	select {
	case a.notes <- attemptNote{a: a, kind: k}:
	case <-a.actx.Done():
	}
}

// claim reports whether this attempt may take an SDP answer: the first
// attempt of the session's open ones to get one wins, and the connect loop
// then tears the other one down.
func (a *attemptRun) claim() bool {
	if a.claimed {
		return true
	}
	s := a.s
	s.mu.Lock()
	ok := s.winner == nil
	if ok {
		s.winner = a
	}
	s.mu.Unlock()
	if ok {
		a.claimed = true
		a.note(noteAnswered)
	}
	return ok
}

// renewal is the result of dialing a replacement signaling connection.
type renewal struct {
	c   *signaling.Client
	err error
}

type trackArrival struct {
	track    *webrtc.TrackRemote
	receiver *webrtc.RTPReceiver
}

func (a *attemptRun) fail(stage string, err error) attemptResult {
	c, fatal := classify(err)
	return attemptResult{err: err, stage: stage, cause: c, fatal: fatal, streamed: a.streaming}
}

// dial opens a signaling connection. A refusal for the signing time
// (clock skew) is retried once after the clock offset has been measured
// again with a control-plane call.
func (a *attemptRun) dial(ctx context.Context) (*signaling.Client, error) {
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
	if err != nil && isSkewRefusal(err) {
		err = fmt.Errorf("%w: %w", control.ErrClockSkew, err)
	}
	return c, err
}

// adopt makes c the attempt's signaling connection.
func (a *attemptRun) adopt(c *signaling.Client) {
	a.sig, a.sigEv, a.sigSince = c, c.Events(), time.Now()
}

// closeLater closes a replaced signaling connection without blocking the
// loop (Close waits for the service's close frame).
func (a *attemptRun) closeLater(c *signaling.Client) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		_ = c.Close()
	}()
}

// run executes the attempt and tears everything down before returning.
func (a *attemptRun) run(ctx context.Context) (res attemptResult) {
	s := a.s
	a.actx, a.abort = context.WithCancel(ctx)
	a.candidates = make(chan *webrtc.ICECandidate, 64)
	a.gathered = make(chan struct{}, 4)
	a.pcClosed = make(chan struct{}, 1)
	a.renewed = make(chan renewal)
	a.iceStates = make(chan webrtc.ICEConnectionState, 16)
	a.tracks = make(chan trackArrival, 4)
	a.firstKey = make(chan time.Time, 1)
	a.recvDone = make(chan error, 4)
	defer a.teardown()

	s.emit(Event{State: StateConnecting, Attempt: a.n, ClientID: a.clientID, Detail: "getting ICE servers"})
	iceCfg, err := s.ice.Get(ctx, a.ch.ARN, kvsproto.RoleViewer, a.ep.HTTPS, a.clientID)
	if err != nil {
		if ctx.Err() != nil {
			return attemptResult{}
		}
		return a.fail("control", err)
	}
	s.emit(Event{State: StateConnecting, Attempt: a.n, ClientID: a.clientID, Detail: "opening signaling"})
	sig, err := a.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return attemptResult{}
		}
		return a.fail("signaling", err)
	}
	a.adopt(sig)

	pcCfg := webrtc.Configuration{ICEServers: pionServers(iceCfg)}
	if s.cfg.ForceRelay {
		pcCfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	a.pc, err = s.api.NewPeerConnection(pcCfg)
	if err != nil {
		return a.fail("webrtc", err)
	}
	recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	if _, err := a.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, recv); err != nil {
		return a.fail("webrtc", err)
	}
	if s.cfg.Audio && s.cfg.Talk == nil {
		if _, err := a.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recv); err != nil {
			return a.fail("webrtc", err)
		}
	}
	if err := a.setupTwoWay(); err != nil {
		return a.fail("webrtc", err)
	}
	actx := a.actx
	a.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			select {
			case a.gathered <- struct{}{}:
			default:
			}
			return
		}
		select {
		case a.candidates <- c:
		case <-actx.Done():
		}
	})
	a.pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		select {
		case a.iceStates <- st:
		case <-actx.Done():
		}
	})
	a.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateClosed {
			select {
			case a.pcClosed <- struct{}{}:
			default:
			}
		}
	})
	a.pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		select {
		case a.tracks <- trackArrival{t, r}:
		case <-actx.Done():
		}
	})

	if err := a.sendOffer(ctx, false); err != nil {
		return a.fail("signaling", err)
	}
	s.emit(Event{State: StateAwaitingAnswer, Attempt: a.n, ClientID: a.clientID, Detail: fmt.Sprintf("offer sent; waiting up to %v for the answer", s.cfg.Retry.AnswerTimeout)})
	return a.loop(ctx)
}

// sendOffer creates and sends an offer (an ICE restart offer when restart).
// An offer the master could not use is never sent: it fails with
// errBadOffer.
func (a *attemptRun) sendOffer(ctx context.Context, restart bool) error {
	offer, err := a.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		return err
	}
	if err := checkOffer(offer.SDP); err != nil {
		return err
	}
	if err := a.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	// Announce trickle ICE in what is sent (pion refuses a modified local
	// description; the attribute only informs the master): without it the
	// C SDK (most cameras) treats the offer as non-trickle and answers only
	// when its own candidate gathering ends, 10 s later.
	sent, err := rtc.WithTrickle(offer.SDP)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadOffer, err)
	}
	a.remoteSet = false
	a.relays = 0
	a.offerCorrelation = signaling.NewCorrelationID()
	err = a.sig.SendOffer(ctx, kvsproto.SessionDescription{Type: "offer", SDP: sent}, "", a.offerCorrelation)
	if errors.Is(err, kvsproto.ErrInvalid) {
		return fmt.Errorf("%w: %w", errBadOffer, err)
	}
	return err
}

// checkOffer makes sure an offer asks for video: a video section the
// viewer receives on, with at least one codec.
func checkOffer(sdp string) error {
	for line := range strings.SplitSeq(sdp, "\n") {
		line = strings.TrimSpace(line)
		if f := strings.Fields(line); len(f) > 3 && f[0] == "m=video" && f[1] != "0" {
			return nil
		}
	}
	return fmt.Errorf("%w: the offer has no video section with a codec", errBadOffer)
}

// fingerprint returns the first a=fingerprint value of an SDP ("" if none).
func fingerprint(sdp string) string {
	for line := range strings.SplitSeq(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=fingerprint:"); ok {
			return strings.ToLower(strings.TrimSpace(v))
		}
	}
	return ""
}

// timer is a stoppable optional timer.
type timer struct{ t *time.Timer }

func (t *timer) set(d time.Duration) {
	t.stop()
	t.t = time.NewTimer(d)
}

func (t *timer) stop() {
	if t.t != nil {
		t.t.Stop()
		t.t = nil
	}
}

func (t *timer) c() <-chan time.Time {
	if t.t == nil {
		return nil
	}
	return t.t.C
}

func (a *attemptRun) loop(ctx context.Context) attemptResult {
	s := a.s
	var answerT, mediaT, restartT, discT, durationT, renewT, retryT timer
	defer func() {
		answerT.stop()
		mediaT.stop()
		restartT.stop()
		discT.stop()
		durationT.stop()
		renewT.stop()
		retryT.stop()
	}()
	answerT.set(s.cfg.Retry.AnswerTimeout)
	if s.cfg.SignalingRenewAfter > 0 {
		renewT.set(s.cfg.SignalingRenewAfter)
	}
	watchdog := time.NewTicker(min(s.cfg.StallTimeout/4, time.Second))
	defer watchdog.Stop()
	restarting := false
	connected := false

	// restart starts an ICE restart, or defers it until signaling is back.
	restart := func(why string) (attemptResult, bool) {
		if restarting {
			return attemptResult{}, true
		}
		restarting = true
		restartT.set(s.cfg.ICERestartTimeout)
		if a.sigEv == nil {
			a.restartWanted = true
			s.emit(Event{State: StateReconnecting, Attempt: a.n, ClientID: a.clientID, Cause: CauseNetworkChange, Detail: why + ": restarting ICE once signaling is back"})
			return attemptResult{}, true
		}
		return a.iceRestart(ctx, &answerT, why)
	}

	for {
		select {
		case <-ctx.Done():
			return attemptResult{streamed: a.streaming}

		case <-answerT.c():
			if restarting {
				return a.fail("ice", fmt.Errorf("%w: no answer to the ICE restart offer within %v", errICEFailed, s.cfg.Retry.AnswerTimeout))
			}
			if extra, ok := s.cfg.Retry.Lingers(); ok && !a.lingering && !a.remoteSet && a.notes != nil {
				// Lost, or late: the next attempt starts now, and this one
				// keeps listening until the late-answer window ends.
				a.lingering = true
				answerT.set(extra)
				a.note(noteTimedOut)
				continue
			}
			waited := s.cfg.Retry.AnswerTimeout
			if a.lingering {
				waited = s.cfg.Retry.LateAnswerWindow
			}
			return a.fail("answer", fmt.Errorf("%w (%v, client id %s%s)", ErrAnswerTimeout, waited, a.clientID, codecHint(s.cfg.VideoCodecs)))

		case <-mediaT.c():
			return a.fail("media", fmt.Errorf("%w (%v after the answer%s)", ErrNoMedia, s.cfg.Retry.MediaTimeout, a.noCandidatesHint()))

		case <-restartT.c():
			return a.fail("ice", fmt.Errorf("%w: not reconnected within %v", errICEFailed, s.cfg.ICERestartTimeout))

		case <-durationT.c():
			return attemptResult{streamed: true}

		case <-a.pcClosed:
			// pion closes the peer connection when the master ends the
			// DTLS session (it closed its side: it stopped, or replaced
			// this viewer's peer).
			return a.fail("media", fmt.Errorf("%w: the master closed the peer connection", errMediaStalled))

		case <-discT.c():
			// Disconnected for too long: restart ICE over signaling.
			if res, ok := restart("ICE disconnected"); !ok {
				return res
			}

		case <-renewT.c():
			s.log.Info("renewing the signaling connection ahead of the service's 1-hour limit", "age", time.Since(a.sigSince).Round(time.Second))
			a.startRenew()

		case <-retryT.c():
			a.startRenew()

		case <-watchdog.C:
			if !a.streaming {
				continue
			}
			last := s.video.Snapshot().LastFrame
			if last.IsZero() || time.Since(last) <= s.cfg.StallTimeout {
				continue
			}
			// No video although the peer connection may look connected.
			// A dead network path is noticed by ICE only seconds later,
			// so first restart ICE (cheap, keeps the session); if video
			// does not come back within StallTimeout after that, the
			// master stopped sending: reconnect from scratch.
			switch {
			case restarting:
				// restartT bounds it.
			case a.stallRestartAt.IsZero() || a.stallFrame != last:
				a.stallFrame, a.stallRestartAt = last, time.Now()
				if res, ok := restart(fmt.Sprintf("no video for %v", time.Since(last).Round(time.Millisecond))); !ok {
					return res
				}
			case time.Since(a.stallRestartAt) > s.cfg.StallTimeout:
				return a.fail("media", fmt.Errorf("%w: no video frame for %v, also after an ICE restart", errMediaStalled, time.Since(last).Round(time.Millisecond)))
			}

		case c := <-a.candidates:
			a.sendCandidate(ctx, c)

		case <-a.gathered:
			// Candidates forwarded before the end of gathering may still
			// wait in their channel.
			for drained := false; !drained; {
				select {
				case c := <-a.candidates:
					a.sendCandidate(ctx, c)
				default:
					drained = true
				}
			}
			if s.cfg.ForceRelay && a.relays == 0 {
				return a.fail("ice", fmt.Errorf("%w: relay only, and the TURN server gave no allocation (refused credentials, or unreachable)", errNoRelay))
			}

		case tr := <-a.tracks:
			a.startReceiver(tr)

		case n := <-a.tw.notes:
			a.onTwoWayNote(n)

		case t := <-a.firstKey:
			if !a.streaming {
				a.streaming = true
				mediaT.stop()
				ttff := t.Sub(s.start)
				s.emit(Event{State: StateStreaming, Attempt: a.n, ClientID: a.clientID, TimeToFirstFrame: ttff, Detail: fmt.Sprintf("first keyframe after %v", ttff.Round(time.Millisecond))})
				if s.cfg.Duration > 0 {
					durationT.set(s.cfg.Duration)
				}
			}

		case err := <-a.recvDone:
			if err != nil && ctx.Err() == nil {
				s.log.Warn("receiver ended", "err", err)
			}

		case st := <-a.iceStates:
			s.log.Debug("ice state", "state", st.String())
			switch st {
			case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
				discT.stop()
				if restarting && a.remoteSet {
					restarting = false
					restartT.stop()
					answerT.stop()
					if !a.stallRestartAt.IsZero() {
						a.stallRestartAt = time.Now() // video has StallTimeout from now to resume
					}
					s.emit(Event{State: a.liveState(), Attempt: a.n, ClientID: a.clientID, Detail: "ICE restart recovered the connection"})
				} else if !connected {
					connected = true
					if !a.streaming {
						s.emit(Event{State: StateConnected, Attempt: a.n, ClientID: a.clientID, Detail: "ICE connected; waiting for the first frame"})
					}
				}
			case webrtc.ICEConnectionStateDisconnected:
				if connected && !restarting {
					discT.set(s.cfg.DisconnectedGrace)
				}
			case webrtc.ICEConnectionStateFailed:
				discT.stop()
				if !connected && !a.streaming {
					cause := "ICE failed before connecting"
					if s.cfg.ForceRelay {
						return a.fail("ice", fmt.Errorf("%w: %s (relay only: are the TURN credentials valid?)", errICEFailed, cause))
					}
					return a.fail("ice", fmt.Errorf("%w: %s%s", errICEFailed, cause, a.noCandidatesHint()))
				}
				if res, ok := restart("ICE failed"); !ok {
					return res
				}
			}

		case r := <-a.renewed:
			a.renewing = false
			if r.err != nil {
				if res, ok := a.renewFailed(ctx, r.err, &retryT); !ok {
					return res
				}
				continue
			}
			old := a.sig
			a.adopt(r.c)
			a.closeLater(old)
			a.renewN = 0
			retryT.stop()
			if s.cfg.SignalingRenewAfter > 0 {
				renewT.set(s.cfg.SignalingRenewAfter)
			}
			s.emit(Event{State: a.liveState(), Attempt: a.n, ClientID: a.clientID, Detail: "signaling renewed"})
			if a.restartWanted {
				a.restartWanted = false
				if res, ok := a.iceRestart(ctx, &answerT, "ICE restart after the signaling renewal"); !ok {
					return res
				}
			}

		case ev, ok := <-a.sigEv:
			if !ok {
				a.sigEv = nil
				err := a.sig.Err()
				if a.renewing {
					// Usually the service closing it for the connection we
					// are dialing (the newest one wins).
					s.log.Debug("signaling ended during a renewal", "err", err)
					continue
				}
				if isTakenOver(err) {
					return a.fail("signaling", fmt.Errorf("%w (client id %s): %w", ErrClientIDTakenOver, a.clientID, err))
				}
				s.emit(Event{State: a.renewState(), Attempt: a.n, ClientID: a.clientID, Cause: CauseSignalingLost, Detail: "renewing the signaling connection: " + errString(err)})
				a.startRenew()
				continue
			}
			if res, done := a.handle(ctx, ev, &answerT, &mediaT); done {
				return res
			}
		}
	}
}

// sendCandidate counts a local candidate and trickles it to the master.
func (a *attemptRun) sendCandidate(ctx context.Context, c *webrtc.ICECandidate) {
	if c.Typ == webrtc.ICECandidateTypeRelay {
		a.relays++
	}
	if a.sigEv == nil {
		return // signaling is being renewed; an ICE restart gathers again
	}
	init := c.ToJSON()
	cand := kvsproto.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment}
	if err := a.sig.SendICECandidate(ctx, cand, "", ""); err != nil {
		a.s.log.Debug("send candidate", "err", err)
	}
}

// renewState is the state to report while the signaling connection is
// renewed: media that flows keeps flowing, so the session still streams.
func (a *attemptRun) renewState() State {
	if a.streaming {
		return StateStreaming
	}
	return StateReconnecting
}

// liveState is the state to report once a recovery finished.
func (a *attemptRun) liveState() State {
	switch {
	case a.streaming:
		return StateStreaming
	case a.remoteSet:
		return StateConnected
	}
	return StateAwaitingAnswer
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// codecHint explains, for an answer timeout, that a restricted codec list
// may be the reason: a master that cannot send any offered codec does not
// answer at all.
func codecHint(codecs []string) string {
	if len(codecs) == 0 {
		return ""
	}
	return fmt.Sprintf("; the offer listed only %s: a master that cannot send that does not answer", strings.Join(codecs, ", "))
}

// startRenew dials a replacement signaling connection in the background;
// the current one (if still open) stays in use until it is ready.
func (a *attemptRun) startRenew() {
	if a.renewing {
		return
	}
	a.renewing = true
	actx := a.actx
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		c, err := a.dial(actx)
		select {
		case a.renewed <- renewal{c: c, err: err}:
		case <-actx.Done():
			if c != nil {
				_ = c.Close()
			}
		}
	}()
}

// renewFailed handles a failed signaling renewal. What retrying cannot fix
// (the channel was deleted, the credentials were revoked) ends the attempt.
// Otherwise, while media flows, the media is left alone and the renewal is
// retried with backoff; before that, three failures end the attempt.
func (a *attemptRun) renewFailed(ctx context.Context, err error, retryT *timer) (attemptResult, bool) {
	s := a.s
	if ctx.Err() != nil {
		return attemptResult{streamed: a.streaming}, false
	}
	a.renewN++
	cause, fatal := classify(err)
	if fatal || (!a.streaming && a.renewN >= 3) {
		return a.fail("signaling", err), false
	}
	wait := s.cfg.Retry.Backoff(a.renewN, s.cfg.rand)
	if cause == CauseThrottled {
		wait = max(wait, s.cfg.Retry.Throttled(a.renewN, s.cfg.rand))
	}
	s.log.Warn("renewing the signaling connection failed; retrying", "attempt", a.renewN, "retry_in", wait.Round(time.Millisecond), "err", err)
	if a.sigEv != nil {
		// The old connection still works (GO_AWAY grace): keep it.
		retryT.set(wait)
		return attemptResult{}, true
	}
	s.emit(Event{State: a.renewState(), Attempt: a.n, ClientID: a.clientID, Cause: cause, Detail: fmt.Sprintf("renewing the signaling connection failed (%v); again in %v", err, wait.Round(time.Millisecond))})
	retryT.set(wait)
	return attemptResult{}, true
}

// iceRestart sends an ICE-restart offer over signaling, with freshly
// fetched ICE servers: the TURN credentials the session started with may
// have expired, or been revoked (RECONNECT_ICE_SERVER), since.
func (a *attemptRun) iceRestart(ctx context.Context, answerT *timer, why string) (attemptResult, bool) {
	s := a.s
	s.emit(Event{State: StateReconnecting, Attempt: a.n, ClientID: a.clientID, Cause: CauseNetworkChange, Detail: why + ": restarting ICE"})
	s.ice.Invalidate(a.ch.ARN)
	if ice, err := s.ice.Get(ctx, a.ch.ARN, kvsproto.RoleViewer, a.ep.HTTPS, a.clientID); err == nil {
		cfg := a.pc.GetConfiguration()
		cfg.ICEServers = pionServers(ice)
		if err := a.pc.SetConfiguration(cfg); err != nil {
			s.log.Warn("cannot update the ICE servers for the restart", "err", err)
		}
	} else if ctx.Err() == nil {
		s.log.Warn("cannot refresh the ICE servers for the restart; using the current ones", "err", err)
	}
	if err := a.sendOffer(ctx, true); err != nil {
		return a.fail("ice", fmt.Errorf("%w: %w", errICEFailed, err)), false
	}
	answerT.set(s.cfg.Retry.AnswerTimeout)
	return attemptResult{}, true
}

// pionServers converts an ICE configuration for pion.
func pionServers(cfg control.ICEConfig) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(cfg.Servers))
	for _, is := range cfg.Servers {
		out = append(out, webrtc.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return rtc.ICEServers(out)
}

// handle processes one signaling event. done reports that the attempt ends.
func (a *attemptRun) handle(ctx context.Context, ev signaling.Event, answerT, mediaT *timer) (attemptResult, bool) {
	s := a.s
	switch ev.Type {
	case kvsproto.MessageSDPAnswer:
		if ev.SDP == nil {
			return attemptResult{}, false
		}
		if a.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
			s.log.Debug("ignoring an answer without an outstanding offer")
			return attemptResult{}, false
		}
		if !a.claim() {
			s.log.Debug("ignoring an answer: another attempt got one first", "clientId", a.clientID)
			return attemptResult{}, false
		}
		if err := checkAnswer(ev.SDP.SDP); err != nil {
			return a.fail("answer", err), true
		}
		fp := fingerprint(ev.SDP.SDP)
		if a.remoteFingerprint != "" && fp != a.remoteFingerprint {
			// The master answered the restart with a new peer connection:
			// the DTLS session cannot carry over, so start afresh.
			return a.fail("ice", fmt.Errorf("%w: the master answered the ICE restart with a new session", errICEFailed)), true
		}
		a.beforeAnswer(ev.SDP.SDP)
		if err := a.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ev.SDP.SDP}); err != nil {
			return a.fail("answer", fmt.Errorf("%w: %w", errBadAnswer, err)), true
		}
		a.remoteFingerprint = fp
		a.remoteSet = true
		if sum, err := rtc.Summarize(ev.SDP.SDP); err == nil {
			a.remoteCands += sum.Candidates
		}
		for _, c := range a.pending {
			if err := a.pc.AddICECandidate(c); err != nil {
				s.log.Debug("add queued candidate", "err", err)
			}
		}
		a.pending = nil
		answerT.stop()
		if !a.streaming && mediaT.t == nil {
			mediaT.set(s.cfg.Retry.MediaTimeout)
			s.emit(Event{State: StateConnected, Attempt: a.n, ClientID: a.clientID, Detail: "answer received; connecting ICE"})
		}
		a.checkTwoWayAnswer(ev.SDP.SDP)

	case kvsproto.MessageICECandidate:
		if ev.Candidate == nil {
			return attemptResult{}, false
		}
		init := webrtc.ICECandidateInit{Candidate: ev.Candidate.Candidate, SDPMid: ev.Candidate.SDPMid, SDPMLineIndex: ev.Candidate.SDPMLineIndex, UsernameFragment: ev.Candidate.UsernameFragment}
		a.remoteCands++
		if !a.remoteSet {
			a.pending = append(a.pending, init)
			return attemptResult{}, false
		}
		if err := a.pc.AddICECandidate(init); err != nil {
			s.log.Debug("add candidate", "err", err)
		}

	case kvsproto.MessageStatusResponse:
		st := ev.Status
		s.log.Warn("status response", "correlationId", st.CorrelationID, "errorType", st.ErrorType, "statusCode", string(st.StatusCode), "description", st.Description)
		if st.CorrelationID != "" && st.CorrelationID == a.offerCorrelation && !st.Success {
			return a.fail("signaling", &StatusError{Code: st.StatusCode.Int(), Type: st.ErrorType, Description: st.Description}), true
		}

	case kvsproto.MessageGoAway:
		s.emit(Event{State: a.renewState(), Attempt: a.n, ClientID: a.clientID, Cause: CauseGoAway, Detail: "GO_AWAY from the service: renewing the signaling connection"})
		a.startRenew()

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
	return attemptResult{}, false
}

// StatusError is a STATUS_RESPONSE the service sent for the viewer's offer
// (cause.StatusError, which Classify knows).
type StatusError = cause.StatusError

// checkAnswer rejects an answer in which the master declined the video.
func checkAnswer(sdp string) error {
	for line := range strings.SplitSeq(sdp, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "m=video ") {
			f := strings.Fields(line)
			if len(f) > 1 && f[1] == "0" {
				return fmt.Errorf("%w: the master declined the video (no common codec; it may not support the offered codecs)", errBadAnswer)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: the answer has no video section", errBadAnswer)
}

// startReceiver starts a goroutine reading one remote track.
func (a *attemptRun) startReceiver(tr trackArrival) {
	s := a.s
	kind := tr.track.Kind()
	sinks := make([]media.Sink, 0, len(s.cfg.Sinks)+1)
	if kind == webrtc.RTPCodecTypeVideo {
		sinks = append(sinks, s.video)
	} else {
		sinks = append(sinks, s.audio)
	}
	sinks = append(sinks, s.cfg.Sinks...)
	pc := a.pc
	ssrc := uint32(tr.track.SSRC())
	cfg := media.ReceiverConfig{Logger: s.log, Sinks: sinks}
	if kind == webrtc.RTPCodecTypeVideo {
		cfg.RequestKeyframe = func() {
			_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		}
	}
	r, err := media.NewReceiver(tr.track, cfg)
	if err != nil {
		s.log.Warn("cannot receive track", "kind", kind.String(), "codec", tr.track.Codec().MimeType, "err", err)
		return
	}
	s.log.Info("track", "kind", kind.String(), "codec", tr.track.Codec().MimeType)
	actx := a.actx
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		err := r.Run(actx)
		select {
		case a.recvDone <- err:
		default:
		}
	}()
	if kind == webrtc.RTPCodecTypeVideo {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			select {
			case <-r.FirstKeyframe():
				select {
				case a.firstKey <- time.Now():
				default:
				}
			case <-actx.Done():
			}
		}()
	}
	// Read RTCP so interceptors run, and hand the sender reports to the
	// receiver: recordings align audio with video by them.
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			pkts, _, err := tr.receiver.ReadRTCP()
			if err != nil {
				return
			}
			r.HandleRTCP(pkts)
		}
	}()
}

// teardown is the seed's closeConnection done completely: timers (owned by
// loop), signaling, transceivers, peer connection, and every goroutine.
func (a *attemptRun) teardown() {
	a.abort()
	a.teardownTwoWay()
	if a.sig != nil {
		_ = a.sig.Close()
	}
	if a.pc != nil {
		for _, tr := range a.pc.GetTransceivers() {
			_ = tr.Stop()
		}
		_ = a.pc.Close()
	}
	a.wg.Wait()
}
