package browsertest

import (
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// TestPlayerTakesALateAnswer: the camera answers every offer after 3 s (a
// C SDK camera answering an offer it takes for non-trickle, in miniature),
// the page's answer timeout is 1 s. The page's first attempt keeps
// listening while the second runs, takes the late answer and plays; the
// second attempt is closed and no third offer is sent (same policy as the
// Go viewer).
func TestPlayerTakesALateAnswer(t *testing.T) {
	ch := newChannel(t)
	startMaster(t, ch)
	p := startPlayer(t, player.Config{Channels: []string{ch}, Retry: viewer.RetryPolicy{
		AnswerTimeout: time.Second, BackoffBase: 100 * time.Millisecond, LateAnswerWindow: 6 * time.Second}})
	if _, err := shared.emu.Inject(emulator.Fault{Kind: emulator.FaultDelay, Channel: ch, Action: "SDP_ANSWER", Count: 100, Delay: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, p.signIn("/?channel="+ch))
	tb.waitJS(t, 20*time.Second, playing, describePlayers)
	s := tb.players(t)[0]
	if s.AttemptsTotal != 2 {
		t.Fatalf("%d attempts, want 2 (the late answer to the first must stop further attempts)", s.AttemptsTotal)
	}
	if !hasEvent(s, "answer-late", "") || !hasEvent(s, "answer-won", "attempt 1 (late); closing the other attempt") {
		t.Errorf("events: %+v", s.Events)
	}
	if s.TTFFMs < 3000 || s.TTFFMs > 9000 {
		t.Errorf("first frame after %.0f ms; want the late answer's ~3 s", s.TTFFMs)
	}
	t.Logf("played from the late answer %.0f ms after navigation", s.TTFFMs)
}
