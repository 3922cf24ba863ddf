package viewer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// Multiviewer (Config.Storage): instead of offering to the master, an
// attempt joins the channel's storage session (WebRTC ingestion) with
// JoinStorageSessionAsViewer and its client id, once its signaling
// connection is open; the storage session then sends it an SDP offer
// without senderClientId (video sendonly H.264, audio sendrecv Opus),
// which the attempt answers without recipientClientId. Everything else is
// the direct session's: recording, sinks, statistics, the retry policy
// (backoff; but an attempt after one that ended joins with that one's
// client id, since the session keeps a left viewer's slot for its id, and
// a fresh id would need a second slot), the answer timeout (here: for
// the offer; the join is repeated every 6 s until it comes, as the JS SDK
// does) and the diagnosis, with the storage path's own causes
// (CauseStorageNotConfigured, CauseStreamMissing, CauseStorageFull,
// CauseNoStorageOffer). The viewer cannot restart ICE on a storage link
// (the session is the offerer): a link that ICE does not recover ends the
// attempt and the next one joins again.

// Causes of the storage path (package cause's).
const (
	CauseStorageNotConfigured = cause.StorageNotConfigured
	CauseStreamMissing        = cause.StreamMissing
	CauseStorageFull          = cause.StorageFull
	CauseNoStorageOffer       = cause.NoStorageOffer
)

// ErrNoStorageOffer: the storage session sent no SDP offer within the
// answer timeout after JoinStorageSessionAsViewer (cause.ErrNoStorageOffer).
var ErrNoStorageOffer = cause.ErrNoStorageOffer

// Timing of the storage join.
const (
	storageRejoinInterval = 6 * time.Second
	storageRejoinJitter   = time.Second
	storageJoinTimeout    = 10 * time.Second
)

// checkStorage validates the Multiviewer settings of a config.
func (c Config) checkStorage() error {
	if !c.Storage {
		return nil
	}
	if len(c.VideoCodecs) > 0 && !slices.ContainsFunc(c.VideoCodecs, func(v string) bool { return strings.EqualFold(v, rtc.CodecH264.String()) }) {
		return fmt.Errorf("%w: Storage: the storage session sends H.264 and VideoCodecs (%s) leaves it out", ErrInvalidConfig, strings.Join(c.VideoCodecs, ", "))
	}
	return nil
}

// endpoints returns the channel's VIEWER endpoints; with Config.Storage
// also its WEBRTC endpoint (a channel without media storage fails here,
// fast and precisely: CauseStorageNotConfigured).
func (s *Session) endpoints(ctx context.Context, arn string) (control.Endpoints, error) {
	if s.cfg.Storage {
		return s.cfg.Control.StorageEndpoints(ctx, arn, kvsproto.RoleViewer)
	}
	return s.cfg.Control.Endpoints(ctx, arn, kvsproto.RoleViewer)
}

