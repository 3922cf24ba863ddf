package master

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// peer is one viewer's PeerConnection and its tracks. The loop goroutine
// owns it. conn turns pion's callbacks into channels; pump forwards them
// into the loop's channel until closing is closed.
type peer struct {
	id      string
	conn    *rtc.Peer
	video   *webrtc.TrackLocalStaticSample
	audio   *webrtc.TrackLocalStaticSample // nil: no audio for this viewer
	closing chan struct{}                  // closed when the peer is being torn down

	vsub atomic.Pointer[media.Subscription] // read by the RTCP reader
	asub *media.Subscription

	bytes   atomic.Uint64
	samples atomic.Uint64

	tw twoWay // talk-back and data channels (twoway.go)

	// Written by the loop under peerSet.mu, read by Viewers.
	state       ViewerState
	since       time.Time
	connectedAt time.Time

	// Loop only.
	corr           string    // correlation id of the answer
	ufrag          string    // the offer's ICE username fragment
	fingerprint    string    // the offer's DTLS fingerprint
	joined         bool      // EventViewerJoined was emitted
	disconnectedAt time.Time // zero unless disconnected
	restartedAt    time.Time // the last ICE restart, until ICE is connected again
	deadline       time.Time // connect deadline while not joined
	talking        bool      // EventTalkStarted without EventTalkStopped
}

// peerSet is the one map of the current viewers, by client id. The run's
// loop is its only writer and writes under mu; the loop reads it without
// the lock, other goroutines (Viewers, Send) with it.
type peerSet struct {
	mu sync.Mutex
	m  map[string]*peer
}

// get returns a viewer's peer, or nil (loop).
func (s *peerSet) get(id string) *peer { return s.m[id] }

// count is how many viewers there are (loop).
func (s *peerSet) count() int { return len(s.m) }

// put adds or replaces a viewer (loop).
func (s *peerSet) put(p *peer) {
	s.mu.Lock()
	s.m[p.id] = p
	s.mu.Unlock()
}

// remove forgets p if it is the current peer of its viewer (loop).
func (s *peerSet) remove(p *peer) {
	if s.m[p.id] != p {
		return
	}
	s.mu.Lock()
	delete(s.m, p.id)
	s.mu.Unlock()
}

// lookup returns a viewer's peer, or nil (any goroutine).
func (s *peerSet) lookup(id string) *peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

// downSince is when the peer's connection went down: disconnected or
// failed, or an ICE restart that has not connected within grace. Zero if
// it is up.
func (p *peer) downSince(now time.Time, grace time.Duration) time.Time {
	if !p.disconnectedAt.IsZero() {
		return p.disconnectedAt
	}
	if !p.restartedAt.IsZero() && now.Sub(p.restartedAt) > grace && !iceConnected(p.conn.PC) {
		return p.restartedAt
	}
	return time.Time{}
}

// checkRestart forgets the last ICE restart once ICE is connected again.
func (p *peer) checkRestart() {
	if !p.restartedAt.IsZero() && iceConnected(p.conn.PC) {
		p.restartedAt = time.Time{}
	}
}

// maxRestartGrace is how long an ICE restart may take before the peer
// counts as down (at most DisconnectedTimeout). A restart through TURN
// takes 2-5 s; viewers give up on one after their answer timeout + 5 s
// (7.5 s by default) and reconnect, and that reconnect needs the slot.
const maxRestartGrace = 6 * time.Second

// iceConnected reports whether a peer connection's ICE transport is up.
func iceConnected(pc *webrtc.PeerConnection) bool {
	switch pc.ICEConnectionState() {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		return true
	}
	return false
}

// peerEvent is what a peer's pump, data channels and track readers forward
// to the loop.
type peerEvent struct {
	p     *peer
	cand  *webrtc.ICECandidateInit // a local candidate to send
	state bool                     // the connection state changed
	tw    *twoWayNote              // talk-back or data channel news
}

// forward hands ev to the loop unless the peer is closing.
func (p *peer) forward(ch chan<- peerEvent, ev peerEvent) {
	select {
	case ch <- ev:
	case <-p.closing:
	}
}

// countingWriter counts what the broadcaster writes to a viewer's track.
type countingWriter struct {
	w *webrtc.TrackLocalStaticSample
	p *peer
}

func (c countingWriter) WriteSample(s pmedia.Sample) error {
	if err := c.w.WriteSample(s); err != nil {
		return err
	}
	c.p.bytes.Add(uint64(len(s.Data)))
	c.p.samples.Add(1)
	return nil
}

// iceServers converts the control plane's ICE servers for pion.
func iceServers(cfg control.ICEConfig) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return rtc.ICEServers(out)
}

