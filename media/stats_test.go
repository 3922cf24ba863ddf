package media

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/kvsrtc/kvsrtc/rtc"
)

func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewStats(time.Second)
		if s := st.Snapshot(); s.Frames != 0 || s.FPS != 0 || !s.FirstFrame.IsZero() {
			t.Errorf("empty stats %+v", s)
		}
		start := time.Now()
		// 3 s of 25 fps, 1000-byte frames, a keyframe every 25 frames.
		for i := range 75 {
			f := Frame{Codec: rtc.CodecVP8, Data: make([]byte, 1000), Keyframe: i%25 == 0, Arrival: time.Now()}
			if f.Keyframe {
				f.Width, f.Height = 640, 360
			}
			if i == 40 {
				f.DroppedPackets = 2
			}
			if err := st.WriteFrame(f); err != nil {
				t.Fatal(err)
			}
			if i == 12 {
				s := st.Snapshot() // half-full window: rate since the first frame
				if s.FPS < 24.9 || s.FPS > 25.1 {
					t.Errorf("early FPS %.2f", s.FPS)
				}
			}
			time.Sleep(40 * time.Millisecond)
		}
		s := st.Snapshot()
		if s.Frames != 75 || s.Bytes != 75000 || s.Keyframes != 3 || s.DroppedPackets != 2 || s.Codec != rtc.CodecVP8 {
			t.Errorf("totals %+v", s)
		}
		// The window (2 s, 3 s] holds 24 frames: 2.04 s ... 2.96 s.
		if s.FPS != 24 || s.Bitrate != 192_000 {
			t.Errorf("rates: %.2f fps, %.0f bit/s; want 24, 192000", s.FPS, s.Bitrate)
		}
		if s.Width != 640 || s.Height != 360 || !s.FirstFrame.Equal(start) || !s.FirstKeyframe.Equal(start) {
			t.Errorf("size/times %+v", s)
		}
		// Silence: rates fall to zero once the window has passed.
		time.Sleep(2 * time.Second)
		if s := st.Snapshot(); s.FPS != 0 || s.Bitrate != 0 || s.Frames != 75 {
			t.Errorf("after silence: %.2f fps %.0f bit/s", s.FPS, s.Bitrate)
		}
		// The window stays bounded.
		for range 3000 {
			_ = st.WriteFrame(Frame{Codec: rtc.CodecVP8, Data: []byte{1}})
			time.Sleep(time.Millisecond)
		}
		st.mu.Lock()
		n := len(st.recent) - st.head
		c := cap(st.recent)
		st.mu.Unlock()
		if n > 1001 || c > 4096 {
			t.Errorf("window holds %d points in a slice of cap %d", n, c)
		}
	})
}
