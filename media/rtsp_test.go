package media

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
)

// readFor reads samples from src until n have come or d has passed.
func readFor(t *testing.T, src Source, n int, d time.Duration) ([]Sample, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var out []Sample
	for len(out) < n {
		s, err := src.ReadSample(ctx)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

func TestRTSPCameraStreamsAndComesBack(t *testing.T) {
	needFFmpeg(t)
	cam := StartRTSPTestCamera(t, "127.0.0.1:0", testsrc.H264())
	logs := &logCapture{}
	src, err := OpenRTSP(cam.URL, RTSPConfig{MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second,
		StallTimeout: 3 * time.Second, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ss, err := readFor(t, src, 45, 20*time.Second)
	if err != nil {
		t.Fatalf("after %d samples: %v", len(ss), err)
	}
	keys := 0
	for i, s := range ss {
		if s.Keyframe {
			keys++
			if info := inspectH264(s.Data); info.sps == nil || info.pps == nil {
				t.Fatalf("keyframe %d without SPS/PPS", i)
			}
		}
		if i > 0 && s.PTS < ss[i-1].PTS {
			t.Fatalf("PTS goes back at %d", i)
		}
	}
	if keys == 0 {
		t.Fatal("no keyframe in 45 frames (the clip has one every 30)")
	}
	// The camera's timestamps, not the arrival jitter (ffmpeg hands out
	// its first frames in a burst): 1/30 s in FLV's milliseconds.
	for i, s := range ss[1:] {
		if s.Duration < 30*time.Millisecond || s.Duration > 37*time.Millisecond {
			t.Fatalf("sample %d: duration %v, want the camera's 1/30 s", i+1, s.Duration)
		}
	}

	// The camera drops; ffmpeg is restarted with backoff until it is back.
	cam.Close()
	down := time.Now()
	time.Sleep(1500 * time.Millisecond)
	cam = StartRTSPTestCamera(t, cam.Addr, testsrc.H264())
	var after []Sample
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s, err := readFor(t, src, 1, time.Until(deadline))
		if err != nil {
			t.Fatalf("after the camera came back: %v", err)
		}
		if s[0].Timestamp.After(down.Add(1500 * time.Millisecond)) {
			after = append(after, s[0])
			if len(after) == 30 {
				break
			}
		}
	}
	if len(after) < 30 || cam.Plays() != 1 {
		t.Fatalf("%d frames after the restart, %d PLAYs on the new camera", len(after), cam.Plays())
	}
	// The time without video is in the presentation times.
	if gap := after[0].PTS - ss[len(ss)-1].PTS; gap < 1500*time.Millisecond {
		t.Fatalf("PTS advanced by %v across a camera outage of more than 1.5 s", gap)
	}
	if !logs.has("restarting ffmpeg") {
		t.Error("no warning about the restart")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.ReadSample(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

// TestRTSPCameraWithParameterSetsOnlyInSDP: a camera that announces its
// SPS and PPS only in the SDP still gives decodable keyframes.
func TestRTSPCameraWithParameterSetsOnlyInSDP(t *testing.T) {
	needFFmpeg(t)
	cam := startRTSPTestCamera(t, "127.0.0.1:0", testsrc.H264(), true)
	src, err := OpenRTSP(cam.URL, RTSPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ss, err := readFor(t, src, 45, 20*time.Second)
	if err != nil {
		t.Fatalf("after %d samples: %v", len(ss), err)
	}
	keys := 0
	for i, s := range ss {
		if !s.Keyframe {
			continue
		}
		keys++
		info := inspectH264(s.Data)
		if info.sps == nil || info.pps == nil {
			t.Fatalf("keyframe %d without SPS/PPS", i)
		}
		if sps, err := ParseSPS(info.sps); err != nil || sps.Width != testsrc.Width || sps.Height != testsrc.Height {
			t.Fatalf("keyframe %d: SPS %+v, %v", i, sps, err)
		}
	}
	if keys == 0 {
		t.Fatal("no keyframe in 45 frames")
	}
}

func TestRTSPCameraThatDoesNotAnswer(t *testing.T) {
	needFFmpeg(t)
	// A port nobody listens on (refused) and a server that accepts and
	// says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	for _, tc := range []struct{ name, url, why string }{
		{"refused", "rtsp://admin:s3cret@" + refused + "/stream1", "Connection refused"},
		{"silent", "rtsp://" + silent.Addr().String() + "/stream1", "no video for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := OpenRTSP(tc.url, RTSPConfig{ConnectTimeout: 3 * time.Second, MinBackoff: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			start := time.Now()
			_, err = readFor(t, src, 1, 30*time.Second)
			if !errors.Is(err, ErrRTSPNoVideo) {
				t.Fatalf("error %v, want ErrRTSPNoVideo", err)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Fatalf("took %v to fail with a 3 s connect timeout", took)
			}
			if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "stream1") || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("error %q leaks the password or lacks the URL", err)
			}
			t.Logf("%v", err)
		})
	}
}

func TestRTSPBadInput(t *testing.T) {
	needFFmpeg(t)
	for _, u := range []string{"rtsp://", "http://camera/stream", "rtsp://cam/x y%zz"} {
		if src, err := OpenRTSP(u, RTSPConfig{}); err == nil {
			src.Close()
			t.Errorf("%q: opened", u)
		} else if !strings.Contains(err.Error(), "rtsp://") {
			t.Errorf("%q: %v does not show the expected form", u, err)
		}
	}
	if _, err := OpenRTSP("rtsp://cam/x", RTSPConfig{Transport: "sctp"}); err == nil {
		t.Error("transport sctp accepted")
	}

	t.Setenv("PATH", t.TempDir())
	_, err := OpenRTSP("rtsp://cam/x", RTSPConfig{})
	if !errors.Is(err, ErrFFmpegNotFound) || !strings.Contains(err.Error(), "apt-get install ffmpeg") {
		t.Fatalf("without ffmpeg: %v", err)
	}
}
