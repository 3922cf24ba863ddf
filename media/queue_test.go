package media

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// gatedWriter blocks every write until its gate is opened.
type gatedWriter struct {
	gate    chan struct{}
	mu      sync.Mutex
	samples []pmedia.Sample
}

func (g *gatedWriter) WriteSample(s pmedia.Sample) error {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.samples = append(g.samples, s)
	return nil
}

func (g *gatedWriter) get() []pmedia.Sample {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]pmedia.Sample(nil), g.samples...)
}

// TestQueuedWriterSlowSubscriber: a stuck subscriber loses samples on its
// own queue; the broadcaster and the other subscribers are not held back.
func TestQueuedWriterSlowSubscriber(t *testing.T) {
	b := NewFedBroadcaster(rtc.CodecVP8, BroadcasterConfig{})
	fast := &recorder{codec: rtc.CodecVP8}
	slow := &gatedWriter{gate: make(chan struct{})}
	var drops atomic.Int64
	fq := NewQueuedWriter(fast, QueueConfig{MaxSamples: 8})
	sq := NewQueuedWriter(slow, QueueConfig{MaxSamples: 8, OnDrop: func(n int) { drops.Add(int64(n)) }})
	b.Subscribe(fq)
	b.Subscribe(sq)

	const n = 104 // not a multiple of the queue size + 1: samples remain queued after the last drop
	start := time.Now()
	for i := range n {
		data := []byte{0x10, 0, 0, 0, 0} // VP8 delta frame
		if i%30 == 0 {
			data = vp8Key(t)
		}
		b.Publish(Sample{Sample: pmedia.Sample{Data: data, Duration: 33 * time.Millisecond}, Keyframe: i%30 == 0})
		time.Sleep(time.Millisecond) // the fast writer's goroutine keeps up
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("publishing %d samples took %v with a stuck subscriber", n, d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fast.get()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(fast.get()); got != n {
		t.Errorf("fast subscriber got %d samples, want %d", got, n)
	}
	close(slow.gate)
	deadline = time.Now().Add(10 * time.Second)
	for drops.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	fq.Close()
	sq.Close()
	st := sq.Stats()
	if st.Dropped == 0 || drops.Load() != int64(st.Dropped) || st.Written+st.Dropped > n || st.Written == 0 {
		t.Errorf("slow subscriber: %+v, OnDrop total %d; want drops reported, and written + dropped <= %d", st, drops.Load(), n)
	}
	// The first sample written after a drop skips the dropped time.
	skipped := false
	for _, s := range slow.get() {
		skipped = skipped || s.PrevDroppedPackets > 0
	}
	if !skipped {
		t.Error("no sample after the drop carries PrevDroppedPackets")
	}
	if err := sq.WriteSample(pmedia.Sample{Data: []byte{1}}); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteSample after Close: %v, want ErrClosed", err)
	}
}

// vp8Key returns a minimal VP8 key frame header (320x240).
func vp8Key(t *testing.T) []byte {
	t.Helper()
	k := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0, 0, 0, 0}
	if !VP8IsKeyframe(k) {
		t.Fatal("test key frame is not a VP8 key frame")
	}
	return k
}

// TestFrameSample: a received frame becomes a sample with its data,
// keyframe flag and a duration (the fallback when it has none).
func TestFrameSample(t *testing.T) {
	now := time.Now()
	f := Frame{Codec: rtc.CodecH264, Data: []byte{1, 2}, Keyframe: true, PTS: time.Second, Arrival: now}
	s := FrameSample(f, 40*time.Millisecond)
	if s.Duration != 40*time.Millisecond || !s.Keyframe || s.PTS != time.Second || !s.Timestamp.Equal(now) || len(s.Data) != 2 {
		t.Errorf("FrameSample without duration: %+v", s)
	}
	f.Duration = 20 * time.Millisecond
	if s := FrameSample(f, 40*time.Millisecond); s.Duration != 20*time.Millisecond {
		t.Errorf("FrameSample kept %v, want the frame's 20ms", s.Duration)
	}
	b := NewFedBroadcaster(rtc.CodecH264, BroadcasterConfig{})
	if b.Codec() != rtc.CodecH264 {
		t.Errorf("fed broadcaster codec %s", b.Codec())
	}
}
