package master

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// Internal limits and timings.
const (
	iceFetchTimeout  = 10 * time.Second
	sendTimeout      = 5 * time.Second
	earlyCandTTL     = 20 * time.Second // candidates from a viewer without an offer are kept this long
	maxEarlyPerPeer  = 64
	maxEarlyPeers    = 64
	peerEventBuffer  = 256
	maxSweepInterval = time.Second
)

// Master serves one signaling channel as its MASTER: it answers every
// viewer's offer with a PeerConnection of its own and streams the shared
// sources to all of them.
type Master struct {
	cfg     Config
	started atomic.Bool

	mu    sync.Mutex
	peers map[string]*peer // current viewers; written by Run's loop under mu
}

// New validates cfg and returns a Master. Nothing starts before Run.
func New(cfg Config) (*Master, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Master{cfg: c, peers: make(map[string]*peer)}, nil
}

// Viewers returns the current viewers, sorted by client id.
func (m *Master) Viewers() []ViewerInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ViewerInfo, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, ViewerInfo{
			ClientID: p.id, State: p.state, Since: p.since, ConnectedAt: p.connectedAt,
			Audio: p.audio != nil, BytesSent: p.bytes.Load(), Samples: p.samples.Load(),
		})
	}
	slices.SortFunc(out, func(a, b ViewerInfo) int { return cmp.Compare(a.ClientID, b.ClientID) })
	return out
}

// Run resolves the channel, connects to signaling as MASTER and serves
// viewers until ctx ends (it then returns nil) or the video source ends
// (nil at its end, an error if it fails). Setup failures (unknown
// channel, access denied, no ICE servers, signaling refused) are returned
// at once. Run returns only after every viewer's PeerConnection, the
// signaling connections and all its goroutines are gone; the sources are
// closed. Call it once.
func (m *Master) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	r := &run{
		m:          m,
		cfg:        m.cfg,
		log:        m.cfg.Logger,
		ctl:        m.cfg.Control,
		codec:      m.cfg.Video.Codec(),
		peers:      make(map[string]*peer),
		early:      make(map[string]*earlyQueue),
		peerEvents: make(chan peerEvent, peerEventBuffer),
		iceKick:    make(chan struct{}, 1),
		videoDone:  make(chan error, 1),
		audioDone:  make(chan error, 1),
	}
	return r.run(ctx)
}

// run is the state of one Run; the loop goroutine owns everything but the
// fields noted otherwise.
type run struct {
	m     *Master
	cfg   Config
	log   *slog.Logger
	ctl   *control.Client
	codec rtc.Codec
	api   *webrtc.API
	ice   *control.ICECache
	arn   string
	name  string

	epMu sync.Mutex // endpoints are read by the ICE refresher
	ep   control.Endpoints

	video, audio *media.Broadcaster

	sess        *signaling.Session // the signaling connection, renewed (signal.go)
	sessEv      <-chan signaling.SessionEvent
	sessDone    chan error   // the session's Run result (put back after reading)
	dialed      atomic.Int64 // successful dials (read by the session's goroutine)
	sigStarted  time.Time    // when the current connection came up
	renewReason string       // of the renewal in progress

	peers map[string]*peer
	early map[string]*earlyQueue

	peerEvents chan peerEvent
	iceKick    chan struct{}
	videoDone  chan error
	audioDone  chan error

	wg sync.WaitGroup // every goroutine the run starts
}

// earlyQueue holds ICE candidates from a viewer whose offer has not come.
type earlyQueue struct {
	first time.Time
	cands []webrtc.ICECandidateInit
}

func (r *run) endpoints() control.Endpoints {
	r.epMu.Lock()
	defer r.epMu.Unlock()
	return r.ep
}

func (r *run) setEndpoints(ep control.Endpoints) {
	r.epMu.Lock()
	r.ep = ep
	r.epMu.Unlock()
}

func (r *run) emit(ev Event) {
	if r.cfg.OnEvent == nil {
		return
	}
	ev.Time = time.Now()
	ev.ChannelARN = r.arn
	r.cfg.OnEvent(ev)
}

