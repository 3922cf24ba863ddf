package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// This file is the relay's two-way part: talk-back from the peers to the
// camera, one speaker at a time (Config.Talk), and data channel messages
// both ways (Config.Data).

// DefaultFloorIdle is the default of Config.FloorIdle.
const DefaultFloorIdle = time.Second

// MaxMessageSize is the largest data channel message the relay forwards
// (64 KiB, the viewer's and the master's limit); larger ones are dropped
// and logged.
const MaxMessageSize = viewer.MaxMessageSize

// Queues and bounds of the two-way paths.
const (
	// talkQueue is how many talk-back samples wait for the upstream
	// session's talk track (about a second of 20 ms packets).
	talkQueue = 50
	// dataQueue is how many peers' messages wait for the camera's data
	// channel (while it opens, or across a reconnect).
	dataQueue = 256
	// peerSendHighWater: a peer whose data channel buffers more than this
	// loses the camera's messages until it drains.
	peerSendHighWater = 1 << 20
	// dataMaxWait bounds how long a peer's message waits for the camera's
	// data channel (opening, or across a reconnect) before it is dropped:
	// a command must not reach the camera long after it was sent.
	dataMaxWait = 10 * time.Second
	// silenceMaxBytes: Opus packets this small carry silence (a muted
	// browser track sends 3-byte frames of digital silence) or are
	// discontinuous-transmission updates; they do not count as talking.
	silenceMaxBytes = 3
	// defaultTalkDuration is the duration given to an Opus packet whose own
	// cannot be read.
	defaultTalkDuration = 20 * time.Millisecond
)

// talkSource is the talk-back source of one upstream viewer session (its
// Config.Talk): the floor holder's audio, pushed as it arrives. ReadSample
// blocks until a sample arrives or ctx ends: silence does not end the
// session's talk-back.
type talkSource struct {
	samples chan media.Sample
	done    chan struct{}
	once    sync.Once
}

func newTalkSource() *talkSource {
	return &talkSource{samples: make(chan media.Sample, talkQueue), done: make(chan struct{})}
}

// Codec returns rtc.CodecOpus.
func (*talkSource) Codec() rtc.Codec { return rtc.CodecOpus }

// ReadSample returns the next talk-back sample, waiting for it until ctx
// ends (ctx.Err()) or the source is closed (io.EOF).
func (s *talkSource) ReadSample(ctx context.Context) (media.Sample, error) {
	select {
	case smp := <-s.samples:
		return smp, nil
	case <-ctx.Done():
		return media.Sample{}, ctx.Err()
	case <-s.done:
		return media.Sample{}, io.EOF
	}
}

// Close ends the source; it is safe to call more than once.
func (s *talkSource) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

// push queues a sample without blocking; false if the queue is full or
// the source is closed.
func (s *talkSource) push(smp media.Sample) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case s.samples <- smp:
		return true
	default:
		return false
	}
}

// talkSink receives a peer's audio (the frames of its audio track).
type talkSink struct{ p *Peer }

func (t talkSink) WriteFrame(f media.Frame) error {
	t.p.u.talk(t.p, f)
	return nil
}

// talk takes one Opus packet of peer p's audio: it goes to the camera if p
// holds the floor, or takes it because it is free (its holder has sent
// no sound for Config.FloorIdle); otherwise, or when the camera declined
// talk-back, it is dropped. Silence packets (see silenceMaxBytes) are
// forwarded from the holder but neither take nor keep the floor.
func (u *upstream) talk(p *Peer, f media.Frame) {
	now := time.Now()
	sound := len(f.Data) > silenceMaxBytes
	u.mu.Lock()
	_, member := u.peers[p]
	if u.closing || !member || u.talkDeclined != nil || len(f.Data) == 0 {
		u.mu.Unlock()
		u.talkDropped.Add(1)
		return
	}
	if u.talker != p {
		if !sound || (u.talker != nil && now.Sub(u.talkLast) < u.r.cfg.FloorIdle) {
			u.mu.Unlock()
			u.talkDropped.Add(1)
			return
		}
		u.log.Info("relay: a peer takes the talk-back floor", "peer", p.id)
		u.talker = p
		u.publishLocked()
		if u.talkTimer == nil {
			u.talkTimer = time.AfterFunc(u.r.cfg.FloorIdle, u.floorCheck)
		}
	}
	if sound {
		u.talkLast = now
	}
	src := u.talkSrc
	u.mu.Unlock()

	d, err := media.OpusPacketDuration(f.Data)
	if err != nil || d <= 0 {
		d = f.Duration
	}
	if d <= 0 || d > 120*time.Millisecond {
		d = defaultTalkDuration
	}
	smp := media.Sample{Sample: pmedia.Sample{Data: f.Data, Duration: d, Timestamp: f.Arrival}, Keyframe: true, PTS: f.PTS}
	if src == nil || !src.push(smp) {
		u.talkDropped.Add(1)
		return
	}
	u.talkForwarded.Add(1)
}

