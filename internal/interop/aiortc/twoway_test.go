package aiortc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// TestAiortcTwoWay: a kvsrtc viewer with talk-back and a data channel (as
// "kvsrtc view --talk tone --data") against an aiortc master that decodes
// the viewer's audio and echoes its messages: video plays, the master
// decodes at least a second of the viewer's Opus, and every message comes
// back, in order.
func TestAiortcTwoWay(t *testing.T) {
	requireAiortc(t)
	e := newEnv(t)
	url, ice := e.masterSetup(t)
	py := startPyMaster(t, url, ice, "--codec", "any", "--two-way")
	tone, err := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.ctl, LoopbackOnly: true, Talk: tone, Data: true,
		Logger: testLogger(t, "viewer")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("viewer: %v", err)
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\naiortc master events:\n%s", fmt.Sprintf(format, args...), py.history())
	}
	for s.Stats().FirstFrame.IsZero() {
		if ctx.Err() != nil {
			fail("no video from the aiortc master")
		}
		time.Sleep(20 * time.Millisecond)
	}
	const messages = 5
	for i := range messages {
		if err := s.SendText(ctx, fmt.Sprintf("msg %d", i)); err != nil {
			fail("send %d: %v", i, err)
		}
	}
	for i := range messages {
		m, err := s.Receive(ctx)
		if err != nil {
			fail("receive %d: %v", i, err)
		}
		if want := fmt.Sprintf("echo:msg %d", i); string(m.Data) != want || !m.Text {
			fail("reply %d: %q (text %v), want %q", i, m.Data, m.Text, want)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for _, ev := range py.named("talk") {
			n = max(n, ev.N)
		}
		if n >= 50 { // 50 decoded 20 ms frames: a second of talk-back
			t.Logf("aiortc decoded %d frames of the viewer's talk-back; %d messages echoed", n, messages)
			return
		}
		if time.Now().After(deadline) {
			fail("aiortc decoded %d frames of talk-back within 20 s, want 50", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
