package browsertest

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/relay"
	"github.com/kvsrtc/kvsrtc/whep"
)

// TestWHEPPlayerPlaysRelay: an independent WHEP player, the unmodified npm
// package @eyevinn/webrtc-player in Chromium, plays a kvsrtc master's
// video through the relay's WHEP handler (offer, answer, Location; DELETE
// when it unloads), authenticated by the handler's hook.
func TestWHEPPlayerPlaysRelay(t *testing.T) {
	channel := newChannel(t)
	startMaster(t, channel)
	r, err := relay.New(relay.Config{
		Control: shared.ctl, HTTPClient: &http.Client{Transport: shared.tr}, LoopbackOnly: true,
		Logger: testLogger("relay"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	const token = "Bearer whep-browser-test-token"
	h, err := whep.NewHandler(whep.Config{Relay: r, Logger: testLogger("whep"), Auth: func(req *http.Request, _ string) error {
		if req.Header.Get("Authorization") != token {
			return errors.New("send Authorization: Bearer <token>")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/whep/", h)
	mux.HandleFunc("/require", serveRequire)
	mux.HandleFunc("/whep-player.html", func(w http.ResponseWriter, req *http.Request) {
		http.ServeFile(w, req, filepath.Join("js", "whep-player.html"))
	})
	mux.HandleFunc("/whep-player.js", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, req, filepath.Join("js", "whep-player.js"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tb := newTab(t, 90*time.Second)
	q := url.Values{"url": {srv.URL + "/whep/" + channel}, "auth": {token}}
	tb.navigate(t, srv.URL+"/whep-player.html?"+q.Encode())
	const playing = `(() => { const v = document.getElementById('video');
		return v.videoWidth === 640 && v.videoHeight === 360 && v.getVideoPlaybackQuality().totalVideoFrames > 30; })()`
	const describe = `({state: window.state, width: document.getElementById('video').videoWidth,
		frames: document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames})`
	tb.await(t, 45*time.Second, playing, describe)

	st := r.Stats()
	if st.Peers != 1 || st.UpstreamsOpen != 1 {
		t.Errorf("relay: %d peers, %d upstreams; want 1 and 1", st.Peers, st.UpstreamsOpen)
	}
	tb.eval(t, `window.player.unload().then(() => true)`, nil)
	deadline := time.Now().Add(15 * time.Second)
	for r.Stats().Peers != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the player's DELETE did not remove its peer: %+v", r.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serveRequire resolves a CommonJS require(name) made by the module at
// from (a path under js/node_modules, "" for the page) as Node does, and
// returns the file, its path in X-Module-Path. A package's "browser" entry
// is preferred to "main" unless it is an ES module.
func serveRequire(w http.ResponseWriter, r *http.Request) {
	from, name := r.URL.Query().Get("from"), r.URL.Query().Get("name")
	p, err := resolveModule(from, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	b, err := os.ReadFile(filepath.Join("js", filepath.FromSlash(p)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("X-Module-Path", p)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(b)
}

var esmExport = regexp.MustCompile(`(^|[;}\s])export\s*(\{|default\s)`)

// resolveModule returns the path (relative to js/) of the file name
// resolves to from the module at from.
func resolveModule(from, name string) (string, error) {
	if strings.HasPrefix(name, "./") || strings.HasPrefix(name, "../") {
		return resolveFile(path.Join(path.Dir(from), name))
	}
	if strings.Contains(name, "..") {
		return "", errors.New("bad module name " + name)
	}
	// node_modules of from's directory and every parent, then the root's.
	for dir := path.Dir(from); ; dir = path.Dir(dir) {
		if dir == "." || dir == "/" {
			dir = ""
		}
		if path.Base(dir) != "node_modules" {
			if p, err := resolvePackage(path.Join(dir, "node_modules", name)); err == nil {
				return p, nil
			}
		}
		if dir == "" {
			return "", errors.New("cannot find module " + name + " from " + from)
		}
	}
}

// resolvePackage resolves a package directory (or a file in one).
func resolvePackage(dir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join("js", filepath.FromSlash(dir), "package.json"))
	if err != nil {
		return resolveFile(dir)
	}
	var pkg struct {
		Main    string          `json:"main"`
		Browser json.RawMessage `json:"browser"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		return "", err
	}
	var entries []string
	var browser string
	if json.Unmarshal(pkg.Browser, &browser) == nil && browser != "" {
		entries = append(entries, browser)
	}
	entries = append(entries, pkg.Main, "index.js")
	for _, e := range entries {
		if e == "" {
			continue
		}
		p, err := resolveFile(path.Join(dir, e))
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("js", filepath.FromSlash(p))); err == nil && !esmExport.Match(b) {
			return p, nil
		}
	}
	return "", errors.New("no CommonJS entry in " + dir)
}

// resolveFile finds p, p.js, p.json or p/index.js under js/.
func resolveFile(p string) (string, error) {
	if !strings.HasPrefix(p, "node_modules/") {
		return "", errors.New("module outside node_modules: " + p)
	}
	for _, c := range []string{p, p + ".js", p + ".json", path.Join(p, "index.js")} {
		if fi, err := os.Stat(filepath.Join("js", filepath.FromSlash(c))); err == nil && !fi.IsDir() {
			return c, nil
		}
	}
	return "", errors.New("no file " + p)
}
