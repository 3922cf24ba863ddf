package rtc

import (
	"errors"
	"strings"
	"testing"
)

// go2rtcLikeOffer lists H.264 baseline first and constrained baseline
// second, as go2rtc and some cameras do, plus packetization mode 0.
const go2rtcLikeOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 95 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n" +
	"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=rtpmap:95 H264/90000\r\na=fmtp:95 packetization-mode=0;profile-level-id=42e01f\r\n" +
	"a=rtpmap:96 H264/90000\r\na=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n" +
	"a=rtpmap:97 H264/90000\r\na=fmtp:97 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n" +
	"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 0 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\n" +
	"a=rtpmap:0 PCMU/8000\r\na=rtpmap:111 opus/48000/2\r\n"

func TestWithTrickle(t *testing.T) {
	out, err := WithTrickle(go2rtcLikeOffer)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "a=ice-options:trickle\r\n") {
		t.Fatalf("no trickle attribute:\n%s", out)
	}
	// The session-level attribute comes before the first m= line.
	if strings.Index(out, "a=ice-options:trickle") > strings.Index(out, "m=video") {
		t.Errorf("trickle attribute is not at session level:\n%s", out)
	}
	again, err := WithTrickle(out)
	if err != nil || again != out {
		t.Errorf("WithTrickle is not idempotent (err %v)", err)
	}
	// A media-level attribute (as browsers write it) counts.
	browser := strings.Replace(go2rtcLikeOffer, "a=mid:0\r\n", "a=mid:0\r\na=ice-options:trickle renomination\r\n", 1)
	if got, _ := WithTrickle(browser); got != browser {
		t.Errorf("added a second trickle attribute to an SDP that had one")
	}
	if _, err := WithTrickle("not an sdp"); err == nil {
		t.Error("no error for an unparsable SDP")
	}
}

func TestSummarize(t *testing.T) {
	s, err := Summarize(go2rtcLikeOffer)
	if err != nil {
		t.Fatal(err)
	}
	if s.Trickle || s.Candidates != 1 || len(s.Media) != 2 {
		t.Fatalf("summary %+v", s)
	}
	v := s.Media[0]
	if v.Kind != "video" || v.Mid != "0" || v.Direction != "recvonly" || len(v.Codecs) != 3 || v.Codecs[2].PayloadType != 97 {
		t.Errorf("video %+v", v)
	}
	if a := s.Media[1]; len(a.Codecs) != 2 || a.Codecs[1].MimeType != "audio/opus" || a.Codecs[1].Channels != 2 {
		t.Errorf("audio %+v", a)
	}
	if s.CandidateTypes["host"] != 1 || len(s.CandidateTypes) != 1 {
		t.Errorf("candidate types %v", s.CandidateTypes)
	}
	if a, ok := s.Section("audio"); !ok || a.Mid != "1" {
		t.Errorf("Section(audio) = %+v, %v", a, ok)
	}
	if _, ok := s.Section("application"); ok {
		t.Error("Section(application) found a section the SDP does not have")
	}
}

func TestCandidateType(t *testing.T) {
	for in, want := range map[string]string{
		"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host":                                "host",
		"2 1 udp 1694498815 198.51.100.7 6000 typ srflx raddr 0.0.0.0 rport 6000":             "srflx",
		"candidate:3 1 udp 16777215 127.0.0.1 7000 typ relay raddr 127.0.0.1 rport 40000 x y": "relay",
		"candidate:garbage": "unknown",
		"":                  "unknown",
	} {
		if got := CandidateType(in); got != want {
			t.Errorf("CandidateType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAnswerCodec(t *testing.T) {
	s, err := Summarize(go2rtcLikeOffer)
	if err != nil {
		t.Fatal(err)
	}
	h264, _ := Capability(CodecH264)
	c, err := AnswerCodec(s, "0", h264)
	if err != nil || c.PayloadType != 97 {
		t.Errorf("H.264: %v, %v; want payload type 97 (constrained baseline, mode 1)", c.PayloadType, err)
	}
	// Only baseline in mode 1: still usable (a baseline decoder decodes
	// constrained baseline).
	only96 := strings.ReplaceAll(strings.Replace(go2rtcLikeOffer, " 95 96 97\r\n", " 96\r\n", 1), "profile-level-id=42e01f\r\n", "x=1\r\n")
	s2, _ := Summarize(only96)
	if c, err := AnswerCodec(s2, "0", h264); err != nil || c.PayloadType != 96 {
		t.Errorf("baseline only: %v, %v", c.PayloadType, err)
	}
	opus, _ := Capability(CodecOpus)
	if c, err := AnswerCodec(s, "1", opus); err != nil || c.PayloadType != 111 || c.Channels != 2 {
		t.Errorf("opus: %+v, %v", c, err)
	}
	vp8, _ := Capability(CodecVP8)
	if _, err := AnswerCodec(s, "0", vp8); !errors.Is(err, ErrNoCommonCodec) || !strings.Contains(err.Error(), "VP8") {
		t.Errorf("VP8 against an H.264-only offer: %v", err)
	}
	if _, err := AnswerCodec(s, "7", h264); !errors.Is(err, ErrNoCommonCodec) {
		t.Errorf("unknown mid: %v", err)
	}
	mode0 := strings.Replace(go2rtcLikeOffer, " 95 96 97\r\n", " 95\r\n", 1)
	s3, _ := Summarize(mode0)
	if _, err := AnswerCodec(s3, "0", h264); !errors.Is(err, ErrNoCommonCodec) || !strings.Contains(err.Error(), "packetization-mode=1") {
		t.Errorf("mode 0 only: %v", err)
	}
}
