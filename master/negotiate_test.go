package master

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// sdpOffer builds a small offer from media sections ("m=" line plus
// attribute lines).
func sdpOffer(sections ...string) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
	for _, s := range sections {
		for line := range strings.SplitSeq(s, "\n") {
			b.WriteString(strings.TrimSpace(line) + "\r\n")
		}
	}
	return b.String()
}

const (
	videoH264 = `m=video 9 UDP/TLS/RTP/SAVPF 102 103
		c=IN IP4 0.0.0.0
		a=recvonly
		a=rtpmap:102 H264/90000
		a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
		a=rtpmap:103 rtx/90000
		a=fmtp:103 apt=102`
	videoH264Mode0 = `m=video 9 UDP/TLS/RTP/SAVPF 102
		c=IN IP4 0.0.0.0
		a=rtpmap:102 h264/90000
		a=fmtp:102 profile-level-id=42e01f`
	videoVP8 = `m=video 9 UDP/TLS/RTP/SAVPF 96
		c=IN IP4 0.0.0.0
		a=sendrecv
		a=rtpmap:96 VP8/90000`
	videoVP8Sendonly = `m=video 9 UDP/TLS/RTP/SAVPF 96
		c=IN IP4 0.0.0.0
		a=sendonly
		a=rtpmap:96 VP8/90000`
	videoRejected = `m=video 0 UDP/TLS/RTP/SAVPF 102
		c=IN IP4 0.0.0.0
		a=rtpmap:102 H264/90000
		a=fmtp:102 packetization-mode=1`
	audioOpus = `m=audio 9 UDP/TLS/RTP/SAVPF 111
		c=IN IP4 0.0.0.0
		a=recvonly
		a=rtpmap:111 opus/48000/2`
)

func TestSummarizeOffer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sdp     string
		codec   rtc.Codec
		wantErr error // from negotiationError
		offered []string
		audio   bool
	}{
		{"h264", sdpOffer(videoH264, audioOpus), rtc.CodecH264, nil, []string{"H264"}, true},
		{"h264 no audio", sdpOffer(videoH264), rtc.CodecH264, nil, []string{"H264"}, false},
		{"vp8 only for h264", sdpOffer(videoVP8, audioOpus), rtc.CodecH264, ErrCodecMismatch, []string{"VP8"}, true},
		{"vp8", sdpOffer(videoVP8), rtc.CodecVP8, nil, []string{"VP8"}, false},
		{"h264 only for vp8", sdpOffer(videoH264), rtc.CodecVP8, ErrCodecMismatch, []string{"H264"}, false},
		{"h264 mode 0", sdpOffer(videoH264Mode0), rtc.CodecH264, ErrCodecMismatch, []string{"H264"}, false},
		{"sendonly video", sdpOffer(videoVP8Sendonly), rtc.CodecVP8, ErrBadOffer, nil, false},
		{"rejected video", sdpOffer(videoRejected, audioOpus), rtc.CodecH264, ErrBadOffer, nil, true},
		{"audio only", sdpOffer(audioOpus), rtc.CodecH264, ErrBadOffer, nil, true},
		{"two video sections", sdpOffer(videoVP8, videoH264), rtc.CodecH264, nil, []string{"H264", "VP8"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := summarizeOffer(tc.sdp, tc.codec)
			if err != nil {
				t.Fatal(err)
			}
			ne := s.negotiationError("v1", tc.codec)
			switch {
			case tc.wantErr == nil && ne != nil:
				t.Fatalf("unexpected error %v", ne)
			case tc.wantErr != nil && (ne == nil || !errors.Is(ne, tc.wantErr)):
				t.Fatalf("error %v; want %v", ne, tc.wantErr)
			}
			if ne != nil && (ne.ClientID != "v1" || ne.Want != tc.codec.String() || ne.Detail == "") {
				t.Errorf("error fields %+v", ne)
			}
			if !slices.Equal(s.video, tc.offered) || s.audio != tc.audio {
				t.Errorf("summary %+v; want video %v audio %v", s, tc.offered, tc.audio)
			}
		})
	}
	s, err := summarizeOffer(sdpOffer(videoH264+"\na=ice-ufrag:abcd"), rtc.CodecH264)
	if err != nil || s.ufrag != "abcd" {
		t.Errorf("ufrag %q, %v", s.ufrag, err)
	}
	if _, err := summarizeOffer("not sdp", rtc.CodecH264); err == nil {
		t.Error("garbage parsed as SDP")
	}
}

func FuzzSummarizeOffer(f *testing.F) {
	for _, s := range []string{sdpOffer(videoH264, audioOpus), sdpOffer(videoVP8), sdpOffer(videoH264Mode0), sdpOffer(videoRejected), "v=0\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, c := range []rtc.Codec{rtc.CodecH264, rtc.CodecVP8} {
			s, err := summarizeOffer(raw, c)
			if err != nil {
				continue
			}
			if ne := s.negotiationError("v", c); (ne == nil) != s.videoOK {
				t.Fatalf("videoOK %v but error %v", s.videoOK, ne)
			}
		}
	})
}

func TestBackoff(t *testing.T) {
	for n := 1; n <= 12; n++ {
		base := backoffBase << min(n-1, 20)
		lo := min(base, backoffCap)
		for range 50 {
			d := backoff(n)
			if d < lo || d > backoffCap || (base < backoffCap/2 && d >= 2*base) {
				t.Fatalf("backoff(%d) = %v; want in [%v, %v)", n, d, lo, min(2*base, backoffCap))
			}
		}
	}
	if backoff(1) >= 200*time.Millisecond {
		t.Error("the first retry should come within 200 ms")
	}
}

func TestPacketizationMode(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "0",
		"packetization-mode=1": "1",
		"profile-level-id=42e01f; packetization-mode=1": "1",
		"PACKETIZATION-MODE=0;x=1":                      "0",
	} {
		if got := packetizationMode(in); got != want {
			t.Errorf("packetizationMode(%q) = %q; want %q", in, got, want)
		}
	}
}
