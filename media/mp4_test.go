package media

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// needFFmpeg returns ffmpeg's path or fails the test.
func needFFmpeg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: run bash scripts/test.sh, which installs it")
	}
	return p
}

// execFFmpeg runs ffmpeg quietly with args.
func execFFmpeg(args ...string) ([]byte, error) {
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		return nil, errors.New("ffmpeg not found: run bash scripts/test.sh, which installs it")
	}
	return exec.Command(p, append([]string{"-v", "error", "-y"}, args...)...).CombinedOutput()
}

// makeMP4 runs ffmpeg with args (inputs and options) writing name in a
// temporary directory, and returns its path.
func makeMP4(t *testing.T, name string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(needFFmpeg(t), append(append([]string{"-v", "error", "-y"}, args...), out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, b)
	}
	return out
}

// vclNALs returns the slice NAL units of an Annex-B access unit.
func vclNALs(au []byte) [][]byte {
	var out [][]byte
	for nal := range AnnexBNALs(au) {
		if isVCL(nal[0] & 0x1f) {
			out = append(out, nal)
		}
	}
	return out
}

func TestMP4SendsTheH264TrackWithItsTiming(t *testing.T) {
	h264 := writeTemp(t, "in.h264", testsrc.H264())
	ogg := writeTemp(t, "in.ogg", testsrc.OpusOgg())
	progressive := makeMP4(t, "av.mp4", "-f", "h264", "-r", "30", "-i", h264, "-i", ogg, "-c", "copy", "-strict", "-2")
	fragmented := makeMP4(t, "frag.mp4", "-f", "h264", "-r", "30", "-i", h264, "-i", ogg, "-c", "copy", "-strict", "-2",
		"-movflags", "frag_keyframe+empty_moov+default_base_moof")

	// The Annex-B file's access units, to compare the slices with.
	want, err := OpenFile(h264, once)
	if err != nil {
		t.Fatal(err)
	}
	wantAUs, _ := readAll(t, want, 1000)
	want.Close()

	for _, path := range []string{progressive, fragmented} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			tr, err := OpenMP4(path, once)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if tr.Video.Codec() != rtc.CodecH264 || tr.Audio == nil || tr.Audio.Codec() != rtc.CodecOpus || len(tr.Skipped) != 0 {
				t.Fatalf("tracks: video %v, audio %v, skipped %v", tr.Video.Codec(), tr.Audio, tr.Skipped)
			}
			vs, err := readAll(t, tr.Video, 1000)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("video read: %v", err)
			}
			if len(vs) != testsrc.Frames || len(vs) != len(wantAUs) {
				t.Fatalf("%d video samples, want %d", len(vs), testsrc.Frames)
			}
			for i, s := range vs {
				if s.Keyframe != (i%testsrc.GOP == 0) {
					t.Fatalf("sample %d: keyframe %v", i, s.Keyframe)
				}
				if s.Keyframe {
					info := inspectH264(s.Data)
					if info.sps == nil || info.pps == nil {
						t.Fatalf("keyframe %d lacks SPS/PPS", i)
					}
				}
				// (ffmpeg may stretch the first sample of a fragmented file
				// to line it up with the audio: the file's own timing.)
				if d := s.Duration; i > 0 && (d < 33*time.Millisecond || d > 34*time.Millisecond) {
					t.Fatalf("sample %d: duration %v, want 1/30 s", i, d)
				}
				got, exp := vclNALs(s.Data), vclNALs(wantAUs[i].Data)
				if len(got) != len(exp) || !bytes.Equal(got[0], exp[0]) {
					t.Fatalf("sample %d: slices differ from the Annex-B file's", i)
				}
			}
			as, err := readAll(t, tr.Audio, 1000)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("audio read: %v", err)
			}
			if n := len(as); n < testsrc.OpusPackets-2 || n > testsrc.OpusPackets+1 {
				t.Fatalf("%d audio packets, want about %d", n, testsrc.OpusPackets)
			}
			for i, s := range as {
				if s.Duration != 20*time.Millisecond && i < len(as)-1 {
					t.Fatalf("audio packet %d: duration %v", i, s.Duration)
				}
			}
		})
	}
}

