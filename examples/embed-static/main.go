// Command embed-static stands for a web app whose backend is not written in
// Go: it serves static pages that show cameras with kvsrtc's <kvs-viewer>
// element, signs each signed-in user a short-lived token naming the
// channels they may watch (HMAC-SHA256, a dozen lines in any language), and
// forwards /kvs/ to "kvsrtc serve --api-only" with httputil.ReverseProxy
// (where another app would use nginx or its platform's proxy).
//
//	kvsrtc serve --api-only --listen 127.0.0.1:8091 --base-path /kvs/ \
//	    --token-key-file kvs-token.key --trusted-proxy 127.0.0.1 --channel front-door --channel back-yard
//	go run ./examples/embed-static --api http://127.0.0.1:8091 --token-key-file kvs-token.key
//
// Users (--user NAME=CHANNEL,CHANNEL; default alice: front-door and
// back-yard, bob: back-yard) sign in by name: a toy. See docs/EMBED.md.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

//go:embed static
var static embed.FS

// tokenTTL is how long a token for the kvsrtc API lasts; the page asks for
// a new one before it runs out.
const tokenTTL = 5 * time.Minute

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed-static:", err)
		os.Exit(1)
	}
}

func run() error {
	var userFlags listFlag
	listen := flag.String("listen", "127.0.0.1:8092", "address of the app")
	api := flag.String("api", "http://127.0.0.1:8091", "where kvsrtc serve --api-only --base-path /kvs/ listens")
	keyFile := flag.String("token-key-file", "kvs-token.key", "the HMAC key shared with kvsrtc serve --token-key-file")
	flag.Var(&userFlags, "user", "NAME=CHANNEL,CHANNEL: a user of the toy sign-in and the channels they may watch (repeatable)")
	flag.Parse()
	users := map[string][]string{}
	for _, u := range userFlags {
		name, chans, ok := strings.Cut(u, "=")
		if !ok || name == "" {
			return fmt.Errorf("--user %q: give NAME=CHANNEL,CHANNEL", u)
		}
		users[name] = strings.Split(chans, ",")
	}
	if len(users) == 0 {
		users = map[string][]string{"alice": {"front-door", "back-yard"}, "bob": {"back-yard"}}
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("--token-key-file: %w (make one: head -c 32 /dev/urandom | base64 > %s)", err, *keyFile)
	}
	target, err := url.Parse(*api)
	if err != nil || target.Host == "" {
		return fmt.Errorf("--api %q: give the URL of kvsrtc serve --api-only", *api)
	}
	a := &app{users: users, tokenKey: bytes.TrimSpace(key), cookieKey: make([]byte, 32)}
	_, _ = rand.Read(a.cookieKey)

	// The reverse proxy: /kvs/... goes to kvsrtc serve --api-only as is. The
	// Host header is kept (kvsrtc checks that the browser's Origin is this
	// site), and X-Forwarded-For names the browser (kvsrtc's rate limits
	// believe it from --trusted-proxy addresses).
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
		pr.SetXForwarded()
	}}
	mux := http.NewServeMux()
	mux.Handle("/kvs/", proxy)
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /app/login", a.login)
	mux.HandleFunc("POST /app/logout", a.logout)
	mux.HandleFunc("GET /app/kvs-token", a.kvsToken)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: secure(mux), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Printf("embed-static: open http://%s/ and sign in as %s\n", ln.Addr(), strings.Join(slices.Sorted(maps.Keys(users)), " or "))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// secure sets a strict Content-Security-Policy on every response.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/kvs/") {
			w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
				"connect-src 'self' wss: ws:; media-src 'self' blob:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
			w.Header().Set("X-Content-Type-Options", "nosniff")
		}
		h.ServeHTTP(w, r)
	})
}

// app is the toy backend: a name-only sign-in with an HMAC-signed cookie,
// and the token endpoint.
type app struct {
	users     map[string][]string
	tokenKey  []byte
	cookieKey []byte
}

const cookieName = "embed_static_user"

func mac(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

func (a *app) user(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	user, sig, _ := strings.Cut(c.Value, ".")
	if _, ok := a.users[user]; !ok || !hmac.Equal([]byte(sig), []byte(hex.EncodeToString(mac(a.cookieKey, user)))) {
		return ""
	}
	return user
}

func (a *app) login(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	if _, ok := a.users[user]; !ok {
		http.Error(w, "no such user", http.StatusUnauthorized)
		return
	}
	v := user + "." + hex.EncodeToString(mac(a.cookieKey, user))
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/cameras.html", http.StatusSeeOther)
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// kvsToken signs the signed-in user a token for the kvsrtc API:
//
//	kvs1.B64URL(claims).B64URL(HMAC-SHA256(key, "kvs1." + B64URL(claims)))
//
// written out here, as a backend in another language would, rather than
// with player.SignToken.
func (a *app) kvsToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	user := a.user(r)
	if user == "" {
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	exp := time.Now().Add(tokenTTL).Unix()
	claims, _ := json.Marshal(map[string]any{"sub": user, "channels": a.users[user], "exp": exp})
	body := "kvs1." + base64.RawURLEncoding.EncodeToString(claims)
	token := body + "." + base64.RawURLEncoding.EncodeToString(mac(a.tokenKey, body))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": token, "expires": exp})
}
