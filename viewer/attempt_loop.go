package viewer

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

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

// attemptTimers are the deadlines of an attempt's loop.
type attemptTimers struct {
	answer   timer // the answer to the current offer (or the late-answer window)
	media    timer // the first frame after the answer
	restart  timer // an ICE restart's recovery
	disc     timer // ICE disconnected for too long: restart ICE
	duration timer // Config.Duration of streaming
}

func (t *attemptTimers) stopAll() {
	for _, x := range []*timer{&t.answer, &t.media, &t.restart, &t.disc, &t.duration} {
		x.stop()
	}
}

// loopState is what the loop keeps besides the attempt's negotiation.
type loopState struct {
	timers        attemptTimers
	connected     bool // ICE connected once
	restarting    bool // an ICE restart is under way
	restartWanted bool // an ICE restart waits for signaling to be back

	// The stall watchdog's ICE restart: for the stall that began after
	// stallFrame, started (then completed) at stallRestartAt.
	stallFrame     time.Time
	stallRestartAt time.Time
}

// loop runs the attempt once its offer is sent, until it ends.
func (a *attemptRun) loop(ctx context.Context) attemptResult {
	s := a.s
	t := &a.timers
	defer t.stopAll()
	t.answer.set(s.cfg.Retry.AnswerTimeout)
	watchdog := time.NewTicker(min(s.cfg.StallTimeout/4, time.Second))
	defer watchdog.Stop()
	p := a.peer

	for {
		var r *attemptResult
		select {
		case <-ctx.Done():
			r = a.stopped()
		case <-t.answer.c():
			r = a.onAnswerTimeout()
		case <-t.media.c():
			r = a.end("media", fmt.Errorf("%w (%v after the answer%s)", ErrNoMedia, s.cfg.Retry.MediaTimeout, a.noCandidatesHint()))
		case <-t.restart.c():
			r = a.end("ice", fmt.Errorf("%w: not reconnected within %v", errICEFailed, s.cfg.ICERestartTimeout))
		case <-t.duration.c():
			r = &attemptResult{streamed: true}
		case <-t.disc.c():
			// Disconnected for too long: restart ICE over signaling.
			r = a.restart(ctx, "ICE disconnected")
		case <-watchdog.C:
			r = a.onWatchdog(ctx)

		case st := <-p.States():
			if st == webrtc.PeerConnectionStateClosed {
				// pion closes the peer connection when the master ends the
				// DTLS session (it closed its side: it stopped, or replaced
				// this viewer's peer).
				who := "the master"
				if a.s.cfg.Storage {
					who = "the storage session (its time limit, a re-join, or the session ended)"
				}
				r = a.end("media", fmt.Errorf("%w: %s closed the peer connection", errMediaStalled, who))
			}
		case st := <-p.ICEStates():
			r = a.onICEState(ctx, st)
		case c := <-p.Candidates():
			a.sendCandidate(ctx, c)
		case <-p.Gathered():
			r = a.onGathered(ctx)
		case tr := <-p.Tracks():
			a.startReceiver(tr)
		case n := <-a.tw.notes:
			a.onTwoWayNote(n)
		case at := <-a.firstKey:
			a.onFirstKeyframe(at)
		case err := <-a.recvDone:
			if err != nil && ctx.Err() == nil {
				s.log.Warn("receiver ended", "err", err)
			}

		case ev, ok := <-a.sig.events:
			if !ok {
				r = a.onSessionEnd(ctx)
			} else {
				r = a.onSession(ctx, ev)
			}
		}
		if r != nil {
			return *r
		}
	}
}

// onAnswerTimeout: no answer to the current offer in time.
func (a *attemptRun) onAnswerTimeout() *attemptResult {
	s := a.s
	if a.restarting {
		return a.end("ice", fmt.Errorf("%w: no answer to the ICE restart offer within %v", errICEFailed, s.cfg.Retry.AnswerTimeout))
	}
	if s.cfg.Storage {
		return a.storageNoOffer()
	}
	if extra, ok := s.cfg.Retry.Lingers(); ok && !a.lingering && !a.remoteSet && a.notes != nil {
		// Lost, or late: the next attempt starts now, and this one keeps
		// listening until the late-answer window ends.
		a.lingering = true
		a.timers.answer.set(extra)
		a.note(noteTimedOut)
		return nil
	}
	waited := s.cfg.Retry.AnswerTimeout
	if a.lingering {
		waited = s.cfg.Retry.LateAnswerWindow
	}
	return a.end("answer", fmt.Errorf("%w (%v, client id %s%s)", ErrAnswerTimeout, waited, a.clientID, codecHint(s.cfg.VideoCodecs)))
}

// onWatchdog checks that video still arrives while streaming. A dead
// network path is noticed by ICE only seconds later, so a stall first
// restarts ICE (cheap, keeps the session); if video does not come back
// within StallTimeout after that, the master stopped sending: the attempt
// ends and the session reconnects from scratch.
func (a *attemptRun) onWatchdog(ctx context.Context) *attemptResult {
	s := a.s
	if !a.streaming {
		return nil
	}
	last := s.video.Snapshot().LastFrame
	if last.IsZero() || time.Since(last) <= s.cfg.StallTimeout {
		return nil
	}
	switch {
	case a.restarting:
		// The restart timer bounds it.
	case a.stallRestartAt.IsZero() || a.stallFrame != last:
		a.stallFrame, a.stallRestartAt = last, time.Now()
		return a.restart(ctx, fmt.Sprintf("no video for %v", time.Since(last).Round(time.Millisecond)))
	case time.Since(a.stallRestartAt) > s.cfg.StallTimeout:
		return a.end("media", fmt.Errorf("%w: no video frame for %v, also after an ICE restart", errMediaStalled, time.Since(last).Round(time.Millisecond)))
	}
	return nil
}

