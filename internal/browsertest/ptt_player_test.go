package browsertest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/player"
)

// Push-to-talk and the data channel console of the web player (issue 12),
// in Chromium with its fake microphone, against a kvsrtc master that
// records talk-back and echoes data, and against one that takes neither.

// twoWayMaster runs a master on channel that records each viewer's
// talk-back in dir and echoes data channel messages.
func twoWayMaster(t *testing.T, channel, dir string) {
	t.Helper()
	rec, err := master.RecordTalkback(dir)
	if err != nil {
		t.Fatal(err)
	}
	shared.env.StartMaster(t, kvstest.MasterOptions{Channel: channel, Logger: testLogger("master"), Configure: func(c *master.Config) {
		c.Talkback = rec
		c.EchoData = true
	}})
}

// stableRecording waits for the one talk-back recording in dir to stop
// growing (1 s without a change) and returns its path.
func stableRecording(t *testing.T, dir string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last int64 = -1
	var since time.Time
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "talkback-*.ogg"))
		if len(files) == 1 {
			if st, err := os.Stat(files[0]); err == nil && st.Size() > 0 {
				if st.Size() != last {
					last, since = st.Size(), time.Now()
				} else if time.Since(since) > time.Second {
					return files[0]
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished talk-back recording in %s within 20 s: %v (%d bytes)", dir, files, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// twoSnap is the two-way part of a tile's snapshot (TwoWay.snapshot()).
type twoSnap struct {
	Talk struct {
		Enabled    bool    `json:"enabled"`
		Declined   string  `json:"declined"`
		Pressed    bool    `json:"pressed"`
		Live       bool    `json:"live"`
		TrackState string  `json:"trackState"`
		TalkMs     float64 `json:"talkMs"`
		Button     string  `json:"button"`
	} `json:"talk"`
	Data struct {
		Enabled  bool   `json:"enabled"`
		Declined string `json:"declined"`
		Open     bool   `json:"open"`
		Sent     int    `json:"sent"`
		Received int    `json:"received"`
		Console  string `json:"console"`
		Status   string `json:"status"`
	} `json:"data"`
}

const (
	tile0      = "window.kvsrtc.players[0]"
	describeTw = "window.kvsrtc && window.kvsrtc.players[0] && window.kvsrtc.players[0].two.snapshot()"
	pressTalk  = "(document.querySelector('.talk').dispatchEvent(new PointerEvent('pointerdown', {button: 0, bubbles: true})), true)"
	releaseTlk = "(document.querySelector('.talk').dispatchEvent(new PointerEvent('pointerup', {button: 0, bubbles: true})), true)"
)

// typeLine types text into the tile's console and presses Enter.
func typeLine(text string) string {
	return fmt.Sprintf(`(() => { const i = document.querySelector('.console-input'); i.value = %q;
		i.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true})); return true })()`, text)
}

func (tb *tab) two(t *testing.T) twoSnap {
	t.Helper()
	var s twoSnap
	tb.eval(t, describeTw, &s)
	return s
}

// framesDecoded is the first tile's decoded frame count.
func (tb *tab) framesDecoded(t *testing.T) int {
	return tb.players(t)[0].Frames
}

// TestPlayerPushToTalk: the page's first offer carries a send-receive
// audio section (no track) and a data channel, and the microphone is not
// asked for before the button is pressed. Holding the button sends the
// fake microphone: the master records Opus of about the held time
// (ffprobe); releasing stops the track (readyState "ended"). A console
// line is echoed. After an ICE restart and after a full reconnect the
// sender and the channel are back by themselves, and video plays all
// along.
func TestPlayerPushToTalk(t *testing.T) {
	ch := newChannel(t)
	dir := t.TempDir()
	twoWayMaster(t, ch, dir)
	p := startPlayer(t, player.Config{Channels: []string{ch}, Data: true})
	tb := newTab(t, 120*time.Second)
	tb.navigate(t, p.signIn("/?console=1&channel="+ch))
	tb.waitJS(t, 20*time.Second, playing, describePlayers)
	tb.await(t, 10*time.Second, tile0+".two.snapshot().data.open", describeTw)

	// The offer: audio send-receive, a data channel; no microphone yet.
	var offer struct{ Audio, App bool }
	tb.eval(t, `(() => { const s = window.kvsrtc.players[0].cur.pc.localDescription.sdp;
		const a = s.split('m=').find((x) => x.startsWith('audio')) || '';
		return {Audio: a.includes('a=sendrecv'), App: s.includes('m=application ')} })()`, &offer)
	if s := tb.two(t); !offer.Audio || !offer.App || s.Talk.TrackState != "" || s.Talk.Declined != "" || s.Data.Declined != "" || s.Talk.Button != "Hold to talk" {
		t.Fatalf("before pressing: offer %+v, two-way %+v", offer, s)
	}

	// Hold the button for about 3 s.
	tb.eval(t, pressTalk, nil)
	tb.await(t, 10*time.Second, tile0+".two.snapshot().talk.live", describeTw)
	var live string
	tb.eval(t, `(() => { const b = document.querySelector('.talk'); return b.className + '|' + b.getAttribute('aria-pressed') + '|' + b.textContent })()`, &live)
	if !strings.Contains(live, "live") || !strings.Contains(live, "|true|") || !strings.Contains(live, "Live") {
		t.Errorf("the held button does not show that it is live: %q", live)
	}
	tb.screenshot(t, "push-to-talk")
	time.Sleep(3 * time.Second)
	tb.eval(t, releaseTlk, nil)
	tb.await(t, 5*time.Second, tile0+".two.snapshot().talk.trackState === 'ended' && !"+tile0+".two.snapshot().talk.pressed", describeTw)
	s := tb.two(t)
	talk := time.Duration(s.Talk.TalkMs * float64(time.Millisecond))

	// The master recorded about the held time. (It reports EventTalkStopped
	// only when a packet comes after a 2 s pause, or the track ends; the
	// page sends nothing after the release, so the file is read once it
	// stops growing.)
	file := stableRecording(t, dir)
	codec, dur := probeAudio(t, file)
	if codec != "opus" || dur < talk-time.Second || dur > talk+time.Second {
		t.Fatalf("recording %s: %s of %v; the button was held (live) for %v", filepath.Base(file), codec, dur, talk)
	}
	t.Logf("held %v; the master recorded %v of Opus", talk.Round(time.Millisecond), dur.Round(time.Millisecond))

	// The data console: a typed line comes back.
	tb.eval(t, typeLine("hello camera"), nil)
	tb.await(t, 10*time.Second, tile0+".two.snapshot().data.console.includes('< hello camera')", describeTw)

	// ICE restart: same peer connection; the channel and the sender stay.
	before := tb.framesDecoded(t)
	tb.eval(t, "("+tile0+".cur.restartICE('network-change'), true)", nil)
	tb.await(t, 15*time.Second, tile0+".snapshot().events.some((e) => e.what === 'ice-restarted') && "+tile0+".state === 'playing'", describePlayers)
	tb.eval(t, typeLine("after restart"), nil)
	tb.await(t, 10*time.Second, tile0+".two.snapshot().data.console.includes('< after restart')", describeTw)

	// A full reconnect (the attempt ends as if the camera stalled): a new
	// peer connection, whose offer carries both again.
	tb.eval(t, "("+tile0+".cur.finish('master-gone', 'media'), true)", nil)
	tb.await(t, 30*time.Second, tile0+".recoveries >= 1 && "+tile0+".state === 'playing' && "+tile0+".two.snapshot().data.open", describeTw)
	tb.eval(t, typeLine("after reconnect"), nil)
	tb.await(t, 10*time.Second, tile0+".two.snapshot().data.console.includes('< after reconnect')", describeTw)
	tb.eval(t, pressTalk, nil)
	tb.await(t, 10*time.Second, tile0+".two.snapshot().talk.live", describeTw)
	tb.eval(t, releaseTlk, nil)
	tb.await(t, 5*time.Second, tile0+".two.snapshot().talk.trackState === 'ended'", describeTw)
	if after := tb.framesDecoded(t); tb.players(t)[0].State != "playing" {
		t.Errorf("video after the reconnect: state %s, frames %d (before the restart %d)", tb.players(t)[0].State, after, before)
	}
	tb.noCSPViolations(t)
	s = tb.two(t)
	t.Logf("data console after a restart and a reconnect: %d sent, %d received", s.Data.Sent, s.Data.Received)
}

// TestPlayerPushToTalkPlainMaster: a master that takes neither talk-back
// nor data: the button and the console say so, in the Go viewer's words;
// pressing asks for no microphone; video plays on.
func TestPlayerPushToTalkPlainMaster(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	p := startPlayer(t, player.Config{Channels: []string{ch}, Data: true})
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?console=1&channel="+ch))
	tb.waitJS(t, 20*time.Second, playing, describePlayers)
	tb.await(t, 5*time.Second, tile0+".two.snapshot().talk.declined !== '' && "+tile0+".two.snapshot().data.declined !== ''", describeTw)
	tb.eval(t, pressTalk, nil)
	tb.eval(t, typeLine("anyone there?"), nil)
	tb.eval(t, releaseTlk, nil)
	s := tb.two(t)
	var shown struct{ Notice, Title string }
	tb.eval(t, `({Notice: document.querySelector('.notice').hidden ? '' : document.querySelector('.notice').textContent,
		Title: document.querySelector('.talk').title})`, &shown)
	if !strings.Contains(s.Talk.Declined, "declined talk-back audio") || s.Talk.Button != "No talk-back" ||
		!strings.Contains(shown.Notice, "declined talk-back audio") || !strings.Contains(shown.Title, "does not take it") {
		t.Errorf("talk-back declined: %+v, shown %+v", s.Talk, shown)
	}
	if s.Talk.TrackState != "" {
		t.Errorf("the page asked for the microphone for a camera that declined talk-back: track %q", s.Talk.TrackState)
	}
	if !strings.Contains(s.Data.Declined, "does not accept a data channel") || !strings.Contains(s.Data.Status, "does not accept a data channel") ||
		!strings.Contains(s.Data.Console, "! The master does not accept a data channel") || s.Data.Sent != 0 {
		t.Errorf("data declined: %+v", s.Data)
	}
	before := tb.framesDecoded(t)
	tb.await(t, 5*time.Second, fmt.Sprintf("%s.snapshot().framesDecoded > %d + 10 && %s.state === 'playing'", tile0, before, tile0), describePlayers)
}