func TestMP4Loops(t *testing.T) {
	h264 := writeTemp(t, "in.h264", testsrc.H264())
	path := makeMP4(t, "v.mp4", "-f", "h264", "-r", "30", "-i", h264, "-c", "copy")
	src, err := OpenFile(path, SourceConfig{Unpaced: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ss, err := readAll(t, src, testsrc.Frames*2+10)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(ss); i++ {
		if ss[i].PTS <= ss[i-1].PTS {
			t.Fatalf("PTS goes back at %d: %v after %v", i, ss[i].PTS, ss[i-1].PTS)
		}
	}
	if !ss[testsrc.Frames].Keyframe || !ss[2*testsrc.Frames].Keyframe {
		t.Fatal("the second pass does not start on a keyframe")
	}
	if d := ss[testsrc.Frames].PTS; d < testsrc.Duration-50*time.Millisecond || d > testsrc.Duration+50*time.Millisecond {
		t.Fatalf("second pass starts at %v, want about %v", d, testsrc.Duration)
	}
}

func TestMP4AACIsSkippedWithTheFix(t *testing.T) {
	h264 := writeTemp(t, "in.h264", testsrc.H264())
	path := makeMP4(t, "aac.mp4", "-f", "h264", "-r", "30", "-i", h264, "-f", "lavfi", "-i", "sine=duration=1",
		"-c:v", "copy", "-c:a", "aac", "-shortest")
	tr, err := OpenMP4(path, once)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Audio != nil || len(tr.Skipped) != 1 {
		t.Fatalf("audio %v, skipped %v", tr.Audio, tr.Skipped)
	}
	sk := tr.Skipped[0]
	if sk.Codec != "mp4a" || sk.Kind != "audio" || !strings.Contains(sk.Reason, "-c:a libopus") {
		t.Fatalf("skipped %+v", sk)
	}
	if _, err := tr.Video.ReadSample(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestMP4WithoutVideoIsRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"aac only", []string{"-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac"}, "mp4a"},
		{"mpeg4 video", []string{"-f", "lavfi", "-i", "testsrc=size=64x64:duration=0.2", "-c:v", "mpeg4"}, "mp4v"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := makeMP4(t, "novideo.mp4", tc.args...)
			for _, open := range []func() error{
				func() error { tr, err := OpenMP4(path, once); tr.Close(); return err },
				func() error { _, err := OpenFile(path, once); return err },
			} {
				err := open()
				var fe *FormatError
				if !errors.Is(err, ErrNoVideoTrack) || !errors.Is(err, ErrUnsupportedFormat) || !errors.As(err, &fe) {
					t.Fatalf("error %v, want a FormatError wrapping ErrNoVideoTrack", err)
				}
				if fe.Path != path || !strings.Contains(err.Error(), tc.want) || !strings.Contains(fe.Hint, "libx264") {
					t.Fatalf("error %q does not name the file, its track %s and the fix", err, tc.want)
				}
			}
		})
	}
}

func TestMP4BrokenFiles(t *testing.T) {
	h264 := writeTemp(t, "in.h264", testsrc.H264())
	path := makeMP4(t, "v.mp4", "-f", "h264", "-r", "30", "-i", h264, "-c", "copy")
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"ftyp only", full[:32], ErrInvalidData},
		{"cut mid-file", full[:len(full)/2], nil}, // moov at the end: lost
	} {
		p := writeTemp(t, "broken.mp4", tc.data)
		tr, err := OpenMP4(p, once)
		if err == nil {
			// The moov survived: the samples past the end must fail cleanly.
			_, err = readAll(t, tr.Video, 1000)
			tr.Close()
		}
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("%s: no error (%v)", tc.name, err)
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
