package media

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

func depacketizeAll(t *testing.T, d *Depacketizer, pkts [][]*rtp.Packet, skip func(frame, pkt int) bool) []Frame {
	t.Helper()
	var out []Frame
	for i, f := range pkts {
		for j, p := range f {
			if skip != nil && skip(i, j) {
				continue
			}
			d.Push(p)
		}
		for {
			fr, ok := d.Pop()
			if !ok {
				break
			}
			out = append(out, fr)
		}
	}
	d.Flush()
	for {
		fr, ok := d.Pop()
		if !ok {
			break
		}
		out = append(out, fr)
	}
	return out
}

func TestDepacketizeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		codec     rtc.Codec
		payloader rtp.Payloader
	}{
		{rtc.CodecH264, &codecs.H264Payloader{}},
		{rtc.CodecVP8, &codecs.VP8Payloader{EnablePictureID: true}},
		{rtc.CodecOpus, &codecs.OpusPayloader{}},
	} {
		ss := testSamples(t, tc.codec)
		d, err := NewDepacketizer(tc.codec, 0)
		if err != nil {
			t.Fatal(err)
		}
		frames := depacketizeAll(t, d, packetize(ss, tc.payloader), nil)
		if len(frames) != len(ss) {
			t.Fatalf("%s: %d frames from %d samples", tc.codec, len(frames), len(ss))
		}
		for i, f := range frames {
			if f.Keyframe != ss[i].Keyframe || f.Codec != tc.codec {
				t.Fatalf("%s frame %d: keyframe %v, want %v", tc.codec, i, f.Keyframe, ss[i].Keyframe)
			}
			if !slices.EqualFunc(collectNALs(f.Data), collectNALs(ss[i].Data), bytes.Equal) && tc.codec == rtc.CodecH264 {
				t.Fatalf("frame %d NAL units differ", i)
			}
			if tc.codec != rtc.CodecH264 && !bytes.Equal(f.Data, ss[i].Data) {
				t.Fatalf("%s frame %d differs", tc.codec, i)
			}
			if isVideo(tc.codec) && f.Keyframe && (f.Width != testsrc.Width || f.Height != testsrc.Height) {
				t.Fatalf("%s keyframe %d size %dx%d", tc.codec, i, f.Width, f.Height)
			}
			if want := time.Duration(i) * 3000 * time.Second / 90000; isVideo(tc.codec) && f.PTS != want {
				t.Fatalf("%s frame %d PTS %v, want %v", tc.codec, i, f.PTS, want)
			}
		}
	}
	if _, err := NewDepacketizer("VP9", 0); !errors.Is(err, rtc.ErrUnknownCodec) {
		t.Errorf("VP9: %v", err)
	}
}

// h264Packets builds single-NAL RTP packets by hand.
func h264Packet(seq uint16, ts uint32, marker bool, nal []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: nal}
}

func TestDepacketizeH264ParameterSets(t *testing.T) {
	var sps, pps, idr, slice []byte
	for nal := range AnnexBNALs(testsrc.H264()) {
		switch nal[0] & 0x1f {
		case nalSPS:
			sps = nal
		case nalPPS:
			pps = nal
		case nalIDR:
			if idr == nil {
				idr = nal
			}
		case nalSlice:
			if slice == nil {
				slice = nal
			}
		}
		if idr != nil && slice != nil {
			break
		}
	}
	d, _ := NewDepacketizer(rtc.CodecH264, 90000)
	ts := uint32(0xffff_fff0) // the RTP clock wraps during the test
	pkts := [][]*rtp.Packet{
		{h264Packet(1, ts, true, idr)},        // IDR before any SPS: not a keyframe
		{h264Packet(2, ts+3000, true, sps)},   // parameter sets alone,
		{h264Packet(3, ts+3000, true, pps)},   // with their own marker bits
		{h264Packet(4, ts+6000, true, idr)},   // IDR without SPS/PPS in it
		{h264Packet(5, ts+9000, true, slice)}, //
		// packet 6 is lost; after 500 ms of newer media it is given up on
	}
	for i := range 20 {
		pkts = append(pkts, []*rtp.Packet{h264Packet(uint16(7+i), ts+15000+uint32(i)*3000, true, slice)})
	}
	frames := depacketizeAll(t, d, pkts, nil)
	if len(frames) < 4 {
		t.Fatalf("%d frames", len(frames))
	}
	if frames[0].Keyframe {
		t.Error("IDR without known SPS/PPS flagged as keyframe")
	}
	k := frames[1]
	info := inspectH264(k.Data)
	if !k.Keyframe || !bytes.Equal(info.sps, sps) || !bytes.Equal(info.pps, pps) || !info.idr {
		t.Errorf("IDR frame: keyframe %v, sps %v pps %v", k.Keyframe, info.sps != nil, info.pps != nil)
	}
	if k.Width != testsrc.Width || k.Height != testsrc.Height {
		t.Errorf("size %dx%d", k.Width, k.Height)
	}
	if k.PTS != 6000*time.Second/90000 {
		t.Errorf("PTS across the wrap: %v", k.PTS)
	}
	if frames[2].Keyframe || frames[2].PTS != 9000*time.Second/90000 {
		t.Errorf("delta frame %+v", frames[2])
	}
	last := frames[len(frames)-1]
	if want := (15000 + 19*3000) * time.Second / 90000; last.PTS != want {
		t.Errorf("last frame PTS %v, want %v", last.PTS, want)
	}
	if len(frames) < 10 {
		t.Errorf("only %d frames came through after the loss", len(frames))
	}
}

func TestDepacketizeLoss(t *testing.T) {
	ss := testSamples(t, rtc.CodecVP8)[:60]
	pkts := packetize(ss, &codecs.VP8Payloader{})
	d, _ := NewDepacketizer(rtc.CodecVP8, 0)
	// Lose the first packet of frame 10 (a multi-packet frame).
	if len(pkts[10]) < 2 {
		t.Fatalf("frame 10 has %d packets", len(pkts[10]))
	}
	frames := depacketizeAll(t, d, pkts, func(f, p int) bool { return f == 10 && p == 0 })
	// pion's samplebuilder waits up to 500 ms of newer media for the lost
	// packet, then gives up on everything older than that: frame 10 and
	// possibly a neighbour are lost, the rest comes through.
	if len(frames) < 55 || len(frames) > 59 {
		t.Fatalf("%d frames, want 55-59", len(frames))
	}
	dropped := 0
	for _, f := range frames {
		dropped += f.DroppedPackets
		if bytes.Equal(f.Data, ss[10].Data) {
			t.Error("the damaged frame was delivered")
		}
	}
	if dropped < len(pkts[10])-1 {
		t.Errorf("dropped %d packets, want at least %d", dropped, len(pkts[10])-1)
	}
	if frames[len(frames)-1].PTS != 59*time.Second/30 {
		t.Errorf("last frame PTS %v", frames[len(frames)-1].PTS)
	}
}
