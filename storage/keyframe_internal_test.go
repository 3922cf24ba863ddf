package storage

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// TestRecordingAsksForKeyframes: a camera that sends a keyframe only when
// asked (as WebRTC encoders do) still gets a recording of bounded
// fragments: once a GOP reaches Config.MaxFragment the session asks for a
// keyframe, then once per further second of media, and not at all when it
// does not record.
func TestRecordingAsksForKeyframes(t *testing.T) {
	src, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{Unpaced: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var key, delta []byte
	for key == nil || delta == nil {
		s, err := src.ReadSample(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.Keyframe && key == nil {
			key = s.Data
		} else if !s.Keyframe && key != nil {
			delta = s.Data
		}
	}
	const frame = 40 * time.Millisecond
	for _, recording := range []bool{true, false} {
		e, err := New(Config{MaxFragment: 2 * time.Second, DisableRecording: !recording})
		if err != nil {
			t.Fatal(err)
		}
		s := newSession(e, emulator.StorageParticipant{ChannelName: "cam"})
		var mu sync.Mutex
		var fragments []time.Duration
		s.record = func(f emulator.ArchiveFragment) error {
			mu.Lock()
			defer mu.Unlock()
			fragments = append(fragments, f.Duration)
			return nil
		}
		var asks atomic.Int64
		s.askKey = func() { asks.Add(1) }
		var pts time.Duration
		write := func(data []byte, isKey bool, n int) {
			for range n {
				if err := s.writeFrame(media.Frame{Codec: rtc.CodecH264, Data: data, Keyframe: isKey, SSRC: 7, PTS: pts, Duration: frame}); err != nil {
					t.Fatal(err)
				}
				pts += frame
			}
		}
		// A keyframe, then 4.5 s of delta frames: asks at 2 s, 3 s and 4 s.
		write(key, true, 1)
		write(delta, false, 4500/40)
		// The asks run on goroutines of their own.
		for deadline := time.Now().Add(5 * time.Second); recording && asks.Load() < 3 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		want := int64(3)
		if !recording {
			want = 0
		}
		if n := asks.Load(); n != want {
			t.Errorf("recording %v: %d keyframe requests over a 4.5 s GOP, want %d", recording, n, want)
		}
		// The keyframe comes: the GOP becomes a fragment, and the count
		// starts again.
		write(key, true, 1)
		write(delta, false, 1900/40)
		time.Sleep(50 * time.Millisecond)
		if n := asks.Load(); n != want {
			t.Errorf("recording %v: %d requests after a new keyframe and 1.9 s, want still %d", recording, n, want)
		}
		s.end("test over")
		mu.Lock()
		if recording && (len(fragments) != 2 || fragments[0] < 4*time.Second) {
			t.Errorf("fragments %v: want the 4.5 s GOP and the 1.9 s one", fragments)
		}
		mu.Unlock()
		_ = e.Close()
	}
}
