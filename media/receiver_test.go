package media

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// TestReceiverRequestsKeyframe joins a VP8 stream in the middle of a GOP
// without a Broadcaster: the Receiver asks for a keyframe, reports the
// first one, and Run stops when its context is cancelled.
func TestReceiverRequestsKeyframe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	capability, _ := rtc.Capability(rtc.CodecVP8)
	track, err := webrtc.NewTrackLocalStaticSample(capability, "video", "kvsrtc")
	if err != nil {
		t.Fatal(err)
	}
	pair, _, remote := connect(ctx, t, rtc.CodecVP8, []webrtc.TrackLocal{track})
	defer pair.master.Close()
	defer pair.viewer.Close()

	ss := testSamples(t, rtc.CodecVP8)
	// Deltas first (frames 5..29), then the keyframe at 30. Write until
	// the viewer's track shows up, then all of them.
	write := func(from, to int) {
		for _, s := range ss[from:to] {
			if err := track.WriteSample(s.Sample); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	var tr *webrtc.TrackRemote
	for tr == nil {
		write(1, 2)
		select {
		case rt := <-remote:
			tr = rt.track
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no track")
		}
	}
	var requests atomic.Int32
	ff := &firstFrame{}
	r, err := NewReceiver(tr, ReceiverConfig{Sinks: []Sink{ff}, RequestKeyframe: func() { requests.Add(1) }, KeyframeRequestInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()

	write(5, 40)
	select {
	case <-r.FirstKeyframe():
	case <-ctx.Done():
		t.Fatal("no keyframe")
	}
	write(40, 45)
	stop()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after cancel")
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d keyframe requests, want 1 (rate limited)", n)
	}
	st := r.Stats()
	if st.Keyframes < 1 || st.Width != 640 || st.Frames < 30 || r.Codec() != rtc.CodecVP8 {
		t.Errorf("stats %+v", st)
	}
	if err := r.Run(ctx); err == nil {
		t.Error("second Run accepted")
	}
}
