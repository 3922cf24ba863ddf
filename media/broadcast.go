package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// SampleWriter receives samples; *webrtc.TrackLocalStaticSample implements it.
type SampleWriter interface {
	WriteSample(pmedia.Sample) error
}

// BroadcasterConfig configures a [Broadcaster]. The zero value works.
type BroadcasterConfig struct {
	// Logger receives debug messages and warnings; nil discards them.
	Logger *slog.Logger

	// MaxGOPFrames and MaxGOPBytes bound the cached group of pictures.
	// When a GOP outgrows them the cache is dropped until the next
	// keyframe, and viewers joining meanwhile wait for that keyframe.
	// Defaults: 600 frames, 32 MiB.
	MaxGOPFrames int
	MaxGOPBytes  int

	// CatchUpFrameDuration is the RTP time given to each cached frame (all
	// but the last) resent through [Subscription.RequestKeyframe], so the
	// subscriber's decoder runs through the GOP at once and its RTP clock
	// stays in step with the live source. Default 1 ms. It does not apply
	// to the GOP a new subscriber gets: those frames keep the source's
	// frame spacing, since they are the start of that subscriber's stream
	// (a recording of it must not start in fast-forward).
	CatchUpFrameDuration time.Duration

	// KeyframeRequestInterval is the least time between two GOP resends to
	// one subscriber through [Subscription.RequestKeyframe]. Default 1 s.
	KeyframeRequestInterval time.Duration

	// OnKeyframeNeeded, if set, is called (on a goroutine of its own, at
	// most once per KeyframeRequestInterval) when a subscriber needs a
	// keyframe the cache cannot give well: it subscribes or asks for one
	// while no GOP is cached, or while the cached GOP is longer than
	// MaxJoinGOP. Such a subscriber then waits for the next keyframe
	// instead of replaying the cache. A fed Broadcaster (a relay) passes
	// it on to the camera: WebRTC encoders send a keyframe at the start
	// and then only when asked, so their GOP grows without end.
	OnKeyframeNeeded func()
	// MaxJoinGOP is, with OnKeyframeNeeded, the longest cached GOP (by
	// its samples' durations) that a subscriber still starts from
	// (default 5 s): a longer one would start it that far behind, or
	// overflow its queue.
	MaxJoinGOP time.Duration
}

// Broadcaster fans the samples of one [Source] out to many subscribers
// (one track per viewer). Run pulls from the source; Subscribe and
// Unsubscribe may be called from any goroutine at any time.
//
// For video it caches the current GOP: every sample since the last
// keyframe (which for H.264 carries SPS and PPS). A new subscriber first
// gets that GOP, all at once but with the source's frame spacing in its
// RTP timestamps, then the live samples, so it starts on a keyframe and
// its stream has the source's timing from the first frame. A resend after
// a keyframe request is compressed instead (see
// BroadcasterConfig.CatchUpFrameDuration). A subscriber never gets a
// delta frame before a keyframe.
// Audio is passed through without caching.
//
// Writes happen on the Run goroutine (and in Subscribe / RequestKeyframe
// for the catch-up), under one mutex; a slow SampleWriter delays all the
// others, which is fine for pion tracks (WriteSample never blocks on the
// network).
type Broadcaster struct {
	src      Source
	codec    rtc.Codec
	video    bool
	log      *slog.Logger
	maxFr    int
	maxBytes int
	catchUp  time.Duration
	reqEvery time.Duration
	needKey  func()        // BroadcasterConfig.OnKeyframeNeeded
	maxJoin  time.Duration // BroadcasterConfig.MaxJoinGOP

	mu       sync.Mutex
	gopDur   time.Duration // the cached samples' durations
	lastAsk  time.Time     // needKey's last call
	subs     []*Subscription
	gop      []pmedia.Sample // gop[0] is a keyframe when len > 0
	gopBytes int
	overflow bool // the current GOP outgrew the cache
	frames   uint64
	running  bool
}

// Subscription is one subscriber of a [Broadcaster].
type Subscription struct {
	b        *Broadcaster
	w        SampleWriter
	synced   bool // has been sent a keyframe
	resync   bool // RequestKeyframe pending
	lastReq  time.Time
	failures int
	gone     bool
}

// NewBroadcaster returns a Broadcaster for src. It takes ownership of src:
// Run closes it when it returns.
func NewBroadcaster(src Source, cfg BroadcasterConfig) *Broadcaster {
	b := &Broadcaster{
		src:      src,
		codec:    src.Codec(),
		video:    isVideo(src.Codec()),
		log:      cfg.Logger,
		maxFr:    cfg.MaxGOPFrames,
		maxBytes: cfg.MaxGOPBytes,
		catchUp:  cfg.CatchUpFrameDuration,
		reqEvery: cfg.KeyframeRequestInterval,
		needKey:  cfg.OnKeyframeNeeded,
		maxJoin:  cfg.MaxJoinGOP,
	}
	if b.maxJoin <= 0 {
		b.maxJoin = 5 * time.Second
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.maxFr <= 0 {
		b.maxFr = 600
	}
	if b.maxBytes <= 0 {
		b.maxBytes = 32 << 20
	}
	if b.catchUp <= 0 {
		b.catchUp = time.Millisecond
	}
	if b.reqEvery <= 0 {
		b.reqEvery = time.Second
	}
	return b
}

// Codec returns the codec of the source; create subscriber tracks with
// rtc.Capability(b.Codec()).
func (b *Broadcaster) Codec() rtc.Codec { return b.codec }

// Run reads the source and sends every sample to the subscribers until ctx
// is done (it returns ctx.Err()), the source ends (nil) or fails (the
// error). It closes the source before returning. Call it once.
func (b *Broadcaster) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return errors.New("media: Broadcaster.Run called twice")
	}
	b.running = true
	b.mu.Unlock()
	defer b.src.Close()

	for {
		s, err := b.src.ReadSample(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("media: broadcast: %w", err)
		}
		b.Publish(s)
	}
}

