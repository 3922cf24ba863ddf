package media

import "time"

// DefaultFrameDuration is the duration [FeedGate] gives a video frame
// before any frame of the stream has told its own (30 fps).
const DefaultFrameDuration = time.Second / 30

// minAudioDuration is the least duration FeedGate gives an audio frame
// (one Opus packet of the usual size).
const minAudioDuration = 20 * time.Millisecond

// FeedGate prepares a received stream's frames for a fed [Broadcaster]:
// video starts at a keyframe, and starts again at one whenever the
// sender's SSRC changes (a reconnect, a new peer connection) or the owner
// calls [FeedGate.Restart]; every frame gets a duration, the last one the
// stream told where the depacketizer could not tell it.
//
// The relay's upstream and the storage session both feed their
// broadcasters through one. A FeedGate is not safe for concurrent use:
// its owner holds its own lock around it. The zero value is ready and
// waits for a keyframe.
type FeedGate struct {
	started bool
	ssrc    uint32
	video   time.Duration
	audio   time.Duration
}

// Restart makes video wait for the next keyframe (a new upstream session).
func (g *FeedGate) Restart() { g.started = false }

// Video returns the duration to publish a video frame with, and false when
// the frame must be dropped because video waits for a keyframe.
func (g *FeedGate) Video(f Frame) (time.Duration, bool) {
	if f.SSRC != g.ssrc {
		g.ssrc, g.started = f.SSRC, false
	}
	if !g.started {
		if !f.Keyframe {
			return 0, false
		}
		g.started = true
	}
	if f.Duration > 0 {
		g.video = f.Duration
	}
	if g.video <= 0 {
		return DefaultFrameDuration, true
	}
	return g.video, true
}

// Audio returns the duration to publish an audio frame with: the frame's
// own, else the stream's last, and at least 20 ms.
func (g *FeedGate) Audio(f Frame) time.Duration {
	if f.Duration > 0 {
		g.audio = f.Duration
	}
	return max(g.audio, minAudioDuration)
}
