package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// inboxSize bounds the signaling messages waiting for a link's goroutine.
const inboxSize = 64

// link is the storage session's peer connection with one participant:
// the camera (role MASTER) or a viewer. One goroutine (run) owns its
// rtc.Peer.
type link struct {
	s        *session
	p        emulator.StorageParticipant
	role     kvsproto.Role
	clientID string
	log      *slog.Logger
	inbox    chan kvsproto.ClientMessage

	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	why       atomic.Pointer[string]
	connected atomic.Bool

	// master link
	pc        atomic.Pointer[webrtc.PeerConnection]
	videoSSRC atomic.Uint32
	talkTrack *webrtc.TrackLocalStaticSample

	audio bool // the current offer has audio (owned by run)

	// viewer link
	vtrack, atrack *webrtc.TrackLocalStaticSample
	subMu          sync.Mutex
	vq, aq         *media.QueuedWriter
	vsub, asub     *media.Subscription
}

func newLink(s *session, p emulator.StorageParticipant) *link {
	l := &link{s: s, p: p, role: p.Role, clientID: p.ClientID, inbox: make(chan kvsproto.ClientMessage, inboxSize)}
	l.log = s.log.With("role", string(p.Role))
	if p.Role != kvsproto.RoleMaster {
		l.log = l.log.With("client_id", p.ClientID)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// deliver queues a participant's message for run.
func (l *link) deliver(msg kvsproto.ClientMessage) {
	select {
	case l.inbox <- msg:
	case <-l.ctx.Done():
	default:
		l.log.Warn("storage session: signaling message dropped (the link's inbox is full)", "action", msg.Action)
	}
}

// close ends the link (idempotent); run tears it down.
func (l *link) close(why string) {
	l.closeOnce.Do(func() {
		l.why.Store(&why)
		l.cancel()
	})
}

func (l *link) isConnected() bool { return l.connected.Load() }

// requestKeyframe sends the camera a PLI for its video.
func (l *link) requestKeyframe() {
	pc, ssrc := l.pc.Load(), l.videoSSRC.Load()
	if pc == nil || ssrc == 0 {
		return
	}
	_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

// sendTalk sends a viewer's voice packet to the camera.
func (l *link) sendTalk(f media.Frame) bool {
	if l.talkTrack == nil || !l.connected.Load() {
		return false
	}
	d := f.Duration
	if d <= 0 {
		d = 20 * time.Millisecond
	}
	return l.talkTrack.WriteSample(pmedia.Sample{Data: f.Data, Duration: d}) == nil
}

// run negotiates (the session offers) and serves the link until it ends.
func (l *link) run() {
	defer l.s.gone(l)
	peer, err := l.negotiate(true)
	defer func() { l.teardown(peer) }()
	if err != nil {
		l.log.Warn("storage session: cannot offer", "err", err)
		return
	}
	l.log.Info("storage session: offer sent")
	timeout := time.NewTimer(l.s.e.cfg.ConnectTimeout)
	defer timeout.Stop()
	limit := time.NewTimer(l.s.e.cfg.SessionLimit)
	defer limit.Stop()
	alone := l.s.e.cfg.ViewerAlone
	check := time.NewTicker(min(5*time.Second, alone/4))
	defer check.Stop()
	var aloneSince time.Time
	for {
		select {
		case <-l.ctx.Done():
			return
		case now := <-check.C:
			if l.role == kvsproto.RoleMaster || l.s.cameraConnected() {
				aloneSince = time.Time{}
			} else if aloneSince.IsZero() {
				aloneSince = now
			} else if now.Sub(aloneSince) >= alone {
				l.close(fmt.Sprintf("no camera in the storage session for %v (the service's limit for a viewer without a master)", alone))
			}
		case <-timeout.C:
			l.close(fmt.Sprintf("not connected %v after the offer", l.s.e.cfg.ConnectTimeout))
		case <-limit.C:
			l.close(fmt.Sprintf("the storage session's time limit (%v) reached; the participant must join again", l.s.e.cfg.SessionLimit))
		case msg := <-l.inbox:
			if err := l.handle(peer, msg); errors.Is(err, errAudioRefused) {
				// A participant without Opus rejected the audio section:
				// offer again with video only.
				l.log.Info("storage session: the answer refuses the audio; offering video only", "err", err)
				_ = peer.Close()
				if peer, err = l.negotiate(false); err != nil {
					l.log.Warn("storage session: cannot offer", "err", err)
					return
				}
			}
		case c := <-peer.Candidates():
			init := c.ToJSON()
			if err := l.send(kvsproto.MessageICECandidate, kvsproto.ICECandidate{
				Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex,
			}); err != nil {
				l.log.Debug("storage session: candidate not sent", "err", err)
			}
		case <-peer.Gathered():
		case <-peer.ICEStates():
		case st := <-peer.States():
			switch st {
			case webrtc.PeerConnectionStateConnected:
				if !l.connected.Swap(true) {
					timeout.Stop()
					l.log.Info("storage session: connected")
					l.subscribe()
				}
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
				l.close("peer connection " + st.String())
			}
		case tr := <-peer.Tracks():
			l.onTrack(peer, tr)
		}
	}
}

// errAudioRefused: an answer that cannot be applied while the offer has
// an audio section (pion: the remote supports no codec of a sending track).
var errAudioRefused = errors.New("storage: the answer refuses the audio section")

// negotiate creates the link's peer connection (with audio both ways, or
// video only) and sends the session's offer.
func (l *link) negotiate(audio bool) (*rtc.Peer, error) {
	peer, err := rtc.NewPeer(l.s.e.api, webrtc.Configuration{ICEServers: rtc.ICEServers(l.s.e.cfg.ICEServers)})
	if err != nil {
		return nil, err
	}
	l.pc.Store(peer.PC)
	l.audio = audio
	if err := l.addMedia(peer, audio); err != nil {
		return peer, fmt.Errorf("setting up the media: %w", err)
	}
	offer, err := peer.Offer(nil)
	if err != nil {
		return peer, err
	}
	if err := l.send(kvsproto.MessageSDPOffer, kvsproto.SessionDescription{Type: "offer", SDP: offer}); err != nil {
		return peer, fmt.Errorf("the offer could not be sent: %w", err)
	}
	return peer, nil
}

// send signals the participant.
func (l *link) send(t kvsproto.MessageType, v any) error {
	payload, err := kvsproto.EncodePayload(v)
	if err != nil {
		return err
	}
	return l.p.Send(kvsproto.Event{MessageType: t, MessagePayload: payload})
}

// handle applies the participant's answer or candidate. It returns
// errAudioRefused when the answer can be taken without audio only.
func (l *link) handle(peer *rtc.Peer, msg kvsproto.ClientMessage) error {
	switch msg.Action {
	case kvsproto.ActionSDPAnswer:
		var d kvsproto.SessionDescription
		if err := kvsproto.DecodePayload(msg.MessagePayload, &d); err != nil || d.SDP == "" {
			l.close(fmt.Sprintf("the answer is not a session description (%v)", err))
			return nil
		}
		if err := peer.SetAnswer(d.SDP); err != nil && !errors.Is(err, rtc.ErrCandidate) {
			if l.audio && audioRejected(d.SDP) {
				return fmt.Errorf("%w: %w", errAudioRefused, err)
			}
			l.log.Warn("storage session: the answer was refused", "err", err)
			l.close("answer refused: " + err.Error())
			return nil
		}
		l.log.Info("storage session: answer applied")
	case kvsproto.ActionICECandidate:
		var c kvsproto.ICECandidate
		if err := kvsproto.DecodePayload(msg.MessagePayload, &c); err != nil {
			l.log.Debug("storage session: candidate ignored", "err", err)
			return nil
		}
		if c.Candidate == "" {
			return nil // end of candidates
		}
		if err := peer.AddCandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}); err != nil {
			l.log.Debug("storage session: candidate refused", "err", err)
		}
	}
	return nil
}

// audioRejected reports whether an answer's audio section is rejected
// (port 0) or has no Opus.
func audioRejected(answer string) bool {
	sum, err := rtc.Summarize(answer)
	if err != nil {
		return false
	}
	a, ok := sum.Section("audio")
	return !ok || a.Port == 0 || !slices.ContainsFunc(a.Codecs, func(c webrtc.RTPCodecParameters) bool {
		return strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus)
	})
}

