package master_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// twoWayViewer runs a kvsrtc viewer with the tone as talk-back and a data
// channel on channel "demo" until the returned stop is called.
func twoWayViewer(t *testing.T, env *testEnv) (*viewer.Session, func()) {
	t.Helper()
	tone, err := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := viewer.New(viewer.Config{Channel: "demo", Control: env.Control, LoopbackOnly: true, Talk: tone, Data: true,
		Logger: testLogger(t).With("side", "viewer")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("viewer: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// TestMasterDataCallbacks: OnMessage gets each viewer message with the
// sender's client id, and Master.Send reaches the viewer.
func TestMasterDataCallbacks(t *testing.T) {
	env := newEnv(t)
	got := make(chan master.Message, 16)
	rm := startMaster(t, env, false, func(c *master.Config) {
		c.OnMessage = func(m master.Message) { got <- m }
	})
	s, stop := twoWayViewer(t, env)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.SendText(ctx, "pan left"); err != nil {
		t.Fatal(err)
	}
	var m master.Message
	select {
	case m = <-got:
	case <-ctx.Done():
		t.Fatal("no message at the master")
	}
	if string(m.Data) != "pan left" || !m.Text || m.Label != rtc.DataChannelLabel || !strings.HasPrefix(m.ClientID, "kvsrtc-") {
		t.Fatalf("message %+v", m)
	}
	if ids := rm.m.DataViewers(); len(ids) != 1 || ids[0] != m.ClientID {
		t.Fatalf("DataViewers %v, want [%s]", ids, m.ClientID)
	}
	if err := rm.m.SendText(ctx, m.ClientID, `{"event":"motion"}`); err != nil {
		t.Fatal(err)
	}
	r, err := s.Receive(ctx)
	if err != nil || string(r.Data) != `{"event":"motion"}` {
		t.Fatalf("Receive: %+v, %v", r, err)
	}
	if err := rm.m.Send(ctx, m.ClientID, make([]byte, master.MaxMessageSize+1)); !errors.Is(err, master.ErrMessageTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if err := rm.m.Send(ctx, "nobody", []byte("x")); !errors.Is(err, master.ErrNoViewer) {
		t.Fatalf("unknown viewer: %v", err)
	}
	stop()
	rm.events.wait(t, 10*time.Second, "viewer left", kindFor(master.EventViewerLeft, m.ClientID))
}

// TestPipeTalkback: the viewer's audio goes, as Ogg/Opus, into one process
// at a time; it is finalised when the viewer leaves.
func TestPipeTalkback(t *testing.T) {
	env := newEnv(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "piped.ogg")
	pipe, err := master.PipeTalkback("cat > '"+out+"'", io.Discard, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rm := startMaster(t, env, true, func(c *master.Config) { c.Talkback = pipe })
	s, stop := twoWayViewer(t, env)
	waitFor(t, 20*time.Second, "talk-back", func() bool { return s.Summary().TalkPackets > 75 })

	// Meanwhile the pipe is taken.
	if _, err := pipe("another-viewer"); !errors.Is(err, master.ErrTalkbackBusy) {
		t.Fatalf("a second talker: %v", err)
	}
	stop()
	for _, ev := range rm.events.all() {
		if ev.Kind == master.EventTalkStarted {
			rm.events.wait(t, 10*time.Second, "talk stopped", kindFor(master.EventTalkStopped, ev.ClientID))
		}
	}
	if err := rm.stop(t); err != nil { // Run returns once every sink is closed
		t.Fatal(err)
	}
	src, err := media.OpenFile(out, media.SourceConfig{Once: true, Unpaced: true})
	if err != nil {
		t.Fatalf("the piped stream: %v", err)
	}
	defer src.Close()
	n := 0
	for {
		if _, err := src.ReadSample(context.Background()); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	if n < 50 {
		t.Fatalf("%d Opus packets piped", n)
	}
	// Free again.
	sink, err := pipe("next")
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: 1}, Payload: []byte{0xfc, 0xff, 0xfe}}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTalkbackConfigErrors: the helpers say what is missing.
func TestTalkbackConfigErrors(t *testing.T) {
	if _, err := master.RecordTalkback(" "); !errors.Is(err, master.ErrInvalidConfig) {
		t.Fatalf("RecordTalkback(\"\"): %v", err)
	}
	if _, err := master.PipeTalkback("", nil, nil); !errors.Is(err, master.ErrInvalidConfig) {
		t.Fatalf("PipeTalkback(\"\"): %v", err)
	}
}

// pausingTalk is an Opus source that talks for a while and then sends
// nothing more, its track staying open (a push-to-talk release).
type pausingTalk struct {
	media.Source
	n int
}

func (p *pausingTalk) ReadSample(ctx context.Context) (media.Sample, error) {
	if p.n >= 50 { // 1 s of 20 ms packets
		<-ctx.Done()
		return media.Sample{}, ctx.Err()
	}
	p.n++
	return p.Source.ReadSample(ctx)
}

// TestTalkStopsOnPause: a viewer that stops sending audio while its track
// stays open is no longer talking after the idle time, without a packet
// or the track's end to notice it by.
func TestTalkStopsOnPause(t *testing.T) {
	env := newEnv(t)
	rec, err := master.RecordTalkback(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rm := startMaster(t, env, true, func(c *master.Config) { c.Talkback = rec })
	tone, err := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := viewer.New(viewer.Config{Channel: "demo", Control: env.Control, LoopbackOnly: true, Talk: &pausingTalk{Source: tone},
		Logger: testLogger(t).With("side", "viewer")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	started := rm.events.wait(t, 20*time.Second, "talk started", func(ev master.Event) bool { return ev.Kind == master.EventTalkStarted })
	rm.events.wait(t, 15*time.Second, "talk stopped while the viewer stays", kindFor(master.EventTalkStopped, started.ClientID))
	for _, ev := range rm.events.all() {
		if ev.Kind == master.EventViewerLeft {
			t.Fatalf("the talk stopped only because the viewer left: %v", rm.events.summary())
		}
	}
}