func (r *run) run(parent context.Context) (err error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	sourcesOwned := true
	defer func() {
		if sourcesOwned {
			r.cfg.Video.Close()
			if r.cfg.Audio != nil {
				r.cfg.Audio.Close()
			}
		}
	}()

	ch, err := r.ctl.ResolveChannel(ctx, r.cfg.Channel)
	if err != nil {
		return fmt.Errorf("master: resolving channel %q: %w", r.cfg.Channel, err)
	}
	r.arn, r.name = ch.ARN, ch.Name
	ep, err := r.ctl.Endpoints(ctx, r.arn, kvsproto.RoleMaster)
	if err != nil {
		return fmt.Errorf("master: signaling endpoints of %s: %w", r.arn, err)
	}
	r.setEndpoints(ep)
	r.ice = control.NewICECache(r.ctl)
	ictx, icancel := context.WithTimeout(ctx, iceFetchTimeout)
	_, err = r.ice.Get(ictx, r.arn, kvsproto.RoleMaster, ep.HTTPS, "")
	icancel()
	if err != nil {
		return fmt.Errorf("master: fetching ICE servers of %s: %w", r.arn, err)
	}
	r.api, err = rtc.NewAPI(rtc.Config{
		LoopbackOnly: r.cfg.LoopbackOnly,
		Logger:       pionLogger(r.log),
		VideoCodecs:  []string{r.codec.String()},
		Audio:        r.cfg.Audio != nil || r.cfg.Talkback != nil,
		ICEPortMin:   r.cfg.ICEPortMin,
		ICEPortMax:   r.cfg.ICEPortMax,
		TURNRootCAs:  rtc.RootCAs(r.cfg.HTTPClient),
	})
	if err != nil {
		return fmt.Errorf("master: %w", err)
	}
	if err := r.startSignaling(ctx); err != nil {
		cancel()
		r.wg.Wait()
		return fmt.Errorf("master: connecting to signaling as MASTER: %w", err)
	}

	// From here on everything runs until the loop ends.
	sourcesOwned = false
	r.startSources(ctx)
	r.wg.Add(1)
	go r.refreshICE(ctx)
	r.log.Info(fmt.Sprintf("master ready on channel %s (%s); waiting for viewers", r.name, r.arn),
		"channel", r.name, "arn", r.arn, "codec", r.codec.String(), "audio", r.audio != nil, "max_viewers", r.cfg.MaxViewers)
	r.emit(Event{Kind: EventReady})

	err = r.loop(ctx)
	cancel()
	r.shutdown()
	return err
}

// startSources runs the broadcasters, each on a goroutine of its own.
func (r *run) startSources(ctx context.Context) {
	bcfg := media.BroadcasterConfig{Logger: r.log}
	r.video = media.NewBroadcaster(r.cfg.Video, bcfg)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.videoDone <- r.video.Run(ctx)
	}()
	if r.cfg.Audio != nil {
		r.audio = media.NewBroadcaster(r.cfg.Audio, bcfg)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.audioDone <- r.audio.Run(ctx)
		}()
	}
}

func (r *run) sweepInterval() time.Duration {
	d := min(maxSweepInterval, r.cfg.DisconnectedTimeout/4, r.cfg.ConnectTimeout/4)
	return max(d, 10*time.Millisecond)
}

// loop handles every event until ctx ends or the video source ends.
func (r *run) loop(ctx context.Context) error {
	sweep := time.NewTicker(r.sweepInterval())
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-r.sessEv:
			if !ok {
				return r.sessionEnded(ctx)
			}
			r.onSession(ctx, ev)
		case pe := <-r.peerEvents:
			r.onPeer(ctx, pe)
		case now := <-sweep.C:
			r.sweep(ctx, now)
		case err := <-r.videoDone:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("master: video source: %w", err)
			}
			r.log.Info("the video source ended; stopping")
			return nil
		case err := <-r.audioDone:
			if err != nil && ctx.Err() == nil {
				r.log.Warn("the audio source failed; continuing without audio", "err", err)
			} else {
				r.log.Info("the audio source ended; continuing without audio")
			}
		}
	}
}

// shutdown closes every peer and connection and waits for all goroutines.
func (r *run) shutdown() {
	for _, p := range r.peers {
		r.removePeer(p, ErrShutdown)
	}
	clear(r.early)
	r.wg.Wait() // the session's Run has returned: its context ended
}