// newPeer builds a peer for an offer: a PeerConnection with the remote
// description applied, the local tracks added (their RTCP read) and the
// local description set. It returns the answer to send.
func (r *run) newPeer(ctx context.Context, id string, offer *kvsproto.SessionDescription, withAudio bool) (*peer, string, error) {
	ictx, cancel := context.WithTimeout(ctx, iceFetchTimeout)
	ice, err := r.ice.Get(ictx, r.arn, kvsproto.RoleMaster, r.endpoints().HTTPS, "")
	cancel()
	if err != nil {
		return nil, "", fmt.Errorf("fetching ICE servers: %w", err)
	}
	conn, err := rtc.NewPeer(r.api, webrtc.Configuration{
		ICEServers:         iceServers(ice),
		ICETransportPolicy: r.cfg.policy(),
	})
	if err != nil {
		return nil, "", fmt.Errorf("creating the peer connection: %w", err)
	}
	now := time.Now()
	p := &peer{
		id: id, conn: conn, closing: make(chan struct{}),
		state: ViewerConnecting, since: now, deadline: now.Add(r.cfg.ConnectTimeout),
	}
	r.onDataChannel(p)
	conn.Go(func(ctx context.Context) { r.pump(ctx, p) })
	fail := func(stage string, err error) (*peer, string, error) {
		r.closePeer(p)
		return nil, "", fmt.Errorf("%s: %w", stage, err)
	}
	if err := conn.SetOffer(offer.SDP); err != nil {
		return fail("applying the offer", err)
	}
	stream := "kvsrtc"
	vcap, err := rtc.Capability(r.codec)
	if err != nil {
		return fail("video track", err)
	}
	if p.video, err = webrtc.NewTrackLocalStaticSample(vcap, "video", stream); err != nil {
		return fail("video track", err)
	}
	vs, err := conn.PC.AddTrack(p.video)
	if err != nil {
		return fail("adding the video track", err)
	}
	// Answer with exactly the codec and payload type the track sends on:
	// a viewer that binds to the first listed payload type (go2rtc) would
	// otherwise drop media sent on another one.
	if err := rtc.PreferAnswerCodec(conn.PC, vs, vcap); err != nil {
		return fail("choosing the video codec", err)
	}
	p.readRTCP(vs, true)
	if withAudio {
		acap, err := rtc.Capability(rtc.CodecOpus)
		if err != nil {
			return fail("audio track", err)
		}
		if p.audio, err = webrtc.NewTrackLocalStaticSample(acap, "audio", stream); err != nil {
			return fail("audio track", err)
		}
		as, err := conn.PC.AddTrack(p.audio)
		if err != nil {
			return fail("adding the audio track", err)
		}
		if err := rtc.PreferAnswerCodec(conn.PC, as, acap); err != nil {
			return fail("choosing the audio codec", err)
		}
		p.readRTCP(as, false)
	}
	// What is sent announces trickle ICE (the C SDK treats a peer whose
	// SDP lacks it as non-trickle) and carries the host candidates,
	// gathered within a few milliseconds (see rtc.Peer.Answer).
	sent, err := conn.Answer(hostGatherWait)
	if err == nil {
		sent, err = r.receiveOnly(sent)
	}
	if err != nil {
		return fail("creating the answer", err)
	}
	return p, sent, nil
}

// hostGatherWait bounds how long an answer waits for the host candidates.
const hostGatherWait = 20 * time.Millisecond

// pump forwards what the peer's connection reports to the loop and starts
// a reader for each remote track, until the peer is closed. It runs on a
// goroutine the rtc.Peer owns.
func (r *run) pump(ctx context.Context, p *peer) {
	c := p.conn
	for {
		select {
		case <-ctx.Done():
			return
		case cand := <-c.Candidates():
			// The end of gathering (Gathered) is not read: KVS has no
			// end-of-candidates message.
			init := cand.ToJSON()
			p.forward(r.peerEvents, peerEvent{p: p, cand: &init})
		case <-c.States():
			p.forward(r.peerEvents, peerEvent{p: p, state: true})
		case <-c.ICEStates():
			// Read and dropped: the loop asks for the ICE state when it
			// needs it (iceConnected).
		case t := <-c.Tracks():
			if ctx.Err() != nil {
				return // closing: no new readers
			}
			// The receiver's RTCP (reports) is read and dropped. This
			// goroutine holds a count of the Peer's, so Go cannot race
			// with Close's wait.
			c.ReadRTCP(t.Receiver)
			c.Go(func(context.Context) { r.readTrack(p, t.Remote) })
		}
	}
}

// readRTCP reads a sender's RTCP until the peer is closed (which pion's
// interceptors need: NACKs are answered from what is read here). A PLI or
// FIR from the viewer asks the broadcaster to start it over on a keyframe.
func (p *peer) readRTCP(s *webrtc.RTPSender, video bool) {
	var onKeyframeRequest func()
	if video {
		onKeyframeRequest = func() {
			if sub := p.vsub.Load(); sub != nil {
				sub.RequestKeyframe()
			}
		}
	}
	p.conn.Go(func(context.Context) { media.ReadSenderRTCP(s, onKeyframeRequest) })
}

// subscribe connects the peer's tracks to the broadcasters (once it is
// connected: pion drops samples written before that).
func (r *run) subscribe(p *peer) {
	p.vsub.Store(r.video.Subscribe(countingWriter{w: p.video, p: p}))
	if p.audio != nil && r.audio != nil {
		p.asub = r.audio.Subscribe(countingWriter{w: p.audio, p: p})
	}
}

// closePeer stops the peer's media and closes its connection gracefully in
// the background (owned by the run's WaitGroup): rtc.Peer.Close returns
// once pion's goroutines and the peer's readers (RTCP, talk-back) have
// ended.
func (r *run) closePeer(p *peer) {
	select {
	case <-p.closing:
		return
	default:
	}
	close(p.closing)
	if sub := p.vsub.Load(); sub != nil {
		sub.Unsubscribe()
	}
	if p.asub != nil {
		p.asub.Unsubscribe()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := p.conn.Close(); err != nil {
			r.log.Debug("closing a peer connection", "viewer", p.id, "err", err)
		}
	}()
}

// noteTalk keeps talking in step with the peer's talk-back events.
func (p *peer) noteTalk(kind EventKind) {
	switch kind {
	case EventTalkStarted:
		p.talking = true
	case EventTalkStopped:
		p.talking = false
	}
}
