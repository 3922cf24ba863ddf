package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/player"

	"github.com/kvsrtc/kvsrtc/internal/testutil"
)

// installHint is what to do when a tool is missing.
const installHint = "run scripts/test.sh once: it installs Debian's chromium and runs npm ci in internal/browsertest/js"

// npm bundles served to the official-flow pages, by URL path.
var bundles = map[string]string{
	"/kvs-webrtc.min.js": "js/node_modules/amazon-kinesis-video-streams-webrtc/dist/kvs-webrtc.min.js",
	"/aws-sdk.min.js":    "js/node_modules/aws-sdk/dist/aws-sdk.min.js",
}

// shared is what every test uses: one local KVS service with TLS (its
// certificate is trusted by Chromium through its SPKI hash, given at
// launch), one control client and one Chromium.
var shared struct {
	env     *kvstest.Env
	emu     *emulator.Server
	ctl     *control.Client
	tr      *http.Transport
	browser context.Context
	pages   *httptest.Server // the official-flow pages and npm bundles
	// A certificate for 127.0.0.1 (PEM files) that Chromium accepts, for
	// kvsrtc serve --tls-cert/--tls-key.
	certFile, keyFile string
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The tests talk to their own local service only.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	chromium, err := exec.LookPath("chromium")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: browsertest: chromium not found in PATH (%v); %s\n", err, installHint)
		return 1
	}
	for _, f := range bundles {
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: browsertest: %s is missing; %s\n", f, installHint)
			return 1
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := kvstest.Start(kvstest.Options{Emulator: emulator.Config{TLS: true, Logger: testLogger("local")}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: browsertest: starting the local KVS service: %v\n", err)
		return 1
	}
	defer env.Close()
	shared.env = env
	shared.emu, shared.ctl = env.Server, env.Control
	shared.tr = env.HTTPClient.Transport.(*http.Transport)

	shared.pages = httptest.NewServer(http.HandlerFunc(servePages))
	defer shared.pages.Close()

	certDir, err := os.MkdirTemp("", "kvsrtc-browsertest-cert-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: browsertest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(certDir)
	cert, err := testutil.WriteCert(certDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: browsertest: writing a test certificate: %v\n", err)
		return 1
	}
	shared.certFile, shared.keyFile = cert.CertFile, cert.KeyFile

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		// Belt and braces for "loopback only": no host name resolves (every
		// test URL is an IP literal on 127.0.0.1).
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("ignore-certificate-errors-spki-list", env.Server.SPKIHash()+","+cert.SPKI),
		chromedp.WindowSize(960, 600),
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(ctx, opts...)
	defer allocCancel()
	bctx, bcancel := chromedp.NewContext(allocCtx)
	defer bcancel()
	// The first action starts the browser for the lifetime of the context
	// it is given, so it gets bctx itself, bounded by a timer.
	startTimer := time.AfterFunc(60*time.Second, bcancel)
	err = chromedp.Do(bctx)
	startTimer.Stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: browsertest: starting %s: %v; %s\n", chromium, err, installHint)
		return 1
	}
	shared.browser = bctx
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	return code
}

func testLogger(component string) *slog.Logger { return kvstest.Logger(nil, component) }

// servePages serves the official-flow pages (js/*.html, js/*.js) and the
// npm bundles, from the test's own HTTP server on 127.0.0.1.
func servePages(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if f, ok := bundles[p]; ok {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, f)
		return
	}
	name := strings.TrimPrefix(p, "/")
	if !regexp.MustCompile(`^[a-z-]+\.(html|js)$`).MatchString(name) {
		http.NotFound(w, r)
		return
	}
	if strings.HasSuffix(name, ".js") {
		w.Header().Set("Content-Type", "text/javascript")
	}
	http.ServeFile(w, r, filepath.Join("js", name))
}

// officialPageURL is the address of an official-flow page for channel.
func officialPageURL(page, channel string) string {
	c := shared.emu.Credentials()
	q := url.Values{
		"region": {shared.emu.Region()}, "endpoint": {shared.emu.URL()}, "channel": {channel},
		"accessKeyId": {c.AccessKeyID}, "secretAccessKey": {c.SecretAccessKey},
	}
	return shared.pages.URL + "/" + page + ".html?" + q.Encode()
}

