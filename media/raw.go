package media

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// AnnexBWriter is a [Sink] that writes H.264 access units as a raw Annex-B
// byte stream (what `ffplay -f h264 -` reads), starting at the first
// keyframe, which always carries SPS and PPS. It does not close w.
type AnnexBWriter struct {
	mu      sync.Mutex
	w       io.Writer
	started bool
}

// NewAnnexBWriter returns an AnnexBWriter writing to w.
func NewAnnexBWriter(w io.Writer) *AnnexBWriter { return &AnnexBWriter{w: w} }

// WriteFrame writes f (H.264 only); frames before the first keyframe are
// skipped.
func (a *AnnexBWriter) WriteFrame(f Frame) error {
	if f.Codec != rtc.CodecH264 {
		return fmt.Errorf("media: Annex-B output: %w: got %s, want H264", ErrCodecMismatch, f.Codec)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started {
		if !f.Keyframe {
			return nil
		}
		a.started = true
	}
	_, err := a.w.Write(f.Data)
	return err
}

// IVFWriter is a [Sink] that writes VP8 frames as an IVF stream (what
// `ffplay -f ivf -` reads), starting at the first keyframe, whose size goes
// into the file header. The time base is the RTP clock, 1/90000 s, and the
// header's frame count is left 0 (unknown), which players accept. Frame
// times are the RTP timestamps relative to the first frame; frames of a
// new RTP stream (a new [Frame.SSRC], after a reconnect) continue from its
// next keyframe after what was written and the time without video. It
// does not close w.
type IVFWriter struct {
	mu      sync.Mutex
	w       io.Writer
	started bool
	ssrc    uint32
	ext     int64 // time of the latest frame, RTP ticks
	maxExt  int64
	last    uint32
	arrival time.Time // of the latest frame
	buf     []byte
}

// NewIVFWriter returns an IVFWriter writing to w.
func NewIVFWriter(w io.Writer) *IVFWriter { return &IVFWriter{w: w} }

// WriteFrame writes f (VP8 only); frames before the first keyframe are skipped.
func (v *IVFWriter) WriteFrame(f Frame) error {
	if f.Codec != rtc.CodecVP8 {
		return fmt.Errorf("media: IVF output: %w: got %s, want VP8", ErrCodecMismatch, f.Codec)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.started {
		width, height, ok := VP8FrameSize(f.Data)
		if !ok {
			return nil
		}
		hdr := make([]byte, ivfFileHeaderLen)
		copy(hdr, "DKIF")
		binary.LittleEndian.PutUint16(hdr[4:], 0)  // version
		binary.LittleEndian.PutUint16(hdr[6:], 32) // header size
		copy(hdr[8:], "VP80")
		binary.LittleEndian.PutUint16(hdr[12:], uint16(width))
		binary.LittleEndian.PutUint16(hdr[14:], uint16(height))
		binary.LittleEndian.PutUint32(hdr[16:], 90000) // time base denominator (rate)
		binary.LittleEndian.PutUint32(hdr[20:], 1)     // numerator (scale)
		if _, err := v.w.Write(hdr); err != nil {
			return err
		}
		v.started, v.last, v.ssrc = true, f.RTPTimestamp, f.SSRC
	} else if f.SSRC != v.ssrc {
		if !VP8IsKeyframe(f.Data) {
			return nil
		}
		gap := int64(3000) // one frame at 30 fps
		if !f.Arrival.IsZero() && !v.arrival.IsZero() {
			gap = max(gap, int64(f.Arrival.Sub(v.arrival)*90000/time.Second))
		}
		v.ssrc, v.last, v.ext = f.SSRC, f.RTPTimestamp, v.maxExt+gap
	}
	v.ext += int64(int32(f.RTPTimestamp - v.last))
	v.last, v.arrival = f.RTPTimestamp, f.Arrival
	pts := max(v.ext, 0)
	v.maxExt = max(v.maxExt, pts)
	v.buf = binary.LittleEndian.AppendUint32(v.buf[:0], uint32(len(f.Data)))
	v.buf = binary.LittleEndian.AppendUint64(v.buf, uint64(pts))
	v.buf = append(v.buf, f.Data...)
	_, err := v.w.Write(v.buf)
	return err
}

// NewRawWriter returns the raw-stream Sink for a video codec: an
// [AnnexBWriter] for H.264 or an [IVFWriter] for VP8. Audio has no raw
// output; record it to .mkv or .webm.
func NewRawWriter(w io.Writer, codec rtc.Codec) (Sink, error) {
	switch codec {
	case rtc.CodecH264:
		return NewAnnexBWriter(w), nil
	case rtc.CodecVP8:
		return NewIVFWriter(w), nil
	}
	return nil, fmt.Errorf("media: raw output: %w: %s has no raw form here (use H264 or VP8, or record audio to .mkv/.webm)", ErrCodecMismatch, codec)
}
