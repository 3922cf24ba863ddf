package media

import (
	"context"
	"io"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// NewFedBroadcaster returns a [Broadcaster] of codec that has no source of
// its own: it is fed through [Broadcaster.Publish], for example with the
// frames a viewer receives (see [FrameSample]), and its Run must not be
// called. A relay of a remote track uses it; a camera simulator uses
// [NewBroadcaster] with a [Source].
func NewFedBroadcaster(codec rtc.Codec, cfg BroadcasterConfig) *Broadcaster {
	return NewBroadcaster(fedSource{codec: codec}, cfg)
}

// fedSource only names the codec of a fed Broadcaster.
type fedSource struct{ codec rtc.Codec }

func (s fedSource) Codec() rtc.Codec { return s.codec }

func (fedSource) ReadSample(context.Context) (Sample, error) { return Sample{}, io.EOF }

func (fedSource) Close() error { return nil }

// FrameSample converts a received [Frame] into the [Sample] a Broadcaster
// publishes, forwarding its data unchanged. A frame whose duration is
// unknown (0) gets fallback, which should be the duration of the frame
// before it; the Sample's Timestamp is the frame's arrival time.
func FrameSample(f Frame, fallback time.Duration) Sample {
	d := f.Duration
	if d <= 0 {
		d = fallback
	}
	return Sample{
		Sample:   pmedia.Sample{Data: f.Data, Duration: d, Timestamp: f.Arrival},
		Keyframe: f.Keyframe,
		PTS:      f.PTS,
	}
}

// ReadSenderRTCP reads a sender's RTCP until reading fails (its peer
// connection closed), as pion's interceptors need (NACKs are answered
// from what is read), and calls onKeyframeRequest, if set, for every PLI
// or FIR from the remote peer: a sender fed by a [Broadcaster] passes its
// [Subscription]'s RequestKeyframe. Run it on a goroutine of its own.
func ReadSenderRTCP(s *webrtc.RTPSender, onKeyframeRequest func()) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		if onKeyframeRequest == nil {
			continue
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				onKeyframeRequest()
			}
		}
	}
}
