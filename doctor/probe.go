package doctor

import (
	"cmp"
	"context"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// probe is the doctor's viewer: one signaling connection, one peer
// connection at a time, every goroutine owned.
type probe struct {
	d      *run
	sess   *signaling.Session
	sigEv  <-chan signaling.SessionEvent // nil once the session has ended
	stop   func()                        // ends the session
	runErr chan error                    // the session's Run result (put back after reading)

	peer  *rtc.Peer // nil between peer connections
	video *media.Stats

	keyframe chan time.Time
	audio    chan time.Time // the first audio packet

	corr      string
	offerAt   time.Time
	offerSDP  string // as sent (with a=ice-options:trickle)
	answer    string
	answerAt  time.Time
	status    *kvsproto.StatusResponse
	sigErr    error
	iceState  webrtc.ICEConnectionState
	keyAt     time.Time
	audioAt   time.Time // first audio packet
	local     map[string]int
	remote    map[string]int // trickled by the master, by type
	audioPkts *atomic.Int64  // RTP packets of the master's audio, read and dropped
}

func (p *probe) close() {
	p.closePC()
	p.stop()
	err := <-p.runErr
	p.runErr <- err
}

// send sends a message built by one of signaling's builders.
func (p *probe) send(ctx context.Context, msg kvsproto.ClientMessage, err error) error {
	if err != nil {
		return err
	}
	return p.sess.Send(ctx, msg)
}

func (p *probe) closePC() {
	if p.peer != nil {
		_ = p.peer.Close()
		p.peer = nil
	}
}

// pcConfig is the peer connection configuration of the doctor's probes:
// the channel's ICE servers, relay only with Config.ForceRelay.
func (d *run) pcConfig() webrtc.Configuration {
	var cfg webrtc.Configuration
	for _, s := range d.ice.Servers {
		cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	cfg.ICEServers = rtc.ICEServers(cfg.ICEServers)
	if d.cfg.ForceRelay {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return cfg
}

// newPC creates a receive-only peer connection offering codecs (nil: all).
func (p *probe) newPC(codecs []string) error {
	p.closePC()
	d := p.d
	// Opus is always registered and an audio section always offered
	// (recvonly): a master that sends audio anyway (the KVS C SDK sends
	// its audio track whatever the offer asks for) then has somewhere to
	// send it, instead of RTP that pion logs as unhandled ("codec not
	// found") at ERROR level.
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: d.cfg.LoopbackOnly, VideoCodecs: codecs, Audio: true, Logger: d.log, TURNRootCAs: rtc.RootCAs(d.cfg.HTTPClient)})
	if err != nil {
		return err
	}
	pcCfg := d.pcConfig()
	peer, err := rtc.NewPeer(api, pcCfg)
	if err != nil {
		return err
	}
	recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := peer.PC.AddTransceiverFromKind(kind, recv); err != nil {
			_ = peer.Close()
			return err
		}
	}
	p.peer, p.video = peer, media.NewStats(0)
	p.keyframe = make(chan time.Time, 1)
	p.audio = make(chan time.Time, 1)
	p.audioAt = time.Time{}
	p.local, p.remote = map[string]int{}, map[string]int{}
	p.audioPkts = &atomic.Int64{}
	p.answer, p.status, p.keyAt = "", nil, time.Time{}
	p.iceState = webrtc.ICEConnectionStateNew
	return nil
}

// onTrack reads a remote track in goroutines the peer owns: video into
// the stats (noting the first keyframe), audio counted and dropped (read,
// so that pion's buffers do not fill).
func (p *probe) onTrack(tr rtc.Track) {
	peer := p.peer
	peer.ReadRTCP(tr.Receiver)
	if tr.Remote.Kind() != webrtc.RTPCodecTypeVideo {
		audioPkts, audioFirst := p.audioPkts, p.audio
		peer.Go(func(context.Context) {
			for {
				if _, _, err := tr.Remote.ReadRTP(); err != nil {
					return
				}
				if audioPkts.Add(1) == 1 {
					select {
					case audioFirst <- time.Now():
					default:
					}
				}
			}
		})
		return
	}
	ssrc := uint32(tr.Remote.SSRC())
	rcv, err := media.NewReceiver(tr.Remote, media.ReceiverConfig{Logger: p.d.log, Sinks: []media.Sink{p.video},
		RequestKeyframe: func() { _ = peer.PC.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}) }})
	if err != nil {
		p.d.log.Warn("cannot receive the video track", "codec", tr.Remote.Codec().MimeType, "err", err)
		return
	}
	keyframe := p.keyframe
	peer.Go(func(ctx context.Context) { _ = rcv.Run(ctx) })
	peer.Go(func(ctx context.Context) {
		select {
		case <-rcv.FirstKeyframe():
			select {
			case keyframe <- time.Now():
			default:
			}
		case <-ctx.Done():
		}
	})
}

