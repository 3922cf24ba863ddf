package media

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// fmp4Clip encodes a testsrc clip with ffmpeg (libx264, GOP of 25, no
// B-frames) and returns its access units.
func fmp4Clip(t *testing.T, size string, frames int) [][]byte {
	t.Helper()
	ffmpeg := requireFFmpeg(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), "clip.h264")
	out, err := exec.Command(ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size="+size+":rate=25",
		"-frames:v", strconv.Itoa(frames), "-c:v", "libx264", "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p",
		"-f", "h264", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	return readAUs(t, path)
}

func readAUs(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := newH264AUReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var aus [][]byte
	for {
		au, _, err := r.next()
		if errors.Is(err, io.EOF) {
			return aus
		}
		if err != nil {
			t.Fatal(err)
		}
		aus = append(aus, au)
	}
}

// fmp4Opus encodes a 440 Hz tone with libopus into Ogg and returns its
// packets.
func fmp4Opus(t *testing.T, seconds string) [][]byte {
	t.Helper()
	ffmpeg := requireFFmpeg(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), "tone.ogg")
	out, err := exec.Command(ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration="+seconds,
		"-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "64k", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := newOggOpusReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	for {
		p, err := o.nextPacket()
		if errors.Is(err, io.EOF) {
			return pkts
		}
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, p)
	}
}

// videoFrames turns access units into 25 fps frames starting at pts0.
func videoFrames(aus [][]byte, pts0 time.Duration, wall0 time.Time) []Frame {
	const d = 40 * time.Millisecond
	fs := make([]Frame, len(aus))
	for i, au := range aus {
		pts := pts0 + time.Duration(i)*d
		fs[i] = Frame{Codec: rtc.CodecH264, Data: au, Keyframe: H264IsKeyframe(au), PTS: pts, Duration: d,
			SenderTime: wall0.Add(pts)}
	}
	return fs
}

