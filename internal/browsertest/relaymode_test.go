package browsertest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/relay"
	"github.com/kvsrtc/kvsrtc/viewer"
	"github.com/kvsrtc/kvsrtc/whep"
)

// startRelayPlayer serves the built-in player in mode (relay or auto) with
// a relay of cfg.Channels mounted at /whep/, as kvsrtc serve --mode does.
// rc, if set, changes the relay's configuration.
func startRelayPlayer(t *testing.T, mode player.Mode, cfg player.Config, rc func(*relay.Config)) (*playerServer, *relay.Relay) {
	t.Helper()
	rcfg := relay.Config{
		Control: shared.ctl, HTTPClient: &http.Client{Transport: shared.tr}, LoopbackOnly: true, Audio: true,
		JoinTimeout: 10 * time.Second, Logger: testLogger("relay"),
	}
	if rc != nil {
		rc(&rcfg)
	}
	r, err := relay.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	h, err := whep.NewHandler(whep.Config{Relay: r, Logger: testLogger("whep")})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Mode, cfg.WHEP = mode, "/whep/"
	cfg.Mount = map[string]http.Handler{"/whep/": h}
	cfg.Relayed = func(channel string) bool {
		_, open := r.Status(channel)
		return open
	}
	cfg.Metrics = func(w io.Writer) error { return r.Stats().WritePrometheus(w) }
	return startPlayer(t, cfg), r
}

// playingRelayed is true when every tile plays the test pattern through the
// relay.
const playingRelayed = `window.kvsrtc && window.kvsrtc.players.length > 0 && window.kvsrtc.players.every(p => {
	const s = p.snapshot(); return s.state === 'playing' && s.relay && s.width === 640 && s.height === 360 && s.framesDecoded >= 10 })`

