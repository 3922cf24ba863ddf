package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/relay"
	"github.com/kvsrtc/kvsrtc/viewer"
	"github.com/kvsrtc/kvsrtc/whep"
)

func init() {
	register(command{
		name:    "serve",
		summary: "web player: live video from your channels in any browser; AWS keys stay on the server",
		run:     runServe,
	})
}

// defaultServeListen is the default --listen address of kvsrtc serve.
const defaultServeListen = "127.0.0.1:8080"

// authEnv is the environment variable --auth defaults to.
const authEnv = "KVSRTC_AUTH"

// serveFlags are the flags of kvsrtc serve.
type serveFlags struct {
	listen       string
	channels     stringList
	auth         string
	noAuth       bool
	tlsCert      string
	tlsKey       string
	relay        bool
	loopback     bool
	noTalk       bool
	data         bool
	whep         bool
	mode         string
	warm         stringList
	linger       time.Duration
	answerTO     time.Duration
	attempts     int
	sessionRate  float64
	sessionBurst int
	proxies      stringList
	apiOnly      bool
	basePath     string
	authCallback string
	tokenKeyFile string
	storage      storageFlag
	aws          awsFlags
	logs         logFlags
}

func runServe(ctx context.Context, env *Env, args []string) error {
	var f serveFlags
	fs := newFlagSet(env, "serve", "--channel NAME [--channel NAME ...] [flags]")
	fs.StringVar(&f.listen, "listen", defaultServeListen, "address to serve the player on")
	fs.Var(&f.channels, "channel", "signaling channel to serve (repeatable); the API refuses every other channel")
	fs.StringVar(&f.auth, "auth", "", "access token (or password) for the pages, the API and /metrics, at least 16 characters (default: $"+authEnv+", else a random one is generated and printed)")
	fs.BoolVar(&f.noAuth, "no-auth", false, "serve without access control (anyone who reaches --listen sees the cameras)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.BoolVar(&f.relay, "relay", false, "make browsers use TURN relay candidates only")
	fs.BoolVar(&f.loopback, "loopback-only", false, "browsers send only loopback ICE candidates (local tests and demos with kvsrtc master --loopback-only)")
	fs.BoolVar(&f.noTalk, "no-talk", false, "no push-to-talk button in the pages (the microphone is never asked for)")
	fs.BoolVar(&f.whep, "whep", false, "also serve WHEP at /whep/{channel} (behind the same token or cookie): one KVS viewer per camera relayed to any number of WHEP players (docs/SCALING.md)")
	fs.StringVar(&f.mode, "mode", string(player.ModeDirect), "how pages reach a camera: direct (each browser is a viewer of the channel), relay (this server is the camera's one viewer and forwards it to every browser over WHEP), auto (direct until the channel is full, then relay); relay and auto serve WHEP too (docs/SCALING.md)")
	fs.Var(&f.warm, "warm", "with --mode relay|auto or --whep: keep this channel's relay connected to its camera even with no browser watching, so every page starts on a running stream (repeatable)")
	fs.DurationVar(&f.linger, "linger", 0, "with --mode relay|auto or --whep: how long a channel's relay stays connected after its last browser leaves (default 30s)")
	fs.BoolVar(&f.data, "data", false, "open a data channel to the camera in every page, with a console per camera (kvsrtc master --data)")
	fs.DurationVar(&f.answerTO, "answer-timeout", 0, "how long the page waits for the camera's answer per attempt (default 2.5s)")
	fs.IntVar(&f.attempts, "max-attempts", 0, "attempts before the page gives up and shows the diagnosis (default 5)")
	fs.Float64Var(&f.sessionRate, "session-rate", player.DefaultSessionRate, "sessions per second each client address may mint")
	fs.IntVar(&f.sessionBurst, "session-burst", player.DefaultSessionBurst, "burst of sessions each client address may mint")
	fs.Var(&f.proxies, "trusted-proxy", "IP address or CIDR of a reverse proxy in front of the player whose X-Forwarded-For and X-Forwarded-Proto are believed (repeatable)")
	fs.BoolVar(&f.apiOnly, "api-only", false, "serve only the session API and the <kvs-viewer> module (for your own pages behind your reverse proxy), no pages or login; needs --auth-callback or --token-key-file (see docs/EMBED.md)")
	fs.StringVar(&f.basePath, "base-path", "/", "with --api-only: the path the API and kvs-viewer.js are served under (as your reverse proxy forwards them), e.g. /kvs/")
	fs.StringVar(&f.authCallback, "auth-callback", "", "with --api-only: your app's URL that decides each request (GET with the browser's Cookie and Authorization; 200 {\"channels\": [...]}, 401 or 403)")
	fs.StringVar(&f.tokenKeyFile, "token-key-file", "", "with --api-only: file holding the HMAC key (32+ bytes) of the short-lived tokens your app signs (Authorization: Bearer kvs1....)")
	f.storage.register(fs)
	f.aws.register(fs)
	f.logs.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.apiOnly {
		if err := f.storage.apiOnly(); err != nil {
			return err
		}
		if f.noTalk || f.data {
			return fmt.Errorf("%w: --no-talk and --data shape the built-in pages; with --api-only set the talk and data attributes of <kvs-viewer> (docs/EMBED.md)", ErrUsage)
		}
		if f.whep || f.mode != string(player.ModeDirect) || len(f.warm) > 0 || f.linger != 0 {
			return fmt.Errorf("%w: --whep, --mode, --warm and --linger go with the built-in player, not --api-only (a Go app mounts whep.NewHandler itself)", ErrUsage)
		}
		return runServeAPI(ctx, env, &f)
	}
	if f.authCallback != "" || f.tokenKeyFile != "" || f.basePath != "/" {
		return fmt.Errorf("%w: --auth-callback, --token-key-file and --base-path go with --api-only", ErrUsage)
	}
	if len(f.channels) == 0 {
		return fmt.Errorf("%w: --channel NAME is required (repeat it for several cameras)", ErrUsage)
	}
	for _, c := range f.channels {
		if err := kvsproto.ValidateChannelName(c); err != nil {
			return fmt.Errorf("%w: --channel: %w", ErrUsage, err)
		}
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return fmt.Errorf("%w: give --tls-cert and --tls-key together", ErrUsage)
	}
	if err := f.checkRelayFlags(); err != nil {
		return err
	}
	storage, err := f.storage.mode()
	if err != nil {
		return err
	}
	token, generated, err := f.token(env)
	if err != nil {
		return err
	}
	log, err := f.logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	// The certificate is checked before any AWS configuration is read.
	tlsCfg, err := f.tlsConfig()
	if err != nil {
		return err
	}
	ctl, hc, err := f.aws.control(ctx, env, control.Config{Logger: log})
	if err != nil {
		return err
	}
	cfg := player.Config{
		Control: ctl, Channels: f.channels, Auth: token, NoAuth: f.noAuth, ForceRelay: f.relay, LoopbackOnly: f.loopback,
		Retry:       viewer.RetryPolicy{AnswerTimeout: f.answerTO, MaxAttempts: f.attempts},
		SessionRate: f.sessionRate, SessionBurst: f.sessionBurst, HTTPClient: hc, Logger: log,
		TrustedProxies: f.proxies, NoTalk: f.noTalk, Data: f.data, Storage: storage,
	}
	if f.whep {
		closeRelay, err := f.mountRelay(&cfg, ctl, hc, log)
		if err != nil {
			return err
		}
		defer closeRelay()
	}
	p, err := startPlayer(ctx, cfg, f.listen, tlsCfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "kvsrtc serve: channels %s at %s\n", strings.Join(p.srv.Channels(), ", "), p.baseURL)
	if f.mode != string(player.ModeDirect) {
		fmt.Fprintf(env.Stdout, "mode %s: %s\n", f.mode, modeWords[f.mode])
	}
	if f.whep {
		fmt.Fprintf(env.Stdout, "WHEP: %s%s{channel} (Authorization: Bearer TOKEN, or the sign-in cookie)\n", p.baseURL, whepPrefix)
	}
	if tlsCfg == nil && len(f.proxies) == 0 && !loopbackListen(f.listen) {
		fmt.Fprintf(env.Stdout, "warning: plain HTTP on %s: the token and the sign-in cookie cross the network in clear; "+
			"use --tls-cert/--tls-key, or a TLS reverse proxy (--trusted-proxy), or listen on 127.0.0.1\n", f.listen)
		log.Warn("serving plain HTTP off loopback", "listen", f.listen)
	}
	switch {
	case generated:
		fmt.Fprintf(env.Stdout, "open %s (a one-time sign-in link, valid %v)\n", p.signInURL(player.DefaultSignInCodeTTL), player.DefaultSignInCodeTTL)
		fmt.Fprintf(env.Stdout, "access token for other browsers and for scripts (Authorization: Bearer): %s (generated; set --auth or $%s to choose one)\n", token, authEnv)
	case f.noAuth:
		fmt.Fprintln(env.Stdout, "warning: --no-auth: anyone who can reach this address can watch the cameras")
	default:
		fmt.Fprintf(env.Stdout, "open %s and sign in with the --auth token\n", p.baseURL)
	}
	return p.wait()
}

// token decides the access token: --auth, $KVSRTC_AUTH, or a generated one.
func (f *serveFlags) token(env *Env) (token string, generated bool, err error) {
	token = f.auth
	if token == "" && !f.noAuth {
		token = env.Getenv(authEnv)
	}
	switch {
	case f.noAuth && f.auth != "":
		return "", false, fmt.Errorf("%w: give --auth or --no-auth, not both", ErrUsage)
	case f.noAuth:
		return "", false, nil
	case token == "":
		t, err := randomToken()
		return t, true, err
	case len(token) < player.MinAuthLen:
		return "", false, fmt.Errorf("%w: --auth: the token has %d characters, at least %d are needed; better, leave --auth and $%s unset and a random 128-bit token is generated and printed",
			ErrUsage, len(token), player.MinAuthLen, authEnv)
	}
	return token, false, nil
}

// randomToken returns 128 random bits, URL-safe.
func randomToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// runningPlayer is a player server started by startPlayer.
type runningPlayer struct {
	srv     *player.Server
	baseURL string
	done    chan error
}

// signInURL is a page address that signs one browser in: a one-time
// code valid for ttl, not the token (which would stay in browser history,
// scrollback and proxy logs).
func (p *runningPlayer) signInURL(ttl time.Duration) string {
	return p.baseURL + "/?code=" + url.QueryEscape(p.srv.NewSignInCode(ttl))
}

// loopbackListen reports whether a --listen address is on loopback only.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// wait returns when the server has stopped (its context ended).
func (p *runningPlayer) wait() error { return <-p.done }

// startPlayer listens on addr and serves the player until ctx ends.
func startPlayer(ctx context.Context, cfg player.Config, addr string, tlsCfg *tls.Config) (*runningPlayer, error) {
	srv, err := player.New(cfg)
	if err != nil {
		if errors.Is(err, player.ErrInvalidConfig) {
			return nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
	}
	p := &runningPlayer{srv: srv, baseURL: scheme + "://" + hostPort(ln.Addr()), done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(ctx, ln) }()
	if cfg.Logger != nil {
		cfg.Logger.Info("player listening", slog.String("url", p.baseURL))
	}
	return p, nil
}

// hostPort prints a listener address for a URL (an unspecified address as
// 127.0.0.1).
func hostPort(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

// runServeAPI is "kvsrtc serve --api-only": the session API and the
// <kvs-viewer> module under --base-path, for an app's own pages behind its
// reverse proxy, with the access decision delegated to the app (an HTTP
// callback or signed tokens).
func runServeAPI(ctx context.Context, env *Env, f *serveFlags) error {
	if len(f.channels) == 0 {
		return fmt.Errorf("%w: --channel NAME is required (repeat it for every camera any user may be allowed)", ErrUsage)
	}
	for _, c := range f.channels {
		if err := kvsproto.ValidateChannelName(c); err != nil {
			return fmt.Errorf("%w: --channel: %w", ErrUsage, err)
		}
	}
	if f.auth != "" || f.noAuth {
		return fmt.Errorf("%w: --api-only has no token of its own: drop --auth/--no-auth and give --auth-callback URL or --token-key-file FILE", ErrUsage)
	}
	if (f.authCallback == "") == (f.tokenKeyFile == "") {
		return fmt.Errorf("%w: --api-only needs exactly one of --auth-callback URL (your app decides each request) or --token-key-file FILE (your app signs short-lived tokens)", ErrUsage)
	}
	base := "/" + strings.Trim(f.basePath, "/") + "/"
	if base == "//" {
		base = "/"
	}
	if strings.ContainsAny(base, "?#\\ ") {
		return fmt.Errorf("%w: --base-path %q: give a plain path such as /kvs/", ErrUsage, f.basePath)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return fmt.Errorf("%w: give --tls-cert and --tls-key together", ErrUsage)
	}
	var authz player.AuthorizeFunc
	var err error
	if f.tokenKeyFile != "" {
		key, rerr := os.ReadFile(f.tokenKeyFile)
		if rerr != nil {
			return fmt.Errorf("%w: --token-key-file: %w", ErrUsage, rerr)
		}
		authz, err = player.TokenAuthorizer(bytes.TrimSpace(key), nil)
	} else {
		authz, err = player.CallbackAuthorizer(f.authCallback, nil)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	log, err := f.logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	tlsCfg, err := f.tlsConfig()
	if err != nil {
		return err
	}
	ctl, hc, err := f.aws.control(ctx, env, control.Config{Logger: log})
	if err != nil {
		return err
	}
	h, err := player.NewHandler(player.HandlerConfig{
		Control: ctl, Channels: f.channels, Authorize: authz, TrustedProxies: f.proxies,
		ForceRelay: f.relay, LoopbackOnly: f.loopback,
		Retry:       viewer.RetryPolicy{AnswerTimeout: f.answerTO, MaxAttempts: f.attempts},
		SessionRate: f.sessionRate, SessionBurst: f.sessionBurst, HTTPClient: hc, Logger: log,
	})
	if err != nil {
		if errors.Is(err, player.ErrInvalidConfig) {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", f.listen, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
	}
	url := scheme + "://" + hostPort(ln.Addr()) + base
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln, base) }()
	how := "signed tokens (--token-key-file)"
	if f.authCallback != "" {
		how = "the callback " + f.authCallback
	}
	fmt.Fprintf(env.Stdout, "kvsrtc serve --api-only: channels %s at %s (module %skvs-viewer.js); access decided by %s\n",
		strings.Join(h.Channels(), ", "), url, url, how)
	if tlsCfg == nil && len(f.proxies) == 0 && !loopbackListen(f.listen) {
		fmt.Fprintf(env.Stdout, "warning: plain HTTP on %s: put it behind your TLS reverse proxy (--trusted-proxy) or listen on 127.0.0.1\n", f.listen)
	}
	return <-done
}

// tlsConfig loads --tls-cert and --tls-key (nil, nil without them).
func (f *serveFlags) tlsConfig() (*tls.Config, error) {
	if f.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("%w: --tls-cert/--tls-key: %w (give a PEM certificate and its PEM private key)", ErrUsage, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// whepPrefix is where kvsrtc serve --whep serves WHEP.
const whepPrefix = "/whep/"

// modeWords say what a --mode does, for the start-up lines.
var modeWords = map[string]string{
	string(player.ModeRelay): "this server is each camera's one viewer; every browser watches through it (WHEP)",
	string(player.ModeAuto):  "browsers are viewers of the camera until its channel is full, then watch through this server (WHEP)",
}

// checkRelayFlags checks --mode, --warm and --linger; relay and auto
// modes serve WHEP.
func (f *serveFlags) checkRelayFlags() error {
	switch player.Mode(f.mode) {
	case player.ModeDirect:
	case player.ModeRelay, player.ModeAuto:
		f.whep = true
	default:
		return fmt.Errorf("%w: --mode %q: use direct, relay or auto", ErrUsage, f.mode)
	}
	if (len(f.warm) > 0 || f.linger != 0) && !f.whep {
		return fmt.Errorf("%w: --warm and --linger shape the relay: add --mode relay, --mode auto or --whep", ErrUsage)
	}
	if f.linger < 0 {
		return fmt.Errorf("%w: --linger %v must not be negative", ErrUsage, f.linger)
	}
	for _, c := range f.warm {
		if !slices.Contains(f.channels, c) {
			return fmt.Errorf("%w: --warm %s is not a served channel: add --channel %s", ErrUsage, c, c)
		}
	}
	return nil
}

// mountRelay builds the relay of the served channels and mounts its WHEP
// endpoint in cfg (with cfg's mode, its counters on /metrics and, for
// auto mode, which channels are relayed); closeRelay ends its upstream
// sessions and peers.
func (f *serveFlags) mountRelay(cfg *player.Config, ctl *control.Client, hc *http.Client, log *slog.Logger) (closeRelay func(), err error) {
	rel, h, err := f.whepHandler(ctl, hc, log)
	if err != nil {
		return nil, err
	}
	cfg.Mode = player.Mode(f.mode)
	cfg.Mount = map[string]http.Handler{whepPrefix: h}
	cfg.WHEP = whepPrefix
	cfg.Relayed = func(channel string) bool {
		_, open := rel.Status(channel)
		return open
	}
	cfg.Metrics = func(w io.Writer) error { return rel.Stats().WritePrometheus(w) }
	return func() { _ = rel.Close() }, nil
}

// relayJoinTimeout bounds how long a browser's WHEP offer waits for a cold
// channel's camera: less than the page's own bound (its answer timeout +
// 10 s), so the page gets the cause with the refusal.
const relayJoinTimeout = 10 * time.Second

// whepHandler builds the relay of the served channels and its WHEP
// handler; closing the relay ends its upstream sessions and peers.
func (f *serveFlags) whepHandler(ctl *control.Client, hc *http.Client, log *slog.Logger) (*relay.Relay, http.Handler, error) {
	allowed := slices.Clone([]string(f.channels))
	rel, err := relay.New(relay.Config{
		Control: ctl, HTTPClient: hc, LoopbackOnly: f.loopback, Logger: log, Audio: true, Talk: !f.noTalk, Data: f.data,
		Warm: f.warm, Linger: f.linger, JoinTimeout: relayJoinTimeout,
		Allow: func(channel string) error {
			if !slices.Contains(allowed, channel) {
				return fmt.Errorf("kvsrtc serve does not serve channel %q (--channel)", channel)
			}
			return nil
		},
	})
	if err != nil {
		return nil, nil, err
	}
	h, err := whep.NewHandler(whep.Config{Relay: rel, Prefix: whepPrefix, Logger: log})
	if err != nil {
		_ = rel.Close()
		return nil, nil, err
	}
	return rel, h, nil
}
