package browsertest

import (
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/player"
)

// TestLoginRedirectStaysOnSite: signing in with a crafted next
// (/%09/HOST: the browser drops the tab and reads //HOST) leaves Chromium
// on the player's own origin, never on the other site.
func TestLoginRedirectStaysOnSite(t *testing.T) {
	// The other site: another origin on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	other := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<!doctype html><title>other site</title>the other site"))
	}), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- other.Serve(ln) }()
	t.Cleanup(func() { _ = other.Close(); <-done })
	otherHost := ln.Addr().String()

	p := startPlayer(t, player.Config{Channels: []string{newChannel(t)}})
	for _, next := range []string{"/\t/" + otherHost + "/landed", "/\n/" + otherHost + "/landed", "/\\" + otherHost + "/landed"} {
		// A sign-in link: GET /login with the credential and next (a plain
		// navigation, which the page's CSP form-action does not cover).
		tb := newTab(t, 60*time.Second)
		tb.navigate(t, p.url+"/login?token="+url.QueryEscape(p.token)+"&next="+url.QueryEscape(next))
		var where string
		tb.eval(t, "location.origin", &where)
		if where != p.url {
			t.Errorf("sign-in link with next %q: the browser is at %s, want the player's %s", next, where, p.url)
		}
		tb.close()
		// The login form.
		tb = newTab(t, 60*time.Second)
		tb.navigate(t, p.url+"/login?next="+url.QueryEscape(next))
		tb.eval(t, `(() => { document.querySelector('input[name=token]').value = '`+p.token+`'; document.querySelector('form').submit(); return true })()`, nil)
		tb.waitJS(t, 20*time.Second, `location.pathname !== '/login'`, "location.href")
		tb.eval(t, "location.origin", &where)
		if where != p.url {
			t.Errorf("login form with next %q: the browser is at %s, want the player's %s", next, where, p.url)
		}
		tb.close()
	}
}
