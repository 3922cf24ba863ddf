package browsertest

import (
	"encoding/base64"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/viewer"
)

const describePlayers = "window.kvsrtc && window.kvsrtc.snapshot()"

// playing is true when the first tile plays the 640x360 test pattern.
const playing = `window.kvsrtc && window.kvsrtc.players.length > 0 && window.kvsrtc.players.every(p => {
	const s = p.snapshot(); return s.state === 'playing' && s.width === 640 && s.height === 360 && s.framesDecoded >= 10 })`

// TestPlayerPlaysVideo: the page signs in with the token, gets a session,
// plays the master's video at its resolution, shows it (a screenshot with a
// picture in it) and its stats.
func TestPlayerPlaysVideo(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	p := startPlayer(t, player.Config{Channels: []string{ch}})
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?stats=1&channel="+ch))
	took := tb.waitJS(t, 20*time.Second, playing, describePlayers)
	s := tb.players(t)[0]
	t.Logf("playing after %v: first frame %.0f ms after navigation, %d frames, attempt %d", took, s.TTFFMs, s.Frames, s.AttemptsTotal)
	if s.AttemptsTotal != 1 || len(s.ClientIDs) != 1 || !strings.HasPrefix(s.ClientIDs[0], player.DefaultClientIDPrefix) {
		t.Errorf("attempts %d, client ids %v", s.AttemptsTotal, s.ClientIDs)
	}
	if s.TTFFMs <= 0 || s.TTFFMs > 10000 {
		t.Errorf("time to first frame %v ms", s.TTFFMs)
	}
	// One video element, in the tile: the bootstrap's early element (if it
	// showed the first frame before the page was built) was taken over.
	var videos string
	tb.eval(t, `(() => { const v = [...document.querySelectorAll('video')];
		return v.length + ' ' + v.map(e => (e.closest('.player') ? 'tile' : 'loose') + ':' + (e.className || '-') + ':' + getComputedStyle(e).objectFit).join(',') })()`, &videos)
	// (object-fit: contain comes from the inline style sheet: the CSP let it apply.)
	if videos != "1 tile:-:contain" {
		t.Errorf("video elements: %s, want one, in the tile, styled", videos)
	}
	var loc string
	tb.eval(t, "location.pathname + location.search", &loc)
	if strings.Contains(loc, "token") {
		t.Errorf("the token stayed in the address: %s", loc)
	}
	// The stats overlay shows resolution, frame rate and bitrate.
	tb.waitJS(t, 5*time.Second, `(() => { const t = document.querySelector('.stats pre').textContent;
		return t.includes('640x360') && /fps +[1-9]/.test(t) && /bitrate +[1-9][0-9]* kbit/.test(t) })()`,
		"document.querySelector('.stats pre').textContent")
	tb.eval(t, `(() => { document.querySelector('.stats').hidden = true; return true })()`, nil)
	tb.screenshot(t, "player")

	// The server counted the attempt and the time to first frame.
	resp, body := get(t, p.url+"/metrics", p.token)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `kvsrtc_player_sessions_total{channel="`+ch+`"} 1`) ||
		!strings.Contains(body, "kvsrtc_player_time_to_first_frame_seconds_count 1") {
		t.Errorf("metrics:\n%s", body)
	}
}

// TestPlayerRecoversFromLostAnswer: the local service drops the master's
// first answer; the page's first attempt times out, the second one (a new
// session, a new client id) plays.
func TestPlayerRecoversFromLostAnswer(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	p := startPlayer(t, player.Config{Channels: []string{ch}, Retry: viewer.RetryPolicy{AnswerTimeout: 1500 * time.Millisecond, BackoffBase: 100 * time.Millisecond}})
	if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultDrop, Channel: ch, Action: "SDP_ANSWER", Count: 1}); err != nil {
		t.Fatal(err)
	}
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	tb.waitJS(t, 20*time.Second, playing, describePlayers)
	s := tb.players(t)[0]
	if s.AttemptsTotal != 2 || len(s.ClientIDs) != 2 || s.ClientIDs[0] == s.ClientIDs[1] {
		t.Fatalf("attempts %d with client ids %v; want 2 distinct", s.AttemptsTotal, s.ClientIDs)
	}
	// The first attempt kept listening for a late answer while the second
	// one ran; the second one's answer won and the first was closed.
	if !hasEvent(s, "answer-late", "") || !hasEvent(s, "answer-won", "") {
		t.Errorf("no answer-late / answer-won events: %+v", s.Events)
	}
	if s.TTFFMs < 1500 {
		t.Errorf("first frame after %v ms, before the answer timeout", s.TTFFMs)
	}
	t.Logf("played on attempt 2, %.0f ms after navigation", s.TTFFMs)
}

