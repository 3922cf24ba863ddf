package browsertest

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// allowAll is a hook that lets every request watch channels.
func allowAll(channels ...string) player.AuthorizeFunc {
	return func(*http.Request) ([]string, error) { return channels, nil }
}

// TestEmbedElementPlays: two <kvs-viewer> elements on one page under a
// strict Content-Security-Policy play their cameras in their shadow roots,
// take the host page's theme (custom properties, ::part), fire their
// events, and close completely when removed.
func TestEmbedElementPlays(t *testing.T) {
	a, b := newChannel(t, "-a"), newChannel(t, "-b")
	startMaster(t, a)
	startMaster(t, b)
	h := newHandler(t, player.HandlerConfig{Channels: []string{a, b}, Authorize: allowAll(a, b)})
	page := embedPage(fmt.Sprintf(`<kvs-viewer channel=%q controls stats></kvs-viewer><kvs-viewer channel=%q answer-timeout="3s"></kvs-viewer>`, a, b))
	es := startEmbed(t, h, map[string]string{"/": page})
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, es.url+"/")
	tb.eval(t, `(() => { window.seen = []; for (const e of document.querySelectorAll('kvs-viewer'))
		for (const k of ['state', 'first-frame', 'stats']) e.addEventListener(k, (ev) => window.seen.push(k + ':' + e.channel)); return true })()`, nil)
	tb.waitJS(t, 25*time.Second, viewerPlaying(a)+" && "+viewerPlaying(b), describeViewers)
	tb.noCSPViolations(t)
	var got struct {
		Policy  float64
		Objects string
		Bar     []bool
		Stats   bool
		Videos  int
	}
	tb.eval(t, `(() => { const v = [...document.querySelectorAll('kvs-viewer')];
		return {Policy: v[1]._player.policy.answerTimeoutMs,
			Objects: v.map(e => getComputedStyle(e.shadowRoot.querySelector('video')).objectFit).join(','),
			Bar: v.map(e => !e.shadowRoot.querySelector('.bar').hidden),
			Stats: !v[0].shadowRoot.querySelector('.stats').hidden,
			Videos: document.querySelectorAll('video').length} })()`, &got)
	// The shadow roots' style sheet applied (object-fit), the attributes
	// took effect, and the page's own DOM has no video of ours.
	if got.Policy != 3000 || got.Objects != "contain,contain" || !got.Bar[0] || got.Bar[1] || !got.Stats || got.Videos != 0 {
		t.Errorf("elements: %+v", got)
	}
	tb.waitJS(t, 5*time.Second, `['state:', 'first-frame:', 'stats:'].every(k => window.seen.some(s => s.startsWith(k)))`, "window.seen")
	tb.screenshot(t, "embed-element")

	// Theming: a custom property and a part, set by the page.
	tb.eval(t, `(() => { const s = new CSSStyleSheet(); s.replaceSync('kvs-viewer { --kvs-bg: rgb(1, 2, 3) } kvs-viewer::part(label) { color: rgb(4, 5, 6) }');
		document.adoptedStyleSheets = [s]; return true })()`, nil)
	var themed string
	tb.eval(t, `(() => { const r = document.querySelector('kvs-viewer').shadowRoot;
		return getComputedStyle(r.querySelector('.player')).backgroundColor + ' ' + getComputedStyle(r.querySelector('.label')).color })()`, &themed)
	if themed != "rgb(1, 2, 3) rgb(4, 5, 6)" {
		t.Errorf("themed tile: %s", themed)
	}

	// Removing an element closes its connection (the slot is freed).
	tb.eval(t, `(() => { window.kvsClosed = false; const e = document.querySelector('kvs-viewer');
		e.addEventListener('state', (ev) => { if (ev.detail.state === 'closed') window.kvsClosed = true }); e.remove(); return true })()`, nil)
	tb.waitJS(t, 2*time.Second, `window.kvsClosed && document.querySelector('kvs-viewer').state === 'playing'`, `[window.kvsClosed, document.querySelectorAll('kvs-viewer').length, document.querySelector('kvs-viewer').state, window.seen.slice(-5)]`)
}

