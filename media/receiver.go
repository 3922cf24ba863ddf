package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// Sink consumes frames. Sinks used by one [Receiver] are called from its Run
// goroutine; a sink shared by several receivers (a recording with audio and
// video) must be safe for concurrent use, as [MatroskaWriter] and [Stats] are.
type Sink interface {
	WriteFrame(Frame) error
}

// RTPTrack is the part of *webrtc.TrackRemote a [Receiver] uses.
type RTPTrack interface {
	ReadRTP() (*rtp.Packet, interceptor.Attributes, error)
	SetReadDeadline(time.Time) error
	Codec() webrtc.RTPCodecParameters
}

// ReceiverConfig configures a [Receiver]. The zero value works.
type ReceiverConfig struct {
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger

	// Sinks get every frame, in order, after the Receiver's own Stats.
	Sinks []Sink

	// StatsWindow is the window of the Receiver's FPS and bitrate (0 means
	// DefaultStatsWindow).
	StatsWindow time.Duration

	// RequestKeyframe, if set, is called when the video needs a keyframe:
	// packets were lost, or delta frames arrive before the first keyframe.
	// Calls are at least KeyframeRequestInterval apart. A viewer sends an
	// RTCP PLI from it. It runs on the Run goroutine and must not block.
	RequestKeyframe func()

	// KeyframeRequestInterval defaults to 1 s.
	KeyframeRequestInterval time.Duration
}

// Receiver reads one remote track, rebuilds frames, keeps statistics,
// reports the first keyframe and feeds the sinks. Create it in pion's
// OnTrack callback and call Run from a goroutine the caller owns.
type Receiver struct {
	track    RTPTrack
	codec    rtc.Codec
	cfg      ReceiverConfig
	log      *slog.Logger
	depack   *Depacketizer
	stats    *Stats
	firstKey chan struct{}
	lastReq  time.Time
	reqEvery time.Duration
	gotKey   bool
	ran      bool
	clock    uint32
	ssrc     uint32

	srMu   sync.Mutex
	srSet  bool
	srRTP  uint32    // RTP timestamp of the latest sender report
	srTime time.Time // its NTP time
}

// NewReceiver returns a Receiver for track (normally a *webrtc.TrackRemote).
// The track's codec must be H.264, VP8 or Opus.
func NewReceiver(track RTPTrack, cfg ReceiverConfig) (*Receiver, error) {
	params := track.Codec()
	codec, err := rtc.ParseCodec(params.MimeType)
	if err != nil {
		return nil, fmt.Errorf("media: receiver: %w", err)
	}
	d, err := NewDepacketizer(codec, params.ClockRate)
	if err != nil {
		return nil, err
	}
	r := &Receiver{
		track: track, codec: codec, cfg: cfg, log: cfg.Logger, depack: d,
		stats: NewStats(cfg.StatsWindow), firstKey: make(chan struct{}),
		reqEvery: cfg.KeyframeRequestInterval, clock: d.clock,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.reqEvery <= 0 {
		r.reqEvery = time.Second
	}
	if t, ok := track.(interface{ SSRC() webrtc.SSRC }); ok {
		r.ssrc = uint32(t.SSRC())
	}
	return r, nil
}

// Codec returns the track's codec.
func (r *Receiver) Codec() rtc.Codec { return r.codec }

// FirstKeyframe returns a channel closed when the first complete keyframe
// (for audio: the first packet) has been received and handed to the sinks.
func (r *Receiver) FirstKeyframe() <-chan struct{} { return r.firstKey }

// Stats returns the track's statistics so far.
func (r *Receiver) Stats() StatsSnapshot { return r.stats.Snapshot() }

// Run reads the track until it ends (it returns nil), ctx is done (it
// returns ctx.Err()) or a sink fails (it returns that error). Frames still
// buffered are delivered before it returns. Sinks are not closed. Call it
// once.
func (r *Receiver) Run(ctx context.Context) error {
	if r.ran {
		return errors.New("media: Receiver.Run called twice")
	}
	r.ran = true
	stop := context.AfterFunc(ctx, func() { _ = r.track.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	for {
		pkt, _, err := r.track.ReadRTP()
		if err != nil {
			r.depack.Flush()
			if derr := r.drain(); derr != nil {
				return derr
			}
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrClosedPipe):
				return nil
			}
			return fmt.Errorf("media: read RTP: %w", err)
		}
		r.depack.Push(pkt)
		if err := r.drain(); err != nil {
			return err
		}
	}
}

// drain hands every complete frame to the sinks.
func (r *Receiver) drain() error {
	for {
		f, ok := r.depack.Pop()
		if !ok {
			return nil
		}
		if err := r.deliver(f); err != nil {
			return err
		}
	}
}

// HandleRTCP gives the Receiver RTCP packets of its track, as read from
// the track's *webrtc.RTPReceiver (ReadRTCP): sender reports map the RTP
// timestamps to the sender's wall clock, which frames then carry as
// [Frame.SenderTime] so a recording can line up audio and video. Other
// packets, and reports for other SSRCs, are ignored. Safe to call from
// any goroutine while Run runs.
func (r *Receiver) HandleRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		sr, ok := p.(*rtcp.SenderReport)
		if !ok || (r.ssrc != 0 && sr.SSRC != r.ssrc) {
			continue
		}
		r.srMu.Lock()
		r.srSet, r.srRTP, r.srTime = true, sr.RTPTime, ntpTime(sr.NTPTime)
		r.srMu.Unlock()
	}
}

// ntpTime converts a 64-bit NTP timestamp (RFC 3550 section 4).
func ntpTime(ntp uint64) time.Time {
	const ntpToUnix = 2208988800 // seconds from 1900 to 1970
	sec := int64(ntp>>32) - ntpToUnix
	frac := int64((ntp & 0xffffffff) * uint64(time.Second) >> 32)
	return time.Unix(sec, frac)
}

// senderTime maps an RTP timestamp to the sender's clock, or zero.
func (r *Receiver) senderTime(ts uint32) time.Time {
	r.srMu.Lock()
	defer r.srMu.Unlock()
	if !r.srSet || r.clock == 0 {
		return time.Time{}
	}
	d := int64(int32(ts - r.srRTP))
	return r.srTime.Add(time.Duration(d * int64(time.Second) / int64(r.clock)))
}

func (r *Receiver) deliver(f Frame) error {
	f.Arrival, f.SSRC = time.Now(), r.ssrc
	f.SenderTime = r.senderTime(f.RTPTimestamp)
	_ = r.stats.WriteFrame(f)
	if isVideo(r.codec) && (f.DroppedPackets > 0 || (!r.gotKey && !f.Keyframe)) {
		r.requestKeyframe(f.DroppedPackets)
	}
	for _, s := range r.cfg.Sinks {
		if err := s.WriteFrame(f); err != nil {
			return fmt.Errorf("media: sink: %w", err)
		}
	}
	if f.Keyframe && !r.gotKey {
		r.gotKey = true
		r.log.Debug("media: first keyframe", "codec", r.codec.String(), "width", f.Width, "height", f.Height)
		close(r.firstKey)
	}
	return nil
}

func (r *Receiver) requestKeyframe(dropped int) {
	if r.cfg.RequestKeyframe == nil {
		return
	}
	now := time.Now()
	if !r.lastReq.IsZero() && now.Sub(r.lastReq) < r.reqEvery {
		return
	}
	r.lastReq = now
	r.log.Debug("media: requesting keyframe", "codec", r.codec.String(), "dropped_packets", dropped, "had_keyframe", r.gotKey)
	r.cfg.RequestKeyframe()
}