// channelSeq makes channel names unique across repeated runs (-count).
var channelSeq atomic.Int64

// newChannel creates a channel named after the test (and suffix).
func newChannel(t *testing.T, suffix ...string) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name() + strings.Join(suffix, ""))
	if len(name) > 200 {
		name = name[:200]
	}
	if n := channelSeq.Add(1); n > 1 {
		name += fmt.Sprintf("-%d", n)
	}
	if _, err := shared.emu.CreateChannel(t.Context(), name, 0); err != nil {
		t.Fatal(err)
	}
	return name
}

// startMaster runs a kvsrtc master with the H.264 test pattern (640x360) on
// channel, waits until it is connected, and returns a func that stops it
// and waits for it (also called when the test ends).
func startMaster(t *testing.T, channel string) (stop func()) {
	t.Helper()
	m := shared.env.StartMaster(t, kvstest.MasterOptions{Channel: channel, Logger: testLogger("master")})
	return func() { _ = m.Stop() } // the test's cleanup reports Run's error
}

// playerServer is a running web player.
type playerServer struct {
	srv   *player.Server
	url   string
	token string
}

// startPlayer serves the player for channels until the test ends.
func startPlayer(t *testing.T, cfg player.Config) *playerServer {
	t.Helper()
	cfg.Control = shared.ctl
	cfg.HTTPClient = &http.Client{Transport: shared.tr}
	cfg.LoopbackOnly = true
	if cfg.Auth == "" && !cfg.NoAuth {
		cfg.Auth = "browser-test-token-0123"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger("player")
	}
	srv, err := player.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("player: %v", err)
		}
	})
	return &playerServer{srv: srv, url: "http://" + ln.Addr().String(), token: cfg.Auth}
}

// signIn is the player page for channel with the token (the server sets the
// cookie and redirects to the page without it).
func (p *playerServer) signIn(path string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return p.url + path + sep + "token=" + url.QueryEscape(p.token)
}

// tab is one browser tab with its own cookie jar.
type tab struct {
	ctx     context.Context
	close   func() // closes the tab and waits for its readers
	mu      sync.Mutex
	console []string
}

// newTab opens a tab in a new browser context; every action on it is bound
// by timeout. It records the console.
func newTab(t *testing.T, timeout time.Duration) *tab {
	t.Helper()
	cctx, cancel := chromedp.NewContext(shared.browser, chromedp.WithNewBrowserContext())
	ctx, tcancel := context.WithTimeout(cctx, timeout)
	tb := &tab{ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		tcancel()
		cancel()
		t.Fatalf("opening a tab: %v", err)
	}
	msgs := chromedp.Console(ctx)
	lctx, lcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m, err := range msgs {
			if err != nil || lctx.Err() != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, string(m.Type)+": "+m.Text)
			tb.mu.Unlock()
		}
	}()
	var once sync.Once
	tb.close = func() {
		once.Do(func() {
			lcancel()
			tcancel()
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(tb.close)
	return tb
}

func (tb *tab) consoleLines() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.console...)
}

// navigate opens u in the tab.
func (tb *tab) navigate(t *testing.T, u string) {
	t.Helper()
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate %s: %v", u, err)
	}
}

// eval evaluates a JavaScript expression and decodes its JSON value into v.
func (tb *tab) eval(t *testing.T, expr string, v any) {
	t.Helper()
	raw, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("evaluate %s: decoding %s: %v", expr, raw, err)
		}
	}
}