func hasEvent(s snapshot, what, detail string) bool {
	for _, e := range s.Events {
		if e.What == what && (detail == "" || e.Detail == detail) {
			return true
		}
	}
	return false
}

// TestPlayerExplainsStoppedCamera: the channel's master has stopped; the
// page tries its attempts, then shows the server's diagnosis (the camera
// did not answer) within its bound.
func TestPlayerExplainsStoppedCamera(t *testing.T) {
	ch := newChannel(t)
	stop := startMaster(t, ch)
	stop()
	// Without late answers (a stopped camera then costs 12 s per pair of
	// attempts): this test is about the diagnosis.
	policy := viewer.RetryPolicy{AnswerTimeout: time.Second, MaxAttempts: 3, BackoffBase: 100 * time.Millisecond, BackoffCap: 200 * time.Millisecond, LateAnswerWindow: -1}
	p := startPlayer(t, player.Config{Channels: []string{ch}, Retry: policy})
	tb := newTab(t, 60*time.Second)
	start := time.Now()
	tb.navigate(t, p.signIn("/?channel="+ch))
	// 3 attempts of 1 s, 2 backoffs of at most 200 ms, plus setup.
	bound := 3*time.Second + 400*time.Millisecond + 3*time.Second
	tb.waitJS(t, bound, `window.kvsrtc && window.kvsrtc.players[0].state === 'failed' && !document.querySelector('.failure').hidden`, describePlayers)
	t.Logf("gave up after %v", time.Since(start).Round(time.Millisecond))
	s := tb.players(t)[0]
	if s.Diagnosis == nil || s.Diagnosis.Cause != viewer.CauseNoAnswer || s.AttemptsTotal != 3 {
		t.Fatalf("diagnosis %+v after %d attempts", s.Diagnosis, s.AttemptsTotal)
	}
	var shown struct{ Title, Message, Advice, Cause string }
	tb.eval(t, `({Title: document.querySelector('.failure-title').textContent,
		Message: document.querySelector('.failure-message').textContent,
		Advice: document.querySelector('.failure-advice').textContent,
		Cause: document.querySelector('.failure-cause').textContent})`, &shown)
	if shown.Title != "The camera did not answer" || !strings.Contains(shown.Message, ch) || !strings.Contains(shown.Message, "3 attempts") ||
		shown.Advice == "" || shown.Cause != "cause: no-answer" {
		t.Fatalf("the page shows %+v", shown)
	}
	// The Retry button starts over.
	tb.eval(t, `(() => { document.querySelector('.retry').click(); return true })()`, nil)
	tb.waitJS(t, 2*time.Second, `window.kvsrtc.players[0].state !== 'failed'`, describePlayers)
}

