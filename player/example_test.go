package player_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/player"
)

// Serve the player for two cameras on port 8080, behind a token; the AWS
// credentials come from the standard chain and stay in this process.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctl, err := control.New(ctx, control.Config{})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := player.New(player.Config{
		Control:  ctl,
		Channels: []string{"front-door", "garage"},
		Auth:     os.Getenv("KVSRTC_AUTH"),
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	// A one-time sign-in link; the browser then keeps a cookie.
	fmt.Println("open http://127.0.0.1:8080/?code=" + srv.NewSignInCode(0))
	if err := srv.Serve(ctx, ln); err != nil {
		log.Fatal(err)
	}
}
