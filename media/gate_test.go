package media

import (
	"testing"
	"time"
)

func TestFeedGate(t *testing.T) {
	var g FeedGate
	step := func(f Frame, wantOK bool, wantDur time.Duration) {
		t.Helper()
		d, ok := g.Video(f)
		if ok != wantOK || (ok && d != wantDur) {
			t.Fatalf("Video(ssrc %d key %v dur %v) = %v, %v; want %v, %v", f.SSRC, f.Keyframe, f.Duration, d, ok, wantDur, wantOK)
		}
	}
	// Video waits for the first keyframe, then takes every frame.
	step(Frame{SSRC: 1}, false, 0)
	step(Frame{SSRC: 1, Keyframe: true}, true, DefaultFrameDuration)
	step(Frame{SSRC: 1, Duration: 40 * time.Millisecond}, true, 40*time.Millisecond)
	step(Frame{SSRC: 1}, true, 40*time.Millisecond)
	// A new SSRC waits for its keyframe; the last duration carries over.
	step(Frame{SSRC: 2}, false, 0)
	step(Frame{SSRC: 2, Keyframe: true}, true, 40*time.Millisecond)
	// Restart waits again on the same SSRC.
	g.Restart()
	step(Frame{SSRC: 2}, false, 0)
	step(Frame{SSRC: 2, Keyframe: true, Duration: 50 * time.Millisecond}, true, 50*time.Millisecond)
	// Audio: at least 20 ms, the last told duration otherwise.
	if d := g.Audio(Frame{}); d != 20*time.Millisecond {
		t.Errorf("Audio with no duration = %v, want 20ms", d)
	}
	if d := g.Audio(Frame{Duration: 60 * time.Millisecond}); d != 60*time.Millisecond {
		t.Errorf("Audio(60ms) = %v", d)
	}
	if d := g.Audio(Frame{}); d != 60*time.Millisecond {
		t.Errorf("Audio after 60ms = %v, want 60ms", d)
	}
}