// onPeer handles a forwarded pion callback.
func (r *run) onPeer(ctx context.Context, pe peerEvent) {
	p := pe.p
	if r.peers[p.id] != p {
		return // a replaced or removed peer
	}
	if pe.tw != nil {
		switch pe.tw.kind {
		case EventTalkStarted:
			p.talking = true
		case EventTalkStopped:
			p.talking = false
		}
		r.onTwoWayNote(p, pe.tw)
		return
	}
	if pe.cand != nil {
		r.send(ctx, outMsg{action: kvsproto.ActionICECandidate, cand: toKVS(*pe.cand), to: p.id})
		return
	}
	switch s := p.pc.ConnectionState(); s {
	case webrtc.PeerConnectionStateConnected:
		p.disconnectedAt = time.Time{}
		p.checkRestart()
		if !p.joined {
			p.joined = true
			r.setState(p, ViewerConnected, true)
			r.subscribe(p)
			r.log.Info("viewer joined", "viewer", p.id, "viewers", len(r.peers), "audio", p.audio != nil,
				"setup", time.Since(p.since).Round(time.Millisecond))
			r.emit(Event{Kind: EventViewerJoined, ClientID: p.id})
		} else if p.state != ViewerConnected {
			r.setState(p, ViewerConnected, false)
			r.log.Info("viewer reconnected", "viewer", p.id)
		}
	case webrtc.PeerConnectionStateDisconnected:
		if p.disconnectedAt.IsZero() {
			p.disconnectedAt = time.Now()
			r.setState(p, ViewerDisconnected, false)
			r.log.Info("viewer disconnected; waiting for it to recover", "viewer", p.id, "timeout", r.cfg.DisconnectedTimeout)
		}
	case webrtc.PeerConnectionStateFailed:
		if !p.joined {
			r.removePeer(p, ErrPeerFailed)
			return
		}
		// A joined viewer may restart ICE (its network changed): keep the
		// peer for DisconnectedTimeout before giving up on it.
		if p.disconnectedAt.IsZero() {
			p.disconnectedAt = time.Now()
			r.setState(p, ViewerDisconnected, false)
			r.log.Info("viewer connection failed; waiting for an ICE restart", "viewer", p.id, "timeout", r.cfg.DisconnectedTimeout)
		}
	case webrtc.PeerConnectionStateClosed:
		r.removePeer(p, ErrPeerClosed)
	}
}

func (r *run) setState(p *peer, s ViewerState, connected bool) {
	r.m.mu.Lock()
	p.state = s
	if connected {
		p.connectedAt = time.Now()
	}
	r.m.mu.Unlock()
}

// removePeer forgets a peer, closes it and reports why.
func (r *run) removePeer(p *peer, why error) {
	if r.peers[p.id] == p {
		delete(r.peers, p.id)
		r.m.mu.Lock()
		delete(r.m.peers, p.id)
		r.m.mu.Unlock()
	}
	r.closePeer(p)
	if p.talking {
		p.talking = false
		r.onTwoWayNote(p, &twoWayNote{kind: EventTalkStopped})
	}
	if p.joined {
		lvl := slog.LevelInfo
		if errors.Is(why, ErrPeerFailed) || errors.Is(why, ErrDisconnected) {
			lvl = slog.LevelWarn
		}
		r.log.Log(context.Background(), lvl, "viewer left", "viewer", p.id, "reason", why, "viewers", len(r.peers),
			"bytes_sent", p.bytes.Load(), "connected_for", time.Since(p.connectedAt).Round(time.Millisecond))
		r.emit(Event{Kind: EventViewerLeft, ClientID: p.id, Err: why})
		return
	}
	lvl := slog.LevelWarn
	if errors.Is(why, ErrShutdown) || errors.Is(why, ErrReplaced) {
		lvl = slog.LevelInfo
	}
	r.log.Log(context.Background(), lvl, "viewer did not connect", "viewer", p.id, "reason", why)
	r.emit(Event{Kind: EventViewerFailed, ClientID: p.id, Err: why})
}

// sweep enforces the timeouts of peers, early candidates and draining
// signaling connections.
func (r *run) sweep(ctx context.Context, now time.Time) {
	for _, p := range r.peers {
		p.checkRestart() // a completed restart may bring no state change
		down := p.downSince(now, r.restartGrace())
		switch {
		case !p.joined && now.After(p.deadline):
			r.removePeer(p, ErrConnectTimeout)
		case !down.IsZero() && now.Sub(down) > r.cfg.DisconnectedTimeout:
			if p.disconnectedAt.IsZero() {
				r.log.Info("the viewer's ICE restart did not connect; dropping it", "viewer", p.id,
					"restarted", now.Sub(p.restartedAt).Round(time.Millisecond))
			}
			r.removePeer(p, ErrDisconnected)
		}
	}
	for id, q := range r.early {
		if now.Sub(q.first) > earlyCandTTL {
			r.log.Debug("dropping ICE candidates from a viewer that sent no offer", "viewer", id, "candidates", len(q.cands))
			delete(r.early, id)
		}
	}
}