// TestRelayModeServesManyPages: a camera that admits 10 viewers and 25
// browser pages in relay mode: every page plays, the camera has exactly one
// viewer (the relay), and it sends the bytes of one viewer. The camera
// sends 160x120 at 15 fps, so that 25 Chromium tabs fit on 2 cores with
// the rest of the tests.
func TestRelayModeServesManyPages(t *testing.T) {
	const pages, batch = 25, 5
	file := testVideo(t, "small.h264", "testsrc=size=160x120:rate=15", "-g", "15")
	ch := newChannel(t)
	cam := shared.env.StartMaster(t, kvstest.MasterOptions{Channel: ch, Logger: testLogger("master"), Configure: func(c *master.Config) {
		c.MaxViewers = 10
		src, err := media.OpenFile(file, media.SourceConfig{FPS: 15})
		if err != nil {
			t.Fatal(err)
		}
		c.Video = src
	}})
	p, r := startRelayPlayer(t, player.ModeRelay, player.Config{Channels: []string{ch}}, nil)

	const playingSmall = `window.kvsrtc && window.kvsrtc.players.length > 0 && window.kvsrtc.players.every(p => {
		const s = p.snapshot(); return s.state === 'playing' && s.relay && s.width === 160 && s.framesDecoded >= 5 })`
	start := time.Now()
	tabs := make([]*tab, pages)
	var ttff []float64
	for i := 0; i < pages; i += batch {
		for j := i; j < i+batch; j++ {
			tabs[j] = newTab(t, 600*time.Second)
			// A small viewport: Chromium composites every tab's video in
			// software on one thread of its GPU process, and at the default
			// 960x600 that thread, not kvsrtc, is what 25 tabs saturate.
			if err := chromedp.Do(tabs[j].ctx, chromedp.EmulateViewport(320, 240)); err != nil {
				t.Fatal(err)
			}
			tabs[j].navigate(t, p.signIn("/?channel="+ch))
		}
		for j := i; j < i+batch; j++ {
			tabs[j].waitJS(t, 120*time.Second, playingSmall, describePlayers)
			s := tabs[j].players(t)[0]
			if len(s.ClientIDs) != 0 {
				t.Errorf("page %d minted client ids %v: it should not be a viewer of the channel", j, s.ClientIDs)
			}
			ttff = append(ttff, s.TTFFMs)
		}
	}
	t.Logf("%d pages playing through the relay after %v; first frames (ms after each navigation): %v", pages, time.Since(start).Round(time.Millisecond), ttff)

	if v := cam.Master.Viewers(); len(v) != 1 {
		t.Fatalf("the camera has %d viewers, want 1 (the relay)", len(v))
	}
	// A page whose first WHEP request timed out on a loaded machine left a
	// peer it never heard of; the relay closes it after PeerTimeout. So the
	// count settles at one peer per page, and the abandoned peers must go.
	var st relay.Stats
	settle := time.Now()
	for deadline := settle.Add(relay.DefaultPeerTimeout + 30*time.Second); ; time.Sleep(250 * time.Millisecond) {
		if st = r.Stats(); (st.Peers == pages && st.UpstreamsOpen == 1) || time.Now().After(deadline) {
			break
		}
	}
	if st.Peers != pages || st.UpstreamsOpen != 1 {
		t.Errorf("relay: %d peers, %d upstreams after %v; want %d and 1", st.Peers, st.UpstreamsOpen, time.Since(settle).Round(time.Second), pages)
	} else if d := time.Since(settle); d > time.Second {
		t.Logf("relay: abandoned peers closed after %v", d.Round(time.Second))
	}
	// What the camera sends over 3 s: one viewer's stream, not 25.
	bytes := func() uint64 {
		var n uint64
		for _, v := range cam.Master.Viewers() {
			n += v.BytesSent
		}
		return n
	}
	b0, t0 := bytes(), time.Now()
	time.Sleep(3 * time.Second)
	rate := float64(bytes()-b0) * 8 / time.Since(t0).Seconds() / 1e6
	t.Logf("camera uplink with %d pages: %.3f Mbit/s", pages, rate)
	if in := float64(r.Stats().BytesIn); rate > 0.5 || in == 0 {
		t.Errorf("the camera sends %.2f Mbit/s for %d relayed pages: more than one viewer's stream", rate, pages)
	}
	// Every page is still playing.
	for _, tb := range tabs {
		var frames int
		tb.eval(t, `window.kvsrtc.players[0].snapshot().framesDecoded`, &frames)
		tb.waitJS(t, 10*time.Second, fmt.Sprintf(`window.kvsrtc.players[0].snapshot().framesDecoded > %d`, frames+5), describePlayers)
	}
	// Every page was sent to the relay at least once. A page that retried
	// (on a loaded machine a first WHEP join can time out) asked again, so
	// the count may be higher; the retries are logged, not failed.
	resp, body := get(t, p.url+"/metrics", p.token)
	n, ok := metricValue(body, fmt.Sprintf(`kvsrtc_player_relay_sessions_total{channel="%s"}`, ch))
	if resp.StatusCode != http.StatusOK || !ok || n < pages || !strings.Contains(body, "kvsrtc_relay_") {
		t.Errorf("metrics (want kvsrtc_player_relay_sessions_total >= %d):\n%s", pages, body)
	} else if n > pages {
		t.Logf("%d relay sessions for %d pages: %d retried", n, pages, n-pages)
	}
}

// metricValue returns the value of the Prometheus sample whose name and
// labels are exactly series.
func metricValue(body, series string) (int, bool) {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}

