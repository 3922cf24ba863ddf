package media

import (
	"bytes"
	"fmt"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	pmedia "github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// Frame is one complete encoded frame rebuilt from RTP.
type Frame struct {
	Codec rtc.Codec

	// Data is an H.264 access unit in Annex-B form (4-byte start codes;
	// keyframes always carry SPS and PPS), a VP8 frame or an Opus packet.
	// It is not reused by the Depacketizer; sinks may keep it.
	Data []byte

	// Keyframe: H.264 IDR with known SPS/PPS, VP8 key frame, every Opus packet.
	Keyframe bool

	// SSRC is the RTP stream's SSRC, set by [Receiver] if its track has
	// one (a new SSRC means a new stream, whose PTS start again at 0).
	SSRC         uint32
	RTPTimestamp uint32
	// PTS is the media time since the track's first frame, from the
	// unwrapped RTP timestamps.
	PTS time.Duration
	// Duration is the time to the next frame (from RTP timestamps); 0 if unknown.
	Duration time.Duration
	// Arrival is when the frame was completed; set by [Receiver].
	Arrival time.Time
	// SenderTime is the sender's wall-clock time of the frame, from the
	// track's latest RTCP sender report (see [Receiver.HandleRTCP]); zero
	// until one has arrived. It relates the tracks of one sender.
	SenderTime time.Time

	// Width and Height are set on video keyframes (from the SPS or the VP8
	// key frame header) and 0 otherwise.
	Width, Height int

	// DroppedPackets counts RTP packets given up on just before this frame.
	DroppedPackets int
}

// Reorder windows of the samplebuilder. A frame with a missing packet is
// waited for (NACK may recover it) until packets this much newer arrive,
// in count or in media time, whichever comes first. A video frame must fit
// in the packet window, so it is generous; audio has no NACK and one
// packet per frame, so it waits briefly.
const (
	videoMaxLate  = 512
	videoMaxDelay = 500 * time.Millisecond
	audioMaxLate  = 16
	audioMaxDelay = 200 * time.Millisecond
	maxHeldNALs   = 64 << 10
)

// Depacketizer turns RTP packets of one track into frames, using pion's
// samplebuilder with the codec's depacketizer. Push packets in arrival
// order, then Pop until it returns false. Not safe for concurrent use.
type Depacketizer struct {
	codec rtc.Codec
	clock uint32
	sb    *samplebuilder.SampleBuilder

	havePkt   bool
	flushed   bool
	lastSeq   uint16
	lastPktTS uint32

	haveTS   bool
	lastTS   uint32
	ext      int64
	dropped  int
	held     []byte // H.264 parameter sets that arrived without a picture
	sps, pps []byte
	spsInfo  SPS
	haveInfo bool
}

// NewDepacketizer returns a Depacketizer for codec; clockRate is the RTP
// clock (0 means the codec's standard: 90000 for video, 48000 for Opus).
func NewDepacketizer(codec rtc.Codec, clockRate uint32) (*Depacketizer, error) {
	var dp rtp.Depacketizer
	maxLate, maxDelay := uint16(videoMaxLate), videoMaxDelay
	switch codec {
	case rtc.CodecH264:
		dp = &codecs.H264Packet{}
	case rtc.CodecVP8:
		dp = &codecs.VP8Packet{}
	case rtc.CodecOpus:
		dp = &codecs.OpusPacket{}
		maxLate, maxDelay = audioMaxLate, audioMaxDelay
	default:
		return nil, fmt.Errorf("media: depacketizer: %w %q", rtc.ErrUnknownCodec, string(codec))
	}
	if clockRate == 0 {
		clockRate = 90000
		if codec == rtc.CodecOpus {
			clockRate = 48000
		}
	}
	return &Depacketizer{codec: codec, clock: clockRate, sb: samplebuilder.New(maxLate, dp, clockRate, samplebuilder.WithMaxTimeDelay(maxDelay))}, nil
}

// Push adds a packet. The Depacketizer keeps it; do not reuse it.
func (d *Depacketizer) Push(p *rtp.Packet) {
	if !d.havePkt || int16(p.SequenceNumber-d.lastSeq) > 0 {
		d.havePkt, d.lastSeq, d.lastPktTS = true, p.SequenceNumber, p.Timestamp
	}
	d.sb.Push(p)
}

// Flush makes the last complete frame available to Pop, at the end of a
// track: the samplebuilder only releases a frame once a later packet has
// arrived, so Flush pushes an empty terminator packet after the last one.
// (samplebuilder.Flush itself can take seconds on a stream that ended in
// the middle of a frame.) Push nothing after Flush.
func (d *Depacketizer) Flush() {
	if !d.havePkt || d.flushed {
		return
	}
	d.flushed = true
	step := d.clock / 30
	if d.codec == rtc.CodecOpus {
		step = d.clock / 50
	}
	d.sb.Push(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: d.lastSeq + 1, Timestamp: d.lastPktTS + step}})
}

