package media

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
)

// spsVectors are SPS NAL units written by x264 (see the ffmpeg commands in
// the comments) with the size ffprobe reports.
var spsVectors = []struct {
	name          string
	hex           string
	width, height int
	profile       uint8
}{
	// ffmpeg -f lavfi -i testsrc2=size=1920x1080 -frames:v 1 -c:v libx264 -profile:v high -f h264 -
	{"1080p high", "67640028acd940780227e5c044000003000400000300c83c60c658", 1920, 1080, 100},
	// ... size=1280x720 -profile:v main
	{"720p main", "674d401feca02802dd80880000030008000003019078c18cb0", 1280, 720, 77},
	// ... size=642x362 -profile:v baseline (cropping of odd macroblock rows/cols)
	{"642x362 baseline", "6742c01ed900a42fe224c044000003000400000300c83c58b920", 642, 362, 66},
	// ... size=320x240 -profile:v high444 -pix_fmt yuv444p
	{"high444", "67f4000d919b28283f6022000003000200000300641e28532c", 320, 240, 244},
	// ... size=1920x1080 -profile:v high -flags +ildct+ilme -x264-params interlaced=1
	{"1080i interlaced", "67640028acd94078044fde0220000003002000000643e2c5b2c0", 1920, 1080, 100},
	// ... size=176x144 -profile:v high422 -pix_fmt yuv422p
	{"high422", "677a000bbcd942c4ec0440000003004000000c83c50a6580", 176, 144, 122},
	// ... size=1280x720 -profile:v high -x264-params cqm=jvt
	{"720p high cqm", "6764001facd9405005bb011000000300100000030320f1831960", 1280, 720, 100},
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testsrcSPS returns the first SPS of the embedded H.264 pattern.
func testsrcSPS(t testing.TB) []byte {
	t.Helper()
	for nal := range AnnexBNALs(testsrc.H264()[:256]) {
		if nal[0]&0x1f == nalSPS {
			return nal
		}
	}
	t.Fatal("no SPS in the test pattern")
	return nil
}

func TestParseSPSVectors(t *testing.T) {
	for _, v := range spsVectors {
		sps, err := ParseSPS(mustHex(t, v.hex))
		if err != nil {
			t.Errorf("%s: %v", v.name, err)
			continue
		}
		if sps.Width != v.width || sps.Height != v.height || sps.ProfileIDC != v.profile {
			t.Errorf("%s: got %dx%d profile %d, want %dx%d profile %d", v.name, sps.Width, sps.Height, sps.ProfileIDC, v.width, v.height, v.profile)
		}
	}
	sps, err := ParseSPS(testsrcSPS(t))
	if err != nil {
		t.Fatal(err)
	}
	if sps.Width != testsrc.Width || sps.Height != testsrc.Height || !sps.FrameMBsOnly {
		t.Errorf("testsrc SPS: %+v", sps)
	}
	if got := sps.ProfileLevelID(); got != "42c01f" {
		t.Errorf("testsrc profile-level-id %q, want 42c01f (constrained baseline 3.1)", got)
	}
}

// bitWriter builds synthetic SPS payloads.
type bitWriter struct {
	b    []byte
	nbit int
}

func (w *bitWriter) u(n int, v uint32) {
	for i := n - 1; i >= 0; i-- {
		if w.nbit%8 == 0 {
			w.b = append(w.b, 0)
		}
		if v>>uint(i)&1 == 1 {
			w.b[len(w.b)-1] |= 1 << (7 - uint(w.nbit%8))
		}
		w.nbit++
	}
}

func (w *bitWriter) ue(v uint32) {
	x := uint64(v) + 1
	n := 0
	for y := x; y > 1; y >>= 1 {
		n++
	}
	w.u(n, 0)
	w.u(n+1, uint32(x))
}

func (w *bitWriter) se(v int32) {
	if v > 0 {
		w.ue(uint32(2*v - 1))
	} else {
		w.ue(uint32(-2 * v))
	}
}

// escape adds emulation prevention bytes.
func escape(rbsp []byte) []byte {
	var out []byte
	zeros := 0
	for _, c := range rbsp {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

func TestParseSPSSynthetic(t *testing.T) {
	// High profile, scaling matrices, POC type 1, field coding and cropping.
	w := &bitWriter{}
	w.u(8, 100) // profile_idc
	w.u(8, 0)   // constraints
	w.u(8, 40)  // level
	w.ue(3)     // sps id
	w.ue(1)     // chroma_format_idc 4:2:0
	w.ue(0)     // bit depth luma
	w.ue(0)     // bit depth chroma
	w.u(1, 0)   // qpprime
	w.u(1, 1)   // seq_scaling_matrix_present
	for i := range 8 {
		present := i%2 == 0
		w.u(1, map[bool]uint32{true: 1, false: 0}[present])
		if present {
			size := 16
			if i >= 6 {
				size = 64
			}
			for j := range size {
				if j == 5 {
					w.se(-12) // scales 8,9,11,11,12 then next_scale 0: the rest repeat
					break
				}
				w.se(int32(j % 3))
			}
		}
	}
	w.ue(0) // log2_max_frame_num_minus4
	w.ue(1) // pic_order_cnt_type 1
	w.u(1, 0)
	w.se(-2)
	w.se(3)
	w.ue(2)
	w.se(1)
	w.se(-1)
	w.ue(4)   // max_num_ref_frames
	w.u(1, 0) // gaps
	w.ue(119) // width in MBs - 1 -> 1920
	w.ue(33)  // height in map units - 1 -> 34*16*2 = 1088
	w.u(1, 0) // frame_mbs_only = 0
	w.u(1, 1) // mb_adaptive_frame_field
	w.u(1, 1) // direct_8x8
	w.u(1, 1) // cropping
	w.ue(0)
	w.ue(0)
	w.ue(0)
	w.ue(2) // bottom: 2 * (2*2) = 8 rows
	w.u(1, 0)
	w.u(1, 1) // rbsp stop bit
	nal := append([]byte{0x67}, escape(w.b)...)
	sps, err := ParseSPS(nal)
	if err != nil {
		t.Fatal(err)
	}
	if sps.Width != 1920 || sps.Height != 1080 || sps.FrameMBsOnly || sps.ID != 3 {
		t.Errorf("got %+v", sps)
	}
}

func TestParseSPSErrors(t *testing.T) {
	good := mustHex(t, spsVectors[0].hex)
	for name, b := range map[string][]byte{
		"empty":      nil,
		"short":      {0x67, 0x42},
		"not SPS":    {0x68, 0x42, 0, 0x1f, 0xff},
		"truncated":  good[:8],
		"all zeros":  {0x67, 0x42, 0, 0x1f, 0, 0, 0, 0, 0, 0},
		"huge ue":    {0x67, 0x42, 0, 0x1f, 0, 0, 0, 0, 0, 1},
		"bad sps id": {0x67, 0x42, 0, 0x1f, 0x04, 0x10},
	} {
		if _, err := ParseSPS(b); !errors.Is(err, ErrInvalidData) {
			t.Errorf("%s: error = %v, want ErrInvalidData", name, err)
		}
	}
}

func FuzzParseSPS(f *testing.F) {
	for _, v := range spsVectors {
		f.Add(mustHex(f, v.hex))
	}
	f.Add(testsrcSPS(f))
	f.Add([]byte{0x67})
	f.Fuzz(func(t *testing.T, b []byte) {
		sps, err := ParseSPS(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidData) {
				t.Fatalf("error %v does not wrap ErrInvalidData", err)
			}
			return
		}
		if sps.Width <= 0 || sps.Height <= 0 || sps.Width > maxDimension || sps.Height > maxDimension {
			t.Fatalf("accepted size %dx%d", sps.Width, sps.Height)
		}
	})
}

func collectNALs(b []byte) [][]byte {
	var out [][]byte
	for n := range AnnexBNALs(b) {
		out = append(out, n)
	}
	return out
}

func TestAnnexBNALs(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want [][]byte
	}{
		{"empty", nil, nil},
		{"no start code", []byte{1, 2, 3}, nil},
		{"4-byte", []byte{0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2}, [][]byte{{0x67, 1}, {0x68, 2}}},
		{"3-byte", []byte{0, 0, 1, 0x65, 9, 9, 0, 0, 1, 0x41, 7}, [][]byte{{0x65, 9, 9}, {0x41, 7}}},
		{"mixed and junk before", []byte{9, 9, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67}, [][]byte{{0x09, 0xf0}, {0x67}}},
		{"trailing zeros", []byte{0, 0, 1, 0x65, 1, 0, 0, 0, 0, 0, 1, 0x41, 0, 0}, [][]byte{{0x65, 1}, {0x41}}},
		{"empty NALs", []byte{0, 0, 1, 0, 0, 1, 0, 0, 1, 0x41}, [][]byte{{0x41}}},
		{"start code at end", []byte{0, 0, 1, 0x41, 0, 0, 1}, [][]byte{{0x41}}},
	} {
		got := collectNALs(tc.in)
		if !slices.EqualFunc(got, tc.want, bytes.Equal) {
			t.Errorf("%s: got %x, want %x", tc.name, got, tc.want)
		}
	}
	// Early stop.
	n := 0
	for range AnnexBNALs([]byte{0, 0, 1, 1, 0, 0, 1, 2, 0, 0, 1, 3}) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("iteration did not stop")
	}
}

