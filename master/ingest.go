package master

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// WebRTC ingestion (Config.Ingest): the master joins the channel's storage
// session, which then offers to it over the master's signaling connection
// (an SDP_OFFER without senderClientId). The master answers without
// recipientClientId, and the session takes the camera's media once,
// records it into the channel's stream and forwards it to the Multiviewer
// viewers; their talk-back comes back on the session's audio track. As the
// official JS SDK master does:
//
//   - JoinStorageSession is called after every signaling connection (the
//     first one, each renewal: GO_AWAY, connection lost, scheduled), and
//     repeated every 6 s (+ up to 1 s of jitter) until the session's offer
//     arrives, at most 5 times more per connection; a failure is retried
//     only for throttling, a network failure or a 5xx answer.
//   - A new offer replaces the storage peer (make before break: the old
//     one streams until then).
//   - A storage peer that fails, closes, does not connect in
//     Config.ConnectTimeout or stays disconnected longer than
//     Config.DisconnectedTimeout is dropped and the session joined again,
//     until 5 peers within 10 minutes fail without ever connecting (then
//     EventStorageFailed with ErrStorageGaveUp; the next signaling renewal
//     tries again). A peer that connected and later ends (the service's
//     one-hour session limit) is joined again without counting.
//
// Direct viewers (offers with a senderClientId) are served as always.

// Ingestion timings.
const (
	storageJoinInterval = 6 * time.Second
	storageJoinJitter   = time.Second
	storageJoinRetries  = 5
	storageJoinTimeout  = 10 * time.Second
	storageMaxFailures  = 5
	storageFailWindow   = 10 * time.Minute
	// storagePeerID names the storage peer in logs, events and the
	// Config.Talkback call; parentheses are not allowed in client ids, so
	// it never names a viewer.
	storagePeerID = "(storage-session)"
)

// Events of the storage link (Config.Ingest); their ClientID is
// "(storage-session)".
const (
	// EventStorageJoined: JoinStorageSession was accepted; the storage
	// session's offer comes next.
	EventStorageJoined EventKind = "storage-joined"
	// EventStorageAnswered: the storage session's offer was answered.
	EventStorageAnswered EventKind = "storage-answered"
	// EventStorageConnected: the storage peer connected; the camera's media
	// goes to the storage session.
	EventStorageConnected EventKind = "storage-connected"
	// EventStorageLost: the storage peer ended; Err says why (ErrReplaced
	// by a newer offer, ErrPeerFailed, ErrPeerClosed, ErrConnectTimeout,
	// ErrDisconnected, ErrShutdown).
	EventStorageLost EventKind = "storage-lost"
	// EventStorageFailed: joining failed for good (Err wraps the control
	// plane's error: control.ErrStorageNotConfigured, ErrStreamNotFound,
	// ...), no offer came (ErrNoStorageOffer), the offer could not be
	// answered (*NegotiationError), or the link failed too often
	// (ErrStorageGaveUp). Direct viewers are still served.
	EventStorageFailed EventKind = "storage-failed"
)

// Errors of the storage link (EventStorageFailed, EventStorageLost,
// StorageStatus.LastError).
var (
	// ErrNoStorageOffer: the storage session sent no offer after
	// JoinStorageSession and its retries.
	ErrNoStorageOffer = errors.New("master: no SDP offer from the storage session after JoinStorageSession")
	// ErrStorageGaveUp: 5 storage peers within 10 minutes failed without
	// connecting; the master stops re-joining until its signaling
	// connection is renewed.
	ErrStorageGaveUp = errors.New("master: the storage session link failed too often; not re-joining")
)

// StorageStatus is the state of the master's link to the channel's storage
// session (Config.Ingest).
type StorageStatus struct {
	// Enabled reports Config.Ingest.
	Enabled bool
	// Joined: the latest JoinStorageSession call succeeded.
	Joined bool
	// Joins counts successful JoinStorageSession calls.
	Joins int
	// Offers counts the storage session's offers answered.
	Offers int
	// State is the storage peer's state; "" without a storage peer.
	State ViewerState
	// Since is when the current storage peer answered its offer.
	Since time.Time
	// ConnectedAt is when the current storage peer connected (zero before).
	ConnectedAt time.Time
	// Talkback reports whether the session's audio (the viewers'
	// talk-back) is being played into Config.Talkback.
	Talkback bool
	// BytesSent and Samples count the media handed to the current storage
	// peer's tracks.
	BytesSent, Samples uint64
	// Failures counts storage peers that failed or closed.
	Failures int
	// LastError is the latest join or link failure (nil if none).
	LastError error
}

