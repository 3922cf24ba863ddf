package media

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// testFrames turns the embedded media into receiver-side frames.
func testFrames(t testing.TB, codec rtc.Codec) []Frame {
	t.Helper()
	var out []Frame
	for _, s := range testSamples(t, codec) {
		f := Frame{Codec: codec, Data: s.Data, Keyframe: s.Keyframe, PTS: s.PTS, Duration: s.Duration}
		if codec == rtc.CodecH264 && s.Keyframe {
			f.Width, f.Height = testsrc.Width, testsrc.Height
		}
		out = append(out, f)
	}
	return out
}

func writeFrames(t *testing.T, w Sink, frames ...[]Frame) {
	t.Helper()
	for _, fs := range frames {
		for _, f := range fs {
			if err := w.WriteFrame(f); err != nil {
				t.Fatalf("WriteFrame: %v", err)
			}
		}
	}
}

func TestMatroskaFiles(t *testing.T) {
	requireFFmpeg(t, "ffprobe")
	dir := t.TempDir()
	h264 := testFrames(t, rtc.CodecH264)
	vp8 := testFrames(t, rtc.CodecVP8)
	opus := testFrames(t, rtc.CodecOpus)

	for _, tc := range []struct {
		name   string
		cfg    MatroskaConfig
		frames [][]Frame
		video  string
	}{
		// Starts mid-GOP: the 10 frames before the keyframe at 30 are dropped.
		{"h264.mkv", MatroskaConfig{Video: rtc.CodecH264}, [][]Frame{h264[20:]}, "h264"},
		{"vp8.webm", MatroskaConfig{Video: rtc.CodecVP8}, [][]Frame{vp8}, "vp8"},
		{"vp8-opus.mkv", MatroskaConfig{Video: rtc.CodecVP8, Audio: true}, [][]Frame{vp8[:1], opus, vp8[1:]}, "vp8"},
		{"opus.webm", MatroskaConfig{Audio: true}, [][]Frame{opus}, ""},
	} {
		path := filepath.Join(dir, tc.name)
		w, err := CreateMatroskaFile(path, tc.cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		writeFrames(t, w, tc.frames...)
		if err := w.Close(); err != nil {
			t.Fatalf("%s: Close: %v", tc.name, err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("%s: second Close: %v", tc.name, err)
		}
		if err := w.WriteFrame(h264[0]); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: write after close: %v", tc.name, err)
		}
		p := ffprobe(t, path)
		var video, audio int
		for _, s := range p.Streams {
			switch s.CodecType {
			case "video":
				video++
				if s.CodecName != tc.video || s.Width != testsrc.Width || s.Height != testsrc.Height {
					t.Errorf("%s: video %+v", tc.name, s)
				}
			case "audio":
				audio++
				if s.CodecName != "opus" {
					t.Errorf("%s: audio %+v", tc.name, s)
				}
			}
		}
		if (video == 1) != (tc.video != "") || (audio == 1) != tc.cfg.Audio {
			t.Errorf("%s: %d video and %d audio streams", tc.name, video, audio)
		}
		if d, err := strconv.ParseFloat(p.Format.Duration, 64); err != nil || d < 4.9 || d > 6.1 {
			t.Errorf("%s: duration %q, want 4.9-6.1 s", tc.name, p.Format.Duration)
		}
		decodes(t, path)
	}
}

// nonSeekable hides Seek/WriteAt, as a pipe would.
type nonSeekable struct{ w io.Writer }

func (n nonSeekable) Write(p []byte) (int, error) { return n.w.Write(p) }

func TestMatroskaStreamOutput(t *testing.T) {
	requireFFmpeg(t, "ffprobe")
	var buf bytes.Buffer
	w, err := NewMatroskaWriter(nonSeekable{&buf}, MatroskaConfig{Video: rtc.CodecH264})
	if err != nil {
		t.Fatal(err)
	}
	writeFrames(t, w, testFrames(t, rtc.CodecH264)[:60])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, "stream.mkv", buf.Bytes())
	p := ffprobe(t, path)
	if len(p.Streams) != 1 || p.Streams[0].CodecName != "h264" {
		t.Errorf("streamed mkv: %+v", p.Streams)
	}
	decodes(t, path)
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestMatroskaErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		path string
		cfg  MatroskaConfig
	}{
		"h264 in webm": {"x.webm", MatroskaConfig{Video: rtc.CodecH264}},
		"bad ext":      {"x.mp4", MatroskaConfig{Video: rtc.CodecVP8}},
		"nothing":      {"x.mkv", MatroskaConfig{}},
		"opus video":   {"x.mkv", MatroskaConfig{Video: rtc.CodecOpus}},
	} {
		if w, err := CreateMatroskaFile(filepath.Join(dir, tc.path), tc.cfg); err == nil {
			w.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := CreateMatroskaFile(filepath.Join(dir, "x.webm"), MatroskaConfig{Video: rtc.CodecH264}); !errors.Is(err, ErrCodecMismatch) {
		t.Errorf("h264 in webm: %v", err)
	}

	// No keyframe: nothing recorded, a clear error.
	path := filepath.Join(dir, "empty.mkv")
	w, err := CreateMatroskaFile(path, MatroskaConfig{Video: rtc.CodecVP8, Audio: true})
	if err != nil {
		t.Fatal(err)
	}
	vp8 := testFrames(t, rtc.CodecVP8)
	writeFrames(t, w, vp8[1:5], testFrames(t, rtc.CodecOpus)[:5])
	if err := w.WriteFrame(testFrames(t, rtc.CodecH264)[0]); !errors.Is(err, ErrCodecMismatch) {
		t.Errorf("h264 into a vp8 recording: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrNoKeyframe) {
		t.Errorf("close without keyframe: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("output file: %v", err)
	}

	// Audio into a video-only recording.
	w, _ = NewMatroskaWriter(io.Discard, MatroskaConfig{Video: rtc.CodecVP8})
	if err := w.WriteFrame(testFrames(t, rtc.CodecOpus)[0]); !errors.Is(err, ErrCodecMismatch) {
		t.Errorf("opus into a video-only recording: %v", err)
	}
	w.Close()

	// A failing writer surfaces its error and never hangs.
	fw := &failingWriter{after: 3}
	w, _ = NewMatroskaWriter(fw, MatroskaConfig{Video: rtc.CodecVP8})
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, f := range vp8 {
			if werr = w.WriteFrame(f); werr != nil {
				break
			}
		}
		if err := w.Close(); werr == nil {
			werr = err
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("recording to a failing writer hung")
	}
	if werr == nil || !strings.Contains(werr.Error(), "disk full") {
		t.Errorf("failing writer: %v", werr)
	}
}

func TestRawWriters(t *testing.T) {
	requireFFmpeg(t, "ffprobe")
	h264 := testFrames(t, rtc.CodecH264)
	vp8 := testFrames(t, rtc.CodecVP8)
	ts := uint32(0xfffff000) // wraps
	for i := range vp8 {
		vp8[i].RTPTimestamp = ts
		ts += 3000
	}
	for _, tc := range []struct {
		name   string
		codec  rtc.Codec
		frames []Frame
		probe  string
	}{
		{"raw.h264", rtc.CodecH264, h264[5:], "h264"},
		{"raw.ivf", rtc.CodecVP8, vp8[5:], "vp8"},
	} {
		var buf bytes.Buffer
		w, err := NewRawWriter(&buf, tc.codec)
		if err != nil {
			t.Fatal(err)
		}
		writeFrames(t, w, tc.frames)
		if err := w.WriteFrame(Frame{Codec: rtc.CodecOpus, Data: []byte{1}}); !errors.Is(err, ErrCodecMismatch) {
			t.Errorf("%s: opus accepted: %v", tc.name, err)
		}
		path := writeTemp(t, tc.name, buf.Bytes())
		checkProbe(t, path, tc.probe, false, 0)
		decodes(t, path)
		// The frames before the first keyframe (at 30) were skipped.
		src, err := OpenFile(path, once)
		if err != nil {
			t.Fatal(err)
		}
		ss, _ := readAll(t, src, 1000)
		src.Close()
		if len(ss) != testsrc.Frames-30 || !ss[0].Keyframe {
			t.Errorf("%s: read back %d frames", tc.name, len(ss))
		}
		if tc.codec == rtc.CodecVP8 && !near(totalDuration(ss), 5*time.Second, 5*time.Millisecond) {
			t.Errorf("%s: duration %v", tc.name, totalDuration(ss))
		}
	}
	if _, err := NewRawWriter(io.Discard, rtc.CodecOpus); !errors.Is(err, ErrCodecMismatch) {
		t.Errorf("raw opus: %v", err)
	}
}