// TestRelayModeCameraStopsAndReturns: the camera stops while pages watch
// through the relay: every page says so (the relay's status) within the
// bound; the camera returns and every page plays again without a reload or
// a new offer of its own.
func TestRelayModeCameraStopsAndReturns(t *testing.T) {
	const pages = 3
	ch := newChannel(t)
	stop := startMaster(t, ch)
	p, _ := startRelayPlayer(t, player.ModeRelay, player.Config{Channels: []string{ch}}, func(c *relay.Config) {
		c.RestartDelay = 500 * time.Millisecond
		c.Viewer = func(v *viewer.Config) {
			v.Retry = viewer.RetryPolicy{AnswerTimeout: time.Second, MaxAttempts: 2, BackoffBase: 100 * time.Millisecond, BackoffCap: 200 * time.Millisecond}
		}
	})
	tabs := make([]*tab, pages)
	for i := range tabs {
		tabs[i] = newTab(t, 120*time.Second)
		tabs[i].navigate(t, p.signIn("/?channel="+ch))
	}
	for _, tb := range tabs {
		tb.waitJS(t, 30*time.Second, playingRelayed, describePlayers)
		tb.eval(t, `(() => { window.notReloaded = true; return true })()`, nil)
	}
	stop()
	stopped := time.Now()
	for i, tb := range tabs {
		tb.waitJS(t, 20*time.Second, `(() => { const s = window.kvsrtc.players[0].snapshot();
			return s.state === 'upstream' && (s.upstream === 'offline' || s.upstream === 'reconnecting') && s.status !== '' })()`, describePlayers)
		var status string
		tb.eval(t, `window.kvsrtc.players[0].snapshot().status`, &status)
		t.Logf("page %d: %q %v after the camera stopped", i, status, time.Since(stopped).Round(time.Millisecond))
	}
	// The pages wait for the camera: the camera-offline text, no failure.
	time.Sleep(2 * time.Second)
	for i, tb := range tabs {
		s := tb.players(t)[0]
		if s.State != "upstream" || !strings.Contains(s.Status, "Camera offline") && !strings.Contains(s.Status, "lost the camera") {
			t.Errorf("page %d while the camera is away: state %s, status %q", i, s.State, s.Status)
		}
	}
	startMaster(t, ch)
	back := time.Now()
	for i, tb := range tabs {
		tb.waitJS(t, 30*time.Second, `window.notReloaded === true && window.kvsrtc.players[0].snapshot().state === 'playing'`, describePlayers)
		var frames int
		tb.eval(t, `window.kvsrtc.players[0].snapshot().framesDecoded`, &frames)
		tb.waitJS(t, 10*time.Second, fmt.Sprintf(`window.kvsrtc.players[0].snapshot().framesDecoded > %d`, frames+10), describePlayers)
		s := tb.players(t)[0]
		t.Logf("page %d plays again %v after the camera returned (attempts %d)", i, time.Since(back).Round(time.Millisecond), s.AttemptsTotal)
		if s.AttemptsTotal != 1 {
			t.Errorf("page %d made %d attempts: the relay's recovery should need nothing from the page", i, s.AttemptsTotal)
		}
	}
}

// testVideo writes 30 s of H.264 (Annex B, baseline, no B-frames) from an
// ffmpeg lavfi source, with more encoder options (the GOP: -g N).
func testVideo(t *testing.T, name, lavfi string, opts ...string) string {
	t.Helper()
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatalf("ffmpeg not found (%v): install it (apt-get install ffmpeg; scripts/test.sh does)", err)
	}
	out := filepath.Join(t.TempDir(), name)
	args := []string{"-v", "error", "-f", "lavfi", "-i", lavfi, "-t", "30", "-c:v", "libx264", "-profile:v", "baseline",
		"-pix_fmt", "yuv420p", "-sc_threshold", "0", "-bf", "0"}
	args = append(append(args, opts...), "-f", "h264", out)
	cmd := exec.CommandContext(t.Context(), ff, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Fatalf("ffmpeg wrote no file: %v", err)
	}
	return out
}