// floorCheck frees the floor once its holder has been silent for
// Config.FloorIdle (its timer).
func (u *upstream) floorCheck() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.talkTimer = nil
	if u.talker == nil || u.closing {
		return
	}
	if idle := time.Since(u.talkLast); idle < u.r.cfg.FloorIdle {
		u.talkTimer = time.AfterFunc(u.r.cfg.FloorIdle-idle, u.floorCheck)
		return
	}
	u.log.Info("relay: the talk-back floor is free: its holder stopped talking", "peer", u.talker.id)
	u.talker = nil
	u.publishLocked()
}

// releaseFloorLocked frees the floor if p holds it (p left); u.mu is held.
func (u *upstream) releaseFloorLocked(p *Peer) {
	if u.talker != p || p == nil {
		return
	}
	u.log.Info("relay: the talk-back floor is free: its holder left", "peer", p.id)
	u.talker = nil
	if !u.closing {
		u.publishLocked()
	}
}

// stopFloorLocked stops the floor's timer (the upstream closes); u.mu is
// held.
func (u *upstream) stopFloorLocked() {
	if u.talkTimer != nil {
		u.talkTimer.Stop()
		u.talkTimer = nil
	}
	u.talker = nil
}

// onDeclinedLocked records what the camera declined (an upstream
// event's Declined); u.mu is held. The status published next says so.
func (u *upstream) onDeclinedLocked(err error) {
	switch {
	case errors.Is(err, viewer.ErrTalkbackDeclined):
		if u.talkDeclined == nil {
			u.log.Warn("relay: the camera declined talk-back; peers' audio is dropped", "err", err)
		}
		u.talkDeclined = err
		u.talker = nil
	case errors.Is(err, viewer.ErrDataChannelDeclined):
		if u.dataDeclined == nil {
			u.log.Warn("relay: the camera declined the data channel; peers' messages are dropped", "err", err)
		}
		u.dataDeclined = err
	}
}

// declinedNoteLocked returns a status detail with what the camera
// declined added to it; u.mu is held.
func (u *upstream) declinedNoteLocked(detail string) string {
	add := func(err error, what string) {
		if err == nil {
			return
		}
		note := fmt.Sprintf("%v; %s", err, what)
		if detail == "" || detail == err.Error() { // the Declined event's own detail
			detail = note
			return
		}
		detail += " (" + note + ")"
	}
	add(u.talkDeclined, "peers' talk-back audio is dropped")
	add(u.dataDeclined, "peers' data channel messages are dropped")
	return detail
}

// outMsg is a peer's message on its way to the camera.
type outMsg struct {
	peer string
	data []byte
	text bool
	at   time.Time // when the peer sent it
}

// fromPeer takes a data channel message from peer p for the camera.
func (u *upstream) fromPeer(p *Peer, label string, msg webrtc.DataChannelMessage) {
	if len(msg.Data) > MaxMessageSize {
		u.msgsDropped.Add(1)
		u.log.Warn("relay: dropping a peer's data channel message over the size limit", "peer", p.id, "label", label,
			"bytes", len(msg.Data), "limit", MaxMessageSize)
		return
	}
	u.mu.Lock()
	declined := u.dataDeclined
	u.mu.Unlock()
	if declined != nil {
		u.msgsDropped.Add(1)
		u.log.Debug("relay: dropping a peer's data channel message: the camera declined the data channel", "peer", p.id)
		return
	}
	u.log.Info("relay: data channel message from a peer to the camera", "peer", p.id, "label", label,
		"bytes", len(msg.Data), "text", msg.IsString)
	if h := u.r.cfg.OnMessage; h != nil {
		h(u.name, p.id, msg.Data, msg.IsString)
	}
	select {
	case u.dataOut <- outMsg{peer: p.id, data: msg.Data, text: msg.IsString, at: time.Now()}:
	default:
		u.msgsDropped.Add(1)
		u.log.Warn("relay: dropping a peer's data channel message: the camera's data channel is not taking messages",
			"peer", p.id, "queued", dataQueue)
	}
}

