package control_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsrtc/kvsrtc/control"
)

// TestUnreachable: a control plane that gives no answer is an
// *UnreachableError (not a bare SDK error); a request that times out is
// bounded by RequestTimeout and not retried by the SDK.
func TestUnreachable(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: the kernel completes the handshake, nobody answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	for _, tc := range []struct {
		name, endpoint, want string
		max                  time.Duration
	}{
		{"refused", "http://" + closed, "refused", 10 * time.Second},
		{"timeout", "http://" + silent.Addr().String(), "timeout", 2 * time.Second}, // one 300 ms request, not three
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl, err := control.New(t.Context(), control.Config{Region: "us-west-2", EndpointURL: tc.endpoint, STUNURL: control.STUNNone,
				RequestTimeout: 300 * time.Millisecond, Credentials: credentials.NewStaticCredentialsProvider("AKIDKVSRTCTEST", "secret", "")})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = ctl.ResolveChannel(t.Context(), "cam")
			took := time.Since(start)
			var ue *control.UnreachableError
			if !errors.Is(err, control.ErrUnreachable) || !errors.As(err, &ue) || string(ue.Failure) != tc.want ||
				ue.Endpoint != tc.endpoint || ue.Op != "DescribeSignalingChannel" || ue.Advice() == "" {
				t.Fatalf("got %v", err)
			}
			if took > tc.max {
				t.Errorf("took %v", took)
			}
			_, err = ctl.ICEServers(t.Context(), "arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam/1", tc.endpoint, "")
			if !errors.As(err, &ue) || string(ue.Failure) != tc.want || ue.Op != "GetIceServerConfig" {
				t.Fatalf("GetIceServerConfig: %v", err)
			}
		})
	}
}
