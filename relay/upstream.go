package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// upstream is one channel's upstream: a loop of viewer sessions feeding
// the channel's broadcasters, and the channel's peers.
type upstream struct {
	r    *Relay
	name string
	warm bool
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	holds      int // joins in progress
	peers      map[*Peer]struct{}
	closing    bool
	linger     *time.Timer
	status     Status
	changed    chan struct{} // closed and replaced when status changes
	streamed   bool
	video      *media.Broadcaster // nil until the first video frame
	videoReady chan struct{}      // closed when video is first set
	audio      *media.Broadcaster // nil without Config.Audio
	sessions   uint64
	detail     string // the status detail, before what declinedNoteLocked adds

	// Two-way (twoway.go).
	talkSrc      *talkSource // the current session's, nil without Config.Talk or between sessions
	talker       *Peer       // holds the talk-back floor
	talkLast     time.Time   // the holder's last packet
	talkTimer    *time.Timer // frees the floor after Config.FloorIdle of silence
	talkDeclined error       // the camera declined talk-back (this session)
	dataDeclined error       // the camera declined the data channel (this session)
	dataOut      chan outMsg // peers' messages for the camera

	// Video sink state (the viewer's video receiver goroutine).
	vmu  sync.Mutex
	gate media.FeedGate

	cur atomic.Pointer[viewer.Session] // the upstream session now, nil between sessions

	bytesIn, framesIn, audioIn atomic.Uint64
	goneOut, goneDropped       atomic.Uint64 // of peers that left

	talkForwarded, talkDropped                             atomic.Uint64
	msgsToCamera, msgsFromCamera, msgsToPeers, msgsDropped atomic.Uint64
}

func newUpstream(r *Relay, name string, warm bool) *upstream {
	ctx, cancel := context.WithCancel(r.ctx)
	u := &upstream{
		r: r, name: name, warm: warm, log: r.log.With("channel", name),
		ctx: ctx, cancel: cancel, peers: map[*Peer]struct{}{},
		changed: make(chan struct{}), videoReady: make(chan struct{}),
		dataOut: make(chan outMsg, dataQueue),
	}
	if r.cfg.Audio {
		u.audio = media.NewFedBroadcaster(rtc.CodecOpus, media.BroadcasterConfig{Logger: u.log})
	}
	u.setStatusLocked(StateConnecting, cause.None, "opening the upstream session")
	return u
}

