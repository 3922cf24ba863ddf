package browsertest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/player"
)

// TestEmbedElementTwoWay: <kvs-viewer talk data> gets push-to-talk and the
// data channel through its API (startTalking, stopTalking, send; talk and
// message events) under a strict CSP; the master records the talk-back and
// echoes the message. A <kvs-viewer> without the attributes offers
// neither (receive-only audio, no data channel): off by default.
func TestEmbedElementTwoWay(t *testing.T) {
	a, b := newChannel(t, "-a"), newChannel(t, "-b")
	dir := t.TempDir()
	twoWayMaster(t, a, dir)
	startMaster(t, b)
	h := newHandler(t, player.HandlerConfig{Channels: []string{a, b}, Authorize: allowAll(a, b)})
	page := embedPage(fmt.Sprintf(`<kvs-viewer channel=%q talk data></kvs-viewer><kvs-viewer channel=%q controls></kvs-viewer>`, a, b))
	es := startEmbed(t, h, map[string]string{"/": page})
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, es.url+"/")
	tb.eval(t, `(() => { window.seen = []; const e = document.querySelector('kvs-viewer');
		for (const k of ['talk', 'message', 'declined']) e.addEventListener(k, (ev) => window.seen.push(k + ':' + JSON.stringify(ev.detail))); return true })()`, nil)
	tb.waitJS(t, 25*time.Second, viewerPlaying(a)+" && "+viewerPlaying(b), describeViewers)
	el := fmt.Sprintf("document.querySelector('kvs-viewer[channel=%q]')", a)
	tb.await(t, 10*time.Second, el+"._player.two.snapshot().data.open", describeViewers)

	var offers struct{ TalkAudio, TalkApp, PlainAudio, PlainApp bool }
	tb.eval(t, `(() => { const v = [...document.querySelectorAll('kvs-viewer')].map((e) => e._player.cur.pc.localDescription.sdp);
		const audio = (s) => (s.split('m=').find((x) => x.startsWith('audio')) || '');
		return {TalkAudio: audio(v[0]).includes('a=sendrecv'), TalkApp: v[0].includes('m=application '),
			PlainAudio: audio(v[1]).includes('a=recvonly'), PlainApp: v[1].includes('m=application ')} })()`, &offers)
	if !offers.TalkAudio || !offers.TalkApp || !offers.PlainAudio || offers.PlainApp {
		t.Errorf("offers: %+v (want send-receive audio and a data channel with talk data, receive-only audio and none without)", offers)
	}
	var buttons string
	tb.eval(t, `[...document.querySelectorAll('kvs-viewer')].map((e) => !!e.shadowRoot.querySelector('.talk') + '/' + !e.shadowRoot.querySelector('.bar').hidden).join(',')`, &buttons)
	if buttons != "true/true,false/true" {
		t.Errorf("talk buttons/bars: %s", buttons)
	}

	tb.eval(t, el+".startTalking().then(() => true)", nil)
	tb.await(t, 10*time.Second, el+".talking", describeViewers)
	time.Sleep(2 * time.Second)
	tb.eval(t, "("+el+".stopTalking(), true)", nil)
	tb.await(t, 5*time.Second, "!"+el+".talking && "+el+"._player.two.snapshot().talk.trackState === 'ended'", describeViewers)
	var sent bool
	tb.eval(t, el+".send('from the element')", &sent)
	tb.await(t, 10*time.Second, `window.seen.includes('message:{"data":"from the element"}')`, "window.seen")
	tb.await(t, 2*time.Second, `window.seen.includes('talk:{"live":true}') && window.seen.includes('talk:{"live":false}')`, "window.seen")
	tb.noCSPViolations(t)

	codec, dur := probeAudio(t, stableRecording(t, dir))
	var seen []string
	tb.eval(t, "window.seen", &seen)
	if !sent || codec != "opus" || dur < time.Second || dur > 4*time.Second || strings.Contains(strings.Join(seen, " "), "declined") {
		t.Errorf("sent %v; recording %s of %v (talked about 2 s); events %v", sent, codec, dur, seen)
	}
}
