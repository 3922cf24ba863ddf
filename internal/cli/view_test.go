package cli

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// startLocal runs an emulator with channel "cam" and a test-pattern master
// on it, and points the AWS environment variables at the emulator.
func startLocal(t *testing.T, codec rtc.Codec) *emulator.Server {
	t.Helper()
	env := kvstest.New(t, kvstest.Options{
		Emulator: emulator.Config{Channels: []string{"cam"}},
		Master:   &kvstest.MasterOptions{Channel: "cam", Video: codec, IgnoreRunError: true},
	})
	env.Setenv(t)
	return env.Server
}

func ffprobe(t *testing.T, path string) map[string]any {
	t.Helper()
	bin, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("ffprobe not found: run `bash scripts/test.sh`, which installs Debian's ffmpeg")
	}
	out, err := exec.Command(bin, "-v", "error", "-show_streams", "-show_format", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestViewRecordsMatroska(t *testing.T) {
	for _, tc := range []struct {
		codec rtc.Codec
		file  string
		name  string
	}{{rtc.CodecH264, "out.mkv", "h264"}, {rtc.CodecVP8, "out.webm", "vp8"}} {
		t.Run(tc.name, func(t *testing.T) {
			startLocal(t, tc.codec)
			path := filepath.Join(t.TempDir(), tc.file)
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), []string{"view", "--channel", "cam", "--loopback-only", "--record", path, "--duration", "1500ms", "--json"}, nil, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			var last struct {
				Event   string
				Summary struct {
					Result             string
					Attempts           int
					Frames             int
					TimeToFirstFrameMs float64
				}
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Event != "summary" {
				t.Fatalf("last line is not the summary: %q (%v)", lines[len(lines)-1], err)
			}
			if last.Summary.Result != "streamed" || last.Summary.Frames < 20 || last.Summary.TimeToFirstFrameMs <= 0 {
				t.Fatalf("summary %+v", last.Summary)
			}
			probe := ffprobe(t, path)
			streams := probe["streams"].([]any)
			s0 := streams[0].(map[string]any)
			if s0["codec_name"] != tc.name || s0["width"].(float64) != 640 || s0["height"].(float64) != 360 {
				t.Fatalf("ffprobe stream %v", s0)
			}
			dur := probe["format"].(map[string]any)["duration"]
			if d, _ := time.ParseDuration(dur.(string) + "s"); d < time.Second {
				t.Fatalf("recorded duration %v", dur)
			}
		})
	}
}

func TestViewUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"view"},
		{"view", "--channel", "a", "--channel-arn", "arn:aws:kinesisvideo:us-west-2:1:channel/a/1"},
		{"view", "--channel", "a", "--record", "x.mp4"},
		{"view", "--channel", "a", "--record", "x.webm", "--codec", "H264"},
		{"view", "--channel", "a", "--output", "file.h264"},
		{"view", "--channel", "a", "--codec", "av1"},
	} {
		var out, errb bytes.Buffer
		if code := Main(t.Context(), args, nil, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
		if errb.Len() == 0 {
			t.Errorf("%v: no error message", args)
		}
	}
}

func TestViewFailsFastOnUnknownChannel(t *testing.T) {
	startLocal(t, rtc.CodecH264)
	var out, errb bytes.Buffer
	start := time.Now()
	code := Main(t.Context(), []string{"view", "--channel", "nope", "--loopback-only"}, nil, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "channel-not-found") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"demo", "--listen", "127.0.0.1:0", "--duration", "1s"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"streaming (attempt 1)", "Video is flowing", "result=streamed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBench(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(t.Context(), []string{"bench", "viewer", "--connects", "3", "--lost-answer", "1"}, nil, &out, &errb); code != 0 {
		t.Fatalf("bench viewer: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "time to first frame over 3 connects") || !strings.Contains(out.String(), "first answer is lost") {
		t.Fatalf("bench viewer output:\n%s", out.String())
	}
	out.Reset()
	if code := Main(t.Context(), []string{"bench", "signaling", "--service", "in-process", "--channels", "3", "--viewers", "2", "--duration", "500ms", "--rate", "100"}, nil, &out, &errb); code != 0 {
		t.Fatalf("bench signaling: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "9 open, 0 failed") {
		t.Fatalf("bench signaling output:\n%s", out.String())
	}
	if code := Main(t.Context(), []string{"bench"}, nil, &out, &errb); code != 2 {
		t.Fatalf("bench without a mode: exit %d", code)
	}
}
