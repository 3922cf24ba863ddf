package signaling_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// A viewer sends its offer and handles the answer and the master's
// candidates until the connection ends.
func Example() {
	ctx := context.Background()
	c, err := signaling.Dial(ctx, signaling.Config{
		Endpoint:    "wss://v-1234abcd.kinesisvideo.us-west-2.amazonaws.com",
		ChannelARN:  "arn:aws:kinesisvideo:us-west-2:123456789012:channel/demo/1700000000000",
		Role:        kvsproto.RoleViewer,
		ClientID:    "viewer-1",
		Region:      "us-west-2",
		Credentials: signaling.StaticCredentials(sigv4.Credentials{AccessKeyID: "AKID", SecretAccessKey: "SECRET"}),
	})
	var he *signaling.HandshakeError
	switch {
	case errors.Is(err, signaling.ErrForbidden):
		fmt.Println("credentials or clock refused")
		return
	case errors.As(err, &he):
		fmt.Println("refused:", he.StatusCode, he.Code)
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.SendOffer(ctx, kvsproto.SessionDescription{Type: "offer", SDP: "v=0..."}, "", ""); err != nil {
		fmt.Println(err)
		return
	}
	for ev := range c.Events() {
		switch ev.Type {
		case kvsproto.MessageSDPAnswer:
			fmt.Println("answer from the master")
		case kvsproto.MessageICECandidate:
			fmt.Println("candidate", ev.Candidate.Candidate)
		case kvsproto.MessageGoAway:
			fmt.Println("the service asks to reconnect")
		}
	}
	fmt.Println("ended:", c.Err())
}