func FuzzAnnexBNALs(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0})
	f.Add(testsrc.H264()[:600])
	f.Add([]byte{0, 0, 1})
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		nals := collectNALs(b)
		for _, n := range nals {
			if len(n) == 0 || n[len(n)-1] == 0 || bytes.Contains(n, startCode3) {
				t.Fatalf("bad NAL %x", n)
			}
		}
		// Joining with 4-byte start codes and splitting again is stable,
		// and the AVC form has the same NALs.
		var joined []byte
		for _, n := range nals {
			joined = appendAnnexB(joined, n)
		}
		if again := collectNALs(joined); !slices.EqualFunc(again, nals, bytes.Equal) {
			t.Fatalf("re-split differs: %x vs %x", again, nals)
		}
		avc := AnnexBToAVC(nil, b)
		var back [][]byte
		for len(avc) >= 4 {
			l := int(avc[0])<<24 | int(avc[1])<<16 | int(avc[2])<<8 | int(avc[3])
			if l > len(avc)-4 {
				t.Fatalf("AVC length %d beyond buffer", l)
			}
			back = append(back, avc[4:4+l])
			avc = avc[4+l:]
		}
		if len(avc) != 0 || !slices.EqualFunc(back, nals, bytes.Equal) {
			t.Fatalf("AVC form differs")
		}
	})
}