// Storage returns the state of the storage session link.
func (m *Master) Storage() StorageStatus {
	m.storage.mu.Lock()
	defer m.storage.mu.Unlock()
	st := m.storage.st
	st.Enabled = m.cfg.Ingest
	if p := m.storage.p; p != nil {
		st.BytesSent, st.Samples = p.bytes.Load(), p.samples.Load()
	}
	return st
}

// storageState is the Master's copy of the link's state, for Storage.
type storageState struct {
	mu sync.Mutex
	st StorageStatus
	p  *peer
}

// ingest is the run's side of the storage link; the loop owns it.
type ingest struct {
	p          *peer                     // the current storage peer, or nil
	early      []webrtc.ICECandidateInit // candidates before the offer
	joinCancel context.CancelFunc        // the join loop in progress
	joinGen    int                       // the join loop's generation
	failures   failureWindow             // storage peer failures (the last 10 min)
	gaveUp     bool                      // no re-join until the next renewal
}

// updateStorage changes the Master's status copy.
func (r *run) updateStorage(f func(st *StorageStatus)) {
	s := &r.m.storage
	s.mu.Lock()
	f(&s.st)
	s.p = r.ing.p
	s.mu.Unlock()
}

// call runs f on the loop goroutine (from any goroutine of the run).
func (r *run) call(ctx context.Context, f func(context.Context)) {
	select {
	case r.calls <- f:
	case <-ctx.Done():
	}
}

// startJoin (re)starts the join loop: after a signaling connection came
// up, or to replace a failed storage peer.
func (r *run) startJoin(ctx context.Context, why string) {
	if r.ing == nil {
		return
	}
	if r.ing.joinCancel != nil {
		r.ing.joinCancel()
	}
	r.ing.joinGen++
	gen := r.ing.joinGen
	jctx, cancel := context.WithCancel(ctx)
	r.ing.joinCancel = cancel
	r.log.Info("joining the storage session", "reason", why)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.joinLoop(ctx, jctx, gen)
	}()
}

// stopJoin ends the join loop, if any (the offer came, or shutdown).
func (r *run) stopJoin() {
	if r.ing != nil && r.ing.joinCancel != nil {
		r.ing.joinCancel()
		r.ing.joinCancel = nil
	}
}