// collectFMP4 returns a writer and the slice its fragments go to.
func collectFMP4(t testing.TB, audio bool) (*FMP4Writer, *[]FMP4Fragment) {
	t.Helper()
	var frags []FMP4Fragment
	w, err := NewFMP4Writer(FMP4Config{Audio: audio, OnFragment: func(f FMP4Fragment) error {
		frags = append(frags, f)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return w, &frags
}

// writeFMP4File writes the init of frags[0] and the media of frags.
func writeFMP4File(t *testing.T, frags []FMP4Fragment) string {
	t.Helper()
	var b bytes.Buffer
	b.Write(frags[0].Init)
	for _, f := range frags {
		if !bytes.Equal(f.Init, frags[0].Init) {
			t.Fatal("fragments with different inits in one file")
		}
		b.Write(f.Media)
	}
	path := filepath.Join(t.TempDir(), "out.mp4")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type probeStream struct {
	CodecName    string `json:"codec_name"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	NbReadFrames string `json:"nb_read_frames"`
}

type probeResult struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		Duration  string `json:"duration"`
		StartTime string `json:"start_time"`
	} `json:"format"`
}

// probeFMP4 runs ffprobe (counting frames) and ffmpeg (decoding
// everything) on path; any error output fails the test.
func probeFMP4(t *testing.T, path string) (probeResult, float64) {
	t.Helper()
	ffprobe := requireFFmpeg(t, "ffprobe")
	ffmpeg := requireFFmpeg(t, "ffmpeg")
	cmd := exec.Command(ffprobe, "-v", "error", "-show_entries",
		"format=start_time,duration:stream=codec_name,width,height,nb_read_frames", "-count_frames", "-of", "json", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v: %s", err, stderr.String())
	}
	var p probeResult
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	dec, err := exec.Command(ffmpeg, "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(dec) > 0 {
		t.Fatalf("ffmpeg decode: %v: %s", err, dec)
	}
	d, err := strconv.ParseFloat(p.Format.Duration, 64)
	if err != nil {
		t.Fatalf("duration %q: %v", p.Format.Duration, err)
	}
	return p, d
}

// checkTfdt parses the fragments with mp4ff and checks that each track's
// decode times continue from the previous fragment (or, with gaps, do not
// go back).
func checkTfdt(t *testing.T, frags []FMP4Fragment, gaps bool) {
	t.Helper()
	next := map[uint32]uint64{}
	for i, f := range frags {
		sr := bytes.NewReader(f.Media)
		file, err := mp4.DecodeFile(sr)
		if err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		if len(file.Segments) != 1 || len(file.Segments[0].Fragments) != 1 {
			t.Fatalf("fragment %d: want one moof", i)
		}
		moof := file.Segments[0].Fragments[0].Moof
		if moof.Mfhd.SequenceNumber != f.Sequence {
			t.Errorf("fragment %d: sequence %d, want %d", i, moof.Mfhd.SequenceNumber, f.Sequence)
		}
		for _, traf := range moof.Trafs {
			id := traf.Tfhd.TrackID
			base := traf.Tfdt.BaseMediaDecodeTime()
			if want, ok := next[id]; ok && !gaps && id == FMP4VideoTrackID && base != want {
				t.Errorf("fragment %d track %d: tfdt %d, want %d (continuous)", i, id, base, want)
			}
			if want, ok := next[id]; ok && base < want {
				t.Errorf("fragment %d track %d: tfdt %d goes back (previous end %d)", i, id, base, want)
			}
			var dur uint64
			for _, s := range traf.Trun.Samples {
				dur += uint64(s.Dur)
			}
			next[id] = base + dur
			if id == FMP4VideoTrackID {
				if !traf.Trun.Samples[0].IsSync() {
					t.Errorf("fragment %d: first video sample is not a sync sample", i)
				}
			}
		}
	}
}

func TestFMP4WriterFFprobe(t *testing.T) {
	aus := fmp4Clip(t, "320x240", 50) // 2 s, keyframes at 0 and 25
	wall0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w, frags := collectFMP4(t, false)
	// Delta frames before the first keyframe are dropped.
	for _, au := range aus[1:4] {
		if err := w.WriteFrame(Frame{Codec: rtc.CodecH264, Data: au, PTS: -time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range videoFrames(aus, 0, wall0) {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if len(*frags) != 1 {
		t.Fatalf("%d fragments before Close, want 1 (emitted at the second keyframe)", len(*frags))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.Dropped(); got != 3 {
		t.Errorf("Dropped() = %d, want 3", got)
	}
	fs := *frags
	if len(fs) != 2 {
		t.Fatalf("%d fragments, want 2", len(fs))
	}
	for i, f := range fs {
		if f.Frames != 25 || f.Duration != time.Second || f.Sequence != uint32(i+1) {
			t.Errorf("fragment %d: %d frames, %v, sequence %d; want 25 frames, 1s, %d", i, f.Frames, f.Duration, f.Sequence, i+1)
		}
		if want := wall0.Add(time.Duration(i) * time.Second); !f.Start.Equal(want) {
			t.Errorf("fragment %d: Start %v, want %v", i, f.Start, want)
		}
	}
	if !fs[0].NewInit || fs[1].NewInit || &fs[0].Init[0] != &fs[1].Init[0] {
		t.Error("the two fragments should share one init segment")
	}
	checkTfdt(t, fs, false)
	p, dur := probeFMP4(t, writeFMP4File(t, fs))
	if len(p.Streams) != 1 {
		t.Fatalf("streams %+v", p.Streams)
	}
	s := p.Streams[0]
	if s.CodecName != "h264" || s.Width != 320 || s.Height != 240 || s.NbReadFrames != "50" {
		t.Errorf("stream %+v, want h264 320x240 with 50 frames", s)
	}
	if dur < 1.99 || dur > 2.01 {
		t.Errorf("duration %.3f s, want 2", dur)
	}
}

func TestFMP4WriterSPSChange(t *testing.T) {
	a := fmp4Clip(t, "320x240", 50)
	b := fmp4Clip(t, "176x144", 50)
	wall0 := time.Now()
	w, frags := collectFMP4(t, false)
	frames := append(videoFrames(a, 0, wall0), videoFrames(b, 2*time.Second, wall0)...)
	// The camera restarts: the second clip's PTS start again at 0.
	for i := range frames[50:] {
		frames[50+i].PTS -= 2 * time.Second
	}
	for _, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fs := *frags
	if len(fs) != 4 {
		t.Fatalf("%d fragments, want 4", len(fs))
	}
	if &fs[0].Init[0] != &fs[1].Init[0] || &fs[2].Init[0] != &fs[3].Init[0] {
		t.Error("fragments with the same SPS/PPS should share one init")
	}
	if bytes.Equal(fs[1].Init, fs[2].Init) || !fs[2].NewInit || fs[3].NewInit {
		t.Error("the SPS change should give a new init segment on fragment 3")
	}
	checkTfdt(t, fs, false) // the timeline continues through the PTS reset
	for i, want := range []struct{ w, h int }{{320, 240}, {176, 144}} {
		p, dur := probeFMP4(t, writeFMP4File(t, fs[2*i:2*i+2]))
		s := p.Streams[0]
		if s.CodecName != "h264" || s.Width != want.w || s.Height != want.h || s.NbReadFrames != "50" {
			t.Errorf("part %d: stream %+v, want h264 %dx%d with 50 frames", i, s, want.w, want.h)
		}
		// The second part continues the recording's timeline: it starts
		// at 2 s, and ffprobe counts the duration from 0.
		if want := float64(2 * (i + 1)); dur < want-0.01 || dur > want+0.01 {
			t.Errorf("part %d: duration %.3f s (start %s), want %v", i, dur, p.Format.StartTime, want)
		}
	}
}

func TestFMP4WriterAudio(t *testing.T) {
	aus := fmp4Clip(t, "320x240", 50)
	pkts := fmp4Opus(t, "2")
	wall0 := time.Now()
	frames := videoFrames(aus, 0, wall0)
	var pts time.Duration
	for _, p := range pkts {
		d, err := OpusPacketDuration(p)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, Frame{Codec: rtc.CodecOpus, Data: p, Keyframe: true, PTS: pts, SenderTime: wall0.Add(pts)})
		pts += d
	}
	sort.SliceStable(frames, func(i, j int) bool { return frames[i].PTS < frames[j].PTS })
	w, frags := collectFMP4(t, true)
	for _, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fs := *frags
	audio := 0
	for _, f := range fs {
		audio += f.AudioFrames
	}
	if len(fs) != 2 || audio != len(pkts) {
		t.Fatalf("%d fragments with %d audio frames, want 2 with %d", len(fs), audio, len(pkts))
	}
	checkTfdt(t, fs, false)
	p, dur := probeFMP4(t, writeFMP4File(t, fs))
	got := map[string]probeStream{}
	for _, s := range p.Streams {
		got[s.CodecName] = s
	}
	if v := got["h264"]; v.NbReadFrames != "50" || v.Width != 320 {
		t.Errorf("video stream %+v, want 320x240 with 50 frames", v)
	}
	if a, ok := got["opus"]; !ok || a.NbReadFrames != strconv.Itoa(len(pkts)) {
		t.Errorf("audio stream %+v (present %v), want opus with %d frames", a, ok, len(pkts))
	}
	if dur < 1.99 || dur > 2.1 {
		t.Errorf("duration %.3f s, want 2", dur)
	}
}

func TestFMP4WriterBadInput(t *testing.T) {
	aus := fmp4Clip(t, "320x240", 2)
	garbageSPS := append([]byte{0, 0, 0, 1, 0x67, 0xff}, aus[0][bytes.Index(aus[0], []byte{0, 0, 0, 1, 0x68}):]...)
	for _, c := range []struct {
		name string
		f    Frame
		want error
	}{
		{"empty", Frame{Codec: rtc.CodecH264}, ErrInvalidData},
		{"VP8", Frame{Codec: rtc.CodecVP8, Data: []byte{1, 2, 3}}, ErrCodecMismatch},
		{"no codec", Frame{Data: aus[0]}, ErrCodecMismatch},
		{"garbage H.264", Frame{Codec: rtc.CodecH264, Data: []byte("not a video frame")}, ErrInvalidData},
		{"only SPS", Frame{Codec: rtc.CodecH264, Data: []byte{0, 0, 0, 1, 0x67, 0x42, 0, 0x1e}}, ErrInvalidData},
		{"garbage SPS", Frame{Codec: rtc.CodecH264, Data: garbageSPS}, ErrInvalidData},
		{"Opus without Audio", Frame{Codec: rtc.CodecOpus, Data: []byte{0xfc, 1, 2}}, ErrCodecMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, _ := collectFMP4(t, false)
			if err := w.WriteFrame(c.f); !errors.Is(err, c.want) {
				t.Fatalf("WriteFrame: %v, want %v", err, c.want)
			}
			// The writer is still usable.
			if err := w.WriteFrame(Frame{Codec: rtc.CodecH264, Data: aus[0]}); err != nil {
				t.Fatal(err)
			}
		})
	}
	w, frags := collectFMP4(t, true)
	if err := w.WriteFrame(Frame{Codec: rtc.CodecOpus, Data: []byte{0x03}}); !errors.Is(err, ErrInvalidData) {
		t.Errorf("bad Opus packet: %v, want ErrInvalidData", err)
	}
	if err := w.Close(); !errors.Is(err, ErrNoKeyframe) {
		t.Errorf("Close without a keyframe: %v, want ErrNoKeyframe", err)
	}
	if err := w.WriteFrame(Frame{Codec: rtc.CodecH264, Data: aus[0]}); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteFrame after Close: %v, want ErrClosed", err)
	}
	if len(*frags) != 0 {
		t.Error("fragments without frames")
	}
	if _, err := NewFMP4Writer(FMP4Config{}); err == nil {
		t.Error("NewFMP4Writer without OnFragment: no error")
	}

	// OnFragment's error comes back, and the writer goes on.
	boom := errors.New("boom")
	calls := 0
	w, err := NewFMP4Writer(FMP4Config{OnFragment: func(FMP4Fragment) error { calls++; return boom }})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range videoFrames([][]byte{aus[0], aus[1], aus[0]}, 0, time.Now()) {
		if err := w.WriteFrame(f); err != nil && !errors.Is(err, boom) {
			t.Fatal(err)
		}
	}
	if err := w.Close(); !errors.Is(err, boom) || calls != 2 {
		t.Errorf("Close: %v after %d calls, want boom after 2", err, calls)
	}
}

// TestFMP4WriterFlush checks that Flush emits the open fragment and that
// delta frames after it wait for a keyframe.
func TestFMP4WriterFlush(t *testing.T) {
	aus := fmp4Clip(t, "320x240", 50)
	frames := videoFrames(aus, 0, time.Now())
	w, frags := collectFMP4(t, false)
	for _, f := range frames[:10] {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames[10:] {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fs := *frags
	if len(fs) != 2 || fs[0].Frames != 10 || fs[1].Frames != 25 || w.Dropped() != 15 {
		t.Fatalf("%d fragments (%+v), dropped %d; want 10 and 25 frames, 15 dropped", len(fs), fs, w.Dropped())
	}
	if fs[0].Duration != 400*time.Millisecond {
		t.Errorf("flushed fragment lasts %v, want 400ms", fs[0].Duration)
	}
	checkTfdt(t, fs, true) // the dropped frames leave a gap
	p, _ := probeFMP4(t, writeFMP4File(t, fs))
	if p.Streams[0].NbReadFrames != "35" {
		t.Errorf("stream %+v, want 35 frames", p.Streams[0])
	}
}

func BenchmarkFMP4Writer(b *testing.B) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		b.Fatal("ffmpeg not found: run bash scripts/test.sh, which installs it (or apt-get install ffmpeg)")
	}
	path := filepath.Join(b.TempDir(), "clip.h264")
	out, err := exec.Command(ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25",
		"-frames:v", "100", "-c:v", "libx264", "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p",
		"-f", "h264", path).CombinedOutput()
	if err != nil {
		b.Fatalf("ffmpeg: %v: %s", err, out)
	}
	frames := videoFrames(readAUs(b, path), 0, time.Now())
	var payload, written int64
	w, err := NewFMP4Writer(FMP4Config{OnFragment: func(f FMP4Fragment) error {
		written += int64(len(f.Media))
		if f.NewInit {
			written += int64(len(f.Init))
		}
		return nil
	}})
	if err != nil {
		b.Fatal(err)
	}
	span := time.Duration(len(frames)) * 40 * time.Millisecond
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f := frames[i%len(frames)]
		f.PTS += time.Duration(i/len(frames)) * span
		payload += int64(len(f.Data))
		if err := w.WriteFrame(f); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
	if payload > 0 {
		b.ReportMetric(100*float64(written-payload)/float64(payload), "%overhead")
	}
}

// TestFMP4WriterBFrames records a stream with B-frames (frames in decode
// order, PTS going back and forth): the decode times are the presentation
// times in order, and composition offsets put each frame back in place.
func TestFMP4WriterBFrames(t *testing.T) {
	blocks := bframeStream(t, t.TempDir())
	w, frags := collectFMP4(t, false)
	for _, b := range blocks {
		f := Frame{Codec: rtc.CodecH264, Data: b.au, Keyframe: b.key, PTS: b.pts, Arrival: time.Now()}
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fs := *frags
	checkTfdt(t, fs, false)
	path := writeFMP4File(t, fs)
	p, dur := probeFMP4(t, path)
	// The decoded pictures come out in presentation order, 1/30 s apart
	// (ffmpeg shifts them all by the largest negative composition offset).
	out, err := exec.Command(requireFFmpeg(t, "ffprobe"), "-v", "error", "-select_streams", "v",
		"-show_entries", "frame=pts_time", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	times := strings.Fields(string(out))
	var first float64
	for i, s := range times {
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, ","), 64)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = v
		}
		if want := first + float64(i)/30; v < want-0.002 || v > want+0.002 {
			t.Fatalf("picture %d at %.4f s, want %.4f", i, v, want)
		}
	}
	if s := p.Streams[0]; s.NbReadFrames != strconv.Itoa(len(blocks)) {
		t.Errorf("stream %+v, want %d frames", s, len(blocks))
	}
	if dur < 1.95 || dur > 2.05 {
		t.Errorf("duration %.3f s, want 2", dur)
	}
}

// TestFMP4WriterCorrupt feeds damaged access units, Opus packets and wild
// PTS: the writer may refuse frames (with the package's sentinels) but
// never panics, and what it writes still parses.
func TestFMP4WriterCorrupt(t *testing.T) {
	aus := fmp4Clip(t, "320x240", 30)
	rng := rand.New(rand.NewPCG(1, 2))
	w, frags := collectFMP4(t, true)
	for i := range 3000 {
		au := bytes.Clone(aus[rng.IntN(len(aus))])
		switch rng.IntN(4) {
		case 0:
			au = au[:rng.IntN(len(au)+1)]
		case 1:
			for range 1 + rng.IntN(8) {
				au[rng.IntN(len(au))] = byte(rng.Uint32())
			}
		}
		pts := time.Duration(i) * 40 * time.Millisecond
		if rng.IntN(50) == 0 {
			pts = time.Duration(rng.Int64()) // anywhere, backwards included
		}
		f := Frame{Codec: rtc.CodecH264, Data: au, PTS: pts}
		if rng.IntN(3) == 0 {
			f = Frame{Codec: rtc.CodecOpus, Data: au[:min(len(au), rng.IntN(64))], PTS: pts}
		}
		if err := w.WriteFrame(f); err != nil && !errors.Is(err, ErrInvalidData) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil && !errors.Is(err, ErrInvalidData) && !errors.Is(err, ErrNoKeyframe) {
		t.Fatal(err)
	}
	if len(*frags) == 0 {
		t.Fatal("no fragments")
	}
	for i, f := range *frags {
		if _, err := mp4.DecodeFile(bytes.NewReader(append(bytes.Clone(f.Init), f.Media...))); err != nil {
			t.Fatalf("fragment %d does not parse: %v", i, err)
		}
	}
}