// waitJS evaluates expr every 50 ms until it yields true, or fails after
// bound, printing what describe evaluates to.
func (tb *tab) waitJS(t *testing.T, bound time.Duration, expr, describe string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		var ok bool
		raw, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]byte]("!!("+expr+")"))
		if err == nil && json.Unmarshal(raw, &ok) == nil && ok {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			var state any
			if describe != "" {
				raw, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[[]byte](describe))
				_ = json.Unmarshal(raw, &state)
			}
			js, _ := json.MarshalIndent(state, "", "  ")
			t.Fatalf("%s not true within %v (err %v); state:\n%s\nconsole:\n%s", expr, bound, err, js, strings.Join(tb.consoleLines(), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// await waits, inside the page, until expr is true (checked every 100 ms, so
// that the test does not compete with the page for the main thread), or
// fails after bound.
func (tb *tab) await(t *testing.T, bound time.Duration, expr, describe string) {
	t.Helper()
	js := fmt.Sprintf(`new Promise((resolve) => {
		const deadline = performance.now() + %d;
		const check = () => {
			let ok = false;
			try { ok = !!(%s); } catch {}
			if (ok || performance.now() > deadline) { resolve(ok); return; }
			setTimeout(check, 100);
		};
		check();
	})`, bound.Milliseconds(), expr)
	var ok bool
	raw, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err == nil && json.Unmarshal(raw, &ok) == nil && ok {
		return
	}
	tb.waitJS(t, time.Millisecond, expr, describe) // fails with the state
}

// snapshot is a player tile's state (Player.snapshot() in player.js).
type snapshot struct {
	State         string  `json:"state"`
	Attempt       int     `json:"attempt"`
	AttemptsTotal int     `json:"attemptsTotal"`
	Recoveries    int     `json:"recoveries"`
	TTFFMs        float64 `json:"ttffMs"`
	Width         int     `json:"width"`
	Height        int     `json:"height"`
	Frames        int     `json:"framesDecoded"`
	ClientIDs     []string
	LastCause     string            `json:"lastCause"`
	Diagnosis     *player.Diagnosis `json:"diagnosis"`
	Status        string            `json:"status"`
	Relay         bool              `json:"relay"`
	Upstream      string            `json:"upstream"`
	Events        []struct {
		T      float64 `json:"t"`
		What   string  `json:"what"`
		Detail any     `json:"detail"`
	} `json:"events"`
}

func (tb *tab) players(t *testing.T) []snapshot {
	t.Helper()
	var s []snapshot
	tb.eval(t, "window.kvsrtc ? window.kvsrtc.snapshot() : []", &s)
	return s
}

// screenshot captures the viewport and checks that it shows a picture:
// mostly not black, with many distinct colours. It writes the PNG to
// $KVSRTC_SCREENSHOTS (or the test's temporary directory) and returns its
// path.
func (tb *tab) screenshot(t *testing.T, name string) string {
	t.Helper()
	b, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dark, colours, total := pictureStats(img)
	dir := os.Getenv("KVSRTC_SCREENSHOTS") // keep them there; default: the test's temporary directory
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "kvsrtc-browsertest-"+name+".png")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Logf("keeping the screenshot: %v", err)
	}
	t.Logf("screenshot %s: %dx%d, %.0f%% dark, %d colours", path, img.Bounds().Dx(), img.Bounds().Dy(), 100*float64(dark)/float64(total), colours)
	if float64(dark)/float64(total) > 0.5 || colours < 16 {
		t.Fatalf("the screenshot looks blank: %.0f%% dark pixels, %d distinct colours (see %s)", 100*float64(dark)/float64(total), colours, path)
	}
	return path
}

// pictureStats samples img on a grid: the number of dark samples, of
// distinct colours (4 bits per channel) and of samples.
func pictureStats(img image.Image) (dark, colours, total int) {
	seen := map[uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 4 {
		for x := r.Min.X; x < r.Max.X; x += 4 {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			total++
			if cr>>8 < 24 && cg>>8 < 24 && cb>>8 < 24 {
				dark++
			}
			seen[(cr>>12)<<8|(cg>>12)<<4|cb>>12] = true
		}
	}
	return dark, len(seen), total
}

// binDir holds the kvsrtc binary kvsrtcBinary built; run removes it.
var binDir string

// kvsrtcBinary builds cmd/kvsrtc once per test binary run.
var kvsrtcBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "kvsrtc-browsertest-bin")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "kvsrtc")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/kvsrtc/kvsrtc/cmd/kvsrtc")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/kvsrtc: %w\n%s", err, out.String())
	}
	return bin, nil
})