// onSignal handles one message of the service, from the current
// connection or (draining) from one being read after a renewal.
func (r *run) onSignal(ctx context.Context, ev signaling.Event, draining bool) {
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
		for _, p := range r.peers {
			if p.corr == st.CorrelationID {
				se.ClientID = p.id
			}
		}
	}
	r.log.Warn("the service rejected a message", "correlation_id", se.CorrelationID, "viewer", se.ClientID,
		"error_type", se.Type, "status", se.Code, "description", se.Description)
	r.emit(Event{Kind: EventStatus, ClientID: se.ClientID, Err: se})
}

// onOffer answers a viewer's offer with a new peer.
func (r *run) onOffer(ctx context.Context, ev signaling.Event) {
	id := ev.SenderClientID
	if id == "" || ev.SDP == nil {
		r.log.Warn("ignoring an SDP offer without senderClientId or SDP")
		return
	}
	sum, sumErr := summarizeOffer(ev.SDP.SDP, r.codec)
	if old := r.peers[id]; old != nil {
		if sumErr == nil && sum.fingerprint != "" && sum.fingerprint == old.fingerprint && sum.ufrag != old.ufrag {
			// The same peer connection with new ICE credentials: an ICE
			// restart (the viewer's network changed). Keep the session.
			if r.restartPeer(ctx, old, ev.SDP, sum) {
				return
			}
		}
		r.log.Info("new offer from a connected viewer; replacing its peer", "viewer", id)
		r.removePeer(old, ErrReplaced)
	}
	fail := func(err error) {
		delete(r.early, id)
		r.emit(Event{Kind: EventViewerFailed, ClientID: id, Err: err})
	}
	if len(r.peers) >= r.cfg.MaxViewers {
		// A viewer that was answered but never connected has most likely
		// given up (its answer was lost and it retried with a new client
		// id): make room for the new offer instead of refusing it.
		var stale *peer
		for _, p := range r.peers {
			if !p.joined && (stale == nil || p.since.Before(stale.since)) {
				stale = p
			}
		}
		if stale != nil {
			r.log.Info("viewer limit reached; dropping a viewer that never connected", "dropped", stale.id, "viewer", id)
			r.removePeer(stale, ErrConnectTimeout)
		} else {
			// Next, a viewer whose connection is down (waiting for an ICE
			// restart that may never come: it may be this very viewer,
			// reconnecting under a new client id).
			// That includes an ICE restart that is not getting anywhere.
			now := time.Now()
			var staleSince time.Time
			for _, p := range r.peers {
				if d := p.downSince(now, r.restartGrace()); !d.IsZero() && (stale == nil || d.Before(staleSince)) {
					stale, staleSince = p, d
				}
			}
			if stale != nil {
				r.log.Info("viewer limit reached; dropping a viewer whose connection is down", "dropped", stale.id, "viewer", id,
					"down_for", now.Sub(staleSince).Round(time.Millisecond))
				r.removePeer(stale, ErrDisconnected)
			}
		}
		if stale == nil {
			// Last, a viewer from which nothing has arrived for a while:
			// ICE has not noticed yet, but its path is dead.
			var silentFor time.Duration
			for _, p := range r.peers {
				if d := silence(p.pc); d > silentThreshold && d > silentFor {
					stale, silentFor = p, d
				}
			}
			if stale != nil {
				r.log.Info("viewer limit reached; dropping a viewer nothing has arrived from", "dropped", stale.id, "viewer", id,
					"silent_for", silentFor.Round(time.Millisecond))
				r.removePeer(stale, ErrDisconnected)
			}
		}
	}
	if len(r.peers) >= r.cfg.MaxViewers {
		r.log.Warn("too many viewers; not answering the offer", "viewer", id, "max_viewers", r.cfg.MaxViewers)
		fail(fmt.Errorf("%w: %d of %d connected", ErrTooManyViewers, len(r.peers), r.cfg.MaxViewers))
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
	r.peers[id] = p
	r.m.mu.Lock()
	r.m.peers[id] = p
	r.m.mu.Unlock()
	p.corr = signaling.NewCorrelationID()
	r.send(ctx, outMsg{action: kvsproto.ActionSDPAnswer, sd: &kvsproto.SessionDescription{Type: "answer", SDP: answer}, to: id, corr: p.corr})
	if q := r.early[id]; q != nil {
		delete(r.early, id)
		for _, c := range q.cands {
			r.addRemoteCandidate(p, c)
		}
	}
	r.log.Debug("answered a viewer's offer", "viewer", id, "correlation_id", p.corr, "audio", p.audio != nil)
	r.emit(Event{Kind: EventViewerAnswered, ClientID: id})
}

// restartPeer applies an ICE-restart offer to a viewer's existing peer
// connection and answers it, so that the DTLS session and the media
// survive the viewer's change of network. It reports false if the offer
// could not be applied (the caller then replaces the peer).
func (r *run) restartPeer(ctx context.Context, p *peer, offer *kvsproto.SessionDescription, sum offerSummary) bool {
	if p.pc.SignalingState() != webrtc.SignalingStateStable {
		return false
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		r.log.Warn("cannot apply the viewer's ICE restart; replacing its peer", "viewer", p.id, "err", err)
		return false
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(answer)
	}
	if err == nil {
		answer.SDP, err = rtc.WithTrickle(answer.SDP) // what is sent; see newPeer
	}
	if err == nil {
		answer.SDP, err = r.receiveOnly(answer.SDP)
	}
	if err != nil {
		r.log.Warn("cannot answer the viewer's ICE restart; replacing its peer", "viewer", p.id, "err", err)
		return false
	}
	p.ufrag = sum.ufrag
	p.restartedAt = time.Now()
	p.corr = signaling.NewCorrelationID()
	r.send(ctx, outMsg{action: kvsproto.ActionSDPAnswer, sd: &kvsproto.SessionDescription{Type: "answer", SDP: answer.SDP}, to: p.id, corr: p.corr})
	if q := r.early[p.id]; q != nil {
		delete(r.early, p.id)
		for _, c := range q.cands {
			r.addRemoteCandidate(p, c)
		}
	}
	r.log.Info("viewer restarted ICE; answered on its existing peer connection", "viewer", p.id)
	r.emit(Event{Kind: EventViewerRestarted, ClientID: p.id})
	return true
}

// restartGrace is how long a viewer's ICE restart may go without
// connecting before its peer counts as down.
func (r *run) restartGrace() time.Duration {
	return min(maxRestartGrace, r.cfg.DisconnectedTimeout)
}

// silentThreshold is how long nothing may arrive from a connected viewer
// (it sends RTCP reports every second and ICE consent checks every 2 s)
// before the master may drop it to make room for a new viewer.
const silentThreshold = 4 * time.Second

// silence returns how long nothing has arrived on a peer connection's
// candidate pairs (0 if it cannot tell).
func silence(pc *webrtc.PeerConnection) time.Duration {
	var last time.Time
	for _, st := range pc.GetStats() {
		if cp, ok := st.(webrtc.ICECandidatePairStats); ok && cp.Nominated {
			if t := cp.LastPacketReceivedTimestamp.Time(); t.After(last) {
				last = t
			}
		}
	}
	if last.IsZero() {
		return 0
	}
	return time.Since(last)
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
	p := r.peers[id]
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
	if err := p.pc.AddICECandidate(c); err != nil {
		r.log.Debug("ignoring a viewer's ICE candidate", "viewer", p.id, "candidate", c.Candidate, "err", err)
	}
}

func toKVS(c webrtc.ICECandidateInit) *kvsproto.ICECandidate {
	return &kvsproto.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
}

// refreshICE keeps the ICE cache fresh, so that an offer never waits for
// GetIceServerConfig: it fetches again at each configuration's RefreshAt,
// and at once after RECONNECT_ICE_SERVER.
func (r *run) refreshICE(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := 5 * time.Second
		cfg, err := r.ice.Get(ctx, r.arn, kvsproto.RoleMaster, r.endpoints().HTTPS, "")
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.Warn("refreshing ICE servers failed; retrying", "err", err, "retry_in", wait)
		default:
			wait = max(time.Until(cfg.RefreshAt), time.Second)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.iceKick:
		}
	}
}

// pionLogger returns the logger pion's messages go to: all of them when
// the master logs at debug level, else only errors (pion warns about
// routine things, such as streams closed while a peer shuts down).
func pionLogger(l *slog.Logger) *slog.Logger {
	if l.Enabled(context.Background(), slog.LevelDebug) {
		return l
	}
	return slog.New(minLevel{Handler: l.Handler(), min: slog.LevelError})
}

// minLevel is a slog.Handler that drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(as), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}
