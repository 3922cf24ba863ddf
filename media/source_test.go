package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

var once = SourceConfig{Once: true, Unpaced: true}

// readAll reads src until an error; it returns the samples and the error.
func readAll(t testing.TB, src Source, limit int) ([]Sample, error) {
	t.Helper()
	var out []Sample
	for len(out) < limit {
		s, err := src.ReadSample(context.Background())
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

func totalDuration(ss []Sample) time.Duration {
	var d time.Duration
	for _, s := range ss {
		d += s.Duration
	}
	return d
}

func near(a, b, tol time.Duration) bool { return a-b <= tol && b-a <= tol }

func checkH264Samples(t *testing.T, ss []Sample) {
	t.Helper()
	if len(ss) != testsrc.Frames {
		t.Fatalf("%d samples, want %d", len(ss), testsrc.Frames)
	}
	for i, s := range ss {
		info := inspectH264(s.Data)
		wantKey := i%testsrc.GOP == 0
		if s.Keyframe != wantKey || info.idr != wantKey || !info.vcl {
			t.Fatalf("sample %d: keyframe %v idr %v vcl %v, want keyframe %v", i, s.Keyframe, info.idr, info.vcl, wantKey)
		}
		if wantKey {
			if info.sps == nil || info.pps == nil {
				t.Fatalf("keyframe %d lacks SPS/PPS", i)
			}
			sps, err := ParseSPS(info.sps)
			if err != nil || sps.Width != testsrc.Width || sps.Height != testsrc.Height {
				t.Fatalf("keyframe %d: SPS %+v, %v", i, sps, err)
			}
		}
		if !bytes.HasPrefix(s.Data, annexBStartCode) {
			t.Fatalf("sample %d does not start with a start code", i)
		}
		if want := time.Duration(i) * time.Second / testsrc.FPS; !near(s.PTS, want, time.Millisecond) {
			t.Fatalf("sample %d PTS %v, want %v", i, s.PTS, want)
		}
	}
	if d := totalDuration(ss); !near(d, testsrc.Duration, 5*time.Millisecond) {
		t.Errorf("total duration %v, want %v", d, testsrc.Duration)
	}
}

func TestTestSourceH264(t *testing.T) {
	src, err := NewTestSource(rtc.CodecH264, once)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Codec() != rtc.CodecH264 {
		t.Errorf("codec %v", src.Codec())
	}
	ss, err := readAll(t, src, 1000)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end error %v, want io.EOF", err)
	}
	checkH264Samples(t, ss)
}

func TestTestSourceVP8(t *testing.T) {
	src, err := NewTestSource(rtc.CodecVP8, once)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ss, err := readAll(t, src, 1000)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end error %v", err)
	}
	if len(ss) != testsrc.Frames {
		t.Fatalf("%d samples", len(ss))
	}
	for i, s := range ss {
		if s.Keyframe != (i%testsrc.GOP == 0) {
			t.Fatalf("sample %d keyframe %v", i, s.Keyframe)
		}
		if s.Keyframe {
			if w, h, ok := VP8FrameSize(s.Data); !ok || w != testsrc.Width || h != testsrc.Height {
				t.Fatalf("keyframe %d size %dx%d", i, w, h)
			}
		}
		if !near(s.Duration, time.Second/testsrc.FPS, time.Millisecond) {
			t.Fatalf("sample %d duration %v", i, s.Duration)
		}
	}
	if d := totalDuration(ss); !near(d, testsrc.Duration, 5*time.Millisecond) {
		t.Errorf("total duration %v", d)
	}
}

