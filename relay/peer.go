package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// gatherTimeout bounds how long an answer waits for the relay's ICE
// candidates (host candidates take milliseconds; STUN and TURN ones more).
const gatherTimeout = 5 * time.Second

// Peer is one downstream peer connection of a channel. Its methods are
// safe for concurrent use.
type Peer struct {
	id      string
	u       *upstream
	r       *Relay
	pc      *webrtc.PeerConnection
	vtrack  *webrtc.TrackLocalStaticSample
	atrack  *webrtc.TrackLocalStaticSample // nil: no audio
	vb, ab  *media.Broadcaster
	codec   rtc.Codec
	created time.Time
	done    chan struct{}
	ctx     context.Context // ends at teardown
	cancel  context.CancelFunc
	rtcpWG  sync.WaitGroup // RTCP readers and the readers of the peer's tracks
	tearing sync.Once
	sigMu   sync.Mutex // serializes Patch

	vsub atomic.Pointer[media.Subscription] // read by the RTCP reader and the queue

	mu          sync.Mutex
	answer      string
	remote      string // the current remote offer (ICE restarts replace its credentials)
	vq, aq      *media.QueuedWriter
	asub        *media.Subscription
	state       webrtc.PeerConnectionState
	connectedAt time.Time
	closed      bool
	reason      string
	watchdog    *time.Timer
	restarts    int
	dcs         []*webrtc.DataChannel // open data channels (Config.Data), oldest first
}

func newPeerID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newPeer builds a peer for an offer and attaches it to u.
func newPeer(ctx context.Context, u *upstream, off offerInfo, video, audio *media.Broadcaster) (*Peer, error) {
	r := u.r
	pc, err := r.api.NewPeerConnection(webrtc.Configuration{ICEServers: rtc.ICEServers(r.cfg.ICEServers)})
	if err != nil {
		return nil, fmt.Errorf("relay: creating a peer connection: %w", err)
	}
	p := &Peer{
		id: newPeerID(), u: u, r: r, pc: pc, vb: video, codec: video.Codec(),
		created: time.Now(), done: make(chan struct{}), remote: off.sdp,
		state: webrtc.PeerConnectionStateNew,
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Peer, error) {
		p.teardown()
		return nil, err
	}
	if r.cfg.Talk {
		pc.OnTrack(p.onTrack)
	}
	if r.cfg.Data {
		pc.OnDataChannel(p.acceptData)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: off.sdp}); err != nil {
		return fail(fmt.Errorf("%w: applying it: %w", ErrBadOffer, err))
	}
	vcap, err := rtc.Capability(p.codec)
	if err != nil {
		return fail(err)
	}
	if p.vtrack, err = webrtc.NewTrackLocalStaticSample(vcap, "video", "kvsrtc"); err != nil {
		return fail(fmt.Errorf("relay: video track: %w", err))
	}
	vs, err := pc.AddTrack(p.vtrack)
	if err != nil {
		return fail(fmt.Errorf("%w: no video section can take the channel's %s video: %w", ErrBadOffer, p.codec, err))
	}
	if err := rtc.PreferAnswerCodec(pc, vs, vcap); err != nil {
		return fail(fmt.Errorf("%w: the channel's video is %s: %w", ErrBadOffer, p.codec, err))
	}
	p.readRTCP(vs, true)
	if audio != nil && off.audio {
		acap, err := rtc.Capability(rtc.CodecOpus)
		if err != nil {
			return fail(err)
		}
		if p.atrack, err = webrtc.NewTrackLocalStaticSample(acap, "audio", "kvsrtc"); err != nil {
			return fail(fmt.Errorf("relay: audio track: %w", err))
		}
		as, err := pc.AddTrack(p.atrack)
		if err != nil {
			return fail(fmt.Errorf("%w: the audio section cannot take Opus: %w", ErrBadOffer, err))
		}
		if err := rtc.PreferAnswerCodec(pc, as, acap); err != nil {
			return fail(fmt.Errorf("%w: the channel's audio is Opus: %w", ErrBadOffer, err))
		}
		p.ab = audio
		p.readRTCP(as, false)
	}
	pc.OnConnectionStateChange(p.onState)
	local, err := p.localDescription(ctx, nil)
	if err != nil {
		return fail(err)
	}
	p.answer = local
	if err := u.addPeer(p); err != nil {
		return fail(err)
	}
	p.mu.Lock()
	if !p.closed && p.state != webrtc.PeerConnectionStateConnected {
		p.watchdog = time.AfterFunc(r.cfg.PeerTimeout, p.expire)
	}
	p.mu.Unlock()
	return p, nil
}