// Pop returns the next complete frame, or false if none is ready.
func (d *Depacketizer) Pop() (Frame, bool) {
	for {
		s := d.sb.Pop()
		if s == nil {
			return Frame{}, false
		}
		d.dropped += int(s.PrevDroppedPackets)
		if f, ok := d.frame(s); ok {
			f.DroppedPackets, d.dropped = d.dropped, 0
			return f, true
		}
	}
}

func (d *Depacketizer) pts(ts uint32) time.Duration {
	if !d.haveTS {
		d.haveTS, d.lastTS = true, ts
	}
	d.ext += int64(int32(ts - d.lastTS))
	d.lastTS = ts
	return time.Duration(d.ext * int64(time.Second) / int64(d.clock))
}

func (d *Depacketizer) frame(s *pmedia.Sample) (Frame, bool) {
	if len(s.Data) == 0 {
		return Frame{}, false
	}
	f := Frame{Codec: d.codec, Data: s.Data, RTPTimestamp: s.PacketTimestamp, Duration: s.Duration}
	switch d.codec {
	case rtc.CodecH264:
		if !d.h264(&f) {
			return Frame{}, false
		}
	case rtc.CodecVP8:
		f.Keyframe = VP8IsKeyframe(f.Data)
		if f.Keyframe {
			f.Width, f.Height, _ = VP8FrameSize(f.Data)
		}
	case rtc.CodecOpus:
		f.Keyframe = true
		if f.Duration <= 0 {
			f.Duration, _ = OpusPacketDuration(f.Data)
		}
	}
	f.PTS = d.pts(s.PacketTimestamp)
	return f, true
}

// h264 fixes up an access unit: parameter sets received alone are kept for
// the next picture, and IDR units get the last SPS/PPS if they lack them.
func (d *Depacketizer) h264(f *Frame) bool {
	info := inspectH264(f.Data)
	if info.sps != nil && !bytes.Equal(info.sps, d.sps) {
		d.sps = bytes.Clone(info.sps)
		d.haveInfo = false
	}
	if info.pps != nil && !bytes.Equal(info.pps, d.pps) {
		d.pps = bytes.Clone(info.pps)
	}
	if !info.vcl {
		if len(d.held)+len(f.Data) <= maxHeldNALs {
			d.held = append(d.held, f.Data...)
		}
		return false
	}
	if len(d.held) > 0 {
		f.Data = append(d.held, f.Data...)
		d.held = nil
		info = inspectH264(f.Data)
	}
	if !info.idr || d.sps == nil || d.pps == nil {
		return true
	}
	f.Keyframe = true
	if info.sps == nil || info.pps == nil {
		data := make([]byte, 0, len(d.sps)+len(d.pps)+8+len(f.Data))
		if info.sps == nil {
			data = appendAnnexB(data, d.sps)
		}
		if info.pps == nil {
			data = appendAnnexB(data, d.pps)
		}
		f.Data = append(data, f.Data...)
	}
	if !d.haveInfo {
		if sps, err := ParseSPS(d.sps); err == nil {
			d.spsInfo, d.haveInfo = sps, true
		}
	}
	if d.haveInfo {
		f.Width, f.Height = d.spsInfo.Width, d.spsInfo.Height
	}
	return true
}