// run opens viewer sessions until the upstream closes; a session that gives
// up makes the channel offline, and the next one starts after
// Config.RestartDelay.
func (u *upstream) run() {
	defer func() {
		u.mu.Lock()
		u.closing = true
		u.stopFloorLocked()
		u.setStatusLocked(StateClosed, cause.None, "upstream closed")
		u.mu.Unlock()
		u.closePeers("the channel's upstream closed")
		u.r.retire(u)
	}()
	for {
		err := u.session()
		if u.ctx.Err() != nil {
			return
		}
		c := cause.None
		var se *viewer.SessionError
		if errors.As(err, &se) {
			c = se.Cause
		} else if err != nil {
			c, _ = cause.Classify(err)
		}
		detail := fmt.Sprintf("the upstream session ended (%v); trying again in %v", err, u.r.cfg.RestartDelay)
		u.log.Warn("relay: upstream gave up", "cause", c, "err", err)
		u.mu.Lock()
		if c == cause.None && trouble(u.status.State) {
			c = u.status.Cause
		}
		u.setStatusLocked(StateOffline, c, detail)
		u.mu.Unlock()
		t := time.NewTimer(u.r.cfg.RestartDelay)
		select {
		case <-u.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session runs one upstream viewer session.
func (u *upstream) session() error {
	cfg := u.r.cfg
	vc := viewer.Config{
		Control: cfg.Control, ICECache: cfg.ICECache, HTTPClient: cfg.HTTPClient,
		ClientIDPrefix: "kvsrtc-relay-", Audio: cfg.Audio, VideoCodecs: cfg.VideoCodecs,
		LoopbackOnly: cfg.LoopbackOnly, Logger: u.log,
	}
	if cfg.Viewer != nil {
		cfg.Viewer(&vc)
	}
	vc.Channel, vc.Sinks, vc.OnEvent = u.name, []media.Sink{u}, u.onEvent
	vc.Talk, vc.Data = nil, cfg.Data
	var talk *talkSource
	if cfg.Talk {
		talk = newTalkSource()
		vc.Talk = talk
	}
	s, err := viewer.New(vc)
	if err != nil {
		return err
	}
	u.cur.Store(s)
	defer u.cur.CompareAndSwap(s, nil)
	u.mu.Lock()
	u.sessions++
	u.talkSrc, u.talkDeclined, u.dataDeclined = talk, nil, nil
	u.mu.Unlock()
	u.vmu.Lock()
	u.gate.Restart()
	u.vmu.Unlock()
	defer func() {
		u.mu.Lock()
		if u.talkSrc == talk {
			u.talkSrc = nil
		}
		u.mu.Unlock()
	}()
	if !cfg.Data {
		return s.Run(u.ctx)
	}
	dctx, stop := context.WithCancel(u.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.runData(dctx, s)
	}()
	err = s.Run(u.ctx)
	stop()
	<-done
	return err
}

// onEvent turns the upstream viewer's state changes into statuses.
func (u *upstream) onEvent(e viewer.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closing {
		return
	}
	if e.Declined != nil {
		u.onDeclinedLocked(e.Declined)
	}
	st := stateFor(e.State, u.status.State, u.streamed)
	if e.State == viewer.StateStreaming {
		u.streamed = true
	}
	if st == StateClosed {
		return // the loop reports the close
	}
	c := e.Cause
	if trouble(st) && trouble(u.status.State) && c == cause.None {
		c = u.status.Cause // the steps of a recovery keep its cause
	}
	u.setStatusLocked(st, c, e.Detail)
}

// trouble reports whether st is a state peers get no video in, for a
// cause.
func trouble(st State) bool { return st == StateReconnecting || st == StateOffline }

// setStatusLocked publishes a new status; u.mu is held.
func (u *upstream) setStatusLocked(st State, c cause.Cause, detail string) {
	u.detail = detail
	u.status.State, u.status.Cause = st, c
	u.publishLocked()
}

// publishLocked publishes the status again with the current state, cause,
// detail and talk-back floor (a new Seq); u.mu is held.
func (u *upstream) publishLocked() {
	st, c := u.status.State, u.status.Cause
	talker := ""
	if u.talker != nil {
		talker = u.talker.id
	}
	u.status = Status{
		Seq: u.status.Seq + 1, Channel: u.name, State: st, Cause: c,
		Advice: c.Advice(), Detail: u.declinedNoteLocked(u.detail), Talker: talker,
		TalkDeclined: u.talkDeclined != nil, DataDeclined: u.dataDeclined != nil, Time: time.Now(),
	}
	close(u.changed)
	u.changed = make(chan struct{})
}

func (u *upstream) currentStatus() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.status
}

// waitStatus returns the first status with a Seq above after, waiting for
// it until ctx or stop ends.
func (u *upstream) waitStatus(ctx context.Context, after uint64, stop <-chan struct{}) (Status, error) {
	for {
		u.mu.Lock()
		st, ch := u.status, u.changed
		u.mu.Unlock()
		if st.Seq > after {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, ctx.Err()
		case <-stop:
			return st, ErrClosed
		}
	}
}

// WriteFrame receives the upstream's frames (it is the viewer's sink): it
// publishes them unchanged to the channel's broadcasters. After a new
// stream starts (a reconnect), video resumes on its first keyframe.
func (u *upstream) WriteFrame(f media.Frame) error {
	if f.Codec == rtc.CodecOpus {
		if u.audio == nil {
			return nil
		}
		u.audioIn.Add(uint64(len(f.Data)))
		u.vmu.Lock()
		d := u.gate.Audio(f)
		u.vmu.Unlock()
		u.audio.Publish(media.FrameSample(f, d))
		return nil
	}
	u.bytesIn.Add(uint64(len(f.Data)))
	u.framesIn.Add(1)
	u.vmu.Lock()
	d, ok := u.gate.Video(f)
	u.vmu.Unlock()
	if !ok {
		return nil
	}
	u.videoFor(f.Codec).Publish(media.FrameSample(f, d))
	return nil
}

// requestKeyframe asks the camera for a keyframe through the current
// upstream session: a peer joins and the cached GOP is missing or too long
// to start from (a WebRTC camera sends keyframes only when asked).
func (u *upstream) requestKeyframe() {
	if s := u.cur.Load(); s != nil {
		u.log.Debug("relay: asking the camera for a keyframe")
		s.RequestKeyframe()
	}
}

// videoFor returns the video broadcaster for codec, replacing one of
// another codec (the camera changed codecs across a reconnect; peers bound
// to the old one are closed: their answers name the old codec).
func (u *upstream) videoFor(codec rtc.Codec) *media.Broadcaster {
	u.mu.Lock()
	if u.video != nil && u.video.Codec() == codec {
		b := u.video
		u.mu.Unlock()
		return b
	}
	first := u.video == nil
	u.video = media.NewFedBroadcaster(codec, media.BroadcasterConfig{Logger: u.log, OnKeyframeNeeded: u.requestKeyframe})
	b := u.video
	var stale []*Peer
	for p := range u.peers {
		if p.codec != codec {
			stale = append(stale, p)
		}
	}
	if first {
		close(u.videoReady)
	}
	u.mu.Unlock()
	for _, p := range stale {
		go p.close(fmt.Sprintf("the camera now sends %s; join again", codec))
	}
	return b
}

// waitVideo waits until the upstream has video (at most
// Config.JoinTimeout) and returns its broadcasters.
func (u *upstream) waitVideo(ctx context.Context) (video, audio *media.Broadcaster, err error) {
	t := time.NewTimer(u.r.cfg.JoinTimeout)
	defer t.Stop()
	select {
	case <-u.videoReady:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-u.ctx.Done():
		return nil, nil, u.r.errOr(fmt.Errorf("%w: the upstream of channel %q closed", ErrUnavailable, u.name))
	case <-t.C:
		st := u.currentStatus()
		msg := fmt.Sprintf("%v: channel %q has sent no video within %v; upstream %s", ErrUnavailable, u.name, u.r.cfg.JoinTimeout, st.State)
		if st.Cause != cause.None {
			msg += " (" + string(st.Cause) + ")"
		}
		if st.Detail != "" {
			msg += ": " + st.Detail
		}
		return nil, nil, &UnavailableError{Status: st, msg: msg}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.video, u.audio, nil
}

// UnavailableError is Join's error when the channel's camera sent no video
// within Config.JoinTimeout: it carries the upstream's status (its cause).
// It matches ErrUnavailable.
type UnavailableError struct {
	Status Status
	msg    string
}

func (e *UnavailableError) Error() string { return e.msg }

// Unwrap returns ErrUnavailable.
func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// hold keeps the upstream open while a peer joins; false if it is closing.
func (u *upstream) hold() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closing {
		return false
	}
	u.holds++
	if u.linger != nil {
		u.linger.Stop()
		u.linger = nil
	}
	return true
}

// release ends a hold.
func (u *upstream) release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.holds--
	u.maybeLingerLocked()
}

// addPeer attaches a peer that joined.
func (u *upstream) addPeer(p *Peer) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.closing:
		return u.r.errOr(fmt.Errorf("%w: the upstream of channel %q closed", ErrUnavailable, u.name))
	case len(u.peers) >= u.r.cfg.MaxPeers:
		return fmt.Errorf("%w: channel %q has its %d peers (Config.MaxPeers)", ErrUnavailable, u.name, u.r.cfg.MaxPeers)
	}
	u.peers[p] = struct{}{}
	return nil
}

