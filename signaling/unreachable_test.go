package signaling

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Unresolvable host names in these tests have a 64-character label: Go's
// resolver refuses such a name as "no such host" before sending any query,
// so the tests send no DNS traffic off the machine.

// TestDialUnreachable: a WebSocket dial that gets no answer is an
// *UnreachableError naming the endpoint (without the presigned query),
// what failed and the fix.
func TestDialUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	for _, tc := range []struct {
		name     string
		endpoint string
		timeout  time.Duration
		want     string
	}{
		{"refused", "ws://" + addr + "/", 0, "refused"},
		{"dns", "wss://kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid/", 0, "dns"},
		{"timeout", "ws://" + silent.Addr().String() + "/", 300 * time.Millisecond, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, tc.endpoint, kvsproto.RoleViewer, "viewer-1")
			cfg.HandshakeTimeout = tc.timeout
			_, err := Dial(t.Context(), cfg)
			var ue *UnreachableError
			if !errors.Is(err, ErrUnreachable) || !errors.As(err, &ue) || string(ue.Failure) != tc.want {
				t.Fatalf("got %v", err)
			}
			if want := strings.TrimSuffix(tc.endpoint, "/"); ue.Endpoint != want {
				t.Fatalf("endpoint %q, want %q", ue.Endpoint, want)
			}
			if strings.Contains(err.Error(), "X-Amz-") || ue.Advice() == "" {
				t.Fatalf("error %q, advice %q", err, ue.Advice())
			}
		})
	}
}