// TestRelayModeWarmChannelStartsOnCachedGOP: the camera sends one keyframe
// every 10 s; a page that joins a warm channel a few seconds after a
// keyframe shows its first frame long before the next one is due: the
// relay started it on the cached GOP.
func TestRelayModeWarmChannelStartsOnCachedGOP(t *testing.T) {
	file := testVideo(t, "gop10s.h264", "testsrc=size=320x240:rate=30", "-g", "300", "-keyint_min", "300")
	ch := newChannel(t)
	shared.env.StartMaster(t, kvstest.MasterOptions{Channel: ch, Logger: testLogger("master"), Configure: func(c *master.Config) {
		src, err := media.OpenFile(file, media.SourceConfig{FPS: 30})
		if err != nil {
			t.Fatal(err)
		}
		c.Video = src
	}})
	p, r := startRelayPlayer(t, player.ModeRelay, player.Config{Channels: []string{ch}}, func(c *relay.Config) { c.Warm = []string{ch} })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, ok := r.Status(ch); ok && st.State == relay.StateStreaming {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the warm channel did not stream within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The first keyframe came with the stream; the next is ~10 s later.
	streaming := time.Now()
	time.Sleep(2 * time.Second)
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	const played = `window.kvsrtc && window.kvsrtc.players.length > 0 && (() => { const s = window.kvsrtc.players[0].snapshot();
		return s.state === 'playing' && s.relay && s.width === 320 && s.framesDecoded >= 1 })()`
	tb.waitJS(t, 15*time.Second, played, describePlayers)
	s := tb.players(t)[0]
	since := time.Since(streaming)
	t.Logf("first frame %.0f ms after navigation, %v after the stream's first keyframe", s.TTFFMs, since.Round(time.Millisecond))
	if since > 8*time.Second {
		t.Errorf("the page played %v after the stream's keyframe: it waited for the next one (due at 10 s) instead of the cached GOP", since)
	}
}

// TestAutoModeRelaysWhenTheChannelIsFull: in auto mode a page is a viewer
// of the channel until the channel refuses it as full; it then watches
// through the relay; the next page joins the relay at once (the channel is
// relayed already).
func TestAutoModeRelaysWhenTheChannelIsFull(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	p, r := startRelayPlayer(t, player.ModeAuto, player.Config{Channels: []string{ch},
		Retry: viewer.RetryPolicy{MaxAttempts: 3, BackoffBase: 100 * time.Millisecond, BackoffCap: 200 * time.Millisecond}}, nil)

	// First a direct page, as in direct mode.
	direct := newTab(t, 60*time.Second)
	direct.navigate(t, p.signIn("/?channel="+ch))
	direct.waitJS(t, 20*time.Second, playing, describePlayers)
	if s := direct.players(t)[0]; s.Relay || len(s.ClientIDs) == 0 {
		t.Fatalf("auto mode, free channel: the page should be a viewer of its own: %+v", s)
	}
	// The channel now refuses viewers as full (the page, then the server's
	// check): the next page goes through the relay.
	if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultRefuseFull, Channel: ch, Count: 2}); err != nil {
		t.Fatal(err)
	}
	full := newTab(t, 60*time.Second)
	full.navigate(t, p.signIn("/?channel="+ch))
	full.waitJS(t, 30*time.Second, playingRelayed, describePlayers)
	if s := full.players(t)[0]; !hasEvent(s, "relay-fallback", "") {
		t.Errorf("no relay-fallback event: %+v", s.Events)
	}
	// The channel is relayed now: a third page joins the relay at once,
	// without trying the channel first.
	third := newTab(t, 60*time.Second)
	third.navigate(t, p.signIn("/?channel="+ch))
	third.waitJS(t, 20*time.Second, playingRelayed, describePlayers)
	if s := third.players(t)[0]; len(s.ClientIDs) != 0 || s.AttemptsTotal != 1 {
		t.Errorf("third page: client ids %v, %d attempts; want none and 1 (straight to the relay)", s.ClientIDs, s.AttemptsTotal)
	}
	if st := r.Stats(); st.Peers != 2 {
		t.Errorf("relay peers %d, want 2", st.Peers)
	}
}

