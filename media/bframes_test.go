package media

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// bframeBlock is one H.264 access unit of a B-frame stream, in decode
// order, with its presentation time.
type bframeBlock struct {
	au  []byte // Annex-B; keyframes carry SPS and PPS
	key bool
	pts time.Duration
}

// bframeStream encodes 2 s of 30 fps video with libx264 and two B-frames
// into Matroska (so ffmpeg supplies the presentation times), copies it to
// Annex-B as a master's file source would read it, splits that into
// access units with the file source's reader and returns them in decode
// order with their presentation times.
func bframeStream(t *testing.T, dir string) []bframeBlock {
	t.Helper()
	ffmpeg := requireFFmpeg(t, "ffmpeg")
	mkv, annexB := filepath.Join(dir, "bframes-src.mkv"), filepath.Join(dir, "bframes.h264")
	for _, args := range [][]string{
		{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "2", "-c:v", "libx264",
			"-profile:v", "main", "-pix_fmt", "yuv420p", "-bf", "2", "-g", "30", mkv},
		{"-i", mkv, "-c", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", annexB},
	} {
		cmd := exec.Command(ffmpeg, append([]string{"-v", "error", "-y"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
		}
	}
	pts := packetPTS(t, mkv)
	f, err := os.Open(annexB)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := newH264AUReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []bframeBlock
	for {
		au, key, err := rd.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(out) >= len(pts) {
			t.Fatalf("more access units in %s than packets in %s (%d)", annexB, mkv, len(pts))
		}
		p := time.Duration(math.Round(pts[len(out)]*1000)) * time.Millisecond
		out = append(out, bframeBlock{au: bytes.Clone(au), key: key, pts: p})
	}
	if len(out) != len(pts) || len(out) < 50 || !out[0].key {
		t.Fatalf("%d access units (first is keyframe: %v), %d packets", len(out), len(out) > 0 && out[0].key, len(pts))
	}
	reordered := 0
	for i := 1; i < len(out); i++ {
		if out[i].pts < out[i-1].pts {
			reordered++
		}
	}
	if reordered == 0 {
		t.Fatal("the libx264 stream has no B-frames (presentation times never go back)")
	}
	return out
}

// TestRecordH264BFrames sends an H.264 stream with B-frames as RTP (RTP
// timestamp = presentation time, frames in decode order, starting just
// before the 32-bit timestamp wrap) through the Depacketizer into a
// MatroskaWriter and checks with ffprobe that every frame keeps its
// presentation time and ffmpeg decodes the file cleanly.
func TestRecordH264BFrames(t *testing.T) {
	dir := t.TempDir()
	blocks := bframeStream(t, dir)

	d, err := NewDepacketizer(rtc.CodecH264, 90000)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bframes.mkv")
	rec, err := CreateMatroskaFile(path, MatroskaConfig{Video: rtc.CodecH264})
	if err != nil {
		t.Fatal(err)
	}
	pay := &codecs.H264Payloader{}
	base := uint32(1<<32 - 90000/2) // wraps after half a second
	seq := uint16(65000)
	var frames []Frame
	pop := func() {
		for {
			f, ok := d.Pop()
			if !ok {
				return
			}
			frames = append(frames, f)
			if err := rec.WriteFrame(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, b := range blocks {
		ts := base + uint32(b.pts*90000/time.Second)
		payloads := pay.Payload(1200, b.au)
		for i, p := range payloads {
			d.Push(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: ts, Marker: i == len(payloads)-1}, Payload: p})
			seq++
		}
		pop()
	}
	d.Flush()
	pop()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	if len(frames) != len(blocks) {
		t.Errorf("depacketized %d frames, sent %d", len(frames), len(blocks))
	}
	for i, f := range frames[:min(len(frames), len(blocks))] {
		if want := blocks[i].pts - blocks[0].pts; f.PTS != want && (f.PTS-want).Abs() > time.Millisecond {
			t.Errorf("frame %d: PTS %v, want %v", i, f.PTS, want)
		}
	}

	// Packets (decode order) keep the source's presentation times...
	pts := packetPTS(t, path)
	t.Logf("%s packet pts (decode order): %v", path, pts[:min(len(pts), 12)])
	for i := range min(len(pts), len(blocks)) {
		want := (blocks[i].pts - blocks[0].pts).Seconds()
		if d := pts[i] - want; d > 0.0015 || d < -0.0015 {
			t.Errorf("packet %d: pts %.3f, want %.3f", i, pts[i], want)
		}
	}
	// ...and the decoded frames come out 1/30 s apart from the first on.
	fpts := checkSpacing(t, path, "v", 0.025, 0.042, len(blocks))
	if !slices.IsSorted(fpts) {
		t.Errorf("decoded frames out of order: %v", fpts)
	}
	decodes(t, path)
}

// packetPTS returns the pts_time of every video packet of path, in file order.
func packetPTS(t *testing.T, path string) []float64 {
	t.Helper()
	out, err := exec.Command(requireFFmpeg(t, "ffprobe"), "-v", "error", "-select_streams", "v:0",
		"-show_entries", "packet=pts_time", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var pts []float64
	for _, line := range strings.Fields(string(out)) {
		v, err := strconv.ParseFloat(strings.TrimSuffix(line, ","), 64)
		if err != nil {
			t.Fatalf("ffprobe packet pts %q: %v", line, err)
		}
		pts = append(pts, v)
	}
	return pts
}