// localDescription creates and sets the answer and returns it with every
// candidate gathered (within gatherTimeout).
func (p *Peer) localDescription(ctx context.Context, opts *webrtc.AnswerOptions) (string, error) {
	answer, err := p.pc.CreateAnswer(opts)
	if err != nil {
		return "", fmt.Errorf("%w: answering it: %w", ErrBadOffer, err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("%w: answering it: %w", ErrBadOffer, err)
	}
	t := time.NewTimer(gatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C: // answer with what was gathered
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return p.pc.LocalDescription().SDP, nil
}

// readRTCP reads a sender's RTCP until the peer closes; a PLI or FIR on
// the video asks for the cached GOP again.
func (p *Peer) readRTCP(s *webrtc.RTPSender, video bool) {
	var onKey func()
	if video {
		onKey = func() {
			if sub := p.vsub.Load(); sub != nil {
				sub.RequestKeyframe()
			}
		}
	}
	p.rtcpWG.Go(func() { media.ReadSenderRTCP(s, onKey) })
}

// onState follows the peer connection: media starts when it connects
// (pion drops samples written before), and a peer that stays down for
// Config.PeerTimeout is closed.
func (p *Peer) onState(s webrtc.PeerConnectionState) {
	if s == webrtc.PeerConnectionStateClosed {
		go p.close("the peer connection closed")
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.state = s
	switch s {
	case webrtc.PeerConnectionStateConnected:
		if p.watchdog != nil {
			p.watchdog.Stop()
			p.watchdog = nil
		}
		if p.connectedAt.IsZero() {
			p.connectedAt = time.Now()
		}
		p.subscribeLocked()
	case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed:
		if p.watchdog == nil {
			p.watchdog = time.AfterFunc(p.r.cfg.PeerTimeout, p.expire)
		}
	}
}

// subscribeLocked connects the tracks to the broadcasters, once.
func (p *Peer) subscribeLocked() {
	if p.vq != nil {
		return
	}
	qcfg := media.QueueConfig{MaxSamples: p.r.cfg.QueueSamples, OnDrop: func(n int) {
		if sub := p.vsub.Load(); sub != nil {
			sub.RequestKeyframe()
		}
	}}
	p.vq = media.NewQueuedWriter(p.vtrack, qcfg)
	p.vsub.Store(p.vb.Subscribe(p.vq))
	if p.atrack != nil {
		p.aq = media.NewQueuedWriter(p.atrack, media.QueueConfig{MaxSamples: p.r.cfg.QueueSamples})
		p.asub = p.ab.Subscribe(p.aq)
	}
}

// expire closes a peer that is not connected.
func (p *Peer) expire() {
	p.mu.Lock()
	up := p.state == webrtc.PeerConnectionStateConnected
	p.watchdog = nil
	p.mu.Unlock()
	if !up {
		p.close(fmt.Sprintf("not connected within %v", p.r.cfg.PeerTimeout))
	}
}

// ID identifies the peer within its Relay (see Relay.Peer): 24 random hex
// digits, fit for a URL.
func (p *Peer) ID() string { return p.id }

// Channel returns the peer's channel.
func (p *Peer) Channel() string { return p.u.name }

// Answer returns the SDP answer to the peer's offer, with the relay's
// candidates.
func (p *Peer) Answer() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.answer
}

// Status returns the channel's upstream status now.
func (p *Peer) Status() Status { return p.u.currentStatus() }

// NextStatus waits for a status with a Seq above after (0: return the
// current one) and returns it. It returns ctx's error when ctx ends, and
// ErrClosed (with the last status) when the peer closes.
func (p *Peer) NextStatus(ctx context.Context, after uint64) (Status, error) {
	return p.u.waitStatus(ctx, after, p.done)
}

// Done is closed when the peer has closed.
func (p *Peer) Done() <-chan struct{} { return p.done }

// Close closes the peer connection and detaches the peer; the channel's
// upstream closes Config.Linger after its last peer leaves.
func (p *Peer) Close() error {
	p.close("closed by the application")
	return nil
}

// close closes the peer once and waits until it is closed.
func (p *Peer) close(reason string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.closed, p.reason = true, reason
	p.mu.Unlock()
	p.r.log.Debug("relay: peer closing", "peer", p.id, "channel", p.u.name, "reason", reason)
	p.teardown()
	out, dropped := p.counts()
	p.u.removePeer(p, out, dropped)
	p.r.forget(p)
}

// teardown stops the media and the peer connection and closes done, once.
func (p *Peer) teardown() { p.tearing.Do(p.tearDown) }

func (p *Peer) tearDown() {
	p.mu.Lock()
	p.closed = true
	if p.watchdog != nil {
		p.watchdog.Stop()
		p.watchdog = nil
	}
	vq, aq, asub := p.vq, p.aq, p.asub
	p.dcs = nil
	p.mu.Unlock()
	p.cancel()
	if sub := p.vsub.Load(); sub != nil {
		sub.Unsubscribe()
	}
	if asub != nil {
		asub.Unsubscribe()
	}
	if vq != nil {
		vq.Close()
	}
	if aq != nil {
		aq.Close()
	}
	_ = p.pc.Close()
	p.rtcpWG.Wait()
	close(p.done)
}

// counts returns the payload bytes sent and the samples dropped.
func (p *Peer) counts() (out, dropped uint64) {
	p.mu.Lock()
	vq, aq := p.vq, p.aq
	p.mu.Unlock()
	for _, q := range []*media.QueuedWriter{vq, aq} {
		if q != nil {
			s := q.Stats()
			out += s.Bytes
			dropped += s.Dropped
		}
	}
	return out, dropped
}
