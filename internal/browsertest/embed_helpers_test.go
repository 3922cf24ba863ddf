package browsertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/player"
)

// strictCSP is the Content-Security-Policy of the embedding test pages: no
// inline script or style, no eval.
const strictCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self' wss: ws:; media-src 'self' blob:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// describeViewers is every <kvs-viewer>'s snapshot.
const describeViewers = "[...document.querySelectorAll('kvs-viewer')].map(e => e.snapshot())"

// viewerPlaying is true when the <kvs-viewer> for channel plays the 640x360
// test pattern.
func viewerPlaying(channel string) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector('kvs-viewer[channel=%q]'); if (!e) return false;
		const s = e.snapshot(); return s.state === 'playing' && s.width === 640 && s.height === 360 && s.framesDecoded >= 10 })()`, channel)
}

// viewerFailed is true when the <kvs-viewer> for channel shows its failure.
func viewerFailed(channel string) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector('kvs-viewer[channel=%q]');
		return !!e && e.state === 'failed' && !e.shadowRoot.querySelector('.failure').hidden })()`, channel)
}

// shownFailure is what a failed tile shows (in the built-in page, or in a
// <kvs-viewer>'s shadow root).
type shownFailure struct{ Cause, Title, Message, Advice, Shown string }

// viewerFailure reads the failure a <kvs-viewer> shows.
func (tb *tab) viewerFailure(t *testing.T, channel string) shownFailure {
	t.Helper()
	var f shownFailure
	tb.eval(t, fmt.Sprintf(`(() => { const e = document.querySelector('kvs-viewer[channel=%q]'); const r = e.shadowRoot; const d = e.diagnosis || {};
		return {Cause: d.cause || '', Title: r.querySelector('.failure-title').textContent, Message: r.querySelector('.failure-message').textContent,
			Advice: r.querySelector('.failure-advice').textContent, Shown: r.querySelector('.failure-cause').textContent} })()`, channel), &f)
	return f
}

// pageFailure reads the failure the built-in player page shows.
func (tb *tab) pageFailure(t *testing.T) shownFailure {
	t.Helper()
	var f shownFailure
	tb.eval(t, `(() => { const d = window.kvsrtc.players[0].diagnosis || {};
		return {Cause: d.cause || '', Title: document.querySelector('.failure-title').textContent, Message: document.querySelector('.failure-message').textContent,
			Advice: document.querySelector('.failure-advice').textContent, Shown: document.querySelector('.failure-cause').textContent} })()`, &f)
	return f
}

// embedServer serves a Handler under /cams/ and test pages with strictCSP.
type embedServer struct {
	url   string
	pages map[string]string
}

// startEmbed serves h under /cams/ and pages (path -> HTML) on 127.0.0.1
// until the test ends.
func startEmbed(t *testing.T, h *player.Handler, pages map[string]string) *embedServer {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/cams/", http.StripPrefix("/cams", h))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Security-Policy", strictCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(body))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ln) }()
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		<-done
		<-done
	})
	return &embedServer{url: "http://" + ln.Addr().String(), pages: pages}
}

