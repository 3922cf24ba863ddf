package rtc

import (
	"strings"
	"testing"
)

func TestWithoutReceiving(t *testing.T) {
	base := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:96 VP8/90000\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=%s\r\na=rtpmap:111 opus/48000/2\r\n"
	for _, tc := range []struct{ in, want string }{
		{"sendrecv", "sendonly"},
		{"recvonly", "inactive"},
		{"sendonly", "sendonly"},
		{"inactive", "inactive"},
	} {
		in := strings.Replace(base, "%s", tc.in, 1)
		out, err := WithoutReceiving(in, "audio")
		if err != nil {
			t.Fatal(err)
		}
		sum, err := Summarize(out)
		if err != nil {
			t.Fatal(err)
		}
		if got := sum.Media[1].Direction; got != tc.want {
			t.Errorf("audio %s: got %s, want %s", tc.in, got, tc.want)
		}
		if got := sum.Media[0].Direction; got != "sendrecv" {
			t.Errorf("audio %s: the video section changed to %s", tc.in, got)
		}
	}
	if _, err := WithoutReceiving("not sdp", "audio"); err == nil {
		t.Error("an unparsable SDP gave no error")
	}
}

func TestRejecting(t *testing.T) {
	in := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sctp-port:5000\r\n"
	out, err := Rejecting(in, "application")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Summarize(out)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Media[1].Port != 0 || sum.Media[0].Port != 9 {
		t.Fatalf("ports %d, %d; want 9, 0", sum.Media[0].Port, sum.Media[1].Port)
	}
}