// offer sends an offer with a fresh correlation id. What is sent announces
// trickle ICE: the KVS C SDK decides from that attribute alone whether its
// peer trickles, and answers an offer without it only when its own
// gathering ends (10 s).
func (p *probe) offer(ctx context.Context) error {
	sent, err := p.peer.Offer(nil)
	if err != nil {
		return err
	}
	p.offerSDP = sent
	p.corr = signaling.NewCorrelationID()
	p.offerAt = time.Now()
	msg, err := signaling.OfferMessage(kvsproto.SessionDescription{Type: "offer", SDP: sent}, "", p.corr)
	return p.send(ctx, msg, err)
}

// pump handles events for at most d or until done.
func (p *probe) pump(ctx context.Context, d time.Duration, done func() bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case c := <-p.peer.Candidates():
			p.local[c.Typ.String()]++
			if p.sigEv == nil {
				continue
			}
			init := c.ToJSON()
			msg, err := signaling.CandidateMessage(kvsproto.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment}, "", "")
			_ = p.send(ctx, msg, err)
		case st := <-p.peer.ICEStates():
			p.iceState = st
		case <-p.peer.States():
		case tr := <-p.peer.Tracks():
			p.onTrack(tr)
		case at := <-p.keyframe:
			p.keyAt = at
		case at := <-p.audio:
			p.audioAt = at
		case ev, ok := <-p.sigEv:
			if !ok {
				p.sigEv = nil
				if p.sigErr == nil {
					err := <-p.runErr
					p.runErr <- err
					p.sigErr = cmp.Or(err, signaling.ErrClosed)
				}
				continue
			}
			p.onSession(ev)
		}
	}
}

// onSession handles an event of the signaling session: a connection that
// ends or is taken over is the finding (the session would renew it; the
// doctor reports it).
func (p *probe) onSession(ev signaling.SessionEvent) {
	switch ev.Kind {
	case signaling.SessionMessage:
		if !ev.Draining {
			p.handle(ev.Event)
		}
	case signaling.SessionRenewing:
		if ev.Why == signaling.RenewClosed && p.sigErr == nil {
			p.sigErr = cmp.Or(ev.Err, signaling.ErrClosed)
		}
	case signaling.SessionTakenOver:
		if p.sigErr == nil {
			p.sigErr = ev.Err
		}
	}
}

func (p *probe) handle(ev signaling.Event) {
	switch ev.Type {
	case kvsproto.MessageSDPAnswer:
		if ev.SDP != nil && p.answer == "" {
			p.answer, p.answerAt = ev.SDP.SDP, time.Now()
		}
	case kvsproto.MessageICECandidate:
		if ev.Candidate == nil {
			return
		}
		p.remote[rtc.CandidateType(ev.Candidate.Candidate)]++
		init := webrtc.ICECandidateInit{Candidate: ev.Candidate.Candidate, SDPMid: ev.Candidate.SDPMid, SDPMLineIndex: ev.Candidate.SDPMLineIndex, UsernameFragment: ev.Candidate.UsernameFragment}
		_ = p.peer.AddCandidate(init)
	case kvsproto.MessageStatusResponse:
		if ev.Status != nil && ev.Status.CorrelationID == p.corr && !ev.Status.Success {
			p.status = ev.Status
		}
	}
}

// waitConnected waits for the session's first connection and returns the
// dial's error when there is none.
func (p *probe) waitConnected(ctx context.Context) error {
	for ev := range p.sigEv {
		if ev.Kind == signaling.SessionConnected {
			return nil
		}
	}
	p.sigEv = nil
	if err := <-p.runErr; err != nil {
		p.runErr <- err
		return err
	}
	p.runErr <- nil
	if err := ctx.Err(); err != nil {
		return err
	}
	return signaling.ErrClosed
}
