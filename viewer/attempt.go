package viewer

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// An attempt is one client id, one signaling.Session (renewed as needed,
// always with that client id) and one rtc.Peer. It is split by job:
//
//   - attempt.go: the attempt's state, its setup (run) and teardown, and
//     what it tells the connect loop (late answers, the answer claim);
//   - attempt_loop.go: the event loop and its timers (answer, media, ICE
//     restart, stall watchdog, duration);
//   - attempt_signaling.go: the signaling session (dial, renewal events,
//     takeover) and the messages of the master;
//   - attempt_media.go: the remote tracks' receivers;
//   - sdpcheck.go: what an offer and an answer must contain.

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

// attemptRun is one attempt. Its fields are owned by the goroutine that
// runs it (run, then loop), but for those marked otherwise.
type attemptRun struct {
	s        *Session
	n        int
	clientID string
	ch       control.Channel
	ep       control.Endpoints

	sig   attemptSignaling // attempt_signaling.go
	peer  *rtc.Peer        // nil until created
	actx  context.Context  // ends with the attempt
	abort context.CancelFunc

	// The receivers (attempt_media.go) report here.
	firstKey chan time.Time
	recvDone chan error

	offerCorrelation  string
	remoteSet         bool   // the answer to the current offer is applied
	remoteFingerprint string // DTLS fingerprint of the first answer
	remoteCands       int    // ICE candidates from the master: in its answer and trickled
	streaming         bool
	streamStart       time.Time   // the attempt's first keyframe
	streamingFlag     atomic.Bool // streaming, for the signaling session's goroutine
	relays            int         // relay candidates gathered in the current phase

	loopState // attempt_loop.go

	// Late answers (RetryPolicy.LateAnswerWindow): notes tells the
	// session's connect loop that this attempt timed out (the next one may
	// start while this one lingers) or got its answer (the other one is
	// torn down). claimed: this attempt won the session's answer claim.
	notes     chan<- attemptNote
	lingering bool
	claimed   bool

	tw attemptTwoWay // talk-back and data channel (twoway.go)

	stopRejoin context.CancelFunc // ends the storage join's repeats (storage.go)
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

// fail is the result of an attempt that ended with err in stage.
func (a *attemptRun) fail(stage string, err error) attemptResult {
	c, fatal := classify(err)
	return attemptResult{err: err, stage: stage, cause: c, fatal: fatal, streamed: a.streaming}
}

// end is fail for the loop's handlers, which return nil to go on.
func (a *attemptRun) end(stage string, err error) *attemptResult {
	r := a.fail(stage, err)
	return &r
}

// stopped is the result of an attempt whose context ended.
func (a *attemptRun) stopped() *attemptResult {
	return &attemptResult{streamed: a.streaming}
}

// setStreaming records that video flows in this attempt.
func (a *attemptRun) setStreaming() {
	a.streaming = true
	a.streamingFlag.Store(true)
}

// run executes the attempt and tears everything down before returning.
func (a *attemptRun) run(ctx context.Context) (res attemptResult) {
	s := a.s
	a.actx, a.abort = context.WithCancel(ctx)
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
	if err := a.openSignaling(); err != nil {
		if ctx.Err() != nil {
			return attemptResult{}
		}
		return a.fail("signaling", err)
	}
	if err := a.newPeer(iceCfg); err != nil {
		return a.fail("webrtc", err)
	}
	if s.cfg.Storage {
		return a.runStorage(ctx)
	}
	if err := a.sendOffer(ctx, false); err != nil {
		return a.fail("signaling", err)
	}
	s.emit(Event{State: StateAwaitingAnswer, Attempt: a.n, ClientID: a.clientID, Detail: fmt.Sprintf("offer sent; waiting up to %v for the answer", s.cfg.Retry.AnswerTimeout)})
	return a.loop(ctx)
}

// newPeer creates the attempt's peer connection: video received, audio
// received when asked (and not sent as talk-back), talk-back and the data
// channel when configured.
func (a *attemptRun) newPeer(iceCfg control.ICEConfig) error {
	s := a.s
	pcCfg := webrtc.Configuration{ICEServers: pionServers(iceCfg)}
	if s.cfg.ForceRelay {
		pcCfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	p, err := rtc.NewPeer(s.api, pcCfg)
	if err != nil {
		return err
	}
	a.peer = p
	recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	if _, err := p.PC.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, recv); err != nil {
		return err
	}
	if s.cfg.Audio && s.cfg.Talk == nil {
		if _, err := p.PC.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recv); err != nil {
			return err
		}
	}
	return a.setupTwoWay()
}

// pionServers converts an ICE configuration for pion.
func pionServers(cfg control.ICEConfig) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(cfg.Servers))
	for _, is := range cfg.Servers {
		out = append(out, webrtc.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return rtc.ICEServers(out)
}

// teardown is the seed's closeConnection done completely: timers (owned by
// loop), signaling, transceivers, peer connection, and every goroutine.
func (a *attemptRun) teardown() {
	a.abort()
	a.teardownTwoWay()
	a.closeSignaling()
	if a.peer != nil {
		for _, tr := range a.peer.PC.GetTransceivers() {
			_ = tr.Stop()
		}
		if err := a.peer.Close(); err != nil {
			a.s.log.Debug("closing the peer connection", "err", err)
		}
	}
}

// noCandidatesHint explains a connection that never came up when the master
// gave no ICE candidate at all.
func (a *attemptRun) noCandidatesHint() string {
	if !a.remoteSet || a.remoteCands > 0 {
		return ""
	}
	return "; the master sent no ICE candidates, neither in its answer nor trickled, so it cannot be reached: check the camera's network and its STUN/TURN configuration"
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
