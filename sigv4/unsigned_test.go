package sigv4_test

import (
	"errors"
	"testing"

	"github.com/kvsrtc/kvsrtc/sigv4"
)

// TestVerifyRequestRefusesUnsignedPayload: KVS signs request bodies, so a
// request whose X-Amz-Content-Sha256 is UNSIGNED-PAYLOAD (a body the
// signature does not cover) is refused unless the Verifier allows it.
func TestVerifyRequestRefusesUnsignedPayload(t *testing.T) {
	body := []byte(`{"ChannelName":"test-channel"}`)
	r := newPost(t, "/describeSignalingChannel", body)
	r.Header.Set("X-Amz-Content-Sha256", sigv4.UnsignedPayload)
	signLike(t, r, body, testCreds, testDate, []string{"host", "x-amz-content-sha256", "x-amz-date"}, sigv4.UnsignedPayload)

	_, err := staticVerifier(testCreds, testDate).VerifyRequest(r, body)
	var se *sigv4.Error
	if !errors.Is(err, sigv4.ErrMalformed) || !errors.As(err, &se) || se.HTTPStatus() != 400 {
		t.Fatalf("UNSIGNED-PAYLOAD: got %v, want a 400 ErrMalformed", err)
	}
	// Another body under the same signature is what an unsigned payload
	// would let through.
	v := staticVerifier(testCreds, testDate)
	v.AllowUnsignedPayload = true
	if _, err := v.VerifyRequest(r, []byte(`{"ChannelName":"other"}`)); err != nil {
		t.Fatalf("with AllowUnsignedPayload: %v", err)
	}
}
