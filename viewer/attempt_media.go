package viewer

import (
	"context"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// startReceiver receives one remote track into the session's statistics
// and sinks, in goroutines the attempt's peer owns (they end when it is
// closed).
func (a *attemptRun) startReceiver(tr rtc.Track) {
	s := a.s
	kind := tr.Remote.Kind()
	sinks := make([]media.Sink, 0, len(s.cfg.Sinks)+1)
	if kind == webrtc.RTPCodecTypeVideo {
		sinks = append(sinks, s.video)
	} else {
		sinks = append(sinks, s.audio)
	}
	sinks = append(sinks, s.cfg.Sinks...)
	pc := a.peer.PC
	ssrc := uint32(tr.Remote.SSRC())
	cfg := media.ReceiverConfig{Logger: s.log, Sinks: sinks}
	if kind == webrtc.RTPCodecTypeVideo {
		cfg.RequestKeyframe = func() {
			_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		}
		s.keyReq.Store(&cfg.RequestKeyframe)
	}
	r, err := media.NewReceiver(tr.Remote, cfg)
	if err != nil {
		s.log.Warn("cannot receive track", "kind", kind.String(), "codec", tr.Remote.Codec().MimeType, "err", err)
		return
	}
	s.log.Info("track", "kind", kind.String(), "codec", tr.Remote.Codec().MimeType)
	a.peer.Go(func(ctx context.Context) {
		err := r.Run(ctx)
		select {
		case a.recvDone <- err:
		default:
		}
	})
	if kind == webrtc.RTPCodecTypeVideo {
		a.peer.Go(func(ctx context.Context) {
			select {
			case <-r.FirstKeyframe():
				select {
				case a.firstKey <- time.Now():
				default:
				}
			case <-ctx.Done():
			}
		})
	}
	// Read RTCP so interceptors run, and hand the sender reports to the
	// receiver: recordings align audio with video by them.
	a.peer.Go(func(context.Context) {
		for {
			pkts, _, err := tr.Receiver.ReadRTCP()
			if err != nil {
				return
			}
			r.HandleRTCP(pkts)
		}
	})
}
