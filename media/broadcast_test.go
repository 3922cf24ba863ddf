package media

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// recorder is a SampleWriter that keeps what it is sent and checks the
// subscriber rules as samples arrive.
type recorder struct {
	mu      sync.Mutex
	codec   rtc.Codec
	samples []pmedia.Sample
	bad     string
}

func (r *recorder) WriteSample(s pmedia.Sample) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 && isVideo(r.codec) && !isKey(r.codec, s.Data) && r.bad == "" {
		r.bad = "first sample is not a keyframe"
	}
	if s.Duration <= 0 && r.bad == "" {
		r.bad = "sample without duration"
	}
	r.samples = append(r.samples, s)
	return nil
}

func (r *recorder) get() []pmedia.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pmedia.Sample(nil), r.samples...)
}

func isKey(c rtc.Codec, b []byte) bool {
	switch c {
	case rtc.CodecH264:
		return H264IsKeyframe(b)
	case rtc.CodecVP8:
		return VP8IsKeyframe(b)
	}
	return true
}

func testSamples(t testing.TB, codec rtc.Codec) []Sample {
	t.Helper()
	src, err := NewTestSource(codec, once)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ss, _ := readAll(t, src, 1000)
	return ss
}

func TestBroadcasterTenSubscribers(t *testing.T) {
	for _, codec := range []rtc.Codec{rtc.CodecH264, rtc.CodecVP8, rtc.CodecOpus} {
		src, err := NewTestSource(codec, once)
		if err != nil {
			t.Fatal(err)
		}
		b := NewBroadcaster(src, BroadcasterConfig{})
		if b.Codec() != codec {
			t.Errorf("codec %v", b.Codec())
		}
		var recs []*recorder
		for range 10 {
			r := &recorder{codec: codec}
			recs = append(recs, r)
			b.Subscribe(r)
		}
		if n := b.Subscribers(); n != 10 {
			t.Errorf("%d subscribers", n)
		}
		if err := b.Run(context.Background()); err != nil {
			t.Fatalf("%s: Run: %v", codec, err)
		}
		want := testsrc.Frames
		if codec == rtc.CodecOpus {
			want = testsrc.OpusPackets
		}
		for i, r := range recs {
			got := r.get()
			if len(got) != want || r.bad != "" {
				t.Errorf("%s: subscriber %d got %d samples (%s), want %d", codec, i, len(got), r.bad, want)
			}
		}
		if err := b.Run(context.Background()); err == nil {
			t.Error("second Run accepted")
		}
		if _, err := src.ReadSample(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Run did not close the source: %v", err)
		}
	}
}

func TestBroadcasterLateSubscriber(t *testing.T) {
	ss := testSamples(t, rtc.CodecH264)
	src, _ := NewTestSource(rtc.CodecH264, once)
	defer src.Close()
	b := NewBroadcaster(src, BroadcasterConfig{})

	early := &recorder{codec: rtc.CodecH264}
	b.Subscribe(early)
	for _, s := range ss[:45] {
		b.Publish(s)
	}
	late := &recorder{codec: rtc.CodecH264}
	sub := b.Subscribe(late)
	got := late.get()
	// The GOP started at frame 30: 15 frames, sent at once but with the
	// source's durations, which become the RTP timestamp steps.
	if len(got) != 15 || late.bad != "" {
		t.Fatalf("late subscriber got %d cached samples (%s), want 15", len(got), late.bad)
	}
	for i, s := range got {
		if want := ss[30+i].Duration; s.Duration != want || want <= 0 {
			t.Errorf("cached sample %d duration %v, want %v", i, s.Duration, want)
		}
		if &s.Data[0] != &ss[30+i].Data[0] {
			t.Errorf("cached sample %d is not frame %d", i, 30+i)
		}
	}
	for _, s := range ss[45:] {
		b.Publish(s)
	}
	if n := len(late.get()); n != 15+135 {
		t.Errorf("late subscriber got %d samples, want 150", n)
	}
	if n := len(early.get()); n != 180 {
		t.Errorf("early subscriber got %d samples", n)
	}
	sub.Unsubscribe()
	sub.Unsubscribe()
	b.Publish(ss[0])
	if n := len(late.get()); n != 150 {
		t.Errorf("unsubscribed writer got more samples: %d", n)
	}
	if b.Subscribers() != 1 {
		t.Errorf("%d subscribers", b.Subscribers())
	}
}

func TestBroadcasterNoDeltaBeforeKeyframe(t *testing.T) {
	ss := testSamples(t, rtc.CodecVP8)
	src, _ := NewTestSource(rtc.CodecVP8, once)
	defer src.Close()
	b := NewBroadcaster(src, BroadcasterConfig{})
	r := &recorder{codec: rtc.CodecVP8}
	b.Subscribe(r) // nothing cached yet
	// Start in the middle of a GOP, as a live stream does.
	for _, s := range ss[10:40] {
		b.Publish(s)
	}
	got := r.get()
	if len(got) != 10 || r.bad != "" {
		t.Fatalf("got %d samples (%s), want the 10 from the keyframe at 30", len(got), r.bad)
	}
	// A subscriber joining now gets the GOP since frame 30.
	r2 := &recorder{codec: rtc.CodecVP8}
	b.Subscribe(r2)
	if n := len(r2.get()); n != 10 || r2.bad != "" {
		t.Errorf("second subscriber: %d cached samples (%s)", n, r2.bad)
	}
}

