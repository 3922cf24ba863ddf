package doctor

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// storageJoinEvery is how often the storage check repeats its join while
// no offer has come (the JS SDK's interval is 6 s; the doctor waits less
// per join and joins at most storageJoins times).
const (
	storageJoinEvery = 5 * time.Second
	storageJoins     = 3
)

// checkStorage tests the Multiviewer path of a channel with WebRTC
// ingestion: the WEBRTC endpoint, a viewer connection with a client id of
// its own, JoinStorageSessionAsViewer, the storage session's offer, the
// connection, and the camera's video through the session.
func (d *run) checkStorage(ctx context.Context) {
	if !d.storageOn {
		return
	}
	k := d.begin(CheckStorage, "storage: the storage session offers, connects and sends the camera's video (Multiviewer)")
	if !d.haveCh {
		k.skip("needs the channel")
		return
	}
	err := d.storagePath(ctx, k)
	if err == nil {
		return
	}
	if !failUnreachable(k, err) {
		k.fail(classify(err), err, "", "")
	}
}

// storagePath runs the storage check and records its findings; an error
// is a failure the caller records.
func (d *run) storagePath(ctx context.Context, k *checker) error {
	ctl := d.ctl
	ep, err := ctl.StorageEndpoints(ctx, d.channel.ARN, kvsproto.RoleViewer)
	if err != nil {
		return err
	}
	k.fact("webrtcEndpoint", ep.WebRTC)
	id := fmt.Sprintf("kvsrtc-doctor-storage-%d", time.Now().UnixNano()%1e9)
	k.fact("clientId", id)
	sig, err := signaling.Dial(ctx, signaling.Config{
		Endpoint: ep.WSS, ChannelARN: d.channel.ARN, Role: kvsproto.RoleViewer, ClientID: id,
		Region: ctl.Region(), Credentials: ctl.SigV4Credentials, Now: ctl.Now, HTTPClient: d.cfg.HTTPClient, Logger: d.log,
	})
	if err != nil {
		return err
	}
	defer func() { _ = sig.Close() }()
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: d.cfg.LoopbackOnly, VideoCodecs: []string{string(rtc.CodecH264)}, Audio: true, Logger: d.log, TURNRootCAs: rtc.RootCAs(d.cfg.HTTPClient)})
	if err != nil {
		return err
	}
	pcCfg := d.pcConfig() // relay only with Config.ForceRelay, as the direct probe
	start := time.Now()
	joins := 0
	join := func() error {
		joins++
		k.fact("joins", joins)
		return ctl.JoinStorageSessionAsViewer(ctx, ep.WebRTC, d.channel.ARN, id)
	}
	if err := join(); err != nil {
		return err
	}
	rejoin := time.NewTicker(storageJoinEvery)
	defer rejoin.Stop()
	var peer *rtc.Peer
	defer func() {
		if peer != nil {
			_ = peer.Close()
		}
	}()
	var (
		cands    <-chan *webrtc.ICECandidate
		states   <-chan webrtc.PeerConnectionState
		tracks   <-chan rtc.Track
		keyframe = make(chan struct{}, 1)
		stats    = media.NewStats(0)
		deadline = time.NewTimer(storageJoinEvery * storageJoins)
		offerAt  time.Time
	)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sig.Done():
			return fmt.Errorf("the signaling connection closed: %w", sig.Err())
		case <-rejoin.C:
			if peer != nil {
				continue
			}
			if joins >= storageJoins {
				return fmt.Errorf("%w: %d joins over %v", cause.ErrNoStorageOffer, joins, time.Since(start).Round(time.Second))
			}
			if err := join(); err != nil {
				return err
			}
		case <-deadline.C:
			switch {
			case peer == nil:
				return fmt.Errorf("%w: %d joins over %v", cause.ErrNoStorageOffer, joins, time.Since(start).Round(time.Second))
			case stats.Snapshot().Frames == 0:
				k.fact("offerTime", offerAt.Sub(start).Round(time.Millisecond).String())
				k.warn(cause.NoMedia, "the storage session offered and connected, but sent no video: no camera is in the session "+
					"(the master connects and calls JoinStorageSession; the JS SDK's master does with its ingestion option, kvsrtc master with --ingest)", "")
				return nil
			default:
				return fmt.Errorf("%w: the storage session's connection did not come up", cause.ErrICEFailed)
			}
		case ev := <-sig.Events():
			switch {
			case ev.Type == kvsproto.MessageSDPOffer && ev.SenderClientID == "" && ev.SDP != nil:
				if peer != nil {
					_ = peer.Close()
				}
				offerAt = time.Now()
				if peer, err = rtc.NewPeer(api, pcCfg); err != nil {
					return err
				}
				cands, states, tracks = peer.Candidates(), peer.States(), peer.Tracks()
				if err := peer.SetOffer(ev.SDP.SDP); err != nil {
					return fmt.Errorf("%w: the storage session's offer: %w", cause.ErrBadOffer, err)
				}
				ans, err := peer.Answer(0)
				if err != nil {
					return err
				}
				if err := sig.SendAnswer(ctx, kvsproto.SessionDescription{Type: "answer", SDP: ans}, "", ""); err != nil {
					return err
				}
				// From the offer on, the connection and the video get the
				// doctor's usual waits.
				deadline.Reset(d.cfg.ConnectWait + d.cfg.MediaWait)
			case ev.Type == kvsproto.MessageICECandidate && ev.Candidate != nil && peer != nil:
				c := ev.Candidate
				_ = peer.AddCandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
			case ev.Type == kvsproto.MessageStatusResponse && ev.Status != nil:
				k.fact("statusResponse", fmt.Sprintf("%s %s", ev.Status.ErrorType, ev.Status.Description))
			}
		case c := <-cands:
			init := c.ToJSON()
			_ = sig.SendICECandidate(ctx, kvsproto.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}, "", "")
		case st := <-states:
			if st == webrtc.PeerConnectionStateConnected {
				k.fact("connectTime", time.Since(offerAt).Round(time.Millisecond).String())
			}
			if st == webrtc.PeerConnectionStateFailed {
				return fmt.Errorf("%w: the storage session's peer connection failed", cause.ErrICEFailed)
			}
		case tr := <-tracks:
			p := peer
			p.ReadRTCP(tr.Receiver)
			if tr.Remote.Kind() != webrtc.RTPCodecTypeVideo {
				p.Go(func(context.Context) {
					for {
						if _, _, err := tr.Remote.ReadRTP(); err != nil {
							return
						}
					}
				})
				continue
			}
			ssrc := uint32(tr.Remote.SSRC())
			rcv, err := media.NewReceiver(tr.Remote, media.ReceiverConfig{Logger: d.log, Sinks: []media.Sink{stats},
				RequestKeyframe: func() { _ = p.PC.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}) }})
			if err != nil {
				return err
			}
			p.Go(func(ctx context.Context) { _ = rcv.Run(ctx) })
			p.Go(func(ctx context.Context) {
				select {
				case <-rcv.FirstKeyframe():
					keyframe <- struct{}{}
				case <-ctx.Done():
				}
			})
		case <-keyframe:
			k.fact("offerTime", offerAt.Sub(start).Round(time.Millisecond).String())
			k.fact("firstFrame", time.Since(start).Round(time.Millisecond).String())
			if w, h := stats.Snapshot().Width, stats.Snapshot().Height; w > 0 {
				k.fact("resolution", fmt.Sprintf("%dx%d", w, h))
			}
			k.pass("video arrives through the storage session")
			return nil
		}
	}
}