// addMedia adds the transceivers the session offers: the camera sends
// video and gets the viewers' voice; a viewer gets video and audio and may
// send its voice. Without audio, video only.
func (l *link) addMedia(peer *rtc.Peer, audio bool) error {
	pc := peer.PC
	acap, err := rtc.Capability(rtc.CodecOpus)
	if err != nil {
		return err
	}
	if l.role == kvsproto.RoleMaster {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
		if !audio {
			l.talkTrack = nil
			return nil
		}
		if l.talkTrack, err = webrtc.NewTrackLocalStaticSample(acap, "audio", "kvs-storage-session"); err != nil {
			return err
		}
		tr, err := pc.AddTransceiverFromTrack(l.talkTrack, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
		if err != nil {
			return err
		}
		sender := tr.Sender()
		peer.Go(func(context.Context) { media.ReadSenderRTCP(sender, nil) })
		return nil
	}
	vcap, err := rtc.Capability(rtc.CodecH264)
	if err != nil {
		return err
	}
	if l.vtrack, err = webrtc.NewTrackLocalStaticSample(vcap, "video", "kvs-storage-session"); err != nil {
		return err
	}
	vt, err := pc.AddTransceiverFromTrack(l.vtrack, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return err
	}
	vs := vt.Sender()
	if !audio {
		l.atrack = nil
		peer.Go(func(context.Context) { media.ReadSenderRTCP(vs, l.videoKeyframeRequest) })
		return nil
	}
	if l.atrack, err = webrtc.NewTrackLocalStaticSample(acap, "audio", "kvs-storage-session"); err != nil {
		return err
	}
	at, err := pc.AddTransceiverFromTrack(l.atrack, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
	if err != nil {
		return err
	}
	as := at.Sender()
	peer.Go(func(context.Context) { media.ReadSenderRTCP(vs, l.videoKeyframeRequest) })
	peer.Go(func(context.Context) { media.ReadSenderRTCP(as, nil) })
	return nil
}

// videoKeyframeRequest passes a viewer's PLI to its subscription.
func (l *link) videoKeyframeRequest() {
	l.subMu.Lock()
	sub := l.vsub
	l.subMu.Unlock()
	if sub != nil {
		sub.RequestKeyframe()
	}
}

// subscribe connects a viewer's tracks to the session's fan-out.
func (l *link) subscribe() {
	if l.vtrack == nil {
		return
	}
	l.subMu.Lock()
	defer l.subMu.Unlock()
	if l.vq != nil {
		return
	}
	n := l.s.e.cfg.QueueSamples
	l.vq = media.NewQueuedWriter(l.vtrack, media.QueueConfig{MaxSamples: n, OnDrop: func(int) {
		l.subMu.Lock()
		sub := l.vsub
		l.subMu.Unlock()
		if sub != nil {
			sub.RequestKeyframe()
		}
	}})
	l.vsub = l.s.video.Subscribe(l.vq)
	if l.atrack != nil {
		l.aq = media.NewQueuedWriter(l.atrack, media.QueueConfig{MaxSamples: n})
		l.asub = l.s.audio.Subscribe(l.aq)
	}
}

// onTrack reads a remote track: the camera's video and audio feed the
// session; a viewer's audio is talk-back.
func (l *link) onTrack(peer *rtc.Peer, tr rtc.Track) {
	var sink media.Sink = cameraSink{l}
	cfg := media.ReceiverConfig{Logger: l.log}
	if l.role == kvsproto.RoleMaster {
		if tr.Remote.Kind() == webrtc.RTPCodecTypeVideo {
			l.videoSSRC.Store(uint32(tr.Remote.SSRC()))
			cfg.RequestKeyframe = l.requestKeyframe
			if l.s.feedingOther(l) {
				l.requestKeyframe() // take over soon: the camera sends keyframes when asked
			}
		} else {
			l.s.mu.Lock()
			l.s.camAudio = true
			l.s.mu.Unlock()
		}
	} else {
		if tr.Remote.Kind() != webrtc.RTPCodecTypeAudio {
			l.log.Debug("storage session: a viewer's video track is ignored")
			peer.ReadRTCP(tr.Receiver)
			return
		}
		sink = talkSink{l}
	}
	cfg.Sinks = []media.Sink{sink}
	rc, err := media.NewReceiver(tr.Remote, cfg)
	if err != nil {
		l.log.Warn("storage session: track ignored", "err", err)
		peer.ReadRTCP(tr.Receiver)
		return
	}
	recv := tr.Receiver
	peer.Go(func(context.Context) {
		for {
			pkts, _, err := recv.ReadRTCP()
			if err != nil {
				return
			}
			rc.HandleRTCP(pkts)
		}
	})
	peer.Go(func(ctx context.Context) { _ = rc.Run(ctx) })
	l.log.Info("storage session: receiving", "kind", tr.Remote.Kind().String(), "codec", tr.Remote.Codec().MimeType)
}

// talkSink passes a viewer's voice to the session's talk-back floor.
type talkSink struct{ l *link }

func (t talkSink) WriteFrame(f media.Frame) error {
	t.l.s.talkFrom(t.l, f)
	return nil
}

// teardown stops the media and closes the peer connection.
func (l *link) teardown(peer *rtc.Peer) {
	l.close("ended")
	l.connected.Store(false)
	l.subMu.Lock()
	vsub, asub, vq, aq := l.vsub, l.asub, l.vq, l.aq
	l.subMu.Unlock()
	if vsub != nil {
		vsub.Unsubscribe()
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
	if peer != nil {
		_ = peer.Close()
	}
	why := "ended"
	if w := l.why.Load(); w != nil {
		why = *w
	}
	l.log.Info("storage session: link closed", "reason", why)
}