// TestRelayModeTwoWay: two pages watch through the relay with push-to-talk
// and the data console. The first page holds its button: the camera
// records its voice (one talk-back recording: the relay's), and the second
// page learns that someone else is talking. A line typed in the second
// page's console reaches the camera, whose echo reaches both pages.
func TestRelayModeTwoWay(t *testing.T) {
	ch := newChannel(t)
	dir := t.TempDir()
	twoWayMaster(t, ch, dir)
	p, _ := startRelayPlayer(t, player.ModeRelay, player.Config{Channels: []string{ch}, Data: true}, func(c *relay.Config) {
		c.Talk, c.Data = true, true
	})
	tabs := []*tab{newTab(t, 90*time.Second), newTab(t, 90*time.Second)}
	for _, tb := range tabs {
		tb.navigate(t, p.signIn("/?console=1&channel="+ch))
		tb.waitJS(t, 20*time.Second, playingRelayed, describePlayers)
		tb.await(t, 10*time.Second, tile0+".two.snapshot().data.open", describeTw)
	}
	talker, other := tabs[0], tabs[1]
	talker.eval(t, pressTalk, nil)
	talker.await(t, 10*time.Second, tile0+".two.snapshot().talk.live", describeTw)
	other.await(t, 10*time.Second, tile0+".snapshot().events.some((e) => e.what === 'talker' && e.detail === 'another page')", describePlayers)
	time.Sleep(2 * time.Second)
	talker.eval(t, releaseTlk, nil)
	talker.await(t, 5*time.Second, tile0+".two.snapshot().talk.trackState === 'ended'", describeTw)
	file := stableRecording(t, dir)
	codec, dur := probeAudio(t, file)
	if codec != "opus" || dur < time.Second {
		t.Fatalf("the camera recorded %s of %v from the relayed page's push-to-talk", codec, dur)
	}
	t.Logf("the camera recorded %v of Opus through the relay", dur.Round(time.Millisecond))

	other.eval(t, typeLine("hello through the relay"), nil)
	for i, tb := range tabs {
		tb.await(t, 10*time.Second, tile0+".two.snapshot().data.console.includes('< hello through the relay')", describeTw)
		if s := tb.players(t)[0]; s.State != "playing" {
			t.Errorf("page %d: state %s after two-way", i, s.State)
		}
	}
}

// TestRelayModePageICERestart: a page's own network trouble is handled on
// its own connection: an ICE restart by PATCH keeps the same WHEP session
// and peer connection, video goes on, and the relay's upstream (the
// camera's one viewer) is not touched.
func TestRelayModePageICERestart(t *testing.T) {
	ch := newChannel(t)
	cam := shared.env.StartMaster(t, kvstest.MasterOptions{Channel: ch, Logger: testLogger("master")})
	p, r := startRelayPlayer(t, player.ModeRelay, player.Config{Channels: []string{ch}}, nil)
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	tb.waitJS(t, 20*time.Second, playingRelayed, describePlayers)
	before := r.Stats()
	frames := tb.framesDecoded(t)
	tb.eval(t, "("+tile0+".cur.restartICE('network-change'), true)", nil)
	tb.await(t, 15*time.Second, tile0+".snapshot().events.some((e) => e.what === 'ice-restarted') && "+tile0+".state === 'playing'", describePlayers)
	tb.waitJS(t, 10*time.Second, fmt.Sprintf(`%s.snapshot().framesDecoded > %d`, tile0, frames+30), describePlayers)
	s := tb.players(t)[0]
	after := r.Stats()
	if s.AttemptsTotal != 1 || s.Recoveries != 0 || after.Peers != 1 || after.UpstreamsOpened != before.UpstreamsOpened || len(cam.Master.Viewers()) != 1 {
		t.Errorf("after the page's ICE restart: attempts %d, recoveries %d, relay peers %d, upstreams opened %d -> %d, camera viewers %d",
			s.AttemptsTotal, s.Recoveries, after.Peers, before.UpstreamsOpened, after.UpstreamsOpened, len(cam.Master.Viewers()))
	}
}