// runData forwards data channel messages between the peers and one
// upstream session until ctx ends (the session ended).
func (u *upstream) runData(ctx context.Context, s *viewer.Session) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			var m outMsg
			select {
			case m = <-u.dataOut:
			case <-ctx.Done():
				return
			}
			wait := dataMaxWait - time.Since(m.at)
			if wait <= 0 {
				u.msgsDropped.Add(1)
				u.log.Warn("relay: dropping a peer's data channel message: the camera's data channel was not open in time",
					"peer", m.peer, "waited", time.Since(m.at).Round(time.Millisecond))
				continue
			}
			mctx, cancel := context.WithTimeout(ctx, wait)
			var err error
			if m.text {
				err = s.SendText(mctx, string(m.data))
			} else {
				err = s.Send(mctx, m.data)
			}
			cancel()
			switch {
			case err == nil:
				u.msgsToCamera.Add(1)
			case ctx.Err() != nil:
				u.msgsDropped.Add(1)
				return
			case errors.Is(err, context.DeadlineExceeded):
				u.msgsDropped.Add(1)
				u.log.Warn("relay: dropping a peer's data channel message: the camera's data channel was not open in time",
					"peer", m.peer, "waited", dataMaxWait)
			default:
				u.msgsDropped.Add(1)
				u.log.Warn("relay: a peer's data channel message did not reach the camera", "peer", m.peer, "err", err)
			}
		}
	})
	wg.Go(func() {
		for {
			m, err := s.Receive(ctx)
			if err != nil {
				return
			}
			u.msgsFromCamera.Add(1)
			u.toPeers(m)
		}
	})
	wg.Wait()
}

// toPeers sends a camera's message to every peer with an open data
// channel.
func (u *upstream) toPeers(m viewer.Message) {
	for _, p := range u.peerList() {
		switch err := p.sendData(m); {
		case err == nil:
			u.msgsToPeers.Add(1)
		case errors.Is(err, errNoDataChannel):
		default:
			u.msgsDropped.Add(1)
			u.log.Debug("relay: a camera message did not reach a peer", "peer", p.id, "err", err)
		}
	}
}

// errNoDataChannel: the peer has no open data channel.
var errNoDataChannel = errors.New("relay: the peer has no open data channel")

// acceptData wires a data channel the peer opened.
func (p *Peer) acceptData(dc *webrtc.DataChannel) {
	dc.OnOpen(func() {
		p.mu.Lock()
		if !p.closed {
			p.dcs = append(p.dcs, dc)
		}
		p.mu.Unlock()
		p.r.log.Debug("relay: a peer's data channel is open", "peer", p.id, "label", dc.Label())
	})
	dc.OnClose(func() {
		p.mu.Lock()
		for i, d := range p.dcs {
			if d == dc {
				p.dcs = append(p.dcs[:i], p.dcs[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
	})
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { p.u.fromPeer(p, dc.Label(), msg) })
}

// sendData sends a camera's message on the peer's data channel with the
// message's label, or its first open one.
func (p *Peer) sendData(m viewer.Message) error {
	p.mu.Lock()
	var dc *webrtc.DataChannel
	for _, d := range p.dcs {
		if d.Label() == m.Label {
			dc = d
			break
		}
	}
	if dc == nil && len(p.dcs) > 0 {
		dc = p.dcs[0]
	}
	p.mu.Unlock()
	if dc == nil {
		return errNoDataChannel
	}
	if b := dc.BufferedAmount(); b > peerSendHighWater {
		return fmt.Errorf("the peer's data channel has %d bytes buffered: it is too slow", b)
	}
	if m.Text {
		return dc.SendText(string(m.Data))
	}
	return dc.Send(m.Data)
}

// onTrack reads a track the peer sends: its audio is talk-back
// (Config.Talk); anything else is read and dropped.
func (p *Peer) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	// Added under p.mu before closed is set, so before tearDown waits.
	p.rtcpWG.Add(2)
	p.mu.Unlock()
	go func() {
		defer p.rtcpWG.Done()
		for {
			if _, _, err := recv.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() {
		defer p.rtcpWG.Done()
		if tr.Kind() != webrtc.RTPCodecTypeAudio {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
			}
		}
		p.r.log.Debug("relay: receiving a peer's talk-back audio", "peer", p.id, "codec", tr.Codec().MimeType)
		rc, err := media.NewReceiver(tr, media.ReceiverConfig{Logger: p.r.log, Sinks: []media.Sink{talkSink{p}}})
		if err != nil {
			p.r.log.Warn("relay: cannot receive a peer's audio", "peer", p.id, "err", err)
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
			}
		}
		_ = rc.Run(p.ctx)
	}()
}
