package rtc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// ErrCandidate marks a remote ICE candidate the connection refused: with
// SetAnswer, the description was applied and only a candidate that came
// before it was not.
var ErrCandidate = errors.New("rtc: remote ICE candidate refused")

// Track is a remote track as pion's OnTrack delivers it.
type Track struct {
	Remote   *webrtc.TrackRemote
	Receiver *webrtc.RTPReceiver
}

// Peer wraps a pion PeerConnection so that a single goroutine can own it:
// pion's callbacks arrive as values on channels, goroutines started for
// the connection (track readers, RTCP drains) are owned by the Peer, and
// Close ends all of them. It also keeps the two rules every KVS peer needs
// when it negotiates, offering (Offer, SetAnswer) or answering (SetOffer,
// Answer): remote ICE candidates that arrive before the remote
// description wait for it, and what is sent announces trickle ICE.
//
// A callback blocks until its value is read or the Peer is closed, so a
// caller reads every channel it asked for, or closes the Peer.
//
// The channels are never closed: select on Done to learn that the Peer was
// closed.
type Peer struct {
	// PC is the wrapped connection, for what the Peer does not cover
	// (transceivers, stats, RTCP, data channels). Its OnICECandidate,
	// OnICEConnectionStateChange, OnConnectionStateChange and OnTrack
	// belong to the Peer; the others (OnDataChannel) are the caller's.
	PC *webrtc.PeerConnection

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	candidates chan *webrtc.ICECandidate
	gathered   chan struct{}
	iceStates  chan webrtc.ICEConnectionState
	states     chan webrtc.PeerConnectionState
	tracks     chan Track

	closeOnce sync.Once
	closeErr  error

	// Owned by the caller's goroutine (not locked): candidates waiting for
	// the remote description.
	remoteSet bool
	pending   []webrtc.ICECandidateInit
}

// NewPeer creates a PeerConnection with api and cfg and wires its
// callbacks to the Peer's channels.
func NewPeer(api *webrtc.API, cfg webrtc.Configuration) (*Peer, error) {
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, fmt.Errorf("rtc: new peer connection: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Peer{
		PC: pc, ctx: ctx, cancel: cancel,
		candidates: make(chan *webrtc.ICECandidate, 64),
		gathered:   make(chan struct{}, 1),
		iceStates:  make(chan webrtc.ICEConnectionState, 16),
		states:     make(chan webrtc.PeerConnectionState, 16),
		tracks:     make(chan Track, 4),
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			select {
			case p.gathered <- struct{}{}:
			default:
			}
			return
		}
		send(ctx, p.candidates, c)
	})
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) { send(ctx, p.iceStates, st) })
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) { send(ctx, p.states, st) })
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { send(ctx, p.tracks, Track{t, r}) })
	return p, nil
}

func send[T any](ctx context.Context, ch chan<- T, v T) {
	select {
	case ch <- v:
	case <-ctx.Done():
	}
}

// Candidates delivers each local ICE candidate as it is gathered.
func (p *Peer) Candidates() <-chan *webrtc.ICECandidate { return p.candidates }

// Gathered receives a value when local candidate gathering has ended.
func (p *Peer) Gathered() <-chan struct{} { return p.gathered }

// ICEStates delivers the ICE connection state changes.
func (p *Peer) ICEStates() <-chan webrtc.ICEConnectionState { return p.iceStates }

// States delivers the peer connection state changes.
func (p *Peer) States() <-chan webrtc.PeerConnectionState { return p.states }

// Tracks delivers each remote track as it arrives.
func (p *Peer) Tracks() <-chan Track { return p.tracks }

// Done is closed when Close has been called.
func (p *Peer) Done() <-chan struct{} { return p.ctx.Done() }

// Go runs f in a goroutine the Peer owns: its context ends when the Peer
// is closed, and Close waits for f to return. f must return once its
// context ends or the connection's reads fail.
func (p *Peer) Go(f func(ctx context.Context)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f(p.ctx)
	}()
}

// ReadRTCP drains the RTCP of a receiver (pion needs it read for its
// interceptors) until the connection closes; in a goroutine the Peer owns.
func (p *Peer) ReadRTCP(r *webrtc.RTPReceiver) {
	p.Go(func(context.Context) {
		for {
			if _, _, err := r.ReadRTCP(); err != nil {
				return
			}
		}
	})
}