// TestPlayerReconnectsWhenCameraRestarts: while playing, the master goes
// away and a new one takes its place; the page notices the stall or the
// broken path and reconnects to the new master without a reload.
func TestPlayerReconnectsWhenCameraRestarts(t *testing.T) {
	ch := newChannel(t)
	stop := startMaster(t, ch)
	p := startPlayer(t, player.Config{Channels: []string{ch}, StallTimeout: 2 * time.Second,
		Retry: viewer.RetryPolicy{AnswerTimeout: 1500 * time.Millisecond, MaxAttempts: 10, BackoffBase: 200 * time.Millisecond, BackoffCap: time.Second}})
	tb := newTab(t, 90*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	tb.waitJS(t, 20*time.Second, playing, describePlayers)
	stop()
	tb.waitJS(t, 10*time.Second, `['reconnecting', 'restarting', 'retrying'].includes(window.kvsrtc.players[0].state)`, describePlayers)
	startMaster(t, ch)
	tb.waitJS(t, 30*time.Second, `window.kvsrtc.players[0].state === 'playing' && window.kvsrtc.players[0].recoveries >= 1 && window.kvsrtc.players[0].snapshot().framesDecoded >= 10`, describePlayers)
	s := tb.players(t)[0]
	t.Logf("recovered: %d recoveries, %d attempts in all, last cause %s", s.Recoveries, s.AttemptsTotal, s.LastCause)
}

// TestGridPlaysEveryChannel: the grid page plays several cameras at once.
func TestGridPlaysEveryChannel(t *testing.T) {
	a, b := newChannel(t, "-a"), newChannel(t, "-b")
	for _, c := range []string{a, b} {
		startMaster(t, c)
	}
	p := startPlayer(t, player.Config{Channels: []string{a, b}})
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/grid"))
	tb.waitJS(t, 25*time.Second, `window.kvsrtc.players.length === 2 && `+strings.TrimPrefix(playing, "window.kvsrtc && "), describePlayers)
	var labels []string
	tb.eval(t, `[...document.querySelectorAll('.player .label')].map(e => e.textContent)`, &labels)
	if len(labels) != 2 || labels[0] != a || labels[1] != b {
		t.Errorf("tiles %v", labels)
	}
	tb.screenshot(t, "grid")
}

// TestNoSecretReachesTheBrowser: nothing the browser receives (pages,
// scripts, API responses, WebSocket frames, console lines) contains the
// secret access key, and the server refuses everything but its login page
// and healthz without the token.
func TestNoSecretReachesTheBrowser(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	p := startPlayer(t, player.Config{Channels: []string{ch}})
	secret := shared.emu.Credentials().SecretAccessKey

	tb := newTab(t, 60*time.Second)
	var mu sync.Mutex
	var finished []network.RequestID
	var frames []string
	urls := map[network.RequestID]string{}
	if err := chromedp.Listen(tb.ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventResponseReceived:
			urls[e.RequestID] = e.Response.URL
		case *network.EventLoadingFinished:
			finished = append(finished, e.RequestID)
		case *network.EventWebSocketFrameReceived:
			frames = append(frames, string(e.Response.PayloadData))
		case *network.EventWebSocketFrameSent:
			frames = append(frames, string(e.Response.PayloadData))
		case *network.EventWebSocketCreated:
			frames = append(frames, e.URL)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tb.ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}

	// Without the token: the login page, and a refused API.
	tb.navigate(t, p.url+"/?channel="+ch)
	var path string
	tb.eval(t, "location.pathname", &path)
	if path != "/login" {
		t.Fatalf("without the token the page went to %s, want /login", path)
	}
	var status int
	tb.eval(t, `fetch('/api/session', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"channel":"`+ch+`"}'}).then(r => r.status)`, &status)
	if status != http.StatusUnauthorized {
		t.Fatalf("/api/session without the token: %d", status)
	}
	// A wrong token in the login form.
	tb.eval(t, `(() => { document.querySelector('input[name=token]').value = 'not-the-token'; document.querySelector('form').submit(); return true })()`, nil)
	tb.waitJS(t, 5*time.Second, `document.querySelector('.login-error') !== null`, "document.body.innerText")

	// Signed in through the form, then playing.
	tb.eval(t, `(() => { document.querySelector('input[name=token]').value = '`+p.token+`'; document.querySelector('form').submit(); return true })()`, nil)
	tb.waitJS(t, 20*time.Second, playing, describePlayers)
	// The API a retry uses, signed in: a session and the channel list (the
	// bodies are read: the browser keeps only those).
	tb.eval(t, `fetch('/api/session', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"channel":"`+ch+`"}'}).then(r => r.text().then(() => r.status))`, &status)
	if status != http.StatusOK {
		t.Fatalf("/api/session signed in: %d", status)
	}
	tb.eval(t, `fetch('/api/channels').then(r => r.text().then(() => r.status))`, &status)
	if status != http.StatusOK {
		t.Fatalf("/api/channels signed in: %d", status)
	}
	time.Sleep(500 * time.Millisecond) // let the reports and stats land

	var html string
	tb.eval(t, "document.documentElement.outerHTML", &html)
	seen := []string{html}
	mu.Lock()
	ids := append([]network.RequestID(nil), finished...)
	for id := range urls {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	seen = append(seen, frames...)
	nframes := len(frames)
	mu.Unlock()
	bodies, withSession := 0, 0
	for _, id := range ids {
		r, err := chromedp.Call(tb.ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
		if err != nil {
			continue // redirects, preflights and earlier pages have no body
		}
		bodies++
		if strings.Contains(string(r.Body), `"signalingUrl"`) {
			withSession++
		}
		seen = append(seen, string(r.Body))
	}
	seen = append(seen, tb.consoleLines()...)
	// At least the page and the API's session (both with a session), and
	// the style sheet.
	if bodies < 3 || withSession < 2 || nframes < 3 {
		t.Fatalf("captured only %d bodies (%d with a session) and %d WebSocket frames", bodies, withSession, nframes)
	}
	encoded := []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), strings.ReplaceAll(secret, "/", "%2F")}
	for i, s := range seen {
		for _, e := range encoded {
			if strings.Contains(s, e) {
				t.Fatalf("item %d seen by the browser contains the secret key: %.200s", i, s)
			}
		}
	}
	t.Logf("checked %d response bodies, %d WebSocket frames and URLs, the page source and %d console lines", bodies, nframes, len(tb.consoleLines()))

	// Outside the browser: every protected path refuses requests without
	// the token.
	for _, path := range []string{"/", "/grid", "/api/channels", "/metrics"} {
		resp, body := get(t, p.url+path, "")
		if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d", path, resp.StatusCode)
		}
		if strings.Contains(body, "RTCPeerConnection") || strings.Contains(body, "kvsrtc-config") {
			t.Errorf("GET %s without the token leaks the player", path)
		}
	}
}

