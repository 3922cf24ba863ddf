package emulator_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// helperEnv makes the test binary act as a standalone service (see
// runHelperServer): used for the kill -9 persistence test and the
// 10,000-connection benchmark, which needs its own process (file limit,
// RSS measurement).
const helperEnv = "KVSRTC_EMULATOR_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "serve" {
		os.Exit(runHelperServer())
	}
	goleak.VerifyTestMain(m,
		// Client-side keep-alive connections of http.Clients in tests.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*Transport).dialConnFor"),
	)
}

// runHelperServer starts a service from KVSRTC_HELPER_* variables, prints
// "URL <url>" and serves until stdin closes or SIGTERM.
func runHelperServer() int {
	cfg := emulator.Config{
		Addr:          "127.0.0.1:0",
		DataDir:       os.Getenv("KVSRTC_HELPER_DATADIR"),
		DisableQuotas: os.Getenv("KVSRTC_HELPER_NOQUOTAS") == "1",
		TURNDisabled:  true,
		AdminToken:    os.Getenv(emulator.AdminTokenEnv),
	}
	lvl := slog.LevelWarn
	if os.Getenv("KVSRTC_HELPER_DEBUG") == "1" {
		lvl = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if v, err := strconv.Atoi(os.Getenv("KVSRTC_HELPER_GOGC")); err == nil {
		debug.SetGCPercent(v) // experiments only; the service itself never changes GC settings
	}
	if path := os.Getenv("KVSRTC_HELPER_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	srv, err := emulator.Start(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("URL %s\n", srv.URL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	stdin := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdin) }()
	select {
	case <-sig:
	case <-stdin:
	}
	if err := srv.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if path := os.Getenv("KVSRTC_HELPER_MEMPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		fmt.Fprintf(os.Stderr, "service CPU: user %.1fs, system %.1fs\n",
			time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds())
	}
	return 0
}

// tLogHandler sends the service log to t.Log while the test runs.
type tLogHandler struct {
	mu   *sync.Mutex
	t    testing.TB
	done *bool
	buf  *bytes.Buffer
	h    slog.Handler
}

func testLogger(t testing.TB) *slog.Logger {
	var mu sync.Mutex
	done := false
	buf := &bytes.Buffer{}
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	lvl := slog.LevelInfo
	if os.Getenv("KVSRTC_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(&tLogHandler{mu: &mu, t: t, done: &done, buf: buf, h: slog.NewTextHandler(buf, &slog.HandlerOptions{Level: lvl})})
}

func (h *tLogHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }
func (h *tLogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *h.done {
		return nil
	}
	h.buf.Reset()
	if err := h.h.Handle(ctx, r); err != nil {
		return err
	}
	h.t.Log(strings.TrimSpace(h.buf.String()))
	return nil
}
func (h *tLogHandler) WithAttrs(a []slog.Attr) slog.Handler {
	c := *h
	c.h = h.h.WithAttrs(a)
	return &c
}
func (h *tLogHandler) WithGroup(n string) slog.Handler {
	c := *h
	c.h = h.h.WithGroup(n)
	return &c
}

// start runs a service for the test; it is closed when the test ends.
func start(t testing.TB, cfg emulator.Config) *emulator.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := emulator.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv
}

// client is a signed REST client for the service.
type client struct {
	t      testing.TB
	srv    *emulator.Server // nil for a service in another process
	base   string
	region string
	http   *http.Client
	creds  sigv4.Credentials
	now    func() time.Time
}

func newClient(t testing.TB, srv *emulator.Server) *client {
	tr := &http.Transport{}
	if pool := srv.CertPool(); pool != nil {
		tr.TLSClientConfig = tlsConfig(pool)
	}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, srv: srv, base: srv.URL(), region: srv.Region(), http: hc, creds: srv.Credentials(), now: time.Now}
}

// newURLClient is a client for a plain-http service at url with the
// default credentials.
func newURLClient(t testing.TB, url string) *client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: url, region: emulator.DefaultRegion, http: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		creds: emulator.DefaultCredentials, now: time.Now}
}

// post sends a signed POST and returns the status, the error code from
// x-amzn-ErrorType (without suffix) and the body.
func (c *client) post(path string, body any) (int, string, []byte) {
	c.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		raw, err = json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := sigv4.SignRequest(req, raw, c.creds, c.region, c.now()); err != nil {
		c.t.Fatal(err)
	}
	return c.do(req)
}

