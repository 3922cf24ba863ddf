package viewer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("KVSRTC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// newEnv runs an emulator with channel "cam" (and cfg's) for the test.
func newEnv(t testing.TB, cfg emulator.Config) *kvstest.Env {
	t.Helper()
	cfg.Channels = append(cfg.Channels, "cam")
	cfg.Logger = testLogger(t)
	return kvstest.New(t, kvstest.Options{Emulator: cfg})
}

// startMaster runs a master with the H.264 test pattern on channel.
func startMaster(t testing.TB, e *kvstest.Env, channel string) {
	t.Helper()
	e.StartMaster(t, kvstest.MasterOptions{Channel: channel, Logger: testLogger(t)})
}

// recorder collects a session's events.
type recorder struct {
	mu     sync.Mutex
	events []viewer.Event
}

func (r *recorder) on(e viewer.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) states() []viewer.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []viewer.State
	for _, e := range r.events {
		if len(out) == 0 || out[len(out)-1] != e.State {
			out = append(out, e.State)
		}
	}
	return out
}

// frameCheck is a sink that remembers the first frame.
type frameCheck struct {
	mu    sync.Mutex
	first *media.Frame
	n     int
}

func (f *frameCheck) WriteFrame(fr media.Frame) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.first == nil && fr.Codec != rtc.CodecOpus {
		c := fr
		f.first = &c
	}
	f.n++
	return nil
}

func fastPolicy() viewer.RetryPolicy {
	return viewer.RetryPolicy{AnswerTimeout: 2 * time.Second, MediaTimeout: 5 * time.Second, MaxAttempts: 3, BackoffBase: 20 * time.Millisecond, BackoffCap: 100 * time.Millisecond}
}

func TestViewerStreams(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	startMaster(t, e, "cam")
	var rec recorder
	fc := &frameCheck{}
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(),
		Duration: time.Second, Sinks: []media.Sink{fc}, OnEvent: rec.on, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	sum := s.Summary()
	if sum.Result != "streamed" || sum.Attempts != 1 || sum.Frames < 10 || sum.TimeToFirstFrame <= 0 {
		t.Fatalf("summary %+v", sum)
	}
	if sum.Width != 640 || sum.Height != 360 || sum.Codec != "H264" {
		t.Fatalf("resolution/codec %dx%d %s", sum.Width, sum.Height, sum.Codec)
	}
	if fc.first == nil || !fc.first.Keyframe || !media.H264IsKeyframe(fc.first.Data) {
		t.Fatalf("first frame is not a decodable keyframe: %+v", fc.first)
	}
	want := []viewer.State{viewer.StateConnecting, viewer.StateAwaitingAnswer, viewer.StateConnected, viewer.StateStreaming, viewer.StateStopped}
	got := rec.states()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	t.Logf("time to first frame %v, %d frames", sum.TimeToFirstFrame, sum.Frames)
}

func TestViewerRecoversFromDroppedAnswer(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	startMaster(t, e, "cam")
	if _, err := e.Server.Inject(emulator.Fault{Kind: emulator.FaultDrop, Channel: "cam", Action: kvsproto.ActionSDPAnswer, Count: 1}); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	p := fastPolicy()
	p.AnswerTimeout = 500 * time.Millisecond
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: p, Duration: 300 * time.Millisecond, OnEvent: rec.on})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	sum := s.Summary()
	if sum.Attempts != 2 || sum.Frames == 0 {
		t.Fatalf("want video on attempt 2, got %+v", sum)
	}
	// Two attempts used two different client ids.
	ids := map[string]bool{}
	for _, ev := range rec.events {
		if ev.ClientID != "" {
			ids[ev.ClientID] = true
		}
	}
	if len(ids) != 2 {
		t.Fatalf("client ids %v, want 2 distinct", ids)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("recovery took %v", d)
	}
	t.Logf("video after a lost answer in %v (time to first frame %v)", time.Since(start), sum.TimeToFirstFrame)
}

func TestViewerGivesUpAfterAttempts(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	startMaster(t, e, "cam")
	if _, err := e.Server.Inject(emulator.Fault{Kind: emulator.FaultDrop, Channel: "cam", Action: kvsproto.ActionSDPAnswer, Count: 1000}); err != nil {
		t.Fatal(err)
	}
	p := viewer.RetryPolicy{AnswerTimeout: 300 * time.Millisecond, MaxAttempts: 3, BackoffBase: 10 * time.Millisecond, BackoffCap: 20 * time.Millisecond, LateAnswerWindow: -1}
	var rec recorder
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: p, OnEvent: rec.on})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(t.Context())
	var se *viewer.SessionError
	if !errors.As(err, &se) || !errors.Is(err, viewer.ErrAnswerTimeout) {
		t.Fatalf("want *SessionError wrapping ErrAnswerTimeout, got %v", err)
	}
	if se.Attempts != 3 || se.Cause != viewer.CauseNoAnswer {
		t.Fatalf("attempts %d cause %s, want 3 no-answer", se.Attempts, se.Cause)
	}
	n := 0
	for _, ev := range rec.events {
		if ev.State == viewer.StateAwaitingAnswer {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d offers sent, want 3", n)
	}
}