// Offer creates an offer, applies it as the local description and returns
// the SDP to send: the same with a session-level a=ice-options:trickle
// (pion neither writes the attribute nor accepts a modified local
// description; the KVS C SDK answers an offer without it only when its own
// gathering ends). The remote description counts as unset until
// SetAnswer.
func (p *Peer) Offer(opts *webrtc.OfferOptions) (string, error) {
	o, err := p.PC.CreateOffer(opts)
	if err != nil {
		return "", fmt.Errorf("rtc: create offer: %w", err)
	}
	if err := p.PC.SetLocalDescription(o); err != nil {
		return "", fmt.Errorf("rtc: apply the offer: %w", err)
	}
	p.remoteSet = false
	return WithTrickle(o.SDP)
}

// SetAnswer applies an answer as the remote description and then adds the
// candidates that arrived before it. An error that wraps ErrCandidate
// means the answer was applied but some of those candidates were refused.
func (p *Peer) SetAnswer(sdpText string) error {
	return p.setRemote(webrtc.SDPTypeAnswer, sdpText)
}

// SetOffer is SetAnswer for the answering side: it applies an offer as the
// remote description (a new one, or an ICE restart on a stable
// connection) and then adds the candidates that arrived before it. Add
// the local tracks after it and then call Answer.
func (p *Peer) SetOffer(sdpText string) error {
	return p.setRemote(webrtc.SDPTypeOffer, sdpText)
}

func (p *Peer) setRemote(typ webrtc.SDPType, sdpText string) error {
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: sdpText}); err != nil {
		return fmt.Errorf("rtc: apply the %s: %w", typ, err)
	}
	p.remoteSet = true
	pending := p.pending
	p.pending = nil
	var errs []error
	for _, c := range pending {
		if err := p.PC.AddICECandidate(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrCandidate, err)
	}
	return nil
}

// Answer creates an answer to the offer applied with SetOffer, applies it
// as the local description and returns the SDP to send, which announces
// trickle ICE as Offer's does.
//
// With hostWait > 0 what is sent also carries the local candidates
// gathered so far, once there is one (looking every millisecond, for at
// most hostWait; they are trickled as well): a peer that knows the host
// candidates when it applies the answer does not meet the first
// connectivity checks as an unknown, peer-reflexive address, which
// pion-based peers (go2rtc) hold back for a second before using.
func (p *Peer) Answer(hostWait time.Duration) (string, error) {
	a, err := p.PC.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("rtc: create the answer: %w", err)
	}
	if err := p.PC.SetLocalDescription(a); err != nil {
		return "", fmt.Errorf("rtc: apply the answer: %w", err)
	}
	sent := a.SDP
	if hostWait > 0 {
		sent = p.withGathered(sent, hostWait)
	}
	return WithTrickle(sent)
}

// withGathered returns the local description with the candidates gathered
// so far, once it has at least one (looking every millisecond, at most
// wait), or sdpText as it was.
func (p *Peer) withGathered(sdpText string, wait time.Duration) string {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if ld := p.PC.LocalDescription(); ld != nil && strings.Contains(ld.SDP, "a=candidate:") {
			return ld.SDP
		}
		select {
		case <-deadline.C:
			return sdpText
		case <-tick.C:
		}
	}
}

// AddCandidate adds a remote ICE candidate, or keeps it until the remote
// description is set when it is not yet.
func (p *Peer) AddCandidate(c webrtc.ICECandidateInit) error {
	if !p.remoteSet {
		p.pending = append(p.pending, c)
		return nil
	}
	if err := p.PC.AddICECandidate(c); err != nil {
		return fmt.Errorf("%w: %w", ErrCandidate, err)
	}
	return nil
}

// Pending is how many remote candidates wait for the remote description.
func (p *Peer) Pending() int { return len(p.pending) }

// Close ends the connection gracefully (pion's GracefulClose: its own
// goroutines have ended when it returns), ends the context of the
// goroutines started with Go and waits for them. Safe to call more than
// once; later calls return the first call's error.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		// Unblock callbacks first: GracefulClose waits for pion's
		// goroutines, which may be inside one of them.
		p.cancel()
		p.closeErr = p.PC.GracefulClose()
		p.wg.Wait()
	})
	return p.closeErr
}