func TestAVCDecoderConfig(t *testing.T) {
	sps := testsrcSPS(t)
	pps := []byte{0x68, 0xcb, 0x8c, 0xb2}
	c, err := AVCDecoderConfig(sps, pps)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1, 0, byte(len(sps))}, sps...)
	want = append(want, 1, 0, 4)
	want = append(want, pps...)
	if !bytes.Equal(c, want) {
		t.Errorf("avcC %x, want %x", c, want)
	}
	if _, err := AVCDecoderConfig(pps, sps); !errors.Is(err, ErrInvalidData) {
		t.Errorf("swapped parameter sets: %v", err)
	}
	if _, err := AVCDecoderConfig(sps, nil); !errors.Is(err, ErrInvalidData) {
		t.Errorf("missing PPS: %v", err)
	}
}

func TestVP8FrameSize(t *testing.T) {
	key := []byte{0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x41}
	w, h, ok := VP8FrameSize(key)
	if !ok || w != 640 || h != 360 {
		t.Errorf("got %d x %d %v", w, h, ok)
	}
	if !VP8IsKeyframe(key) {
		t.Error("keyframe not detected")
	}
	inter := []byte{0x51, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0}
	if VP8IsKeyframe(inter) {
		t.Error("inter frame taken for a keyframe")
	}
	for name, b := range map[string][]byte{"inter": inter, "short": key[:6], "bad start code": {0x50, 1, 0, 0x9d, 0x01, 0x2b, 1, 0, 1, 0},
		"zero size": {0x50, 1, 0, 0x9d, 0x01, 0x2a, 0, 0xc0, 1, 0}} {
		if _, _, ok := VP8FrameSize(b); ok {
			t.Errorf("%s: size reported", name)
		}
	}
}

func TestOpusPacketDuration(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		want time.Duration
	}{
		{[]byte{0xfc}, 20 * time.Millisecond},              // CELT FB 20 ms, 1 frame
		{[]byte{0xf8}, 20 * time.Millisecond},              // config 31
		{[]byte{0xe0}, 2500 * time.Microsecond},            // config 28: 2.5 ms
		{[]byte{0x0b << 3}, 60 * time.Millisecond},         // SILK 60 ms
		{[]byte{0x0d<<3 | 1}, 40 * time.Millisecond},       // hybrid 20 ms x2
		{[]byte{0x01<<3 | 3, 0x03}, 60 * time.Millisecond}, // SILK 20 ms x3
	} {
		got, err := OpusPacketDuration(tc.p)
		if err != nil || got != tc.want {
			t.Errorf("%x: %v, %v; want %v", tc.p, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, {0x03}, {0x03, 0x00}, {0x0b<<3 | 3, 0x03}} {
		if _, err := OpusPacketDuration(bad); !errors.Is(err, ErrInvalidData) {
			t.Errorf("%x: error %v", bad, err)
		}
	}
}
