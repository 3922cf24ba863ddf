package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// Relay shares one upstream viewer session per channel with any number of
// downstream peers. Its methods are safe for concurrent use.
type Relay struct {
	cfg Config
	log *slog.Logger
	api *webrtc.API // downstream peer connections

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // upstream loops

	mu      sync.Mutex
	chans   map[string]*upstream
	peers   map[string]*Peer
	closed  bool
	opened  uint64 // upstream sessions started, all channels
	retired channelTotals
}

// channelTotals keeps the counters of closed upstreams, so totals never go
// down.
type channelTotals struct {
	bytesIn, bytesOut, dropped uint64
}

// New validates cfg, opens the upstream sessions of cfg.Warm and returns
// the Relay. Close releases it.
func New(cfg Config) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	api, err := rtc.NewAPI(rtc.Config{
		LoopbackOnly: cfg.LoopbackOnly, Logger: log, Audio: cfg.Audio || cfg.Talk,
		ICEPortMin: cfg.ICEPortMin, ICEPortMax: cfg.ICEPortMax,
		TURNRootCAs: rtc.RootCAs(cfg.HTTPClient),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{
		cfg: cfg, log: log.With("component", "relay"), api: api, ctx: ctx, cancel: cancel,
		chans: map[string]*upstream{}, peers: map[string]*Peer{},
	}
	r.mu.Lock()
	for _, ch := range cfg.Warm {
		if _, ok := r.chans[ch]; !ok {
			r.startLocked(ch, true)
		}
	}
	r.mu.Unlock()
	return r, nil
}

// startLocked starts the upstream of channel; r.mu is held.
func (r *Relay) startLocked(channel string, warm bool) *upstream {
	u := newUpstream(r, channel, warm)
	r.chans[channel] = u
	r.opened++
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		u.run()
	}()
	return u
}

// Join answers a downstream peer's SDP offer for channel: it opens the
// channel's upstream session if none is open, waits (at most
// Config.JoinTimeout) until the upstream knows the camera's video codec,
// and returns the Peer, whose Answer is the SDP answer with all of the
// relay's candidates. The peer gets media once its connection is up, from
// the cached GOP on. ctx bounds only the joining.
//
// Errors wrap ErrUnknownChannel, ErrBadOffer, ErrUnavailable, ErrClosed
// or ctx's error.
func (r *Relay) Join(ctx context.Context, channel, offer string) (*Peer, error) {
	if err := validChannel(channel); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownChannel, err)
	}
	if r.cfg.Allow != nil {
		if err := r.cfg.Allow(channel); err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrUnknownChannel, channel, err)
		}
	}
	off, err := parseOffer(offer)
	if err != nil {
		return nil, err
	}
	u, err := r.acquire(ctx, channel)
	if err != nil {
		return nil, err
	}
	defer u.release()
	video, audio, err := u.waitVideo(ctx)
	if err != nil {
		return nil, err
	}
	p, err := newPeer(ctx, u, off, video, audio)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		p.close("relay closed")
		return nil, ErrClosed
	}
	r.peers[p.id] = p
	r.mu.Unlock()
	return p, nil
}

// acquire returns the channel's upstream with a hold on it (so it does not
// linger out while a peer joins), starting it if needed. A channel not yet
// open is looked up first, so an unknown one fails at once.
func (r *Relay) acquire(ctx context.Context, channel string) (*upstream, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if u, ok := r.chans[channel]; ok && u.hold() {
		r.mu.Unlock()
		return u, nil
	}
	r.mu.Unlock()

	if _, err := r.cfg.Control.ResolveChannel(ctx, channel); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if c, _ := cause.Classify(err); c == cause.ChannelNotFound {
			return nil, fmt.Errorf("%w %q: %w", ErrUnknownChannel, channel, err)
		}
		return nil, fmt.Errorf("%w: looking up channel %q: %w", ErrUnavailable, channel, err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	u, ok := r.chans[channel]
	if !ok || !u.hold() {
		u = r.startLocked(channel, false)
		u.hold()
	}
	return u, nil
}

// retire forgets an upstream that closed; called by the upstream.
func (r *Relay) retire(u *upstream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.chans[u.name] == u {
		delete(r.chans, u.name)
	}
	in, out, dropped := u.totals()
	r.retired.bytesIn += in
	r.retired.bytesOut += out
	r.retired.dropped += dropped
}

// forget removes a closed peer from the index.
func (r *Relay) forget(p *Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers[p.id] == p {
		delete(r.peers, p.id)
	}
}

// Peer returns the peer with id (see Peer.ID), or nil.
func (r *Relay) Peer(id string) *Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[id]
}

// Status returns the current status of channel's upstream, and false if
// the channel has no upstream open.
func (r *Relay) Status(channel string) (Status, bool) {
	r.mu.Lock()
	u, ok := r.chans[channel]
	r.mu.Unlock()
	if !ok {
		return Status{}, false
	}
	return u.currentStatus(), true
}

// Close closes every peer and upstream session and waits until their
// goroutines have returned. Join fails with ErrClosed afterwards.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.wg.Wait()
		return nil
	}
	r.closed = true
	peers := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	r.mu.Unlock()
	for _, p := range peers {
		p.close("relay closed")
	}
	r.cancel()
	r.wg.Wait()
	return nil
}

// errOr returns err, or ErrClosed if the relay is closing.
func (r *Relay) errOr(err error) error {
	if r.ctx.Err() != nil {
		return errors.Join(ErrClosed, err)
	}
	return err
}