// embedPage is an HTML page that loads the module from /cams/ and holds
// body (<kvs-viewer> elements); no inline script.
func embedPage(body string) string {
	return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>embed test</title>
<script type="module" src="/cams/kvs-viewer.js"></script></head><body>` + body + `</body></html>`
}

// newHandler is a Handler for channels on the shared local service, with
// the browser tests' settings (loopback only, the service's TLS roots).
func newHandler(t *testing.T, cfg player.HandlerConfig) *player.Handler {
	t.Helper()
	cfg.Control = shared.ctl
	cfg.HTTPClient = &http.Client{Transport: shared.tr}
	cfg.LoopbackOnly = true
	if cfg.Logger == nil {
		cfg.Logger = testLogger("handler")
	}
	h, err := player.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// examples builds each example program once per test binary run.
var examples sync.Map // package path -> func() (string, error)

// buildExample builds ./examples/NAME into the shared binary directory.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	f, _ := examples.LoadOrStore(name, sync.OnceValues(func() (string, error) {
		kv, err := kvsrtcBinary() // makes binDir, removed at the end of the run
		if err != nil {
			return "", err
		}
		bin := filepath.Join(filepath.Dir(kv), name)
		cmd := exec.Command("go", "build", "-o", bin, "github.com/kvsrtc/kvsrtc/examples/"+name)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("go build ./examples/%s: %w\n%s", name, err, out.String())
		}
		return bin, nil
	}))
	bin, err := f.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// runProgram starts bin with args and the local service's environment
// until the test ends (then SIGINT, and a wait), and returns the URL the
// first match of re's first group finds in its output, within 30 s.
func runProgram(t *testing.T, re *regexp.Regexp, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = kvsrtcEnv(t)
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v\n%s", filepath.Base(bin), err, out.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop on SIGINT\n%s", filepath.Base(bin), out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("%s exited: %v\n%s", filepath.Base(bin), err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no address matching %s:\n%s", filepath.Base(bin), re, out.String())
		}
	}
}

// freeAddr is a free 127.0.0.1 port (for a program that must know another's
// address before it starts).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// captured is what a tab received: response bodies, WebSocket frames and
// URLs, and console lines.
type captured struct {
	mu       sync.Mutex
	urls     map[network.RequestID]string
	finished []network.RequestID
	frames   []string
}

// capture records a tab's network traffic from now on.
func capture(t *testing.T, tb *tab) *captured {
	t.Helper()
	c := &captured{urls: map[network.RequestID]string{}}
	if err := chromedp.Listen(tb.ctx, func(ev any) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventResponseReceived:
			c.urls[e.RequestID] = e.Response.URL
		case *network.EventLoadingFinished:
			c.finished = append(c.finished, e.RequestID)
		case *network.EventWebSocketFrameReceived:
			c.frames = append(c.frames, string(e.Response.PayloadData))
		case *network.EventWebSocketFrameSent:
			c.frames = append(c.frames, string(e.Response.PayloadData))
		case *network.EventWebSocketCreated:
			c.frames = append(c.frames, e.URL)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tb.ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// checkNoSecret fails if anything the tab received (the document, response
// bodies, WebSocket frames and URLs, console lines) holds one of secrets
// (plain, base64 or URL-escaped); it wants at least minSessions bodies with
// a session in them.
func (c *captured) checkNoSecret(t *testing.T, tb *tab, minSessions int, secrets ...string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // let the last bodies land
	var html string
	tb.eval(t, "document.documentElement.outerHTML", &html)
	seen := []string{html}
	c.mu.Lock()
	ids := slices.Clone(c.finished)
	for id := range c.urls {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	seen = append(seen, c.frames...)
	nframes := len(c.frames)
	c.mu.Unlock()
	bodies, withSession := 0, 0
	for _, id := range ids {
		r, err := chromedp.Call(tb.ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
		if err != nil {
			continue
		}
		bodies++
		if strings.Contains(string(r.Body), `"signalingUrl"`) {
			withSession++
		}
		seen = append(seen, string(r.Body))
	}
	seen = append(seen, tb.consoleLines()...)
	if withSession < minSessions || nframes < 3 {
		t.Fatalf("captured %d bodies (%d with a session, want %d) and %d WebSocket frames", bodies, withSession, minSessions, nframes)
	}
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		for _, e := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), strings.ReplaceAll(secret, "/", "%2F")} {
			for i, s := range seen {
				if strings.Contains(s, e) {
					t.Fatalf("item %d seen by the browser contains a server secret: %.200s", i, s)
				}
			}
		}
	}
	t.Logf("checked %d response bodies (%d with a session), %d WebSocket frames and URLs, the page and the console", bodies, withSession, nframes)
}

// noCSPViolations fails if the console reports a Content-Security-Policy
// refusal.
func (tb *tab) noCSPViolations(t *testing.T) {
	t.Helper()
	for _, l := range tb.consoleLines() {
		if strings.Contains(l, "Content Security Policy") || strings.Contains(l, "Refused to") {
			t.Errorf("CSP violation: %s", l)
		}
	}
}
