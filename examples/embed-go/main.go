// Command embed-go is a small web app of its own (a toy sign-in, its own
// pages) that shows cameras with kvsrtc's <kvs-viewer> element: it mounts
// the session API (player.Handler) under /cams/ and protects it with its own
// sign-in through the handler's Authorize hook. The AWS credentials (the
// standard chain) stay in this process; the page gets presigned URLs only.
//
//	go run ./examples/embed-go --channel front-door --channel back-yard
//
// Users (--user NAME=CHANNEL,CHANNEL; default: alice may watch every
// channel, bob only the last) sign in by name: it is a toy, the point is
// that the app decides. See docs/EMBED.md.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/player"
)

//go:embed static
var static embed.FS

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed-go:", err)
		os.Exit(1)
	}
}

func run() error {
	var channels, userFlags listFlag
	listen := flag.String("listen", "127.0.0.1:8090", "address of the app")
	loopback := flag.Bool("loopback-only", false, "browsers send only loopback ICE candidates (a camera on this machine: kvsrtc master --loopback-only)")
	flag.Var(&channels, "channel", "a camera's signaling channel (repeatable; default front-door and back-yard)")
	flag.Var(&userFlags, "user", "NAME=CHANNEL,CHANNEL: a user of the toy sign-in and the channels they may watch (repeatable)")
	flag.Parse()
	if len(channels) == 0 {
		channels = listFlag{"front-door", "back-yard"}
	}
	users := map[string][]string{}
	for _, u := range userFlags {
		name, chans, ok := strings.Cut(u, "=")
		if !ok || name == "" {
			return fmt.Errorf("--user %q: give NAME=CHANNEL,CHANNEL", u)
		}
		users[name] = strings.Split(chans, ",")
	}
	if len(users) == 0 {
		users["alice"] = channels
		users["bob"] = channels[len(channels)-1:]
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctl, err := control.New(ctx, control.Config{})
	if err != nil {
		return err
	}
	hc, err := caClient()
	if err != nil {
		return err
	}
	app := &app{users: users, channels: channels, key: make([]byte, 32)}
	_, _ = rand.Read(app.key)
	// The kvsrtc handler, behind the app's own sign-in: the hook gets each
	// API request and says which channels its user may watch.
	cams, err := player.NewHandler(player.HandlerConfig{
		Control: ctl, Channels: channels, LoopbackOnly: *loopback, HTTPClient: hc,
		Authorize: func(r *http.Request) ([]string, error) {
			user := app.user(r)
			if user == "" {
				return nil, player.ErrUnauthorized
			}
			return users[user], nil
		},
	})
	if err != nil {
		return err
	}
	go func() { _ = cams.Run(ctx) }()

	mux := http.NewServeMux()
	mux.Handle("/cams/", http.StripPrefix("/cams", cams))
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static", http.FileServerFS(sub)))
	mux.HandleFunc("GET /{$}", app.home)
	mux.HandleFunc("GET /login", app.loginPage)
	mux.HandleFunc("POST /login", app.login)
	mux.HandleFunc("POST /logout", app.logout)

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: secure(mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 20 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Printf("embed-go: open http://%s/ and sign in as %s\n", ln.Addr(), strings.Join(slices.Sorted(maps.Keys(users)), " or "))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// caClient trusts AWS_CA_BUNDLE too (kvsrtc local --tls), for the
// handler's own probe of the signaling endpoint; nil without it.
func caClient() (*http.Client, error) {
	path := os.Getenv("AWS_CA_BUNDLE")
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("AWS_CA_BUNDLE %s holds no PEM certificate", path)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// secure sets the app's security headers: a strict Content-Security-Policy
// (no inline script or style, no eval) under which <kvs-viewer> works.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self' wss: ws:; media-src 'self' blob:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// app is the toy app: users sign in by name and carry an HMAC-signed cookie.
type app struct {
	users    map[string][]string
	channels []string
	key      []byte
}

const cookieName = "embed_go_user"

func (a *app) sign(user string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(user))
	return user + "." + hex.EncodeToString(m.Sum(nil))
}

// user is the signed-in user of r, or "".
func (a *app) user(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	user, _, _ := strings.Cut(c.Value, ".")
	if _, ok := a.users[user]; !ok || !hmac.Equal([]byte(c.Value), []byte(a.sign(user))) {
		return ""
	}
	return user
}

var pages = template.Must(template.ParseFS(static, "static/*.html"))

func (a *app) home(w http.ResponseWriter, r *http.Request) {
	user := a.user(r)
	if user == "" {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	_ = pages.ExecuteTemplate(w, "home.html", map[string]any{"User": user, "Channels": a.channels})
}

func (a *app) loginPage(w http.ResponseWriter, _ *http.Request) {
	_ = pages.ExecuteTemplate(w, "login.html", map[string]any{"Users": slices.Sorted(maps.Keys(a.users))})
}

func (a *app) login(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	if _, ok := a.users[user]; !ok {
		http.Error(w, "no such user", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: a.sign(user), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
