package master

import (
	"context"
	"fmt"
	"strings"
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
// owns it; pion's callbacks only forward into the loop's channel, and stop
// doing so once closing is closed.
type peer struct {
	id      string
	pc      *webrtc.PeerConnection
	video   *webrtc.TrackLocalStaticSample
	audio   *webrtc.TrackLocalStaticSample // nil: no audio for this viewer
	closing chan struct{}                  // closed when the peer is being torn down
	rtcpWG  sync.WaitGroup                 // RTCP readers

	vsub atomic.Pointer[media.Subscription] // read by the RTCP reader
	asub *media.Subscription

	bytes   atomic.Uint64
	samples atomic.Uint64

	tw twoWay // talk-back and data channels (twoway.go)

	// Written by the loop under Master.mu, read by Viewers.
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

// downSince is when the peer's connection went down: disconnected or
// failed, or an ICE restart that has not connected within grace. Zero if
// it is up.
func (p *peer) downSince(now time.Time, grace time.Duration) time.Time {
	if !p.disconnectedAt.IsZero() {
		return p.disconnectedAt
	}
	if !p.restartedAt.IsZero() && now.Sub(p.restartedAt) > grace && !iceConnected(p.pc) {
		return p.restartedAt
	}
	return time.Time{}
}

// checkRestart forgets the last ICE restart once ICE is connected again.
func (p *peer) checkRestart() {
	if !p.restartedAt.IsZero() && iceConnected(p.pc) {
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

// peerEvent is what pion's callbacks forward to the loop.
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
	pc, err := r.api.NewPeerConnection(webrtc.Configuration{
		ICEServers:         iceServers(ice),
		ICETransportPolicy: r.cfg.policy(),
	})
	if err != nil {
		return nil, "", fmt.Errorf("creating the peer connection: %w", err)
	}
	now := time.Now()
	p := &peer{
		id: id, pc: pc, closing: make(chan struct{}),
		state: ViewerConnecting, since: now, deadline: now.Add(r.cfg.ConnectTimeout),
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return // gathering complete; KVS has no end-of-candidates message
		}
		init := c.ToJSON()
		p.forward(r.peerEvents, peerEvent{p: p, cand: &init})
	})
	pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) {
		p.forward(r.peerEvents, peerEvent{p: p, state: true})
	})
	r.onTwoWay(p)
	fail := func(stage string, err error) (*peer, string, error) {
		r.closePeer(p)
		return nil, "", fmt.Errorf("%s: %w", stage, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
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
	vs, err := pc.AddTrack(p.video)
	if err != nil {
		return fail("adding the video track", err)
	}
	// Answer with exactly the codec and payload type the track sends on:
	// a viewer that binds to the first listed payload type (go2rtc) would
	// otherwise drop media sent on another one.
	if err := rtc.PreferAnswerCodec(pc, vs, vcap); err != nil {
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
		as, err := pc.AddTrack(p.audio)
		if err != nil {
			return fail("adding the audio track", err)
		}
		if err := rtc.PreferAnswerCodec(pc, as, acap); err != nil {
			return fail("choosing the audio codec", err)
		}
		p.readRTCP(as, false)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail("creating the answer", err)
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail("setting the answer", err)
	}
	// Announce trickle ICE in what is sent (pion refuses a modified local
	// description, and the attribute only informs the viewer): the C SDK
	// treats a peer whose SDP lacks it as non-trickle.
	//
	// The host candidates, gathered within a few milliseconds, also go into
	// the answer (they are trickled as well): a viewer that knows them when
	// it applies the answer does not meet the master's first connectivity
	// checks as an unknown, peer-reflexive address, which pion-based
	// viewers (go2rtc) hold back for 1 s before using.
	sent, err := rtc.WithTrickle(withGatheredCandidates(pc, answer.SDP, hostGatherWait))
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

// withGatheredCandidates returns the local description with the candidates
// gathered so far, once it has at least one (looking every millisecond, at
// most wait), or sdp as it was.
func withGatheredCandidates(pc *webrtc.PeerConnection, sdp string, wait time.Duration) string {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if ld := pc.LocalDescription(); ld != nil && strings.Contains(ld.SDP, "a=candidate:") {
			return ld.SDP
		}
		select {
		case <-deadline.C:
			return sdp
		case <-tick.C:
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
	p.rtcpWG.Add(1)
	go func() {
		defer p.rtcpWG.Done()
		media.ReadSenderRTCP(s, onKeyframeRequest)
	}()
}

// subscribe connects the peer's tracks to the broadcasters (once it is
// connected: pion drops samples written before that).
func (r *run) subscribe(p *peer) {
	p.vsub.Store(r.video.Subscribe(countingWriter{w: p.video, p: p}))
	if p.audio != nil && r.audio != nil {
		p.asub = r.audio.Subscribe(countingWriter{w: p.audio, p: p})
	}
}

// closePeer stops the peer's media and closes its PeerConnection in the
// background (owned by the run's WaitGroup).
func (r *run) closePeer(p *peer) {
	select {
	case <-p.closing:
		return
	default:
	}
	close(p.closing)
	p.closeTwoWay()
	if sub := p.vsub.Load(); sub != nil {
		sub.Unsubscribe()
	}
	if p.asub != nil {
		p.asub.Unsubscribe()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := p.pc.Close(); err != nil {
			r.log.Debug("closing a peer connection", "viewer", p.id, "err", err)
		}
		p.rtcpWG.Wait()
		p.tw.wg.Wait() // talk-back finalised
	}()
}
