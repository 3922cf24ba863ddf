package cause_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// TestEveryCauseHasWording: every cause has advice, parses back from its
// name, and the blog post's nine reasons are each one cause.
func TestEveryCauseHasWording(t *testing.T) {
	all := cause.All()
	if len(all) < 9 {
		t.Fatalf("only %d causes: %v", len(all), all)
	}
	seen := map[cause.Cause]bool{}
	seeds := map[int]cause.Cause{}
	for _, c := range all {
		if c == cause.None || seen[c] {
			t.Errorf("cause %q is empty or listed twice", c)
		}
		seen[c] = true
		if c.Advice() == "" {
			t.Errorf("cause %s has no advice", c)
		}
		if p, err := cause.Parse(c.String()); err != nil || p != c {
			t.Errorf("Parse(%q) = %q, %v", c, p, err)
		}
		if n, text := c.SeedReason(); n != 0 {
			if text == "" || seeds[n] != "" {
				t.Errorf("cause %s: the post's reason %d has no wording or two causes", c, n)
			}
			seeds[n] = c
		}
	}
	for n := 1; n <= 9; n++ {
		if seeds[n] == "" {
			t.Errorf("the post's reason %d has no cause", n)
		}
		if all[n-1] != seeds[n] {
			t.Errorf("All()[%d] = %s, want the post's reason %d (%s) first", n-1, all[n-1], n, seeds[n])
		}
	}
	if cause.Known(cause.None) || cause.None.Advice() != "" {
		t.Error("None is a cause")
	}
	if _, err := cause.Parse("no-such-cause"); err == nil {
		t.Error("Parse accepted an unknown cause")
	}
}

// TestClassify covers every sentinel and typed error the classification
// knows, wrapped as callers wrap them.
func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("attempt 2: %w", err) }
	validation := kvsproto.ValidateClientID("AWS_reserved")
	cases := []struct {
		name  string
		err   error
		want  cause.Cause
		fatal bool
	}{
		{"nil", nil, cause.None, false},
		{"answer timeout", wrap(cause.ErrAnswerTimeout), cause.NoAnswer, false},
		{"no media", wrap(cause.ErrNoMedia), cause.NoMedia, false},
		{"media stalled", wrap(cause.ErrMediaStalled), cause.MasterGone, false},
		{"ICE failed", wrap(cause.ErrICEFailed), cause.NetworkChange, false},
		{"no relay", wrap(cause.ErrNoRelay), cause.ICEExpired, false},
		{"bad offer", wrap(cause.ErrBadOffer), cause.BadOffer, true},
		{"bad answer", wrap(cause.ErrBadAnswer), cause.BadOffer, true},
		{"taken over", wrap(cause.ErrClientIDTakenOver), cause.ClientIDReuse, false},
		{"replaced close", wrap(&signaling.CloseError{Code: cause.CloseCodeReplaced}), cause.ClientIDReuse, false},
		{"replaced reason", &signaling.CloseError{Code: 1000, Reason: "Replaced by a newer connection"}, cause.ClientIDReuse, false},
		{"other close", &signaling.CloseError{Code: 1001, Reason: "idle"}, cause.SignalingLost, false},
		{"offer refused", wrap(&cause.StatusError{Code: 400, Type: "InvalidArgumentException", Description: "bad SDP"}), cause.BadOffer, true},
		{"offer throttled", &cause.StatusError{Code: 400, Type: "ClientLimitExceededException"}, cause.Throttled, false},
		{"keepalive", wrap(signaling.ErrKeepaliveTimeout), cause.SignalingLost, false},
		{"control skew", &control.APIError{Op: "DescribeSignalingChannel", Code: "InvalidSignatureException", Message: "Signature expired: 20250101T000000Z is now earlier than 20250101T000500Z"}, cause.ClockSkew, true},
		{"signaling skew", &signaling.HandshakeError{StatusCode: 403, Message: "Signature not yet current: 20990101T000000Z"}, cause.ClockSkew, true},
		{"access denied", &control.APIError{Op: "GetSignalingChannelEndpoint", Code: "AccessDeniedException"}, cause.Credentials, true},
		{"forbidden", &signaling.HandshakeError{StatusCode: 403, Message: "The request signature we calculated does not match"}, cause.Credentials, true},
		{"no credentials", wrap(control.ErrMissingCredentials), cause.Credentials, true},
		{"no region", wrap(control.ErrMissingRegion), cause.Config, true},
		{"not found", &control.APIError{Op: "DescribeSignalingChannel", Code: "ResourceNotFoundException"}, cause.ChannelNotFound, true},
		{"deleting", wrap(control.ErrChannelDeleting), cause.ChannelNotFound, true},
		{"signaling not found", &signaling.HandshakeError{StatusCode: 404}, cause.ChannelNotFound, true},
		{"full", &signaling.HandshakeError{StatusCode: 400, Code: "ClientLimitExceededException", Message: "Exceeded the maximum number of viewers"}, cause.ChannelFull, true},
		{"signaling throttled", &signaling.HandshakeError{StatusCode: 400, Code: "ClientLimitExceededException", Message: "rate exceeded"}, cause.Throttled, false},
		{"control throttled", &control.APIError{Op: "GetIceServerConfig", Code: "ClientLimitExceededException"}, cause.Throttled, false},
		{"invalid client id", wrap(validation), cause.ClientID, true},
		{"bad request", &signaling.HandshakeError{StatusCode: 400, Code: "InvalidArgumentException"}, cause.ClientID, true},
		{"invalid argument", &control.APIError{Op: "DescribeSignalingChannel", Code: "InvalidArgumentException"}, cause.Config, true},
		{"service error", &control.APIError{Op: "DescribeSignalingChannel", Code: "InternalFailure", StatusCode: 500}, cause.ServiceError, false},
		{"bad response", wrap(control.ErrBadResponse), cause.ServiceError, false},
		{"unknown", errors.New("something else"), cause.SignalingLost, false},
	}
	if validation == nil {
		t.Fatal("AWS_reserved is a valid client id")
	}
	for _, c := range cases {
		if got, fatal := cause.Classify(c.err); got != c.want || fatal != c.fatal {
			t.Errorf("%s: Classify(%v) = %s, %v; want %s, %v", c.name, c.err, got, fatal, c.want, c.fatal)
		}
	}
}

// TestClassifyUnreachable: a refused loopback port is worth retrying, an
// untrusted certificate is not.
func TestClassifyUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String() + "/"
	_ = l.Close()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	srv.StartTLS()
	defer srv.Close()
	for _, c := range []struct {
		url   string
		fatal bool
	}{{refused, false}, {srv.URL + "/", true}} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{}).Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			t.Fatalf("GET %s answered", c.url)
		}
		ue := control.Unreachable(err, "KVS control plane", "DescribeSignalingChannel", "")
		if ue == nil {
			t.Fatalf("GET %s: %v is not unreachable", c.url, err)
		}
		if got, fatal := cause.Classify(fmt.Errorf("resolve: %w", ue)); got != cause.Unreachable || fatal != c.fatal {
			t.Errorf("GET %s (%s): Classify = %s, %v; want %s, %v", c.url, ue.Failure, got, fatal, cause.Unreachable, c.fatal)
		}
	}
}
