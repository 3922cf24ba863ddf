package media

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// discardContext binds a TrackLocalStaticSample to nothing: it packetises
// and "sends" RTP into the void, so the benchmark measures the real pion
// work per subscriber without a network.
type discardContext struct{ params []webrtc.RTPCodecParameters }

func (c discardContext) CodecParameters() []webrtc.RTPCodecParameters { return c.params }
func (discardContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter {
	return nil
}
func (discardContext) SSRC() webrtc.SSRC                       { return 0x1234 }
func (discardContext) SSRCRetransmission() webrtc.SSRC         { return 0 }
func (discardContext) SSRCForwardErrorCorrection() webrtc.SSRC { return 0 }
func (discardContext) WriteStream() webrtc.TrackLocalWriter    { return discardWriter{} }
func (discardContext) ID() string                              { return "bench" }
func (discardContext) RTCPReader() interceptor.RTCPReader      { return nil }

type discardWriter struct{}

func (discardWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) { return len(p), nil }
func (discardWriter) Write(b []byte) (int, error)                   { return len(b), nil }

type discardSamples struct{ n int }

func (d *discardSamples) WriteSample(s pmedia.Sample) error { d.n += len(s.Data); return nil }

// BenchmarkBroadcast publishes test-pattern frames to 10 subscribers;
// ns/op is per frame (for all 10).
func BenchmarkBroadcast(b *testing.B) {
	ss := testSamples(b, rtc.CodecH264)
	var bytes int
	for _, s := range ss {
		bytes += len(s.Data)
	}
	capability, _ := rtc.Capability(rtc.CodecH264)
	for _, kind := range []string{"pion-tracks", "writers"} {
		b.Run(kind, func(b *testing.B) {
			src, _ := NewTestSource(rtc.CodecH264, once)
			defer src.Close()
			bc := NewBroadcaster(src, BroadcasterConfig{})
			for range 10 {
				if kind == "writers" {
					bc.Subscribe(&discardSamples{})
					continue
				}
				tr, err := webrtc.NewTrackLocalStaticSample(capability, "v", "s")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tr.Bind(discardContext{params: []webrtc.RTPCodecParameters{{RTPCodecCapability: capability, PayloadType: 102}}}); err != nil {
					b.Fatal(err)
				}
				bc.Subscribe(tr)
			}
			b.SetBytes(int64(bytes / len(ss)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bc.Publish(ss[i%len(ss)])
				i++
			}
		})
	}
}

// packetize turns samples into RTP packets as a pion sender would.
func packetize(ss []Sample, payloader rtp.Payloader) [][]*rtp.Packet {
	p := rtp.NewPacketizer(1200, 102, 0x1234, payloader, rtp.NewFixedSequencer(1), 90000)
	out := make([][]*rtp.Packet, len(ss))
	for i, s := range ss {
		out[i] = p.Packetize(s.Data, 3000)
	}
	return out
}

// BenchmarkDepacketize rebuilds frames from RTP; ns/op is per frame.
func BenchmarkDepacketize(b *testing.B) {
	for _, tc := range []struct {
		codec     rtc.Codec
		payloader rtp.Payloader
	}{
		{rtc.CodecH264, &codecs.H264Payloader{}},
		{rtc.CodecVP8, &codecs.VP8Payloader{}},
	} {
		b.Run(tc.codec.String(), func(b *testing.B) {
			ss := testSamples(b, tc.codec)
			frames := packetize(ss, tc.payloader)
			var bytes, pkts int
			for _, f := range frames {
				pkts += len(f)
				for _, p := range f {
					bytes += len(p.Payload)
				}
			}
			d, err := NewDepacketizer(tc.codec, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(bytes / len(frames)))
			b.ReportAllocs()
			var seq uint16
			var ts uint32
			i, out := 0, 0
			for b.Loop() {
				for _, p := range frames[i%len(frames)] {
					q := &rtp.Packet{Header: p.Header, Payload: p.Payload}
					q.SequenceNumber, q.Timestamp = seq, ts
					seq++
					d.Push(q)
				}
				for {
					if _, ok := d.Pop(); !ok {
						break
					}
					out++
				}
				ts += 3000
				i++
			}
			if i > 2 && out < i-1 {
				b.Fatalf("%d frames out of %d", out, i)
			}
			b.ReportMetric(float64(pkts)/float64(len(frames)), "pkts/frame")
		})
	}
}