func TestTestSourceOpus(t *testing.T) {
	src, err := NewTestSource(rtc.CodecOpus, once)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ss, err := readAll(t, src, 1000)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end error %v", err)
	}
	if len(ss) != testsrc.OpusPackets {
		t.Fatalf("%d packets, want %d", len(ss), testsrc.OpusPackets)
	}
	for i, s := range ss {
		if !s.Keyframe || s.Duration != 20*time.Millisecond {
			t.Fatalf("packet %d: keyframe %v duration %v", i, s.Keyframe, s.Duration)
		}
	}
	if _, err := NewTestSource("VP9", once); !errors.Is(err, rtc.ErrUnknownCodec) {
		t.Errorf("unknown codec: %v", err)
	}
}

func TestSourceLoops(t *testing.T) {
	for _, codec := range []rtc.Codec{rtc.CodecH264, rtc.CodecVP8, rtc.CodecOpus} {
		src, err := NewTestSource(codec, SourceConfig{Unpaced: true})
		if err != nil {
			t.Fatal(err)
		}
		ss, err := readAll(t, src, 2*testsrc.OpusPackets+10)
		if err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		for i := 1; i < len(ss); i++ {
			if ss[i].PTS <= ss[i-1].PTS {
				t.Fatalf("%s: PTS not increasing at %d: %v then %v", codec, i, ss[i-1].PTS, ss[i].PTS)
			}
		}
		if isVideo(codec) && !ss[testsrc.Frames].Keyframe {
			t.Errorf("%s: first sample of the second loop is not a keyframe", codec)
		}
		src.Close()
		if _, err := src.ReadSample(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("read after close: %v", err)
		}
		if err := src.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	}
}

func TestSourcePacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, err := NewTestSource(rtc.CodecVP8, SourceConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		ctx := context.Background()
		start := time.Now()
		for range testsrc.FPS + 1 {
			if _, err := src.ReadSample(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("31 frames took %v, want 1s", got)
		}

		// A long stall does not cause a burst: the clock restarts.
		time.Sleep(5 * time.Second)
		s1, _ := src.ReadSample(ctx)
		t1 := time.Now()
		s2, _ := src.ReadSample(ctx)
		if gap := time.Since(t1); !near(gap, s1.Duration, time.Millisecond) {
			t.Errorf("after a stall the next frame came after %v, want %v", gap, s1.Duration)
		}
		if s2.PTS <= s1.PTS {
			t.Error("PTS went backwards")
		}

		// Cancellation while waiting.
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			time.Sleep(5 * time.Millisecond)
			cancel()
		}()
		if _, err := src.ReadSample(cctx); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled read: %v", err)
		}
	})
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenFileFormats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  []byte
		codec rtc.Codec
		n     int
	}{
		{"pattern.h264", testsrc.H264(), rtc.CodecH264, testsrc.Frames},
		{"pattern.264", testsrc.H264(), rtc.CodecH264, testsrc.Frames},
		{"pattern.ivf", testsrc.VP8IVF(), rtc.CodecVP8, testsrc.Frames},
		{"tone.ogg", testsrc.OpusOgg(), rtc.CodecOpus, testsrc.OpusPackets},
		{"tone.opus", testsrc.OpusOgg(), rtc.CodecOpus, testsrc.OpusPackets},
		{"no-extension", testsrc.VP8IVF(), rtc.CodecVP8, testsrc.Frames},
		{"mislabelled.h264", testsrc.VP8IVF(), rtc.CodecVP8, testsrc.Frames}, // content wins
	} {
		src, err := OpenFile(writeTemp(t, tc.name, tc.data), once)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		ss, err := readAll(t, src, 1000)
		if !errors.Is(err, io.EOF) || len(ss) != tc.n || src.Codec() != tc.codec {
			t.Errorf("%s: %d samples of %s, end %v; want %d of %s", tc.name, len(ss), src.Codec(), err, tc.n, tc.codec)
		}
		if err := src.Close(); err != nil {
			t.Errorf("%s: close: %v", tc.name, err)
		}
	}
}

func requireFFmpeg(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: run bash scripts/test.sh, which installs ffmpeg (or apt-get install ffmpeg): %v", tool, err)
	}
	return p
}

