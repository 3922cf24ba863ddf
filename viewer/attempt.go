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

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// Errors of one attempt that the retry loop acts on.
var (
	errMediaStalled = errors.New("viewer: media stopped arriving")
	errICEFailed    = errors.New("viewer: ICE connection failed and the ICE restart did not recover it")
	errBadAnswer    = errors.New("viewer: the master's answer cannot be used")
)

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

	sig   *signaling.Client
	pc    *webrtc.PeerConnection
	wg    sync.WaitGroup // receivers
	actx  context.Context
	abort context.CancelFunc

	// pion callbacks forward here.
	candidates chan *webrtc.ICECandidate
	iceStates  chan webrtc.ICEConnectionState
	tracks     chan trackArrival
	firstKey   chan time.Time
	recvDone   chan error

	offerCorrelation string
	remoteSet        bool
	pending          []webrtc.ICECandidateInit
	streaming        bool
}

type trackArrival struct {
	track    *webrtc.TrackRemote
	receiver *webrtc.RTPReceiver
}

func (a *attemptRun) fail(stage string, err error) attemptResult {
	cause, fatal := classify(err)
	switch {
	case errors.Is(err, errMediaStalled):
		cause, fatal = CauseMasterGone, false
	case errors.Is(err, errICEFailed):
		cause, fatal = CauseNetworkChange, false
	case errors.Is(err, errBadAnswer):
		cause, fatal = CauseBadOffer, true
	}
	return attemptResult{err: err, stage: stage, cause: cause, fatal: fatal, streamed: a.streaming}
}

func (a *attemptRun) dial(ctx context.Context) (*signaling.Client, error) {
	ctl := a.s.cfg.Control
	return signaling.Dial(ctx, signaling.Config{
		Endpoint:     a.ep.WSS,
		ChannelARN:   a.ch.ARN,
		Role:         kvsproto.RoleViewer,
		ClientID:     a.clientID,
		Region:       ctl.Region(),
		Credentials:  ctl.SigV4Credentials,
		Now:          ctl.Now,
		PingInterval: a.s.cfg.PingInterval,
		HTTPClient:   a.s.cfg.HTTPClient,
		Logger:       a.s.log,
	})
}

// run executes the attempt and tears everything down before returning.
func (a *attemptRun) run(ctx context.Context) (res attemptResult) {
	s := a.s
	a.actx, a.abort = context.WithCancel(ctx)
	a.candidates = make(chan *webrtc.ICECandidate, 64)
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
	a.sig, err = a.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return attemptResult{}
		}
		return a.fail("signaling", err)
	}

	pcCfg := webrtc.Configuration{}
	for _, is := range iceCfg.Servers {
		pcCfg.ICEServers = append(pcCfg.ICEServers, webrtc.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
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
	if s.cfg.Audio {
		if _, err := a.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recv); err != nil {
			return a.fail("webrtc", err)
		}
	}
	actx := a.actx
	a.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
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
func (a *attemptRun) sendOffer(ctx context.Context, restart bool) error {
	offer, err := a.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		return err
	}
	if err := a.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	a.remoteSet = false
	a.offerCorrelation = signaling.NewCorrelationID()
	return a.sig.SendOffer(ctx, kvsproto.SessionDescription{Type: "offer", SDP: offer.SDP}, "", a.offerCorrelation)
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
	var answerT, mediaT, restartT, discT, durationT timer
	defer func() { answerT.stop(); mediaT.stop(); restartT.stop(); discT.stop(); durationT.stop() }()
	answerT.set(s.cfg.Retry.AnswerTimeout)
	watchdog := time.NewTicker(min(s.cfg.StallTimeout/4, time.Second))
	defer watchdog.Stop()
	restarting := false
	connected := false

	for {
		sigEvents := a.sig.Events()
		select {
		case <-ctx.Done():
			return attemptResult{streamed: a.streaming}

		case <-answerT.c():
			if restarting {
				return a.fail("ice", errICEFailed)
			}
			return a.fail("answer", fmt.Errorf("%w (%v, client id %s)", ErrAnswerTimeout, s.cfg.Retry.AnswerTimeout, a.clientID))

		case <-mediaT.c():
			return a.fail("media", fmt.Errorf("%w (%v after the answer)", ErrNoMedia, s.cfg.Retry.MediaTimeout))

		case <-restartT.c():
			return a.fail("ice", errICEFailed)

		case <-durationT.c():
			return attemptResult{streamed: true}

		case <-discT.c():
			// Disconnected for too long: restart ICE over signaling.
			if !restarting {
				if res, ok := a.iceRestart(ctx, &answerT, &restartT, "ICE disconnected"); !ok {
					return res
				}
				restarting = true
			}

		case <-watchdog.C:
			if a.streaming {
				last := s.video.Snapshot().LastFrame
				if !last.IsZero() && time.Since(last) > s.cfg.StallTimeout {
					return a.fail("media", fmt.Errorf("%w: no video frame for %v", errMediaStalled, time.Since(last).Round(time.Millisecond)))
				}
			}

		case c := <-a.candidates:
			init := c.ToJSON()
			cand := kvsproto.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment}
			if err := a.sig.SendICECandidate(ctx, cand, "", ""); err != nil {
				s.log.Debug("send candidate", "err", err)
			}

		case tr := <-a.tracks:
			a.startReceiver(tr)

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
				if restarting {
					restarting = false
					restartT.stop()
					answerT.stop()
					s.emit(Event{State: StateStreaming, Attempt: a.n, ClientID: a.clientID, Detail: "ICE restart recovered the connection"})
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
					return a.fail("ice", fmt.Errorf("%w: %s", errICEFailed, cause))
				}
				if restarting {
					return a.fail("ice", errICEFailed)
				}
				if res, ok := a.iceRestart(ctx, &answerT, &restartT, "ICE failed"); !ok {
					return res
				}
				restarting = true
			}

		case ev, ok := <-sigEvents:
			if !ok {
				// Signaling ended: renew it, keep the peer connection.
				if res, ok := a.renewSignaling(ctx, CauseSignalingLost, a.sig.Err()); !ok {
					return res
				}
				continue
			}
			if res, done := a.handle(ctx, ev, &answerT, &mediaT); done {
				return res
			}
		}
	}
}