func (c *client) do(req *http.Request) (int, string, []byte) {
	c.t.Helper()
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	code, _, _ := strings.Cut(resp.Header.Get("x-amzn-ErrorType"), ":")
	return resp.StatusCode, code, out
}

// mustPost posts and requires HTTP 200; it decodes the answer into out.
func (c *client) mustPost(path string, body, out any) {
	c.t.Helper()
	st, code, raw := c.post(path, body)
	if st != http.StatusOK {
		c.t.Fatalf("POST %s: HTTP %d %s: %s", path, st, code, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("POST %s: %v: %s", path, err, raw)
		}
	}
}

func (c *client) createChannel(name string) string {
	c.t.Helper()
	var out kvsproto.CreateSignalingChannelOutput
	c.mustPost(kvsproto.PathCreateSignalingChannel, kvsproto.CreateSignalingChannelInput{ChannelName: name}, &out)
	return out.ChannelARN
}

// dial opens a signaling WebSocket as role (clientID for viewers).
func (c *client) dial(ctx context.Context, role kvsproto.Role, arn, clientID string) (*websocket.Conn, *http.Response, error) {
	params := map[string]string{"X-Amz-ChannelARN": arn}
	if clientID != "" {
		params["X-Amz-ClientId"] = clientID
	}
	u, err := sigv4.PresignURL(c.srv.WSSEndpoint(role), params, c.creds, c.srv.Region(), c.now(), 0)
	if err != nil {
		return nil, nil, err
	}
	return c.dialURL(ctx, u, "")
}

func (c *client) dialURL(ctx context.Context, u, host string) (*websocket.Conn, *http.Response, error) {
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: c.http.Transport}, Host: host})
	if ws != nil {
		c.t.Cleanup(func() { _ = ws.CloseNow() })
	}
	return ws, resp, err
}

func (c *client) mustDial(role kvsproto.Role, arn, clientID string) *websocket.Conn {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := c.dial(ctx, role, arn, clientID)
	if err != nil {
		body := ""
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			body = fmt.Sprintf(" (HTTP %d %s)", resp.StatusCode, b)
		}
		c.t.Fatalf("dial %s %s: %v%s", role, clientID, err, body)
	}
	return ws
}

// dialStatus dials and expects a refusal; it returns the HTTP status, the
// x-amzn-ErrorType and the body.
func (c *client) dialStatus(role kvsproto.Role, arn, clientID string) (int, string, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := c.dial(ctx, role, arn, clientID)
	if err == nil {
		_ = ws.CloseNow()
		c.t.Fatalf("dial %s %q: connected, want a refusal", role, clientID)
	}
	if resp == nil {
		c.t.Fatalf("dial %s %q: %v (no HTTP response)", role, clientID, err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), string(b)
}

func send(t testing.TB, ws *websocket.Conn, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// recv reads one event within d.
func recv(t testing.TB, ws *websocket.Conn, d time.Duration) kvsproto.Event {
	t.Helper()
	ev, err := tryRecv(ws, d)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return ev
}

func tryRecv(ws *websocket.Conn, d time.Duration) (kvsproto.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		return kvsproto.Event{}, err
	}
	return kvsproto.DecodeEvent(b)
}

// expectNothing checks that no event arrives within d (the connection is
// closed if it times out, as coder/websocket does on a cancelled read, so
// use it last on a connection).
func expectNothing(t testing.TB, ws *websocket.Conn, d time.Duration) {
	t.Helper()
	ev, err := tryRecv(ws, d)
	if err == nil {
		t.Fatalf("unexpected event %+v", ev)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout, got %v", err)
	}
}

// closeCode waits for the connection to be closed and returns the close
// status (-1 for no close frame).
func closeCode(t testing.TB, ws *websocket.Conn, d time.Duration) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		_, _, err := ws.Read(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("connection not closed within %v", d)
			}
			return websocket.CloseStatus(err)
		}
	}
}

func payload(t testing.TB, v any) string {
	t.Helper()
	p, err := kvsproto.EncodePayload(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readLines reads "KEY VALUE" lines from a helper process until want.
func readLine(t testing.TB, r *bufio.Reader, prefix string) string {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("helper output ended before %q: %v", prefix, err)
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return strings.TrimSpace(v)
		}
	}
}

// quietLogger logs warnings and errors only (for load tests).
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
