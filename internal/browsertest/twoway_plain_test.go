package browsertest

import (
	"strings"
	"testing"
	"time"
)

// TestOfficialViewerWithDataChannelPlaysPlainMaster: the official JS SDK
// viewer flow with "send audio" and "open data channel" still plays a
// "kvsrtc master" that takes neither: its answer declines the data section
// (port 0) and sends no audio back for the viewer's, and Chromium applies
// it. (Chromium puts the data section after the media sections even when
// the channel is created first, so the rejected section never tags the
// BUNDLE group.)
func TestOfficialViewerWithDataChannelPlaysPlainMaster(t *testing.T) {
	ch := newChannel(t)
	out := runKvsrtc(t, "master", "--channel", ch, "--loopback-only")
	deadline := time.Now().Add(15 * time.Second)
	for shared.emu.Stats().Masters == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("kvsrtc master did not connect within 15 s\n%s", out())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, officialPageURL("twoway-viewer", ch))
	tb.await(t, 30*time.Second, "window.result.error !== null || window.result.frames >= 10", "window.result")
	var errText string
	tb.eval(t, "String(window.result.error)", &errText)
	if errText != "null" {
		t.Fatalf("the official viewer with a data channel failed against a plain kvsrtc master: %s\n%s", errText, out())
	}
	var first, answer string
	tb.eval(t, "window.viewer.peerConnection.localDescription.sdp.split('\\r\\n').find((l) => l.startsWith('m='))", &first)
	tb.eval(t, "window.viewer.peerConnection.remoteDescription.sdp", &answer)
	t.Logf("the offer's first section: %s", first)
	if !strings.Contains(answer, "m=application 0 ") {
		t.Errorf("the plain master did not decline the data channel in its answer:\n%s", answer)
	}
}