// Publish sends s to every subscriber and updates the GOP cache. Run calls
// it for each sample of the source; call it directly only on a Broadcaster
// that is not running (for example to feed it from elsewhere).
func (b *Broadcaster) Publish(s Sample) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.frames++
	if b.video {
		b.cache(s)
	}
	out := pmedia.Sample{Data: s.Data, Duration: s.Duration, Timestamp: s.Timestamp}
	for _, sub := range b.subs {
		if sub.resync {
			sub.resync = false
			if !s.Keyframe && b.sendGOPLocked(sub, b.catchUp) {
				continue // the cached GOP ends with this sample
			}
		}
		if !sub.synced {
			if !s.Keyframe {
				continue
			}
			sub.synced = true
		}
		sub.write(out)
	}
}

// cache keeps the samples since the last keyframe.
func (b *Broadcaster) cache(s Sample) {
	if s.Keyframe {
		clear(b.gop)
		b.gop = b.gop[:0]
		b.gopBytes = 0
		b.gopDur = 0
		b.overflow = false
	} else if len(b.gop) == 0 {
		return // no keyframe yet, or dropped after overflow
	}
	if len(b.gop) >= b.maxFr || b.gopBytes+len(s.Data) > b.maxBytes {
		if !b.overflow {
			b.log.Warn("media: GOP too long to cache; late viewers will wait for the next keyframe",
				"frames", len(b.gop), "bytes", b.gopBytes)
			b.overflow = true
		}
		clear(b.gop)
		b.gop = b.gop[:0]
		b.gopBytes = 0
		b.gopDur = 0
		return
	}
	b.gop = append(b.gop, pmedia.Sample{Data: s.Data, Duration: s.Duration, Timestamp: s.Timestamp})
	b.gopBytes += len(s.Data)
	b.gopDur += s.Duration
}

// sendGOPLocked writes the cached GOP to sub. With catchUp > 0 every
// sample but the last gets that duration (a resend); with 0 every sample
// keeps its own, so the RTP timestamps keep the source's frame spacing (a
// join). It reports whether there was a GOP to send.
func (b *Broadcaster) sendGOPLocked(sub *Subscription, catchUp time.Duration) bool {
	if len(b.gop) == 0 {
		return false
	}
	for i, s := range b.gop {
		if catchUp > 0 && i < len(b.gop)-1 {
			s.Duration = catchUp
		}
		sub.write(s)
	}
	sub.synced = true
	return true
}

// Subscribe adds w (normally a *webrtc.TrackLocalStaticSample) as a
// subscriber. For video, the cached GOP is written to w before Subscribe
// returns, so w must already be able to send: subscribe a pion track once
// its PeerConnection is connected (pion drops samples written before
// that). Without a cached GOP, w gets samples from the next keyframe on.
func (b *Broadcaster) Subscribe(w SampleWriter) *Subscription {
	sub := &Subscription{b: b, w: w, synced: !b.video}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.video {
		if b.staleLocked() {
			b.askKeyframeLocked()
		} else {
			b.sendGOPLocked(sub, 0)
		}
		sub.lastReq = time.Now()
	}
	b.subs = append(b.subs, sub)
	return sub
}

// Subscribers returns the current number of subscribers.
func (b *Broadcaster) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Unsubscribe removes the subscription; nothing is written to its writer
// after Unsubscribe returns. Safe to call more than once.
func (s *Subscription) Unsubscribe() {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.gone {
		return
	}
	s.gone = true
	b.subs = slices.DeleteFunc(b.subs, func(x *Subscription) bool { return x == s })
}

// RequestKeyframe asks for a fresh start on this subscriber, as when its
// viewer sends an RTCP PLI or FIR: before the next live sample it gets the
// cached GOP again (if the next sample is not a keyframe anyway). Requests
// closer together than BroadcasterConfig.KeyframeRequestInterval are
// ignored. For audio it does nothing.
func (s *Subscription) RequestKeyframe() {
	b := s.b
	if !b.video {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.gone || time.Since(s.lastReq) < b.reqEvery {
		return
	}
	if b.staleLocked() {
		// Wait for the next keyframe, which the source is asked for.
		s.lastReq = time.Now()
		s.synced = false
		b.askKeyframeLocked()
		return
	}
	if len(b.gop) == 0 {
		return
	}
	s.lastReq = time.Now()
	s.resync = true
}

// staleLocked reports whether the cache cannot start a subscriber well
// while the source can be asked for a keyframe (OnKeyframeNeeded): no GOP
// is cached, or it is longer than MaxJoinGOP.
func (b *Broadcaster) staleLocked() bool {
	return b.needKey != nil && (len(b.gop) == 0 || b.gopDur > b.maxJoin)
}

// askKeyframeLocked calls OnKeyframeNeeded, at most once per
// KeyframeRequestInterval.
func (b *Broadcaster) askKeyframeLocked() {
	if now := time.Now(); b.lastAsk.IsZero() || now.Sub(b.lastAsk) >= b.reqEvery {
		b.lastAsk = now
		go b.needKey()
	}
}

func (s *Subscription) write(smp pmedia.Sample) {
	if err := s.w.WriteSample(smp); err != nil {
		s.failures++
		if s.failures == 1 {
			s.b.log.Debug("media: subscriber write failed", "err", err)
		}
	}
}
