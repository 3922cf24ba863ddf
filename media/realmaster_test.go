package media_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// TestRecordingFromMasterKeepsSourceTiming runs `kvsrtc local`'s emulator,
// a master streaming the test pattern and tone, and, once the master is
// mid-GOP, a viewer recording both tracks. The recording must have the
// source's frame spacing from its first frame: the GOP the master sends
// at once to the new viewer included.
func TestRecordingFromMasterKeepsSourceTiming(t *testing.T) {
	for _, tc := range []struct {
		codec rtc.Codec
		file  string
	}{{rtc.CodecH264, "rec.mkv"}, {rtc.CodecVP8, "rec.webm"}} {
		t.Run(tc.codec.String(), func(t *testing.T) {
			ffprobe, err := exec.LookPath("ffprobe")
			if err != nil {
				t.Fatal("ffprobe not found: run bash scripts/test.sh, which installs ffmpeg")
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			env := kvstest.New(t, kvstest.Options{Master: &kvstest.MasterOptions{Channel: "cam", Video: tc.codec, Audio: true, IgnoreRunError: true}})
			ctl := env.Control
			time.Sleep(1400 * time.Millisecond) // join in the middle of a 1 s GOP

			path := filepath.Join(t.TempDir(), tc.file)
			rec, err := media.CreateMatroskaFile(path, media.MatroskaConfig{Video: tc.codec, Audio: true})
			if err != nil {
				t.Fatal(err)
			}
			s, err := viewer.New(viewer.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, Audio: true,
				VideoCodecs: []string{tc.codec.String()}, Sinks: []media.Sink{rec}, Duration: 2500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			runErr := s.Run(ctx)
			if err := rec.Close(); err != nil {
				t.Fatalf("recording: %v (viewer: %v)", err, runErr)
			}
			if sum := s.Summary(); sum.Result != "streamed" {
				t.Fatalf("viewer: %v, summary %+v", runErr, sum)
			}
			checkFrames(t, ffprobe, path, "v", 0.025, 0.042, 30)
			checkFrames(t, ffprobe, path, "a", 0.015, 0.025, 50)
		})
	}
}

// checkFrames checks that every interval between the decoded frames of
// path's first stream of kind lies in [lo, hi] seconds.
func checkFrames(t *testing.T, ffprobe, path, kind string, lo, hi float64, minFrames int) {
	t.Helper()
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", kind+":0",
		"-show_entries", "frame=pts_time", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var v struct {
		Frames []struct {
			PTS string `json:"pts_time"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	var pts []string
	prev, bad := 0.0, 0
	for i, f := range v.Frames {
		p, err := strconv.ParseFloat(f.PTS, 64)
		if err != nil {
			t.Fatalf("pts_time %q", f.PTS)
		}
		if i < 12 {
			pts = append(pts, f.PTS)
		}
		if d := p - prev; i > 0 && (d < lo || d > hi) {
			if bad < 5 {
				t.Errorf("%s: %s frame %d at %.3f s is %.1f ms after the previous one (want %.0f..%.0f ms)", path, kind, i, p, d*1000, lo*1000, hi*1000)
			}
			bad++
		}
		prev = p
	}
	t.Logf("%s %s: %d frames, first pts %s", filepath.Base(path), kind, len(v.Frames), strings.Join(pts, " "))
	if len(v.Frames) < minFrames {
		t.Errorf("%s: %d %s frames, want >= %d", path, len(v.Frames), kind, minFrames)
	}
}