// get fetches u (with a bearer token unless empty) without following
// redirects.
func get(t *testing.T, u, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Transport: shared.tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestPlayerKeepsPlayingThroughGoAwayAndICERefresh: while playing, the
// service sends GO_AWAY (the page renews its signaling URL for the same
// client id, media untouched) and RECONNECT_ICE_SERVER (the page gets fresh
// ICE servers and restarts ICE on the same peer connection); the video
// never stops and no new session is started.
func TestPlayerKeepsPlayingThroughGoAwayAndICERefresh(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	p := startPlayer(t, player.Config{Channels: []string{ch}})
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	tb.waitJS(t, 20*time.Second, playing, describePlayers)
	id := tb.players(t)[0].ClientIDs[0]

	if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultGoAway, Channel: ch, Target: id, Grace: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	tb.waitJS(t, 10*time.Second, `window.kvsrtc.players[0].events.some(e => e.what === 'signaling-renewed' && e.detail === 'go-away')`, describePlayers)

	if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultReconnectICE, Channel: ch, Target: id}); err != nil {
		t.Fatal(err)
	}
	tb.waitJS(t, 10*time.Second, `window.kvsrtc.players[0].events.some(e => e.what === 'state' && e.detail === 'restarting ice-expired')`, describePlayers)
	tb.waitJS(t, 10*time.Second, `window.kvsrtc.players[0].state === 'playing'`, describePlayers)
	before := tb.players(t)[0].Frames
	time.Sleep(time.Second)
	s := tb.players(t)[0]
	if s.AttemptsTotal != 1 || s.Recoveries != 0 || len(s.ClientIDs) != 1 || s.Frames <= before {
		t.Fatalf("after GO_AWAY and RECONNECT_ICE_SERVER: %d attempts, %d recoveries, client ids %v, frames %d -> %d; events %+v",
			s.AttemptsTotal, s.Recoveries, s.ClientIDs, before, s.Frames, s.Events)
	}
	resp, body := get(t, p.url+"/metrics", p.token)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `kvsrtc_player_renewals_total{channel="`+ch+`"} 2`) {
		t.Errorf("metrics:\n%s", body)
	}
}

// TestPlayerExplainsFullChannel: the service refuses the page's WebSocket
// (the channel has its maximum of viewers); the browser only sees the
// socket fail, and the server's diagnosis names the real cause.
func TestPlayerExplainsFullChannel(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	policy := viewer.RetryPolicy{MaxAttempts: 2, BackoffBase: 100 * time.Millisecond, BackoffCap: 200 * time.Millisecond}
	p := startPlayer(t, player.Config{Channels: []string{ch}, Retry: policy})
	if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultRefuseFull, Channel: ch, Count: 3}); err != nil {
		t.Fatal(err)
	}
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	tb.waitJS(t, 10*time.Second, `window.kvsrtc && window.kvsrtc.players[0].state === 'failed'`, describePlayers)
	var title string
	tb.eval(t, `document.querySelector('.failure-title').textContent`, &title)
	s := tb.players(t)[0]
	if s.Diagnosis == nil || s.Diagnosis.Cause != viewer.CauseChannelFull || title != "Too many viewers" {
		t.Fatalf("diagnosis %+v, title %q", s.Diagnosis, title)
	}
}

// TestServeOverHTTPS: "kvsrtc serve --tls-cert --tls-key" (the binary)
// serves the player over HTTPS; Chromium signs in with the token in the
// address, and the page, now a secure context, plays the master's video.
func TestServeOverHTTPS(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	const token = "browser-test-https-token"
	out := runKvsrtc(t, "serve", "--listen", "127.0.0.1:0", "--channel", ch, "--auth", token, "--loopback-only",
		"--tls-cert", shared.certFile, "--tls-key", shared.keyFile)
	re := regexp.MustCompile(`open (https://127\.0\.0\.1:\d+) and sign in`)
	var m []string
	deadline := time.Now().Add(30 * time.Second)
	for m = re.FindStringSubmatch(out()); m == nil; m = re.FindStringSubmatch(out()) {
		if time.Now().After(deadline) {
			t.Fatalf("kvsrtc serve printed no https address:\n%s", out())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, m[1]+"/?channel="+ch+"&token="+token)
	tb.waitJS(t, 20*time.Second, playing, describePlayers)
	var where string
	tb.eval(t, "location.protocol + ' ' + isSecureContext + ' ' + location.search", &where)
	if where != "https: true ?channel="+ch {
		t.Errorf("page at %q, want https, a secure context, and no token in the address", where)
	}
	s := tb.players(t)[0]
	if s.Width != 640 || s.Height != 360 {
		t.Errorf("playing %dx%d, want 640x360", s.Width, s.Height)
	}
	t.Logf("over HTTPS: first frame %.0f ms after navigation", s.TTFFMs)
}