// iceRestart sends an ICE-restart offer over signaling.
func (a *attemptRun) iceRestart(ctx context.Context, answerT, restartT *timer, why string) (attemptResult, bool) {
	s := a.s
	s.emit(Event{State: StateReconnecting, Attempt: a.n, ClientID: a.clientID, Cause: CauseNetworkChange, Detail: why + ": restarting ICE"})
	if err := a.sendOffer(ctx, true); err != nil {
		return a.fail("ice", fmt.Errorf("%w: %w", errICEFailed, err)), false
	}
	answerT.set(s.cfg.Retry.AnswerTimeout)
	restartT.set(s.cfg.ICERestartTimeout)
	return attemptResult{}, true
}

// renewSignaling replaces the signaling connection, keeping the peer
// connection and its media.
func (a *attemptRun) renewSignaling(ctx context.Context, cause Cause, why error) (attemptResult, bool) {
	s := a.s
	if ctx.Err() != nil {
		return attemptResult{streamed: a.streaming}, false
	}
	detail := "renewing the signaling connection"
	if why != nil {
		detail += ": " + why.Error()
	}
	s.emit(Event{State: StateReconnecting, Attempt: a.n, ClientID: a.clientID, Cause: cause, Detail: detail})
	old := a.sig
	var lastErr error
	for i := 1; i <= 3; i++ {
		sig, err := a.dial(ctx)
		if err == nil {
			_ = old.Close()
			a.sig = sig
			st := StateAwaitingAnswer
			if a.streaming {
				st = StateStreaming
			} else if a.remoteSet {
				st = StateConnected
			}
			s.emit(Event{State: st, Attempt: a.n, ClientID: a.clientID, Detail: "signaling renewed"})
			return attemptResult{}, true
		}
		lastErr = err
		if ctx.Err() != nil {
			return attemptResult{streamed: a.streaming}, false
		}
		if _, fatal := classify(err); fatal {
			break
		}
		t := time.NewTimer(s.cfg.Retry.Backoff(i, s.cfg.rand))
		select {
		case <-ctx.Done():
			t.Stop()
			return attemptResult{streamed: a.streaming}, false
		case <-t.C:
		}
	}
	_ = old.Close()
	a.sig = old // closed; teardown closes it again harmlessly
	return a.fail("signaling", lastErr), false
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
		if err := checkAnswer(ev.SDP.SDP); err != nil {
			return a.fail("answer", err), true
		}
		if err := a.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ev.SDP.SDP}); err != nil {
			return a.fail("answer", fmt.Errorf("%w: %w", errBadAnswer, err)), true
		}
		a.remoteSet = true
		for _, c := range a.pending {
			if err := a.pc.AddICECandidate(c); err != nil {
				s.log.Debug("add queued candidate", "err", err)
			}
		}
		a.pending = nil
		answerT.stop()
		if !a.streaming {
			mediaT.set(s.cfg.Retry.MediaTimeout)
			s.emit(Event{State: StateConnected, Attempt: a.n, ClientID: a.clientID, Detail: "answer received; connecting ICE"})
		}

	case kvsproto.MessageICECandidate:
		if ev.Candidate == nil {
			return attemptResult{}, false
		}
		init := webrtc.ICECandidateInit{Candidate: ev.Candidate.Candidate, SDPMid: ev.Candidate.SDPMid, SDPMLineIndex: ev.Candidate.SDPMLineIndex, UsernameFragment: ev.Candidate.UsernameFragment}
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
		if st.CorrelationID != "" && st.CorrelationID == a.offerCorrelation {
			err := &StatusError{Code: st.StatusCode.Int(), Type: st.ErrorType, Description: st.Description}
			if st.ErrorType == kvsproto.ErrCodeClientLimitExceeded {
				return attemptResult{err: err, stage: "signaling", cause: CauseThrottled, streamed: a.streaming}, true
			}
			return attemptResult{err: err, stage: "signaling", cause: CauseBadOffer, fatal: true, streamed: a.streaming}, true
		}

	case kvsproto.MessageGoAway:
		if res, ok := a.renewSignaling(ctx, CauseGoAway, errors.New("GO_AWAY from the service")); !ok {
			return res, true
		}

	case kvsproto.MessageReconnectICEServer:
		// The relay is going away: future connects must fetch fresh ICE
		// servers. A connected peer keeps its current path.
		s.ice.Invalidate(a.ch.ARN)
		s.log.Info("RECONNECT_ICE_SERVER: ICE servers will be refreshed")
	}
	return attemptResult{}, false
}

// StatusError is a STATUS_RESPONSE the service sent for the viewer's offer.
type StatusError struct {
	Code        int
	Type        string
	Description string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("service rejected the offer: %s (%d) %s", e.Type, e.Code, e.Description)
}

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
		// Drain RTCP so interceptors run.
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for {
				if _, _, err := tr.receiver.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
}

// teardown is the seed's closeConnection done completely: timers (owned by
// loop), signaling, transceivers, peer connection, and every goroutine.
func (a *attemptRun) teardown() {
	a.abort()
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
