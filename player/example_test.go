package player_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

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

// Mount the session API and the <kvs-viewer> module under /cams/ of your
// own app, behind your own sign-in: the hook says which channels the
// request's user may watch. Pages then use
// <script type="module" src="/cams/kvs-viewer.js"></script> and
// <kvs-viewer channel="front-door"></kvs-viewer> (see docs/EMBED.md).
func ExampleNewHandler() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctl, err := control.New(ctx, control.Config{})
	if err != nil {
		log.Fatal(err)
	}
	cams, err := player.NewHandler(player.HandlerConfig{
		Control:  ctl,
		Channels: []string{"front-door", "garage"},
		Authorize: func(r *http.Request) ([]string, error) {
			c, err := r.Cookie("my_app_session") // your own sign-in
			if err != nil || c.Value != "alice-session" {
				return nil, player.ErrUnauthorized
			}
			return []string{"front-door"}, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = cams.Run(ctx) }()
	mux := http.NewServeMux()
	mux.Handle("/cams/", http.StripPrefix("/cams", cams))
	// ... the app's own pages on mux ...
	srv := &http.Server{Addr: "127.0.0.1:8090", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
