package viewer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// twoWayMaster starts a master that records talk-back to dir and echoes
// data channel messages, and collects its events.
func twoWayMaster(t *testing.T, e *kvstest.Env, dir string, events *masterEvents, audio ...bool) *kvstest.Master {
	t.Helper()
	rec, err := master.RecordTalkback(dir)
	if err != nil {
		t.Fatal(err)
	}
	withAudio := len(audio) > 0 && audio[0]
	return e.StartMaster(t, kvstest.MasterOptions{Channel: "cam", Audio: withAudio, Logger: testLogger(t), Configure: func(c *master.Config) {
		c.Talkback = rec
		c.EchoData = true
		c.OnEvent = events.on
	}})
}

type masterEvents struct {
	mu sync.Mutex
	ev []master.Event
}

func (m *masterEvents) on(e master.Event) {
	m.mu.Lock()
	m.ev = append(m.ev, e)
	m.mu.Unlock()
}

// has reports whether an event's detail contains s.
func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if strings.Contains(e.Detail, s) {
			return true
		}
	}
	return false
}

func (m *masterEvents) count(k master.EventKind) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.ev {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func toneSource(t *testing.T) media.Source {
	t.Helper()
	src, err := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// echo sends msg and waits for it to come back.
func echo(ctx context.Context, s *viewer.Session, msg string) error {
	if err := s.SendText(ctx, msg); err != nil {
		return fmt.Errorf("send %q: %w", msg, err)
	}
	for {
		m, err := s.Receive(ctx)
		if err != nil {
			return fmt.Errorf("receive the echo of %q: %w", msg, err)
		}
		if string(m.Data) == msg && m.Text {
			return nil
		}
	}
}

// oggDuration is the audio duration of an Ogg/Opus file.
func oggDuration(t *testing.T, path string) time.Duration {
	t.Helper()
	src, err := media.OpenFile(path, media.SourceConfig{Once: true, Unpaced: true})
	if err != nil {
		t.Fatalf("the talk-back recording %s: %v", path, err)
	}
	defer src.Close()
	var d time.Duration
	for {
		s, err := src.ReadSample(context.Background())
		if errors.Is(err, io.EOF) {
			return d
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		d += s.Duration
	}
}

func recordings(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "talkback-*.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTwoWayTalkAndData: the viewer sends the test tone and data channel
// messages in the same offer; the master records the audio per viewer
// (an Ogg/Opus file of about the talk time) and echoes the messages.
func TestTwoWayTalkAndData(t *testing.T) {
	for _, audio := range []bool{false, true} {
		t.Run(fmt.Sprintf("audio=%v", audio), func(t *testing.T) { testTwoWayTalkAndData(t, audio) })
	}
}

// testTwoWayTalkAndData: with audio, the master also sends its tone and the
// viewer's audio section is send-receive.
func testTwoWayTalkAndData(t *testing.T, audio bool) {
	e := newEnv(t, emulator.Config{})
	dir := t.TempDir()
	var mev masterEvents
	m := twoWayMaster(t, e, dir, &mev, audio)
	var rec recorder
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(),
		Talk: toneSource(t), Data: true, Audio: audio, OnEvent: rec.on, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	ectx, ecancel := context.WithTimeout(ctx, 20*time.Second)
	defer ecancel()
	for i := range 20 {
		if err := echo(ectx, s, fmt.Sprintf("hello %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second) // talk for a while
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	sum := s.Summary()
	if sum.Frames < 10 || sum.TalkPackets < 50 || sum.MessagesSent != 20 || sum.MessagesReceived < 20 || (audio && sum.AudioFrames < 50) {
		t.Fatalf("summary %+v", sum)
	}
	for _, ev := range rec.events {
		if ev.Declined != nil {
			t.Fatalf("declined: %v", ev.Declined)
		}
	}
	files := recordings(t, dir)
	if len(files) != 1 {
		t.Fatalf("recordings %v, want one", files)
	}
	d := oggDuration(t, files[0])
	talk := time.Duration(sum.TalkPackets) * 20 * time.Millisecond
	if d < talk/2 || d > talk+2*time.Second {
		t.Fatalf("recording of %v for %v of talk (%d packets)", d, talk, sum.TalkPackets)
	}
	if mev.count(master.EventTalkStarted) != 1 || mev.count(master.EventTalkStopped) != 1 || mev.count(master.EventDataChannelOpened) != 1 {
		t.Fatalf("master events %+v", mev.ev)
	}
	t.Logf("talk-back recorded: %v in %s; %d messages echoed", d.Round(time.Millisecond), filepath.Base(files[0]), sum.MessagesReceived)
}

// TestTwoWayDeclined: a master without talk-back or data handlers declines
// both in its answer; the viewer says so clearly and its video goes on.
func TestTwoWayDeclined(t *testing.T) {
	for _, audio := range []bool{false, true} {
		t.Run(fmt.Sprintf("master-audio=%v", audio), func(t *testing.T) {
			e := newEnv(t, emulator.Config{})
			e.StartMaster(t, kvstest.MasterOptions{Channel: "cam", Audio: audio, Logger: testLogger(t)})
			var rec recorder
			s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(),
				Talk: toneSource(t), Data: true, Audio: audio, Duration: 2 * time.Second, OnEvent: rec.on, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Run(t.Context()) }()
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			err = s.SendText(ctx, "anyone?")
			if !errors.Is(err, viewer.ErrDataChannelDeclined) {
				t.Fatalf("Send to a master that declines data: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			sum := s.Summary()
			if sum.Result != "streamed" || sum.Frames < 10 {
				t.Fatalf("video was affected: %+v", sum)
			}
			if audio && sum.AudioFrames == 0 {
				t.Fatalf("no audio from the master: %+v", sum)
			}
			var talk, data error
			for _, ev := range rec.events {
				switch {
				case errors.Is(ev.Declined, viewer.ErrTalkbackDeclined):
					talk = ev.Declined
				case errors.Is(ev.Declined, viewer.ErrDataChannelDeclined):
					data = ev.Declined
				}
			}
			if talk == nil || data == nil || sum.TalkPackets != 0 {
				t.Fatalf("declined talk-back %v, data %v; talk packets %d", talk, data, sum.TalkPackets)
			}
			if !strings.Contains(talk.Error(), "video is not affected") {
				t.Fatalf("unclear: %v", talk)
			}
			t.Logf("talk-back: %v; data: %v", talk, data)
		})
	}
}

// TestTwoWayBadInput: what cannot work fails at once with a clear error.
func TestTwoWayBadInput(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	video, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer video.Close()
	_, err = viewer.New(viewer.Config{Channel: "cam", Control: e.Control, Talk: video})
	if !errors.Is(err, viewer.ErrInvalidConfig) || !errors.Is(err, media.ErrNotOpus) || !strings.Contains(err.Error(), "ffmpeg") {
		t.Fatalf("H.264 as talk-back: %v", err)
	}
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, Data: true})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), make([]byte, viewer.MaxMessageSize+1))
	if !errors.Is(err, viewer.ErrMessageTooLarge) || !strings.Contains(err.Error(), "65536") {
		t.Fatalf("oversized message: %v", err)
	}
	s2, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.SendText(t.Context(), "x"); !errors.Is(err, viewer.ErrNoDataChannel) {
		t.Fatalf("Send without Config.Data: %v", err)
	}
	if _, err := s2.Receive(t.Context()); !errors.Is(err, viewer.ErrNoDataChannel) {
		t.Fatalf("Receive without Config.Data: %v", err)
	}
}

// TestTwoWaySurvivesReconnect: when the master restarts, the viewer
// reconnects, and its talk-back and data channel come back by themselves.
func TestTwoWaySurvivesReconnect(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	dir1, dir2 := t.TempDir(), t.TempDir()
	var ev1, ev2 masterEvents
	m1 := twoWayMaster(t, e, dir1, &ev1)
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(),
		Talk: toneSource(t), Data: true, StallTimeout: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ectx, ecancel := context.WithTimeout(ctx, 60*time.Second)
	defer ecancel()
	if err := echo(ectx, s, "before"); err != nil {
		t.Fatal(err)
	}
	for s.Stats().Frames == 0 && ectx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	// The first master must have taken talk-back before it stops (on a
	// loaded machine the audio can start after the first video frame).
	for ev1.count(master.EventTalkStarted) == 0 && ectx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // some audio for its recording
	if err := m1.Stop(); err != nil {
		t.Fatal(err)
	}
	m2 := twoWayMaster(t, e, dir2, &ev2)
	if err := echo(ectx, s, "after"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for ev2.count(master.EventTalkStarted) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the new master got no talk-back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // talk to the new master for a while
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := m2.Stop(); err != nil {
		t.Fatal(err)
	}
	if sum := s.Summary(); sum.Recoveries < 1 {
		t.Fatalf("no reconnect: %+v", sum)
	}
	if len(recordings(t, dir1)) != 1 || len(recordings(t, dir2)) != 1 {
		t.Fatalf("recordings: %v and %v", recordings(t, dir1), recordings(t, dir2))
	}
	if d := oggDuration(t, recordings(t, dir2)[0]); d < 200*time.Millisecond {
		t.Fatalf("the new master recorded %v", d)
	}
}

// pausable is a master's video source that stops sending while paused.
type pausable struct {
	media.Source
	mu     sync.Mutex
	paused bool
}

func (p *pausable) set(v bool) {
	p.mu.Lock()
	p.paused = v
	p.mu.Unlock()
}

func (p *pausable) ReadSample(ctx context.Context) (media.Sample, error) {
	for {
		p.mu.Lock()
		paused := p.paused
		p.mu.Unlock()
		if !paused {
			return p.Source.ReadSample(ctx)
		}
		select {
		case <-ctx.Done():
			return media.Sample{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestTwoWaySurvivesICERestartAndRenewal: an ICE restart (video stalled)
// and a signaling renewal (GO_AWAY) keep the peer connection, so the
// talk-back stream (one recording) and the data channel just go on.
func TestTwoWaySurvivesICERestartAndRenewal(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	dir := t.TempDir()
	var mev masterEvents
	video := &pausable{}
	rec, err := master.RecordTalkback(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := e.StartMaster(t, kvstest.MasterOptions{Channel: "cam", Logger: testLogger(t), Configure: func(c *master.Config) {
		video.Source = c.Video
		c.Video = video
		c.Talkback, c.EchoData, c.OnEvent = rec, true, mev.on
	}})
	var vrec recorder
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(),
		Talk: toneSource(t), Data: true, StallTimeout: time.Second, OnEvent: vrec.on, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ectx, ecancel := context.WithTimeout(ctx, 60*time.Second)
	defer ecancel()
	for s.Stats().Frames == 0 && ectx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if err := echo(ectx, s, "before"); err != nil {
		t.Fatal(err)
	}

	// ICE restart: the video stops until the master has answered the
	// viewer's restart offer on the same peer connection.
	video.set(true)
	for mev.count(master.EventViewerRestarted) == 0 && ectx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	video.set(false)
	if err := echo(ectx, s, "after the ICE restart"); err != nil {
		t.Fatal(err)
	}

	// Signaling renewal: GO_AWAY to the viewer's connection.
	if _, err := e.Server.Inject(emulator.Fault{Kind: emulator.FaultGoAway, Channel: "cam", Target: "viewer", Grace: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !vrec.has("signaling renewed") {
		if time.Now().After(deadline) {
			t.Fatalf("no signaling renewal; states %v", vrec.states())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := echo(ectx, s, "after the renewal"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if sum := s.Summary(); sum.Recoveries != 0 || sum.Attempts != 1 {
		t.Fatalf("the session reconnected instead of keeping its peer connection: %+v", sum)
	}
	if n := mev.count(master.EventTalkStarted); n != 1 || len(recordings(t, dir)) != 1 {
		t.Fatalf("talk-back restarted: %d talk-started events, recordings %v", n, recordings(t, dir))
	}
}