func TestViewerFailsFast(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	cases := []struct {
		name  string
		cfg   func() viewer.Config
		cause viewer.Cause
		is    error
	}{
		{"wrong secret", func() viewer.Config {
			return viewer.Config{Channel: "cam", Control: e.NewControl(t, func(c *control.Config) {
				k := e.Server.Credentials()
				c.Credentials = credentials.NewStaticCredentialsProvider(k.AccessKeyID, "wrong-secret", k.SessionToken)
			})}
		}, viewer.CauseCredentials, control.ErrAccessDenied},
		{"unknown channel", func() viewer.Config {
			return viewer.Config{Channel: "no-such-channel", Control: e.Control}
		}, viewer.CauseChannelNotFound, control.ErrChannelNotFound},
		{"unknown ARN", func() viewer.Config {
			return viewer.Config{Channel: "arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam/1", Control: e.Control}
		}, viewer.CauseChannelNotFound, control.ErrChannelNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg()
			cfg.LoopbackOnly = true
			s, err := viewer.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = s.Run(t.Context())
			var se *viewer.SessionError
			if !errors.As(err, &se) || se.Cause != c.cause || !errors.Is(err, c.is) {
				t.Fatalf("got %v (%T), want cause %s wrapping %v", err, err, c.cause, c.is)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v to fail, want < 1s", d)
			}
			if se.Diagnosis() == "" || se.Attempts != 1 {
				t.Fatalf("diagnosis %q attempts %d", se.Diagnosis(), se.Attempts)
			}
		})
	}
	t.Run("bad client id", func(t *testing.T) {
		for _, id := range []string{"has space", "AWS_viewer", string(make([]byte, 300))} {
			_, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, ClientID: id})
			var se *viewer.SessionError
			if !errors.As(err, &se) || se.Cause != viewer.CauseClientID || !errors.Is(err, kvsproto.ErrInvalid) {
				t.Fatalf("client id %.20q: got %v", id, err)
			}
		}
	})
}

func TestTenViewersAndAnEleventh(t *testing.T) {
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	startMaster(t, e, "cam")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	streaming := make(chan struct{}, 10)
	errs := make(chan error, 10)
	for i := range 10 {
		s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(),
			ClientIDPrefix: fmt.Sprintf("v%d-", i),
			OnEvent: func(ev viewer.Event) {
				if ev.State == viewer.StateStreaming && ev.TimeToFirstFrame > 0 {
					streaming <- struct{}{}
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs <- s.Run(ctx) }()
	}
	deadline := time.After(30 * time.Second)
	for i := 0; i < 10; i++ {
		select {
		case <-streaming:
		case err := <-errs:
			t.Fatalf("a viewer ended early: %v", err)
		case <-deadline:
			t.Fatalf("only %d of 10 viewers streaming", i)
		}
	}
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Run(ctx)
	var se *viewer.SessionError
	if !errors.As(err, &se) || se.Cause != viewer.CauseChannelFull {
		t.Fatalf("11th viewer: got %v, want cause channel-full", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("11th viewer took %v to be refused", time.Since(start))
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("viewer: %v", err)
		}
	}
}

// TestLostAnswersDoNotFillTheMaster: every attempt whose answer was lost
// leaves an answered-but-never-connected peer on the master; more of them
// than the viewer limit must not lock later viewers out.
func TestLostAnswersDoNotFillTheMaster(t *testing.T) {
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	startMaster(t, e, "cam")
	if _, err := e.Server.Inject(emulator.Fault{Kind: emulator.FaultDrop, Channel: "cam", Action: kvsproto.ActionSDPAnswer, Count: 12}); err != nil {
		t.Fatal(err)
	}
	// Without late answers: each attempt is one abandoned peer on the master.
	p := viewer.RetryPolicy{AnswerTimeout: 300 * time.Millisecond, MaxAttempts: 14, BackoffBase: 5 * time.Millisecond, BackoffCap: 10 * time.Millisecond, LateAnswerWindow: -1}
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: p, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if sum := s.Summary(); sum.Attempts != 13 || sum.Frames == 0 {
		t.Fatalf("want video on attempt 13, got %+v", sum)
	}
}
