package media_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// twoSizeClip makes an H.264 Annex-B clip whose resolution changes
// mid-stream: 2 s at 320x240, then 2 s at 640x360, each with its own SPS
// and PPS (as a camera that is reconfigured sends them).
func twoSizeClip(t *testing.T) []byte {
	t.Helper()
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: run bash scripts/test.sh, which installs it")
	}
	var clip []byte
	for _, size := range []string{"320x240", "640x360"} {
		out := filepath.Join(t.TempDir(), size+".h264")
		cmd := exec.Command(ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size="+size+":rate=30:duration=2",
			"-c:v", "libx264", "-threads", "1", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-preset", "veryfast",
			"-x264-params", "keyint=30:min-keyint=30:scenecut=0:repeat-headers=1", "-f", "h264", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		clip = append(clip, b...)
	}
	return clip
}

// TestCameraChangingResolutionKeepsPlaying: an RTSP camera whose stream
// switches between 320x240 and 640x360 (a new SPS) goes through ffmpeg and
// the master to a kvsrtc viewer that records it. The viewer keeps getting
// frames of both sizes, and the Matroska recording decodes through every
// change without an error, with frames of both sizes.
func TestCameraChangingResolutionKeepsPlaying(t *testing.T) {
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("ffprobe not found: run bash scripts/test.sh, which installs ffmpeg")
	}
	cam := media.StartRTSPTestCamera(t, "127.0.0.1:0", twoSizeClip(t))
	src, err := media.OpenRTSP(cam.URL, media.RTSPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	env := kvstest.New(t, kvstest.Options{Master: &kvstest.MasterOptions{Channel: "cam",
		Configure: func(c *master.Config) { c.Video = src }}})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "rec.mkv")
	rec, err := media.CreateMatroskaFile(path, media.MatroskaConfig{Video: rtc.CodecH264})
	if err != nil {
		t.Fatal(err)
	}
	sizes := &sizeSink{seen: map[[2]int]int{}}
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: env.Control, LoopbackOnly: true,
		Sinks: []media.Sink{rec, sizes}, Duration: 7 * time.Second})
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
	small, large := sizes.count(320, 240), sizes.count(640, 360)
	if small == 0 || large == 0 {
		t.Fatalf("viewer keyframes by size: %v", sizes.seen)
	}

	// ffmpeg decodes the whole recording without an error...
	dec := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-")
	var decErr bytes.Buffer
	dec.Stderr = &decErr
	if err := dec.Run(); err != nil || strings.TrimSpace(decErr.String()) != "" {
		t.Fatalf("decoding the recording: %v\n%s", err, decErr.String())
	}
	// ...and its decoded frames have both sizes.
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=width,height",
		"-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	frames := strings.Fields(string(out))
	n320, n640 := strings.Count(string(out), "320,240"), strings.Count(string(out), "640,360")
	if n320 < 15 || n640 < 15 || n320+n640 != len(frames) {
		t.Fatalf("recording: %d frames, %d at 320x240, %d at 640x360", len(frames), n320, n640)
	}
	t.Logf("recording: %d frames, %d at 320x240, %d at 640x360; viewer keyframes %v", len(frames), n320, n640, sizes.seen)
}

// sizeSink counts the video keyframes of each size.
type sizeSink struct {
	mu   sync.Mutex
	seen map[[2]int]int
}

func (s *sizeSink) WriteFrame(f media.Frame) error {
	if f.Keyframe && f.Width > 0 {
		s.mu.Lock()
		s.seen[[2]int{f.Width, f.Height}]++
		s.mu.Unlock()
	}
	return nil
}

func (s *sizeSink) count(w, h int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[[2]int{w, h}]
}