// joinStorage joins the storage session with the attempt's client id; a
// failure ends the attempt (classified: storage not configured, stream
// missing, viewer limit, throttled...). Then, until the offer arrives or
// the attempt ends, the join is repeated every 6 s (+ jitter) in the
// background; those repeats only log their errors (the answer timeout
// ends the attempt, and the next attempt's first join tells why).
func (a *attemptRun) joinStorage(ctx context.Context) error {
	s := a.s
	jctx, cancel := context.WithTimeout(ctx, storageJoinTimeout)
	err := s.cfg.Control.JoinStorageSessionAsViewer(jctx, a.ep.WebRTC, a.ch.ARN, a.clientID)
	cancel()
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(a.actx)
	a.stopRejoin = stop
	// On a goroutine the peer owns: the attempt's teardown ends actx,
	// then waits for it in the peer's Close.
	a.peer.Go(func(context.Context) {
		for {
			t := time.NewTimer(storageRejoinInterval + rand.N(storageRejoinJitter))
			select {
			case <-rctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			jctx, cancel := context.WithTimeout(rctx, storageJoinTimeout)
			err := s.cfg.Control.JoinStorageSessionAsViewer(jctx, a.ep.WebRTC, a.ch.ARN, a.clientID)
			cancel()
			if rctx.Err() != nil {
				return
			}
			if err != nil {
				s.log.Warn("joining the storage session again failed", "clientId", a.clientID, "err", err)
				if !control.JoinRetryable(err) {
					return
				}
				continue
			}
			s.log.Info("joined the storage session again: no offer yet", "clientId", a.clientID)
		}
	})
	return nil
}

// runStorage is the storage half of run, once signaling and the peer are
// up: join, then wait for the session's offer in the loop.
func (a *attemptRun) runStorage(ctx context.Context) attemptResult {
	s := a.s
	s.emit(Event{State: StateConnecting, Attempt: a.n, ClientID: a.clientID, Detail: "joining the storage session"})
	if err := a.joinStorage(ctx); err != nil {
		if ctx.Err() != nil {
			return attemptResult{}
		}
		return a.fail("storage", err)
	}
	s.emit(Event{State: StateAwaitingAnswer, Attempt: a.n, ClientID: a.clientID, Detail: fmt.Sprintf("joined the storage session; waiting up to %v for its offer", s.cfg.Retry.AnswerTimeout)})
	return a.loop(ctx)
}

// onStorageOffer answers the storage session's offer (no senderClientId).
func (a *attemptRun) onStorageOffer(ctx context.Context, offer string) *attemptResult {
	s := a.s
	if a.remoteSet {
		// A new session: its DTLS cannot continue this one's.
		return a.end("storage", fmt.Errorf("%w: the storage session sent a new offer", errICEFailed))
	}
	if !a.claim() {
		return nil
	}
	if a.stopRejoin != nil {
		a.stopRejoin()
	}
	if err := a.peer.SetOffer(offer); err != nil {
		if !errors.Is(err, rtc.ErrCandidate) {
			return a.end("answer", fmt.Errorf("%w: the storage session's offer: %w", errBadAnswer, err))
		}
		s.log.Debug("add queued candidate", "err", err)
	}
	answer, err := a.peer.Answer(20 * time.Millisecond)
	if err == nil && !s.cfg.Audio && s.cfg.Talk == nil {
		// The session's audio is not wanted: answer it without receiving
		// (rejecting it would make the session refuse the answer).
		answer, err = rtc.WithoutReceiving(answer, "audio")
	}
	if err != nil {
		return a.end("answer", fmt.Errorf("%w: answering the storage session's offer: %w", errBadAnswer, err))
	}
	if !hasReceivingVideo(answer) {
		return a.end("answer", fmt.Errorf("%w: the storage session's offer has no H.264 video this viewer can receive", errBadAnswer))
	}
	a.offerCorrelation = signaling.NewCorrelationID()
	msg, err := signaling.AnswerMessage(kvsproto.SessionDescription{Type: "answer", SDP: answer}, "", a.offerCorrelation)
	if err == nil {
		err = a.sig.sess.Send(ctx, msg) // queued while no connection is up
	}
	if err != nil {
		return a.end("signaling", err)
	}
	// The offer's audio section tells whether the session takes talk-back
	// (as a master's answer does).
	a.remoteApplied(offer, fingerprint(offer), "storage session offer answered; connecting ICE")
	return nil
}

// hasReceivingVideo reports whether an answer receives video.
func hasReceivingVideo(answer string) bool {
	sum, err := rtc.Summarize(answer)
	if err != nil {
		return false
	}
	for _, m := range sum.Media {
		if m.Kind == "video" && m.Port != 0 && (m.Direction == "recvonly" || m.Direction == "sendrecv") {
			return true
		}
	}
	return false
}

// storageNoOffer is the answer timeout of a storage attempt.
func (a *attemptRun) storageNoOffer() *attemptResult {
	return a.end("storage", fmt.Errorf("%w (%v, client id %s)", ErrNoStorageOffer, a.s.cfg.Retry.AnswerTimeout, a.clientID))
}

// storageRestart ends a storage attempt that needs an ICE restart: the
// viewer cannot offer one to the storage session; the next attempt joins
// again.
func (a *attemptRun) storageRestart(why string) *attemptResult {
	return a.end("ice", fmt.Errorf("%w: %s (a storage session link is re-joined, not restarted)", errICEFailed, why))
}

// offerFromStorage reports whether an event is the storage session's
// offer to this viewer.
func (a *attemptRun) offerFromStorage(ev signaling.Event) bool {
	return a.s.cfg.Storage && ev.Type == kvsproto.MessageSDPOffer && ev.SenderClientID == "" && ev.SDP != nil
}
