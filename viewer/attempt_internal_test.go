package viewer

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kvsrtc/kvsrtc/signaling"
)

func TestTakenOverAndSkewRefusals(t *testing.T) {
	cases := []struct {
		err        error
		taken, raw bool
	}{
		{&signaling.CloseError{Code: 4001, Reason: "replaced by a newer viewer connection with the same client id"}, true, false},
		{fmt.Errorf("wrapped: %w", &signaling.CloseError{Code: 1000, Reason: "Replaced"}), true, false},
		{&signaling.CloseError{Code: 1001, Reason: "idle timeout"}, false, false},
		{signaling.ErrKeepaliveTimeout, false, false},
		{&signaling.HandshakeError{StatusCode: 403, Code: "AccessDeniedException", Message: "Signature expired: 20250101T000000Z is now earlier than ..."}, false, true},
		{&signaling.HandshakeError{StatusCode: 403, Code: "AccessDeniedException", Message: "Signature not yet current: ..."}, false, true},
		{&signaling.HandshakeError{StatusCode: 403, Code: "AccessDeniedException", Message: "The request signature we calculated does not match"}, false, false},
		{&signaling.HandshakeError{StatusCode: 400, Message: "Signature expired"}, false, false},
	}
	for _, c := range cases {
		if got := isTakenOver(c.err); got != c.taken {
			t.Errorf("isTakenOver(%v) = %v", c.err, got)
		}
		if got := isSkewRefusal(c.err); got != c.raw {
			t.Errorf("isSkewRefusal(%v) = %v", c.err, got)
		}
	}
}

func TestOfferAndAnswerChecks(t *testing.T) {
	good := "v=0\r\na=fingerprint:sha-256 AB:CD\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=recvonly\r\n"
	if err := checkOffer(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF\r\n"} {
		if err := checkOffer(bad); !errors.Is(err, errBadOffer) {
			t.Errorf("checkOffer(%q) = %v", bad, err)
		}
	}
	if fp := fingerprint(good); fp != "sha-256 ab:cd" {
		t.Fatalf("fingerprint %q", fp)
	}
	if err := checkAnswer("v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n"); !errors.Is(err, errBadAnswer) {
		t.Fatal(err)
	}
	if c, fatal := classify(fmt.Errorf("x: %w", ErrClientIDTakenOver)); c != CauseClientIDReuse || fatal {
		t.Fatalf("takeover: %s %v", c, fatal)
	}
	if c, fatal := classify(fmt.Errorf("x: %w", errBadOffer)); c != CauseBadOffer || !fatal {
		t.Fatalf("bad offer: %s %v", c, fatal)
	}
}
