package browsertest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/storage"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// kvsrtc serve and the storage path: a channel linked to a stream (WebRTC
// ingestion) is watched through its storage session (Multiviewer) by the
// built-in pages, on their own; other channels of the same server still
// play directly.

// startStorageCamera links channel to a stream and runs a Go camera in its
// storage session (signaling as MASTER, JoinStorageSession, the 640x360
// H.264 test pattern) until the test ends. It returns the channel's ARN.
func startStorageCamera(t *testing.T, channel string) string {
	t.Helper()
	arn, _ := linkStorage(t, channel)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	cam := dialGoPeer(t, arn, "")
	codec, _ := rtc.Capability(rtc.CodecH264)
	track, err := webrtc.NewTrackLocalStaticSample(codec, "video", "serve-storage-camera")
	if err != nil {
		t.Fatal(err)
	}
	cam.camera = track
	src, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		defer src.Close()
		for ctx.Err() == nil {
			s, err := src.ReadSample(ctx)
			if err != nil {
				return
			}
			_ = track.WriteSample(s.Sample)
		}
	})
	wg.Go(func() { cam.run(ctx, t) })
	if err := joinStorage(ctx, arn, ""); err != nil {
		t.Fatal(err)
	}
	waitSession(t, 15*time.Second, channel, "the Go camera connected", func(s storage.SessionStats) bool { return s.MasterConnected })
	return arn
}

// storagePlayed reports whether a snapshot's playing connection came from
// the storage session (its offer) rather than a camera's answer.
func storagePlayed(s snapshot) bool {
	return hasEvent(s, "storage-offer", "") && !hasEvent(s, "answer", "")
}

// TestServeStorageMultiviewer: three pages of kvsrtc serve play a
// storage-enabled channel through its storage session (the engine counts
// three connected viewers, the camera sends once), while a direct channel
// of the same server plays directly; a fourth page of the storage channel
// is over the session's viewer limit (the shared service's default, 3) and
// says so at once, with the service's words. A page that gets a new offer
// (a re-join) replaces its peer connection and plays on; a page that
// reconnects keeps its client id, so its place in the full session.
func TestServeStorageMultiviewer(t *testing.T) {
	chS := newChannel(t, "-storage")
	arn := startStorageCamera(t, chS)
	chD := newChannel(t, "-direct")
	startMaster(t, chD)
	p := startPlayer(t, player.Config{Channels: []string{chS, chD}})

	var tabs []*tab
	for range 3 {
		tb := newTab(t, 2*time.Minute)
		tb.navigate(t, p.signIn("/?channel="+chS))
		tabs = append(tabs, tb)
	}
	for i, tb := range tabs {
		tb.await(t, 30*time.Second, playing, describePlayers)
		s := tb.players(t)[0]
		if !storagePlayed(s) || s.AttemptsTotal != 1 {
			t.Fatalf("page %d plays, but not through one storage attempt: %+v", i, s)
		}
		t.Logf("storage page %d: first frame %.0f ms after navigation, %d frames", i, s.TTFFMs, s.Frames)
	}
	st := waitSession(t, 10*time.Second, chS, "3 viewers connected", func(s storage.SessionStats) bool { return s.Connected == 3 })
	t.Logf("storage session: %d viewers connected, camera %d frames / %d bytes in (sent once)", st.Connected, st.FramesIn, st.BytesIn)

	// The direct channel of the same server plays directly.
	direct := newTab(t, time.Minute)
	direct.navigate(t, p.signIn("/?channel="+chD))
	direct.await(t, 30*time.Second, playing, describePlayers)
	if s := direct.players(t)[0]; hasEvent(s, "storage-offer", "") || hasEvent(s, "storage-join", "") {
		t.Fatalf("the direct channel went through a storage session: %+v", s)
	}
	if s, ok := sessionStats(chD); ok {
		t.Fatalf("the direct channel has a storage session: %+v", s)
	}

	// A fourth page of the storage channel: over the viewer limit.
	over := newTab(t, time.Minute)
	over.navigate(t, p.signIn("/?channel="+chS))
	over.await(t, 20*time.Second, "window.kvsrtc && window.kvsrtc.players[0].state === 'failed'", describePlayers)
	var title string
	over.eval(t, `document.querySelector('.failure-title').textContent`, &title)
	s := over.players(t)[0]
	if s.Diagnosis == nil || s.Diagnosis.Cause != cause.StorageFull || title != "Too many viewers" ||
		!strings.Contains(s.Diagnosis.Message, "maximum of 3 viewers") || s.AttemptsTotal != 1 {
		t.Fatalf("over the viewer limit: title %q, attempts %d, diagnosis %+v", title, s.AttemptsTotal, s.Diagnosis)
	}
	t.Logf("the fourth page says: %s: %s %s", title, s.Diagnosis.Message, s.Diagnosis.Advice)
	// The three pages still play.
	for i, tb := range tabs {
		if s := tb.players(t)[0]; s.State != "playing" {
			t.Errorf("storage page %d: %s", i, s.State)
		}
	}

	// A re-join of the first page's client id: the storage session sends a
	// new offer; the page replaces its peer connection and plays on.
	first := tabs[0].players(t)[0]
	if err := joinStorage(t.Context(), arn, first.ClientIDs[0]); err != nil {
		t.Fatal(err)
	}
	tabs[0].await(t, 20*time.Second, `(() => { const s = window.kvsrtc.players[0].snapshot();
		return s.events.filter(e => e.what === 'storage-offer').length === 2 && s.state === 'playing' })()`, describePlayers)
	// The new peer connection decodes the camera's video.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var decoded int
		tabs[0].eval(t, `(async () => { let n = 0; const r = await window.kvsrtc.players[0].cur.pc.getStats();
			r.forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'video') n = x.framesDecoded || 0; }); return n })()`, &decoded)
		if decoded >= 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new peer connection decoded %d frames in 10 s", decoded)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := tabs[0].players(t)[0]; s.Recoveries != 0 || s.AttemptsTotal != 1 || s.State != "playing" {
		t.Fatalf("after a new offer: %+v", s)
	}

	// The second page reconnects (as after a stall): the same client id
	// gets its place back although the session is full.
	tabs[1].eval(t, `(() => { window.kvsrtc.players[0].cur.finish('master-gone', 'media'); return true })()`, nil)
	tabs[1].await(t, 30*time.Second, "window.kvsrtc.players[0].snapshot().recoveries === 1 && window.kvsrtc.players[0].state === 'playing'", describePlayers)
	s = tabs[1].players(t)[0]
	if len(s.ClientIDs) != 2 || s.ClientIDs[0] != s.ClientIDs[1] || !storagePlayed(s) {
		t.Fatalf("the reconnect did not keep its client id through the storage session: %+v", s)
	}
	waitSession(t, 10*time.Second, chS, "3 viewers connected again", func(s storage.SessionStats) bool { return s.Connected == 3 })

	resp, body := get(t, p.url+"/metrics", p.token)
	for _, want := range []string{
		fmt.Sprintf(`kvsrtc_player_storage_sessions_total{channel="%s"} 4`, chS), // 3 pages and 1 reconnect
		`kvsrtc_player_storage_join_failures_total{cause="storage-full"} 1`,
	} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}

