package control_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// A viewer's control-plane steps: channel, endpoints, ICE servers.
func Example() {
	ctx := context.Background()
	c, err := control.New(ctx, control.Config{Region: "us-west-2"})
	if err != nil {
		fmt.Println(err) // e.g. control.ErrMissingCredentials
		return
	}
	ch, err := c.ResolveChannel(ctx, "my-channel")
	switch {
	case errors.Is(err, control.ErrChannelNotFound):
		fmt.Println("create the channel first")
		return
	case errors.Is(err, control.ErrAccessDenied):
		fmt.Println("check the credentials")
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	ep, err := c.Endpoints(ctx, ch.ARN, kvsproto.RoleViewer)
	if err != nil {
		fmt.Println(err)
		return
	}
	cache := control.NewICECache(c)
	ice, err := cache.Get(ctx, ch.ARN, kvsproto.RoleViewer, ep.HTTPS, "viewer-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(ice.Servers), "ICE servers until", ice.RefreshAt)
	// Dial ep.WSS with the signaling package, signing with c.Now() and
	// c.SigV4Credentials.
}
