package browsertest

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/player"
)

// openLine is the address line both examples print.
var openLine = regexp.MustCompile(`open (http://127\.0\.0\.1:\d+)/ and sign in`)

// signInAs submits an example's toy sign-in form (a select of user names).
func (tb *tab) signInAs(t *testing.T, user string) {
	t.Helper()
	tb.waitJS(t, 10*time.Second, `document.querySelector('select[name=user]') !== null`, "document.body.innerText")
	tb.eval(t, `(() => { document.querySelector('select[name=user]').value = '`+user+`'; document.querySelector('form').submit(); return true })()`, nil)
	tb.waitJS(t, 10*time.Second, `document.querySelector('kvs-viewer') !== null`, "location.href + ' ' + document.body.innerText")
}

// checkRefused: the element for channel shows that the user may not
// watch it, and the page's own caption got the failed event.
func (tb *tab) checkRefused(t *testing.T, channel string) {
	t.Helper()
	tb.waitJS(t, 15*time.Second, viewerFailed(channel), describeViewers)
	f := tb.viewerFailure(t, channel)
	if f.Cause != string(player.CauseNotAllowed) || f.Title != "Not allowed to watch this camera" || !strings.Contains(f.Message, channel) {
		t.Errorf("refusal of %s: %+v", channel, f)
	}
	var caption string
	tb.eval(t, `document.querySelector('kvs-viewer[channel="`+channel+`"]').closest('figure').querySelector('.state').textContent`, &caption)
	if !strings.HasPrefix(caption, "Not allowed to watch this camera: ") {
		t.Errorf("caption of %s: %q", channel, caption)
	}
}

// TestEmbedGoExample runs examples/embed-go as docs/EMBED.md does: its own
// toy sign-in, the kvsrtc Handler mounted at /cams/, two cameras with
// <kvs-viewer> under a strict CSP. Alice plays both; Bob plays his and is
// told clearly that the other is not his; nothing secret of the server
// reaches the browser.
func TestEmbedGoExample(t *testing.T) {
	a, b := newChannel(t, "-front"), newChannel(t, "-back")
	startMaster(t, a)
	startMaster(t, b)
	bin := buildExample(t, "embed-go")
	url := runProgram(t, openLine, bin, "--listen", "127.0.0.1:0", "--loopback-only",
		"--channel", a, "--channel", b, "--user", "alice="+a+","+b, "--user", "bob="+b)

	// Not signed in: the page sends to the sign-in, the API refuses.
	resp, body := get(t, url+"/", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("GET / signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", url+"/cams/session", strings.NewReader(`{"channel":"`+a+`"}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := (&http.Client{Transport: shared.tr}).Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /cams/session signed out: %v %v (%s)", resp, err, body)
	} else {
		resp.Body.Close()
	}

	alice := newTab(t, 90*time.Second)
	c := capture(t, alice)
	alice.navigate(t, url+"/")
	alice.signInAs(t, "alice")
	alice.waitJS(t, 25*time.Second, viewerPlaying(a)+" && "+viewerPlaying(b), describeViewers)
	alice.noCSPViolations(t)
	alice.screenshot(t, "embed-go")
	creds := shared.emu.Credentials()
	c.checkNoSecret(t, alice, 2, creds.SecretAccessKey, creds.SessionToken)
	alice.close()

	bob := newTab(t, 60*time.Second)
	bob.navigate(t, url+"/login")
	bob.signInAs(t, "bob")
	bob.waitJS(t, 25*time.Second, viewerPlaying(b), describeViewers)
	bob.checkRefused(t, a)
	bob.noCSPViolations(t)
}

// TestEmbedStaticExample runs examples/embed-static as docs/EMBED.md does:
// "kvsrtc serve --api-only" with signed tokens behind the app's reverse
// proxy (httputil.ReverseProxy) at /kvs/, static pages with <kvs-viewer>,
// and the app's backend signing short-lived tokens. Alice plays both
// cameras, Bob gets a clear refusal for front-door; neither the AWS secret
// nor the token key reaches the browser.
func TestEmbedStaticExample(t *testing.T) {
	front, back := ensureChannel(t, "front-door"), ensureChannel(t, "back-yard")
	startMaster(t, front)
	startMaster(t, back)
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	keyFile := filepath.Join(t.TempDir(), "kvs-token.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apiAddr := freeAddr(t)
	out := runKvsrtc(t, "serve", "--api-only", "--listen", apiAddr, "--base-path", "/kvs/", "--token-key-file", keyFile,
		"--trusted-proxy", "127.0.0.1", "--loopback-only", "--channel", front, "--channel", back)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out(), "kvsrtc serve --api-only: channels") {
		if time.Now().After(deadline) {
			t.Fatalf("kvsrtc serve --api-only did not start:\n%s", out())
		}
		time.Sleep(50 * time.Millisecond)
	}
	bin := buildExample(t, "embed-static")
	url := runProgram(t, openLine, bin, "--listen", "127.0.0.1:0", "--api", "http://"+apiAddr, "--token-key-file", keyFile)

	alice := newTab(t, 90*time.Second)
	c := capture(t, alice)
	alice.navigate(t, url+"/")
	alice.signInAs(t, "alice")
	alice.waitJS(t, 25*time.Second, viewerPlaying(front)+" && "+viewerPlaying(back), describeViewers)
	alice.noCSPViolations(t)
	alice.screenshot(t, "embed-static")
	creds := shared.emu.Credentials()
	c.checkNoSecret(t, alice, 2, creds.SecretAccessKey, creds.SessionToken, key)
	alice.close()

	bob := newTab(t, 60*time.Second)
	bob.navigate(t, url+"/")
	bob.signInAs(t, "bob")
	bob.waitJS(t, 25*time.Second, viewerPlaying(back), describeViewers)
	bob.checkRefused(t, front)
	bob.noCSPViolations(t)

	// Without a token (signed out), the API behind the proxy refuses.
	resp, _ := get(t, url+"/kvs/channels", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /kvs/channels without a token: %d", resp.StatusCode)
	}
}

// ensureChannel creates channel name on the shared service unless it
// exists (the static example's page names its channels).
func ensureChannel(t *testing.T, name string) string {
	t.Helper()
	if _, err := shared.emu.CreateChannel(t.Context(), name, 0); err != nil && !strings.Contains(err.Error(), "exist") {
		t.Fatal(err)
	}
	return name
}
