package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// sourceTestMP4 makes an MP4 with ffmpeg from the test media (no
// re-encoding but for audioArgs) and returns its path.
func sourceTestMP4(t *testing.T, name string, args ...string) string {
	t.Helper()
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: run bash scripts/test.sh, which installs it")
	}
	dir := t.TempDir()
	h264 := filepath.Join(dir, "in.h264")
	ogg := filepath.Join(dir, "in.ogg")
	if err := os.WriteFile(h264, testsrc.H264(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ogg, testsrc.OpusOgg(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	for i, a := range args {
		args[i] = strings.NewReplacer("IN.h264", h264, "IN.ogg", ogg).Replace(a)
	}
	cmd := exec.Command(ffmpeg, append(append([]string{"-v", "error", "-y"}, args...), out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, b)
	}
	return out
}

func TestMasterSourceSelection(t *testing.T) {
	opus := sourceTestMP4(t, "opus.mp4", "-f", "h264", "-r", "30", "-i", "IN.h264", "-i", "IN.ogg", "-c", "copy", "-strict", "-2")
	aac := sourceTestMP4(t, "aac.mp4", "-f", "h264", "-r", "30", "-i", "IN.h264", "-f", "lavfi", "-i", "sine=duration=1",
		"-c:v", "copy", "-c:a", "aac", "-shortest")
	noVideo := sourceTestMP4(t, "sound.mp4", "-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac")

	for _, tc := range []struct {
		name         string
		flags        masterFlags
		video, audio rtc.Codec // "" for none
		log          string
	}{
		{"mp4 with opus", masterFlags{source: opus}, rtc.CodecH264, rtc.CodecOpus, ""},
		{"mp4 opus replaced by the tone", masterFlags{source: opus, audio: true}, rtc.CodecH264, rtc.CodecOpus, "replaced by --audio"},
		{"mp4 with aac", masterFlags{source: aac}, rtc.CodecH264, "", "-c:a libopus"},
		{"rtsp", masterFlags{source: "rtsp://127.0.0.1:1/stream"}, rtc.CodecH264, "", ""},
		{"testsrc", masterFlags{source: "testsrc"}, rtc.CodecH264, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testutil.Buffer
			tc.flags.fps = 30
			video, audio, err := tc.flags.openSources(&Env{}, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer video.Close()
			if audio != nil {
				defer audio.Close()
			}
			if video.Codec() != tc.video || (audio == nil) != (tc.audio == "") || (audio != nil && audio.Codec() != tc.audio) {
				t.Fatalf("video %v, audio %v", video.Codec(), audio)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("log lacks %q:\n%s", tc.log, logs.String())
			}
		})
	}

	t.Run("mp4 without video", func(t *testing.T) {
		f := masterFlags{source: noVideo, fps: 30}
		_, _, err := f.openSources(&Env{}, slog.New(slog.DiscardHandler))
		if !errors.Is(err, ErrUsage) || !errors.Is(err, media.ErrNoVideoTrack) || !strings.Contains(err.Error(), "mp4a") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("rtsp without ffmpeg", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		f := masterFlags{source: "rtsp://camera.local/stream", fps: 30}
		_, _, err := f.openSources(&Env{}, slog.New(slog.DiscardHandler))
		if !errors.Is(err, media.ErrFFmpegNotFound) || errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "apt-get install ffmpeg") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("bad rtsp url", func(t *testing.T) {
		f := masterFlags{source: "rtsp://", fps: 30}
		_, _, err := f.openSources(&Env{}, slog.New(slog.DiscardHandler))
		if !errors.Is(err, ErrUsage) {
			t.Fatalf("error %v", err)
		}
	})
}

// TestMasterCommandMP4AndDeadCamera runs `kvsrtc master` on an MP4 (a
// viewer gets its video) and on an RTSP camera that does not answer (the
// command fails, naming the camera and why, after the connect timeout).
func TestMasterCommandMP4AndDeadCamera(t *testing.T) {
	kvstest.IsolateEnv(t)
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{DisableQuotas: true}})
	env.Setenv(t)
	mp4 := sourceTestMP4(t, "clip.mp4", "-f", "h264", "-r", "30", "-i", "IN.h264", "-i", "IN.ogg", "-c", "copy", "-strict", "-2")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"master", "--channel", "demo", "--create", "--loopback-only", "--source", mp4}, nil, &stdout, &stderr)
	}()
	waitOutput(t, &stderr, "master ready on channel demo", done)
	f := masterTestViewer(t, env)
	if !f.Keyframe || f.Codec != rtc.CodecH264 || f.Width != testsrc.Width || f.Height != testsrc.Height {
		t.Fatalf("first frame: %s keyframe=%v %dx%d", f.Codec, f.Keyframe, f.Width, f.Height)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d:\n%s", code, stderr.String())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "rtsp://" + ln.Addr().String() + "/stream1"
	ln.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	stderr = testutil.Buffer{}
	start := time.Now()
	code := Main(ctx2, []string{"master", "--channel", "demo", "--loopback-only", "--source", dead}, bytes.NewReader(nil), &stdout, &stderr)
	msg := stderr.String()
	if code != 1 || !strings.Contains(msg, "RTSP camera gave no video") || !strings.Contains(msg, "/stream1") || !strings.Contains(msg, "Connection refused") {
		t.Fatalf("exit %d after %v:\n%s", code, time.Since(start), msg)
	}
	if took := time.Since(start); took > media.DefaultRTSPConnectTimeout+15*time.Second {
		t.Fatalf("took %v to give up", took)
	}
}