// TestRelayModeExplainsMissingCamera: in relay mode a channel whose camera
// is not there gets 503 answers to the page's WHEP offers (the relay found
// no video in time, with the upstream's cause); the page tries its
// attempts, then shows the server's diagnosis, as in direct mode.
func TestRelayModeExplainsMissingCamera(t *testing.T) {
	ch := newChannel(t)
	policy := viewer.RetryPolicy{AnswerTimeout: time.Second, MaxAttempts: 2, BackoffBase: 100 * time.Millisecond, BackoffCap: 200 * time.Millisecond, LateAnswerWindow: -1}
	p, _ := startRelayPlayer(t, player.ModeRelay, player.Config{Channels: []string{ch}, Retry: policy}, func(c *relay.Config) {
		c.JoinTimeout = 2 * time.Second
		c.Viewer = func(v *viewer.Config) { v.Retry = policy }
	})
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	tb.waitJS(t, 30*time.Second, `window.kvsrtc && window.kvsrtc.players[0].state === 'failed' && !document.querySelector('.failure').hidden`, describePlayers)
	s := tb.players(t)[0]
	refused := 0
	for _, e := range s.Events {
		if e.What == "whep-refused" {
			refused++
		}
	}
	if s.Diagnosis == nil || s.AttemptsTotal != 2 || refused != 2 || len(s.ClientIDs) != 0 {
		t.Fatalf("diagnosis %+v after %d attempts, %d WHEP refusals, client ids %v; events %+v", s.Diagnosis, s.AttemptsTotal, refused, s.ClientIDs, s.Events)
	}
	t.Logf("diagnosis: %s: %s", s.Diagnosis.Cause, s.Diagnosis.Title)
}

// TestRelayModePlaysOfficialMaster: the camera is the official JS SDK
// master flow in Chromium, whose encoder sends a keyframe at the start and
// then only when asked. A page that joins the relay once the GOP since that
// keyframe is longer than the relay replays (5 s) plays at once: the relay
// asks the camera for a keyframe (RTCP PLI through its viewer session).
// Before that, such a page got no video at all.
func TestRelayModePlaysOfficialMaster(t *testing.T) {
	ch := newChannel(t)
	cam := newTab(t, 2*time.Minute)
	cam.navigate(t, officialPageURL("official-master", ch))
	cam.waitJS(t, 30*time.Second, "window.result.error !== null || window.result.events.some(e => e[0] === 'ws-open')", "window.result")
	cam.officialResult(t)
	p, r := startRelayPlayer(t, player.ModeRelay, player.Config{Channels: []string{ch}}, func(c *relay.Config) { c.Warm = []string{ch} })
	deadline := time.Now().Add(30 * time.Second)
	for st, _ := r.Status(ch); st.State != relay.StateStreaming; st, _ = r.Status(ch) {
		if time.Now().After(deadline) {
			t.Fatalf("the relay does not stream the official master: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(7 * time.Second) // the GOP outgrows what the relay replays
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	const plays = `window.kvsrtc && window.kvsrtc.players.length > 0 && window.kvsrtc.players.every(p => {
		const s = p.snapshot(); return s.state === 'playing' && s.relay && s.width === 640 && s.height === 480 && s.framesDecoded >= 10 })`
	tb.waitJS(t, 20*time.Second, plays, describePlayers)
	s := tb.players(t)[0]
	t.Logf("first frame %.0f ms after navigation, attempt %d", s.TTFFMs, s.AttemptsTotal)
	if s.AttemptsTotal != 1 {
		t.Errorf("%d attempts: the first should play", s.AttemptsTotal)
	}
}