// removePeer detaches a closed peer, keeping its counts.
func (u *upstream) removePeer(p *Peer, out, dropped uint64) {
	u.goneOut.Add(out)
	u.goneDropped.Add(dropped)
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.peers, p)
	u.releaseFloorLocked(p)
	u.maybeLingerLocked()
}

// maybeLingerLocked schedules the close of an upstream nobody uses.
func (u *upstream) maybeLingerLocked() {
	if u.warm || u.closing || u.holds > 0 || len(u.peers) > 0 || u.linger != nil {
		return
	}
	if u.r.cfg.Linger < 0 {
		u.closing = true
		u.cancel()
		return
	}
	u.linger = time.AfterFunc(u.r.cfg.Linger, func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.holds == 0 && len(u.peers) == 0 && !u.closing {
			u.log.Info("relay: closing the upstream session: no peers", "linger", u.r.cfg.Linger)
			u.closing = true
			u.cancel()
		}
	})
}

// peerList returns the channel's peers now.
func (u *upstream) peerList() []*Peer {
	u.mu.Lock()
	defer u.mu.Unlock()
	peers := make([]*Peer, 0, len(u.peers))
	for p := range u.peers {
		peers = append(peers, p)
	}
	return peers
}

// closePeers closes every peer of the channel.
func (u *upstream) closePeers(reason string) {
	for _, p := range u.peerList() {
		p.close(reason)
	}
}

// totals returns the upstream's bytes in and the bytes out and drops of
// its peers, present and gone.
func (u *upstream) totals() (in, out, dropped uint64) {
	in = u.bytesIn.Load() + u.audioIn.Load()
	out, dropped = u.goneOut.Load(), u.goneDropped.Load()
	u.mu.Lock()
	peers := make([]*Peer, 0, len(u.peers))
	for p := range u.peers {
		peers = append(peers, p)
	}
	u.mu.Unlock()
	for _, p := range peers {
		o, d := p.counts()
		out += o
		dropped += d
	}
	return in, out, dropped
}