func TestOpenFileUnsupported(t *testing.T) {
	ffmpeg := requireFFmpeg(t, "ffmpeg")
	dir := t.TempDir()
	h264 := writeTemp(t, "in.h264", testsrc.H264())
	mp4 := filepath.Join(dir, "in.mp4")
	vorbis := filepath.Join(dir, "in.ogg")
	for _, args := range [][]string{
		{"-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "aac", mp4},
		{"-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "libvorbis", vorbis},
	} {
		cmd := exec.Command(ffmpeg, append([]string{"-v", "error", "-y"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
		}
	}
	vp9 := bytes.Clone(testsrc.VP8IVF())
	copy(vp9[8:12], "VP90")

	for _, tc := range []struct {
		name, path string
		sentinel   error
		format     string
		hint       string
	}{
		{"mp4 without video", mp4, ErrNoVideoTrack, "MP4", "-c:v libx264"},
		{"vorbis", vorbis, ErrUnsupportedFormat, "Ogg/Vorbis", "libopus"},
		{"vp9 ivf", writeTemp(t, "vp9.ivf", vp9), ErrUnsupportedFormat, "IVF/VP90", "libvpx"},
		{"text", writeTemp(t, "notes.txt", []byte("hello, world")), ErrUnsupportedFormat, "", "ffmpeg"},
		{"text named h264", writeTemp(t, "notes.h264", []byte("hello, world")), ErrUnsupportedFormat, "", "ffmpeg"},
		{"empty", writeTemp(t, "empty.h264", nil), ErrTruncated, "", ""},
		{"short ivf header", writeTemp(t, "short.ivf", testsrc.VP8IVF()[:20]), ErrTruncated, "", ""},
		{"empty ogg page", writeTemp(t, "short.ogg", testsrc.OpusOgg()[:20]), ErrTruncated, "", ""},
	} {
		src, err := OpenFile(tc.path, once)
		if err == nil {
			src.Close()
			t.Errorf("%s: opened", tc.name)
			continue
		}
		if !errors.Is(err, tc.sentinel) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.sentinel)
		}
		var fe *FormatError
		if tc.format != "" || tc.hint != "" {
			if !errors.As(err, &fe) {
				t.Errorf("%s: %v is not a *FormatError", tc.name, err)
				continue
			}
			if fe.Format != tc.format || !strings.Contains(fe.Hint, tc.hint) || fe.Path != tc.path {
				t.Errorf("%s: FormatError %+v", tc.name, fe)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("%s: message %q lacks the path", tc.name, err)
			}
		}
	}
	if _, err := OpenFile(filepath.Join(dir, "missing.h264"), once); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := OpenFile(h264, SourceConfig{FPS: -1}); err == nil {
		t.Error("negative FPS accepted")
	}
}

func TestOpenFileTruncated(t *testing.T) {
	for _, tc := range []struct {
		name     string
		data     []byte
		cut      int
		sentinel error // at the end of a single pass
	}{
		{"cut.h264", testsrc.H264(), 100_000, io.EOF},
		{"cut.ivf", testsrc.VP8IVF(), 100_000, ErrTruncated},
		{"cut-header.ivf", testsrc.VP8IVF(), 32 + 6, ErrTruncated},
		{"cut.ogg", testsrc.OpusOgg(), 20_000, ErrTruncated},
	} {
		path := writeTemp(t, tc.name, tc.data[:tc.cut])
		src, err := OpenFile(path, once)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ss, err := readAll(t, src, 1000)
		src.Close()
		if !errors.Is(err, tc.sentinel) {
			t.Errorf("%s: end error %v, want %v", tc.name, err, tc.sentinel)
		}
		if tc.cut > 1000 && (len(ss) == 0 || !ss[0].Keyframe) {
			t.Errorf("%s: %d samples before the cut", tc.name, len(ss))
		}

		// Looping skips the broken tail and starts over.
		src, err = OpenFile(path, SourceConfig{Unpaced: true})
		if err != nil {
			t.Fatal(err)
		}
		more, err := readAll(t, src, 2*len(ss)+5)
		src.Close()
		if len(ss) > 0 && err != nil {
			t.Errorf("%s: looping a truncated file: %v after %d samples", tc.name, err, len(more))
		}
	}

	// A corrupted Ogg page fails its checksum.
	bad := bytes.Clone(testsrc.OpusOgg())
	bad[len(bad)/2] ^= 0xff
	src, err := OpenFile(writeTemp(t, "bad.ogg", bad), once)
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(t, src, 1000)
	src.Close()
	if !errors.Is(err, ErrInvalidData) {
		t.Errorf("corrupt ogg: %v", err)
	}
}

func TestH264Stream(t *testing.T) {
	src, err := NewH264Stream(bytes.NewReader(testsrc.H264()), SourceConfig{Unpaced: true, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	ss, err := readAll(t, src, 1000)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end %v", err)
	}
	checkH264Samples(t, ss)
	src.Close()

	// Not H.264.
	src, _ = NewH264Stream(bytes.NewReader(testsrc.VP8IVF()), SourceConfig{})
	_, err = src.ReadSample(context.Background())
	var fe *FormatError
	if !errors.Is(err, ErrUnsupportedFormat) || !errors.As(err, &fe) || !strings.Contains(fe.Hint, "-f h264 -") {
		t.Errorf("IVF on stdin: %v", err)
	}
	// Empty.
	src, _ = NewH264Stream(bytes.NewReader(nil), SourceConfig{})
	if _, err := src.ReadSample(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("empty stream: %v", err)
	}
	if _, err := NewH264Stream(nil, SourceConfig{}); err == nil {
		t.Error("nil reader accepted")
	}
	if _, err := NewH264Stream(os.Stdin, SourceConfig{FPS: 1000}); err == nil {
		t.Error("FPS 1000 accepted")
	}
}

// TestH264StreamFromFFmpeg feeds a live ffmpeg encode (sliced threads,
// SPS/PPS only at the start) through a pipe, as `kvsrtc master --input -` does.
func TestH264StreamFromFFmpeg(t *testing.T) {
	ffmpeg := requireFFmpeg(t, "ffmpeg")
	cmd := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-frames:v", "45",
		"-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-x264-params", "keyint=20:slices=2",
		"-f", "h264", "-")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	src, err := NewH264Stream(stdout, SourceConfig{ArrivalTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	ss, err := readAll(t, src, 1000)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end %v", err)
	}
	if len(ss) != 45 {
		t.Errorf("%d frames, want 45 (two slices per frame must be one sample)", len(ss))
	}
	keys := 0
	for i, s := range ss {
		if s.Duration <= 0 {
			t.Errorf("frame %d duration %v", i, s.Duration)
		}
		if s.Keyframe {
			keys++
			info := inspectH264(s.Data)
			if info.sps == nil || info.pps == nil {
				t.Errorf("keyframe %d lacks SPS/PPS", i)
			}
		}
	}
	if !ss[0].Keyframe || keys != 3 {
		t.Errorf("first is keyframe %v, %d keyframes; want true, 3", ss[0].Keyframe, keys)
	}
}

func FuzzSource(f *testing.F) {
	f.Add(testsrc.H264()[:3000])
	f.Add(testsrc.VP8IVF()[:3000])
	f.Add(testsrc.OpusOgg()[:3000])
	f.Add([]byte("DKIF"))
	f.Add([]byte("OggS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		src, err := newSeekableSource(bytes.NewReader(b), "fuzz", nil, once, time.Second/30)
		if err != nil {
			return
		}
		defer src.Close()
		for range 200 {
			s, err := src.ReadSample(context.Background())
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrInvalidData) &&
					!errors.Is(err, ErrUnsupportedFormat) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(s.Data) == 0 {
				t.Fatal("empty sample")
			}
		}
	})
}
