package media

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// framePTS returns the pts_time of every decoded frame of the first stream
// of kind ("v" or "a") in path, in presentation order as ffprobe reports them.
func framePTS(t *testing.T, path, kind string) []float64 {
	t.Helper()
	bin := requireFFmpeg(t, "ffprobe")
	out, err := exec.Command(bin, "-v", "error", "-select_streams", kind+":0",
		"-show_entries", "frame=pts_time", "-of", "json", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ffprobe %s: %v\n%s", path, err, ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var v struct {
		Frames []struct {
			PTS string `json:"pts_time"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	pts := make([]float64, 0, len(v.Frames))
	for _, f := range v.Frames {
		p, err := strconv.ParseFloat(f.PTS, 64)
		if err != nil {
			t.Fatalf("%s: frame pts_time %q", path, f.PTS)
		}
		pts = append(pts, p)
	}
	return pts
}

// checkSpacing fails unless every interval between consecutive frame times
// (sorted as presented) of path's stream kind lies in [lo, hi] seconds,
// from the first frame on, and there are at least minFrames frames.
func checkSpacing(t *testing.T, path, kind string, lo, hi float64, minFrames int) []float64 {
	t.Helper()
	pts := framePTS(t, path, kind)
	n := min(len(pts), 12)
	t.Logf("%s %s: %d frames, first pts %v", path, kind, len(pts), pts[:n])
	if len(pts) < minFrames {
		t.Fatalf("%s: %d %s frames, want >= %d", path, len(pts), kind, minFrames)
	}
	bad := 0
	for i := 1; i < len(pts); i++ {
		if d := pts[i] - pts[i-1]; d < lo || d > hi {
			if bad < 5 {
				t.Errorf("%s: %s frame %d at %.3f s, %.1f ms after the previous one (want %.0f..%.0f ms)",
					path, kind, i, pts[i], d*1000, lo*1000, hi*1000)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d %s intervals out of range", path, bad, len(pts)-1, kind)
	}
	return pts
}

// TestMatroskaAlignsAudioWithBurst records what a viewer joining mid-GOP
// gets: the cached GOP (source frames 30..44, 1.0 s to 1.467 s) arriving
// all at once, then live video and audio, the audio starting at source
// time 1.46 s. The audio must start 0.46 s after the first video frame,
// whether aligned by arrival (the earliest arrival relative to media time)
// or, when the frames carry them, by sender times, even with the audio
// arriving 200 ms late.
func TestMatroskaAlignsAudioWithBurst(t *testing.T) {
	requireFFmpeg(t, "ffprobe")
	video := testFrames(t, rtc.CodecH264)[30:120]
	audio := testFrames(t, rtc.CodecOpus)[73:200]
	t0 := time.Now()
	wall := t0.Add(-1466 * time.Millisecond) // wall time of source time 0
	for i := range video {
		video[i].Arrival = t0 // the burst
		if k := i - 14; k > 0 {
			video[i].Arrival = t0.Add(time.Duration(k) * time.Second / 30)
		}
	}
	for j := range audio {
		audio[j].Arrival = t0.Add(time.Duration(j) * 20 * time.Millisecond)
	}
	for _, tc := range []struct {
		name   string
		sender bool
	}{{"arrival", false}, {"sender-report", true}} {
		t.Run(tc.name, func(t *testing.T) {
			vs, as := slices.Clone(video), slices.Clone(audio)
			if tc.sender {
				for i := range vs {
					vs[i].SenderTime = wall.Add(vs[i].PTS)
				}
				for j := range as {
					as[j].SenderTime = wall.Add(as[j].PTS)
					as[j].Arrival = as[j].Arrival.Add(200 * time.Millisecond)
				}
			}
			// Interleave by arrival, as two receivers would deliver them.
			all := append(slices.Clone(vs), as...)
			slices.SortStableFunc(all, func(a, b Frame) int { return a.Arrival.Compare(b.Arrival) })
			path := filepath.Join(t.TempDir(), "rec.mkv")
			rec, err := CreateMatroskaFile(path, MatroskaConfig{Video: rtc.CodecH264, Audio: true})
			if err != nil {
				t.Fatal(err)
			}
			writeFrames(t, rec, all)
			if err := rec.Close(); err != nil {
				t.Fatal(err)
			}
			v := checkSpacing(t, path, "v", 0.025, 0.042, len(vs))
			a := checkSpacing(t, path, "a", 0.015, 0.025, len(as))
			got, want := a[0]-v[0], (as[0].PTS - vs[0].PTS).Seconds()
			t.Logf("audio starts %.3f s after the video, want %.3f s", got, want)
			if math.Abs(got-want) > 0.025 {
				t.Errorf("audio starts %.3f s after the video, want %.3f s", got, want)
			}
		})
	}
}

func TestNTPTime(t *testing.T) {
	// 2026-01-01T00:00:00.5Z: 3976214400 s after 1900, and half a second.
	got := ntpTime(3976214400<<32 | 1<<31)
	if want := time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC); !got.Equal(want) {
		t.Errorf("ntpTime = %v, want %v", got, want)
	}
}

// TestMatroskaNewStreams records two RTP streams per track, as a viewer
// that reconnects after 1 s without media delivers them: the second
// streams' times start again at 0, with a GOP burst. The recording must
// go on after the first streams, in order, at the source's spacing.
func TestMatroskaNewStreams(t *testing.T) {
	requireFFmpeg(t, "ffprobe")
	h264 := testFrames(t, rtc.CodecH264)
	opus := testFrames(t, rtc.CodecOpus)
	t0 := time.Now()
	stream := func(video, audio []Frame, vssrc, assrc uint32, at time.Time, burst int) []Frame {
		var out []Frame
		for i, f := range video {
			f.SSRC, f.PTS = vssrc, f.PTS-video[0].PTS
			f.Arrival = at.Add(time.Duration(max(i-burst, 0)) * time.Second / 30)
			out = append(out, f)
		}
		for j, f := range audio {
			f.SSRC, f.PTS = assrc, f.PTS-audio[0].PTS
			f.Arrival = at.Add(time.Duration(j) * 20 * time.Millisecond)
			out = append(out, f)
		}
		slices.SortStableFunc(out, func(a, b Frame) int { return a.Arrival.Compare(b.Arrival) })
		return out
	}
	first := stream(h264[0:60], opus[0:100], 1, 2, t0, 0)
	// 2 s of media, then 1 s without; the new streams start mid-GOP.
	second := stream(h264[90:150], opus[167:250], 3, 4, t0.Add(3*time.Second), 9)
	path := filepath.Join(t.TempDir(), "rec.mkv")
	rec, err := CreateMatroskaFile(path, MatroskaConfig{Video: rtc.CodecH264, Audio: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFrames(t, rec, first, second)
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"v", "a"} {
		lo, hi := 0.025, 0.042
		if kind == "a" {
			lo, hi = 0.015, 0.025
		}
		pts := framePTS(t, path, kind)
		gaps := 0
		for i := 1; i < len(pts); i++ {
			d := pts[i] - pts[i-1]
			switch {
			case d >= lo && d <= hi:
			case d > hi && d < 1.5 && gaps == 0:
				gaps++ // the reconnect
				t.Logf("%s: %.3f s gap at %.3f s", kind, d, pts[i-1])
			default:
				t.Errorf("%s frame %d at %.3f s, %.1f ms after the previous one", kind, i, pts[i], d*1000)
			}
		}
		if want := map[string]int{"v": 120, "a": 183}[kind]; len(pts) < want-2 {
			t.Errorf("%d %s frames, want about %d", len(pts), kind, want)
		}
	}
}

// TestIVFNewStream: after a reconnect the new RTP stream's timestamps
// start anywhere; the IVF output goes on from its first keyframe, after
// what was written and the time without video.
func TestIVFNewStream(t *testing.T) {
	requireFFmpeg(t, "ffprobe")
	vp8 := testFrames(t, rtc.CodecVP8)
	t0 := time.Now()
	var frames []Frame
	for i, f := range vp8[:60] {
		f.SSRC, f.RTPTimestamp, f.Arrival = 1, 0xffff0000+uint32(i)*3000, t0.Add(time.Duration(i)*time.Second/30)
		frames = append(frames, f)
	}
	for i, f := range vp8[75:150] { // a delta frame first, then the keyframe at 90
		f.SSRC, f.RTPTimestamp, f.Arrival = 2, 12345+uint32(i)*3000, t0.Add(3*time.Second+time.Duration(i)*time.Second/30)
		frames = append(frames, f)
	}
	var buf bytes.Buffer
	writeFrames(t, NewIVFWriter(&buf), frames)
	path := writeTemp(t, "reconnect.ivf", buf.Bytes())
	pts := framePTS(t, path, "v")
	if len(pts) != 60+60 {
		t.Fatalf("%d frames, want 120 (the second stream from its keyframe)", len(pts))
	}
	for i := 1; i < len(pts); i++ {
		d := pts[i] - pts[i-1]
		want := 1.0 / 30
		if i == 60 {
			want = 3 + 15.0/30 - 59.0/30 // arrival gap from frame 59 to the keyframe
		}
		if math.Abs(d-want) > 0.002 {
			t.Errorf("frame %d at %.4f s, %.1f ms after the previous one, want %.1f ms", i, pts[i], d*1000, want*1000)
		}
	}
}