func TestBroadcasterGOPOverflowAndKeyframeRequest(t *testing.T) {
	ss := testSamples(t, rtc.CodecH264)
	src, _ := NewTestSource(rtc.CodecH264, once)
	defer src.Close()
	b := NewBroadcaster(src, BroadcasterConfig{MaxGOPFrames: 10, KeyframeRequestInterval: time.Nanosecond})
	for _, s := range ss[:15] {
		b.Publish(s) // GOP of frame 0 outgrows the cache at frame 10
	}
	r := &recorder{codec: rtc.CodecH264}
	sub := b.Subscribe(r)
	if n := len(r.get()); n != 0 {
		t.Fatalf("got %d samples from an overflowed cache", n)
	}
	sub.RequestKeyframe() // nothing cached: ignored
	for _, s := range ss[15:35] {
		b.Publish(s)
	}
	if n := len(r.get()); n != 5 || r.bad != "" {
		t.Fatalf("got %d samples (%s), want 5 from the keyframe at 30", n, r.bad)
	}
	time.Sleep(time.Millisecond)
	sub.RequestKeyframe()
	b.Publish(ss[35])
	// Resent: frames 30..35 (6), with catch-up durations, after the 5.
	got := r.get()
	if len(got) != 11 || !H264IsKeyframe(got[5].Data) || got[5].Duration != time.Millisecond {
		t.Errorf("after RequestKeyframe: %d samples", len(got))
	}

	// Audio: no cache, everything passes.
	asrc, _ := NewTestSource(rtc.CodecOpus, once)
	ab := NewBroadcaster(asrc, BroadcasterConfig{})
	defer asrc.Close()
	for _, s := range testSamples(t, rtc.CodecOpus)[:5] {
		ab.Publish(s)
	}
	ar := &recorder{codec: rtc.CodecOpus}
	asub := ab.Subscribe(ar)
	asub.RequestKeyframe()
	if n := len(ar.get()); n != 0 {
		t.Errorf("audio subscriber got %d cached samples", n)
	}
}

func TestBroadcasterRunCancel(t *testing.T) {
	src, err := NewTestSource(rtc.CodecH264, SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBroadcaster(src, BroadcasterConfig{})
	r := &recorder{codec: rtc.CodecH264}
	b.Subscribe(r)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := b.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run: %v", err)
	}
	if n := len(r.get()); n < 1 || n > 10 || r.bad != "" {
		t.Errorf("paced run of 200ms delivered %d samples (%s)", n, r.bad)
	}
}

// TestBroadcasterAsksForKeyframe: with OnKeyframeNeeded, a subscriber that
// cannot start well from the cache (nothing cached, or a GOP longer than
// MaxJoinGOP) gets nothing from it and waits for the next keyframe, which
// the hook asks the source for; a short cached GOP is sent as before,
// without asking.
func TestBroadcasterAsksForKeyframe(t *testing.T) {
	ss := testSamples(t, rtc.CodecH264) // a keyframe every 30 frames (1 s)
	src, _ := NewTestSource(rtc.CodecH264, once)
	defer src.Close()
	asked := make(chan struct{}, 16)
	b := NewBroadcaster(src, BroadcasterConfig{KeyframeRequestInterval: time.Nanosecond, MaxJoinGOP: 500 * time.Millisecond,
		OnKeyframeNeeded: func() { asked <- struct{}{} }})
	wantAsk := func(what string) {
		t.Helper()
		select {
		case <-asked:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: OnKeyframeNeeded was not called", what)
		}
	}
	noAsk := func(what string) {
		t.Helper()
		select {
		case <-asked:
			t.Fatalf("%s: OnKeyframeNeeded was called", what)
		case <-time.After(50 * time.Millisecond):
		}
	}

	early := &recorder{codec: rtc.CodecH264}
	b.Subscribe(early)
	wantAsk("subscribing with nothing cached")
	time.Sleep(time.Millisecond) // past KeyframeRequestInterval

	for _, s := range ss[:20] {
		b.Publish(s) // a GOP of 20 frames, about 667 ms
	}
	late := &recorder{codec: rtc.CodecH264}
	b.Subscribe(late)
	wantAsk("subscribing to a GOP longer than MaxJoinGOP")
	if n := len(late.get()); n != 0 {
		t.Fatalf("the long GOP was replayed: %d samples", n)
	}
	for _, s := range ss[20:31] {
		b.Publish(s) // frame 30 is the next keyframe
	}
	if got := late.get(); len(got) != 1 || late.bad != "" {
		t.Fatalf("after the next keyframe the late subscriber has %d samples (%s), want 1", len(got), late.bad)
	}
	time.Sleep(time.Millisecond)

	for _, s := range ss[31:36] {
		b.Publish(s)
	}
	short := &recorder{codec: rtc.CodecH264}
	sub := b.Subscribe(short)
	noAsk("subscribing to a short GOP")
	if n := len(short.get()); n != 6 || short.bad != "" {
		t.Fatalf("short GOP: %d samples (%s), want the 6 cached", n, short.bad)
	}

	// A keyframe request once the GOP is long: the subscriber waits for
	// the next keyframe (no replay) and the source is asked.
	for _, s := range ss[36:55] {
		b.Publish(s) // 25 frames since the keyframe at 30
	}
	time.Sleep(time.Millisecond)
	before := len(short.get())
	sub.RequestKeyframe()
	wantAsk("a keyframe request on a long GOP")
	b.Publish(ss[55])
	if n := len(short.get()); n != before {
		t.Fatalf("a delta frame reached the subscriber waiting for a keyframe (%d -> %d samples)", before, n)
	}
	b.Publish(ss[60])
	if got := short.get(); len(got) != before+1 || !H264IsKeyframe(got[len(got)-1].Data) {
		t.Fatalf("the next keyframe did not reach the subscriber: %d samples", len(got))
	}
}