// joinLoop calls JoinStorageSession until the loop cancels ctx (the offer
// arrived, a newer join started) or it gives up; it reports each outcome
// on the loop (through runCtx: the offer may arrive before the join's
// answer, which is still reported).
func (r *run) joinLoop(runCtx, ctx context.Context, gen int) {
	ep := r.endpoints().WebRTC
	for try := 0; ; try++ {
		jctx, cancel := context.WithTimeout(ctx, storageJoinTimeout)
		err := r.ctl.JoinStorageSession(jctx, ep, r.arn)
		cancel()
		if ctx.Err() != nil {
			if err == nil {
				r.call(runCtx, func(context.Context) { r.onJoined(gen, nil, true) })
			}
			return
		}
		last := try >= storageJoinRetries
		r.call(ctx, func(ctx context.Context) { r.onJoined(gen, err, last) })
		if err != nil && (!control.JoinRetryable(err) || last) {
			return
		}
		if err == nil && last {
			// The last join went through; wait once more for its offer.
			if !sleepCtx(ctx, storageJoinInterval) {
				return
			}
			r.call(ctx, func(context.Context) { r.onNoOffer(gen) })
			return
		}
		if !sleepCtx(ctx, storageJoinInterval+rand.N(storageJoinJitter)) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// onJoined handles a JoinStorageSession result (loop).
func (r *run) onJoined(gen int, err error, last bool) {
	if gen != r.ing.joinGen {
		return
	}
	if err == nil {
		r.updateStorage(func(st *StorageStatus) { st.Joined = true; st.Joins++ })
		r.log.Debug("JoinStorageSession accepted; waiting for the storage session's offer")
		r.emit(Event{Kind: EventStorageJoined})
		return
	}
	r.updateStorage(func(st *StorageStatus) { st.Joined = false; st.LastError = err })
	switch {
	case errors.Is(err, control.ErrJoinerNotConnected):
		// The signaling connection is being renewed: the renewal joins again.
		r.log.Info("JoinStorageSession: the service sees no master connection yet; joining again after the reconnect", "err", err)
	case control.JoinRetryable(err) && !last:
		r.log.Warn("JoinStorageSession failed; retrying", "err", err, "retry_in", storageJoinInterval)
	default:
		r.log.Error("cannot join the storage session; direct viewers are still served", "err", err)
		r.emit(Event{Kind: EventStorageFailed, ClientID: storagePeerID, Err: fmt.Errorf("master: JoinStorageSession: %w", err)})
	}
}

// onNoOffer: the join loop ended without an offer (loop).
func (r *run) onNoOffer(gen int) {
	if gen != r.ing.joinGen {
		return
	}
	err := fmt.Errorf("%w (%d joins, %v apart)", ErrNoStorageOffer, storageJoinRetries+1, storageJoinInterval)
	r.updateStorage(func(st *StorageStatus) { st.LastError = err })
	r.log.Error("the storage session sent no offer; the next signaling renewal joins again", "err", err)
	r.emit(Event{Kind: EventStorageFailed, ClientID: storagePeerID, Err: err})
}

// onStorageSignal handles a message without senderClientId: from the
// storage session when ingesting (loop). It reports whether it took it.
func (r *run) onStorageSignal(ctx context.Context, ev signaling.Event) bool {
	if r.ing == nil || ev.SenderClientID != "" {
		return false
	}
	switch ev.Type {
	case kvsproto.MessageSDPOffer:
		r.onStorageOffer(ctx, ev)
	case kvsproto.MessageICECandidate:
		if ev.Candidate == nil {
			return true
		}
		c := webrtc.ICECandidateInit{
			Candidate: ev.Candidate.Candidate, SDPMid: ev.Candidate.SDPMid,
			SDPMLineIndex: ev.Candidate.SDPMLineIndex, UsernameFragment: ev.Candidate.UsernameFragment,
		}
		if p := r.ing.p; p != nil {
			r.addRemoteCandidate(p, c)
		} else if len(r.ing.early) < maxEarlyPerPeer {
			r.ing.early = append(r.ing.early, c)
		}
	default:
		return false
	}
	return true
}

// onStorageOffer answers the storage session's offer with a new storage
// peer that replaces the current one.
func (r *run) onStorageOffer(ctx context.Context, ev signaling.Event) {
	if ev.SDP == nil {
		r.log.Warn("ignoring a storage session offer without SDP")
		return
	}
	r.stopJoin()
	if old := r.ing.p; old != nil {
		r.log.Info("new offer from the storage session; replacing the storage peer")
		r.dropStorage(old, ErrReplaced)
	}
	fail := func(err error) {
		r.ing.early = nil
		r.updateStorage(func(st *StorageStatus) { st.LastError = err })
		r.log.Error("cannot answer the storage session's offer", "err", err)
		r.emit(Event{Kind: EventStorageFailed, ClientID: storagePeerID, Err: err})
	}
	sum, err := summarizeOffer(ev.SDP.SDP, r.codec)
	if err != nil {
		fail(&NegotiationError{ClientID: storagePeerID, Want: r.codec.String(), Detail: "unparsable SDP: " + err.Error(), Err: ErrBadOffer})
		return
	}
	if ne := sum.negotiationError(storagePeerID, r.codec); ne != nil {
		fail(ne)
		return
	}
	p, answer, err := r.newPeer(ctx, storagePeerID, ev.SDP, sum.audio && r.audio != nil)
	if err != nil {
		fail(&NegotiationError{ClientID: storagePeerID, Want: r.codec.String(), Offered: sum.video, Err: fmt.Errorf("%w: %w", ErrBadOffer, err)})
		return
	}
	p.ufrag, p.fingerprint = sum.ufrag, sum.fingerprint
	p.corr = signaling.NewCorrelationID()
	r.ing.p = p
	r.updateStorage(func(st *StorageStatus) {
		st.Offers++
		st.State, st.Since, st.ConnectedAt, st.Talkback = ViewerConnecting, p.since, time.Time{}, false
	})
	// No recipientClientId: the service routes it to the storage session.
	r.send(ctx, outMsg{action: kvsproto.ActionSDPAnswer, sd: &kvsproto.SessionDescription{Type: "answer", SDP: answer}, corr: p.corr})
	for _, c := range r.ing.early {
		r.addRemoteCandidate(p, c)
	}
	r.ing.early = nil
	r.log.Info("answered the storage session's offer", "audio", p.audio != nil, "talkback", r.cfg.Talkback != nil)
	r.emit(Event{Kind: EventStorageAnswered, ClientID: storagePeerID})
}

// onStoragePeer handles what the storage peer forwarded (loop); it reports
// whether pe was the storage peer's.
func (r *run) onStoragePeer(ctx context.Context, pe peerEvent) bool {
	if r.ing == nil || pe.p.id != storagePeerID {
		return false
	}
	p := pe.p
	if p != r.ing.p {
		return true // a replaced storage peer
	}
	if pe.tw != nil {
		p.noteTalk(pe.tw.kind)
		talking := p.talking
		r.updateStorage(func(st *StorageStatus) { st.Talkback = talking })
		r.onTwoWayNote(p, pe.tw)
		return true
	}
	if pe.cand != nil {
		r.send(ctx, outMsg{action: kvsproto.ActionICECandidate, cand: toKVS(*pe.cand)})
		return true
	}
	switch p.conn.PC.ConnectionState() {
	case webrtc.PeerConnectionStateConnected:
		p.disconnectedAt = time.Time{}
		if !p.joined {
			p.joined = true
			p.connectedAt = time.Now()
			r.subscribe(p)
			r.updateStorage(func(st *StorageStatus) {
				st.State, st.ConnectedAt, st.LastError = ViewerConnected, p.connectedAt, nil
			})
			r.log.Info("storage session connected: the camera's media goes to the storage session",
				"setup", time.Since(p.since).Round(time.Millisecond), "audio", p.audio != nil)
			r.emit(Event{Kind: EventStorageConnected, ClientID: storagePeerID})
		} else {
			r.updateStorage(func(st *StorageStatus) { st.State = ViewerConnected })
		}
	case webrtc.PeerConnectionStateDisconnected:
		if p.disconnectedAt.IsZero() {
			p.disconnectedAt = time.Now()
			r.updateStorage(func(st *StorageStatus) { st.State = ViewerDisconnected })
			r.log.Info("storage session link disconnected; waiting for it to recover", "timeout", r.cfg.DisconnectedTimeout)
		}
	case webrtc.PeerConnectionStateFailed:
		r.storageFailed(ctx, p, ErrPeerFailed)
	case webrtc.PeerConnectionStateClosed:
		r.storageFailed(ctx, p, ErrPeerClosed)
	}
	return true
}

// sweepStorage enforces the storage peer's connect and disconnected
// timeouts (loop).
func (r *run) sweepStorage(ctx context.Context, now time.Time) {
	if r.ing == nil || r.ing.p == nil {
		return
	}
	p := r.ing.p
	switch {
	case !p.joined && now.After(p.deadline):
		r.storageFailed(ctx, p, ErrConnectTimeout)
	case !p.disconnectedAt.IsZero() && now.Sub(p.disconnectedAt) > r.cfg.DisconnectedTimeout:
		r.storageFailed(ctx, p, ErrDisconnected)
	}
}

// storageFailed drops a failed storage peer and joins again, unless links
// failed to connect too often. As in the JS SDK's sample, only links that
// never connected count toward giving up: a link the service ends after it
// streamed (its one-hour session limit, a network change) is joined again
// however often that happens.
func (r *run) storageFailed(ctx context.Context, p *peer, why error) {
	r.dropStorage(p, why)
	n := 0
	if !p.joined {
		n = r.ing.failures.add(time.Now())
	}
	err := fmt.Errorf("master: storage session link: %w", why)
	r.updateStorage(func(st *StorageStatus) { st.Failures++; st.LastError = err })
	if n >= storageMaxFailures {
		r.ing.gaveUp = true
		err = fmt.Errorf("%w (%d failures within %v; the latest: %w)", ErrStorageGaveUp, n, storageFailWindow, why)
		r.updateStorage(func(st *StorageStatus) { st.LastError = err })
		r.log.Error("the storage session link keeps failing; not re-joining until signaling reconnects", "err", err)
		r.emit(Event{Kind: EventStorageFailed, ClientID: storagePeerID, Err: err})
		return
	}
	r.log.Warn("the storage session link failed; joining again", "reason", why)
	r.startJoin(ctx, "storage link failed")
}

// dropStorage closes the storage peer and reports its end.
func (r *run) dropStorage(p *peer, why error) {
	if r.ing.p == p {
		r.ing.p = nil
		r.updateStorage(func(st *StorageStatus) { st.State, st.Talkback = "", false })
	}
	r.closePeer(p)
	if p.talking {
		p.talking = false
		r.onTwoWayNote(p, &twoWayNote{kind: EventTalkStopped})
	}
	r.log.Info("storage session link closed", "reason", why, "connected", p.joined)
	r.emit(Event{Kind: EventStorageLost, ClientID: storagePeerID, Err: why})
}

// onStorageRenewed joins again on a renewed signaling connection.
func (r *run) onStorageRenewed(ctx context.Context) {
	if r.ing == nil {
		return
	}
	r.ing.gaveUp = false
	r.ing.failures = failureWindow{}
	r.startJoin(ctx, "signaling renewed")
}

// stopIngest ends the join loop and the storage peer (shutdown).
func (r *run) stopIngest() {
	if r.ing == nil {
		return
	}
	r.stopJoin()
	if p := r.ing.p; p != nil {
		r.dropStorage(p, ErrShutdown)
	}
}

// failureWindow counts the storage peer's failures of the last
// storageFailWindow.
type failureWindow struct{ at []time.Time }

// add records a failure at now and returns how many fall in the window.
func (w *failureWindow) add(now time.Time) int {
	kept := w.at[:0]
	for _, t := range w.at {
		if now.Sub(t) < storageFailWindow {
			kept = append(kept, t)
		}
	}
	w.at = append(kept, now)
	return len(w.at)
}