// TestServeStorageRejoins: the join is asynchronous, so a page that gets
// no offer asks the server to join again every 6 s (as the official JS SDK
// does): a join the service throttles is repeated and the page plays; a
// page that gets no offer after 5 joins ends its attempt with
// no-storage-offer and shows the storage path's diagnosis.
func TestServeStorageRejoins(t *testing.T) {
	chA := newChannel(t, "-a")
	startStorageCamera(t, chA)
	chB := newChannel(t, "-b")
	linkStorage(t, chB) // no camera: nothing offers while the joins are refused
	p := startPlayer(t, player.Config{Channels: []string{chA, chB}})

	// One throttled join, then the re-join 6 s later gets the offer.
	if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultThrottleAPI, Target: "JoinStorageSessionAsViewer", Count: 1}); err != nil {
		t.Fatal(err)
	}
	a := newTab(t, time.Minute)
	a.navigate(t, p.signIn("/?channel="+chA))
	a.await(t, 30*time.Second, playing, describePlayers)
	s := a.players(t)[0]
	if !storagePlayed(s) || !hasEvent(s, "storage-join-failed", "") || !hasEvent(s, "storage-rejoin", "1") || s.AttemptsTotal != 1 {
		t.Fatalf("the page did not play after a re-join: %+v", s)
	}
	t.Logf("played %.0f ms after navigation, after one throttled join", s.TTFFMs)

	// Five refused joins: no offer, the attempt ends, the page explains.
	if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultThrottleAPI, Target: "JoinStorageSessionAsViewer", Count: 5}); err != nil {
		t.Fatal(err)
	}
	p2 := startPlayer(t, player.Config{Channels: []string{chB}, Retry: viewer.RetryPolicy{MaxAttempts: 1}})
	b := newTab(t, 2*time.Minute)
	b.navigate(t, p2.signIn("/?channel="+chB))
	b.await(t, 50*time.Second, "window.kvsrtc && window.kvsrtc.players[0].state === 'failed'", describePlayers)
	var title string
	b.eval(t, `document.querySelector('.failure-title').textContent`, &title)
	s = b.players(t)[0]
	rejoins := 0
	for _, e := range s.Events {
		if e.What == "storage-rejoin" {
			rejoins++
		}
	}
	if s.Diagnosis == nil || s.Diagnosis.Cause != cause.NoStorageOffer || title != "The camera's storage session sent no video" || rejoins != 4 {
		t.Fatalf("after 5 joins without an offer: title %q, %d re-joins, %+v", title, rejoins, s)
	}
	t.Logf("the page says: %s: %s %s", title, s.Diagnosis.Message, s.Diagnosis.Advice)
}

// TestEmbedElementStorage: a <kvs-viewer> served by player.NewHandler (an
// app's own page, a strict Content-Security-Policy) plays a storage-enabled
// channel through its storage session, from the same scripts.
func TestEmbedElementStorage(t *testing.T) {
	ch := newChannel(t)
	startStorageCamera(t, ch)
	h := newHandler(t, player.HandlerConfig{Channels: []string{ch}, Authorize: allowAll(ch)})
	es := startEmbed(t, h, map[string]string{"/": embedPage(fmt.Sprintf(`<kvs-viewer channel=%q></kvs-viewer>`, ch))})
	tb := newTab(t, time.Minute)
	tb.navigate(t, es.url+"/")
	tb.await(t, 30*time.Second, viewerPlaying(ch), describeViewers)
	tb.noCSPViolations(t)
	var events []string
	tb.eval(t, `document.querySelector('kvs-viewer').snapshot().events.map(e => e.what)`, &events)
	if !slices.Contains(events, "storage-offer") || slices.Contains(events, "answer") {
		t.Fatalf("the element did not play through the storage session: %v", events)
	}
	waitSession(t, 10*time.Second, ch, "the element connected", func(s storage.SessionStats) bool { return s.Connected == 1 })
}