// TestEmbedFailureStates: the element shows the same causes, in the same
// words, as the built-in player: a camera that is offline, a full channel;
// and the element's own: an unreachable service, an expired session, a
// channel the user may not watch.
func TestEmbedFailureStates(t *testing.T) {
	policy := viewer.RetryPolicy{AnswerTimeout: time.Second, MaxAttempts: 2, BackoffBase: 100 * time.Millisecond, BackoffCap: 200 * time.Millisecond, LateAnswerWindow: -1}
	offline := newChannel(t, "-offline")
	full := newChannel(t, "-full")
	startMaster(t, full)
	builtin := startPlayer(t, player.Config{Channels: []string{offline, full}, Retry: policy})
	h := newHandler(t, player.HandlerConfig{Channels: []string{offline, full}, Retry: policy, Authorize: allowAll(offline, full)})
	es := startEmbed(t, h, map[string]string{
		"/offline": embedPage(fmt.Sprintf(`<kvs-viewer channel=%q></kvs-viewer>`, offline)),
		"/full":    embedPage(fmt.Sprintf(`<kvs-viewer channel=%q></kvs-viewer>`, full)),
		// The API is not there (a closed port).
		"/unreachable": embedPage(fmt.Sprintf(`<kvs-viewer channel=%q endpoint="http://%s/cams/"></kvs-viewer>`, offline, freeAddr(t))),
	})

	compare := func(name, channel string, inject func()) {
		t.Helper()
		inject()
		tb := newTab(t, 60*time.Second)
		tb.navigate(t, builtin.signIn("/?channel="+channel))
		tb.waitJS(t, 15*time.Second, `window.kvsrtc && window.kvsrtc.players[0] && window.kvsrtc.players[0].state === 'failed'`, describePlayers)
		want := tb.pageFailure(t)
		tb.close()
		inject()
		tb = newTab(t, 60*time.Second)
		tb.navigate(t, es.url+"/"+name)
		tb.waitJS(t, 15*time.Second, viewerFailed(channel), describeViewers)
		got := tb.viewerFailure(t, channel)
		tb.noCSPViolations(t)
		tb.close()
		// The time spent differs from run to run.
		spent := regexp.MustCompile(` in [0-9.]+ s\)`)
		got.Message, want.Message = spent.ReplaceAllString(got.Message, ")"), spent.ReplaceAllString(want.Message, ")")
		if got != want || got.Title == "" {
			t.Errorf("%s: the element shows %+v, the built-in player %+v", name, got, want)
		} else {
			t.Logf("%s: both show %q (%s)", name, got.Title, got.Shown)
		}
	}
	compare("offline", offline, func() {})
	compare("full", full, func() {
		if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultRefuseFull, Channel: full, Count: 3}); err != nil {
			t.Fatal(err)
		}
	})

	tb := newTab(t, 60*time.Second)
	tb.navigate(t, es.url+"/unreachable")
	tb.waitJS(t, 15*time.Second, viewerFailed(offline), describeViewers)
	if f := tb.viewerFailure(t, offline); f.Cause != "service-unavailable" || f.Title != "The player server is unreachable" {
		t.Errorf("unreachable service: %+v", f)
	}
	tb.close()

	// Signed tokens: an expired one, and one that does not name the channel.
	key := []byte("embed-test-key-0123456789abcdef-0123")
	authz, err := player.TokenAuthorizer(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(exp time.Time) string {
		tok, err := player.SignToken(key, player.TokenClaims{Subject: "carol", Channels: []string{full}, Expires: exp.Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	th := newHandler(t, player.HandlerConfig{Channels: []string{offline, full}, Retry: policy, Authorize: authz})
	ts := startEmbed(t, th, map[string]string{
		"/expired":     embedPage(fmt.Sprintf(`<kvs-viewer channel=%q token=%q></kvs-viewer>`, full, sign(time.Now().Add(-time.Hour)))),
		"/not-allowed": embedPage(fmt.Sprintf(`<kvs-viewer channel=%q token=%q></kvs-viewer>`, offline, sign(time.Now().Add(time.Minute)))),
	})
	for path, want := range map[string]shownFailure{
		"/expired":     {Cause: "unauthorized", Title: "Your session expired"},
		"/not-allowed": {Cause: string(player.CauseNotAllowed), Title: "Not allowed to watch this camera"},
	} {
		ch := full
		if path == "/not-allowed" {
			ch = offline
		}
		tb := newTab(t, 60*time.Second)
		tb.navigate(t, ts.url+path)
		tb.waitJS(t, 15*time.Second, viewerFailed(ch), describeViewers)
		f := tb.viewerFailure(t, ch)
		if f.Cause != want.Cause || f.Title != want.Title || f.Advice == "" {
			t.Errorf("%s: %+v, want %s / %q", path, f, want.Cause, want.Title)
		}
		if s := tb.viewerSnapshotAttempts(t, ch); s != 1 {
			t.Errorf("%s: %d attempts; a refusal must not be retried", path, s)
		}
		tb.close()
	}
	if !strings.HasPrefix(es.url, "http://127.0.0.1:") {
		t.Fatalf("test page at %s", es.url)
	}
}

// viewerSnapshotAttempts is how many attempts the element for channel made.
func (tb *tab) viewerSnapshotAttempts(t *testing.T, channel string) int {
	t.Helper()
	var n int
	tb.eval(t, fmt.Sprintf(`document.querySelector('kvs-viewer[channel=%q]').snapshot().attemptsTotal`, channel), &n)
	return n
}
