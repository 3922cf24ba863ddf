package media

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
)

// readFLV reads every frame of an FLV stream.
func readFLV(data []byte, limit int) ([]flvFrame, error) {
	r := newFLVVideoReader(bytes.NewReader(data))
	var out []flvFrame
	for len(out) < limit {
		f, err := r.next()
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
	return out, nil
}

func TestFLVVideoReader(t *testing.T) {
	h264 := writeTemp(t, "in.h264", testsrc.H264())
	path := makeMP4(t, "v.flv", "-f", "h264", "-r", "30", "-i", h264, "-c", "copy", "-f", "flv")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := readFLV(data, 1000)
	if !errors.Is(err, io.EOF) || len(frames) != testsrc.Frames {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
	for i, f := range frames {
		if f.key != (i%testsrc.GOP == 0) {
			t.Fatalf("frame %d: key %v", i, f.key)
		}
		if info := inspectH264(f.data); f.key && (info.sps == nil || info.pps == nil) {
			t.Fatalf("keyframe %d without SPS/PPS", i)
		}
		if i > 0 {
			if d := f.dts - frames[i-1].dts; d < 33 || d > 34 {
				t.Fatalf("frame %d: %d ms after the previous one", i, d)
			}
		}
	}

	// Another codec than H.264 says so.
	other := makeMP4(t, "flv1.flv", "-f", "lavfi", "-i", "testsrc=size=64x64:duration=0.1", "-c:v", "flv1", "-f", "flv")
	data, err = os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readFLV(data, 10); !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("FLV1 video: %v", err)
	}
	if _, err := readFLV([]byte("GIF89a......."), 10); !errors.Is(err, ErrInvalidData) {
		t.Fatalf("not FLV: %v", err)
	}
}

func FuzzFLVVideoReader(f *testing.F) {
	h264 := writeTempF(f, testsrc.H264())
	out := f.TempDir() + "/seed.flv"
	runFFmpegF(f, "-f", "h264", "-r", "30", "-i", h264, "-frames:v", "3", "-c", "copy", "-f", "flv", out)
	seed, err := os.ReadFile(out)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte("FLV\x01\x01\x00\x00\x00\x09\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := readFLV(data, 100)
		if err == nil && len(frames) < 100 {
			t.Fatal("no error before the end")
		}
	})
}

func FuzzAVCCToAnnexB(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x67})
	f.Add([]byte{0, 0, 0, 9, 0x41})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ps paramSets
		out, _, err := avccToAnnexB(data, &ps)
		if err == nil && len(out) > len(data)+len(ps.sps)+len(ps.pps)+8 {
			t.Fatalf("%d bytes out of %d", len(out), len(data))
		}
	})
}

func FuzzMP4(f *testing.F) {
	h264 := writeTempF(f, testsrc.H264())
	for i, args := range [][]string{
		{"-f", "h264", "-r", "30", "-i", h264, "-frames:v", "3", "-c", "copy"},
		{"-f", "h264", "-r", "30", "-i", h264, "-frames:v", "3", "-c", "copy", "-movflags", "frag_keyframe+empty_moov"},
	} {
		out := f.TempDir() + "/seed" + string(rune('0'+i)) + ".mp4"
		runFFmpegF(f, append(args, out)...)
		seed, err := os.ReadFile(out)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		video, audio, _, err := readMP4(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, tr := range []*mp4Track{video, audio} {
			if tr == nil {
				continue
			}
			r := &mp4FrameReader{f: bytes.NewReader(data), t: tr}
			for range 100 {
				if _, _, _, err := r.next(); err != nil {
					break
				}
			}
		}
	})
}

// writeTempF writes data to a temporary file for a fuzz test's seeds.
func writeTempF(f *testing.F, data []byte) string {
	f.Helper()
	p := f.TempDir() + "/in.h264"
	if err := os.WriteFile(p, data, 0o644); err != nil {
		f.Fatal(err)
	}
	return p
}

// runFFmpegF runs ffmpeg to make a fuzz test's seed.
func runFFmpegF(f *testing.F, args ...string) {
	f.Helper()
	if b, err := execFFmpeg(args...); err != nil {
		f.Fatalf("ffmpeg %v: %v\n%s", args, err, b)
	}
}
