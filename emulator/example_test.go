package emulator_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/kvsrtc/kvsrtc/emulator"
)

// Start a service on a free loopback port, create a channel and list the
// environment that points AWS tools at it.
func ExampleStart() {
	srv, err := emulator.Start(context.Background(), emulator.Config{TURNDisabled: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	arn, err := srv.CreateChannel(context.Background(), "demo", 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(strings.HasPrefix(arn, "arn:aws:kinesisvideo:us-west-2:123456789012:channel/demo/"))
	for _, kv := range srv.Env() {
		k, _, _ := strings.Cut(kv, "=")
		fmt.Println(k)
	}
	// Output:
	// true
	// AWS_ENDPOINT_URL_KINESIS_VIDEO
	// AWS_ENDPOINT_URL_KINESIS_VIDEO_SIGNALING
	// AWS_ENDPOINT_URL_KINESIS_VIDEO_ARCHIVED_MEDIA
	// AWS_ENDPOINT_URL_KINESIS_VIDEO_WEBRTC_STORAGE
	// AWS_REGION
	// AWS_DEFAULT_REGION
	// AWS_ACCESS_KEY_ID
	// AWS_SECRET_ACCESS_KEY
}

func ExampleParseFault() {
	f, err := emulator.ParseFault("drop,action=answer,count=2,channel=demo")
	fmt.Println(f.Kind, f.Action, f.Count, f.Channel, err)
	_, err = emulator.ParseFault("drop,speed=fast")
	fmt.Println(err)
	// Output:
	// drop SDP_ANSWER 2 demo <nil>
	// emulator: invalid fault "drop,speed=fast": key "speed" does not apply to drop; it takes channel, action, count, target
}