// onGathered: a candidate gathering phase ended.
func (a *attemptRun) onGathered(ctx context.Context) *attemptResult {
	// Candidates forwarded before the end of gathering may still wait in
	// their channel.
	for drained := false; !drained; {
		select {
		case c := <-a.peer.Candidates():
			a.sendCandidate(ctx, c)
		default:
			drained = true
		}
	}
	if a.s.cfg.ForceRelay && a.relays == 0 {
		return a.end("ice", fmt.Errorf("%w: relay only, and the TURN server gave no allocation (refused credentials, or unreachable)", errNoRelay))
	}
	return nil
}

// onFirstKeyframe: the first complete keyframe of the attempt arrived.
func (a *attemptRun) onFirstKeyframe(at time.Time) {
	s := a.s
	if a.streaming {
		return
	}
	a.setStreaming()
	a.streamStart = at
	a.timers.media.stop()
	ttff := at.Sub(s.start)
	s.mu.Lock()
	streamed, reconnectAt := s.streamed, s.reconnectAt
	s.mu.Unlock()
	detail := fmt.Sprintf("first keyframe after %v", ttff.Round(time.Millisecond))
	if !reconnectAt.IsZero() {
		detail = fmt.Sprintf("first keyframe %v after reconnecting", at.Sub(reconnectAt).Round(time.Millisecond))
	}
	s.emit(Event{State: StateStreaming, Attempt: a.n, ClientID: a.clientID, TimeToFirstFrame: ttff, Detail: detail})
	if s.cfg.Duration > 0 {
		a.timers.duration.set(max(s.cfg.Duration-streamed, time.Millisecond))
	}
}

// onICEState follows the ICE connection: a restart that recovered, a
// disconnection that lasts, a failure.
func (a *attemptRun) onICEState(ctx context.Context, st webrtc.ICEConnectionState) *attemptResult {
	s := a.s
	t := &a.timers
	s.log.Debug("ice state", "state", st.String())
	switch st {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		t.disc.stop()
		if a.restarting && a.remoteSet {
			a.restarting = false
			t.restart.stop()
			t.answer.stop()
			if !a.stallRestartAt.IsZero() {
				a.stallRestartAt = time.Now() // video has StallTimeout from now to resume
			}
			s.emit(Event{State: a.liveState(), Attempt: a.n, ClientID: a.clientID, Detail: "ICE restart recovered the connection"})
		} else if !a.connected {
			a.connected = true
			if !a.streaming {
				s.emit(Event{State: StateConnected, Attempt: a.n, ClientID: a.clientID, Detail: "ICE connected; waiting for the first frame"})
			}
		}
	case webrtc.ICEConnectionStateDisconnected:
		if a.connected && !a.restarting {
			t.disc.set(s.cfg.DisconnectedGrace)
		}
	case webrtc.ICEConnectionStateFailed:
		t.disc.stop()
		if !a.connected && !a.streaming {
			why := "ICE failed before connecting"
			if s.cfg.ForceRelay {
				return a.end("ice", fmt.Errorf("%w: %s (relay only: are the TURN credentials valid?)", errICEFailed, why))
			}
			return a.end("ice", fmt.Errorf("%w: %s%s", errICEFailed, why, a.noCandidatesHint()))
		}
		return a.restart(ctx, "ICE failed")
	}
	return nil
}

// restart starts an ICE restart, or defers it until signaling is back.
func (a *attemptRun) restart(ctx context.Context, why string) *attemptResult {
	s := a.s
	if a.restarting {
		return nil
	}
	if s.cfg.Storage {
		return a.storageRestart(why)
	}
	a.restarting = true
	a.timers.restart.set(s.cfg.ICERestartTimeout)
	if !a.sig.up() {
		a.restartWanted = true
		s.emit(Event{State: StateReconnecting, Attempt: a.n, ClientID: a.clientID, Cause: CauseNetworkChange, Detail: why + ": restarting ICE once signaling is back"})
		return nil
	}
	return a.iceRestart(ctx, why)
}

// iceRestart sends an ICE-restart offer over signaling, with freshly
// fetched ICE servers: the TURN credentials the session started with may
// have expired, or been revoked (RECONNECT_ICE_SERVER), since.
func (a *attemptRun) iceRestart(ctx context.Context, why string) *attemptResult {
	s := a.s
	s.emit(Event{State: StateReconnecting, Attempt: a.n, ClientID: a.clientID, Cause: CauseNetworkChange, Detail: why + ": restarting ICE"})
	s.ice.Invalidate(a.ch.ARN)
	if ice, err := s.ice.Get(ctx, a.ch.ARN, kvsproto.RoleViewer, a.ep.HTTPS, a.clientID); err == nil {
		pc := a.peer.PC
		cfg := pc.GetConfiguration()
		cfg.ICEServers = pionServers(ice)
		if err := pc.SetConfiguration(cfg); err != nil {
			s.log.Warn("cannot update the ICE servers for the restart", "err", err)
		}
	} else if ctx.Err() == nil {
		s.log.Warn("cannot refresh the ICE servers for the restart; using the current ones", "err", err)
	}
	if err := a.sendOffer(ctx, true); err != nil {
		return a.end("ice", fmt.Errorf("%w: %w", errICEFailed, err))
	}
	a.timers.answer.set(s.cfg.Retry.AnswerTimeout)
	return nil
}
