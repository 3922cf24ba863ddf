package viewer

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/retry"
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
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	good := head + "a=fingerprint:sha-256 AB:CD\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=recvonly\r\n"
	if err := checkOffer(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", head + "m=video 0 UDP/TLS/RTP/SAVPF 96\r\n", head + "m=video 9 UDP/TLS/RTP/SAVPF\r\n", "not an SDP"} {
		if err := checkOffer(bad); !errors.Is(err, errBadOffer) {
			t.Errorf("checkOffer(%q) = %v", bad, err)
		}
	}
	if fp := fingerprint(good); fp != "sha-256 ab:cd" {
		t.Fatalf("fingerprint %q", fp)
	}
	media := head + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256 EF:01\r\n"
	if fp := fingerprint(media); fp != "sha-256 ef:01" {
		t.Fatalf("media-level fingerprint %q", fp)
	}
	if err := checkAnswer(media); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{head + "m=video 0 UDP/TLS/RTP/SAVPF 96\r\n", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "not an SDP"} {
		if err := checkAnswer(bad); !errors.Is(err, errBadAnswer) {
			t.Errorf("checkAnswer(%q) = %v", bad, err)
		}
	}
	if c, fatal := classify(fmt.Errorf("x: %w", ErrClientIDTakenOver)); c != CauseClientIDReuse || fatal {
		t.Fatalf("takeover: %s %v", c, fatal)
	}
	if c, fatal := classify(fmt.Errorf("x: %w", errBadOffer)); c != CauseBadOffer || !fatal {
		t.Fatalf("bad offer: %s %v", c, fatal)
	}
}

// The attempt's signaling policy on top of signaling.Session (whose own
// synctest tests cover the renewal mechanics): the first connection is not
// retried, what retrying cannot fix ends the attempt, and so do three
// failed renewals before media flows; throttling backs off longer.
func TestAttemptSignalingPolicy(t *testing.T) {
	p, err := RetryPolicy{BackoffBase: 20 * time.Millisecond, BackoffCap: 100 * time.Millisecond}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := &Session{cfg: Config{Retry: p}}
	a := &attemptRun{s: s}
	lost := signaling.ErrKeepaliveTimeout
	if !a.giveUp(lost, 1) {
		t.Fatal("a failed first connection must end the attempt")
	}
	a.sig.dialed.Store(true)
	if a.giveUp(lost, 1) || a.giveUp(lost, 2) || !a.giveUp(lost, 3) {
		t.Fatal("before media flows, the third failed renewal ends the attempt")
	}
	if !a.giveUp(fmt.Errorf("renew: %w", signaling.ErrNotFound), 1) {
		t.Fatal("a deleted channel ends the attempt")
	}
	a.setStreaming()
	if a.giveUp(lost, 10) {
		t.Fatal("while media flows, renewals are retried")
	}
	a.giveUp(lost, 1)
	plain := a.renewBackoff(1)
	a.giveUp(signaling.ErrThrottled, 1)
	if throttled := a.renewBackoff(1); throttled < retry.ThrottledWait || throttled < plain {
		t.Fatalf("throttled backoff %v, plain %v", throttled, plain)
	}
}
