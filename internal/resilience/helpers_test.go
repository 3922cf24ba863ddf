package resilience

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// slack multiplies every time bound of the tests: -race on a shared
// 2-core machine is slow, and a bound that only holds on an idle machine
// proves nothing.
const slack = 2

// testLogger writes to the test's output at the level of KVSRTC_TEST_LOG
// (nothing by default).
func testLogger(t testing.TB, side string) *slog.Logger { return kvstest.Logger(t, side) }

// env is an emulator with channel "cam".
type env struct {
	t   testing.TB
	k   *kvstest.Env
	srv *emulator.Server
	arn string
	ctl *control.Client // direct to the emulator
}

func newEnv(t testing.TB, cfg emulator.Config) *env {
	t.Helper()
	cfg.Channels = append(cfg.Channels, "cam")
	cfg.Logger = testLogger(t, "emulator")
	k := kvstest.New(t, kvstest.Options{Emulator: cfg, ControlLogger: testLogger(t, "control")})
	return &env{t: t, k: k, srv: k.Server, ctl: k.Control, arn: k.ChannelARN(t, "cam")}
}

// ctlOpts changes what a control client uses.
type ctlOpts struct {
	endpoint string // "" = the emulator
	secret   string // "" = the right one
	akid     string
	region   string
	now      func() time.Time
}

func (e *env) control(t testing.TB, o ctlOpts) *control.Client {
	t.Helper()
	return e.k.NewControl(t, func(cfg *control.Config) {
		c := e.srv.Credentials()
		if o.secret == "" {
			o.secret = c.SecretAccessKey
		}
		if o.akid == "" {
			o.akid = c.AccessKeyID
		}
		if o.endpoint != "" {
			cfg.EndpointURL = o.endpoint
		}
		if o.region != "" {
			cfg.Region = o.region
		}
		cfg.Now = o.now
		cfg.Credentials = credentials.NewStaticCredentialsProvider(o.akid, o.secret, "")
		cfg.Logger = testLogger(t, "control")
	})
}

func (e *env) inject(t testing.TB, spec string) {
	t.Helper()
	f, err := emulator.ParseFault(spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Inject(f); err != nil {
		t.Fatal(err)
	}
}

// pausable is a video source that can be paused (the master's camera
// stops delivering frames while its peer connections stay up).
type pausable struct {
	media.Source
	mu    sync.Mutex
	until time.Time
}

func (p *pausable) pause(d time.Duration) {
	p.mu.Lock()
	p.until = time.Now().Add(d)
	p.mu.Unlock()
}

func (p *pausable) ReadSample(ctx context.Context) (media.Sample, error) {
	for {
		p.mu.Lock()
		wait := time.Until(p.until)
		p.mu.Unlock()
		if wait <= 0 {
			return p.Source.ReadSample(ctx)
		}
		t := time.NewTimer(min(wait, 20*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return media.Sample{}, ctx.Err()
		case <-t.C:
		}
	}
}

// mrun is a running master.
type mrun struct {
	t      testing.TB
	m      *master.Master
	src    *pausable
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	events []master.Event
}

// startMaster runs a master with the H.264 test pattern on "cam".
func startMaster(t testing.TB, ctl *control.Client, mod func(*master.Config)) *mrun {
	t.Helper()
	src, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := &mrun{t: t, src: &pausable{Source: src}, done: make(chan error, 1)}
	cfg := master.Config{Channel: "cam", Control: ctl, Video: r.src, LoopbackOnly: true, Logger: testLogger(t, "master"),
		OnEvent: func(ev master.Event) {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}}
	if mod != nil {
		mod(&cfg)
	}
	r.m, err = master.New(cfg)
	if err != nil {
		src.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.m.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop stops the master and waits for it (idempotent). Run returns nil
// when its context ends: any error it returned instead (at stop or
// earlier, when it gave up on its own) fails the test.
func (r *mrun) stop() {
	r.cancel()
	if err, ok := <-r.done; ok {
		close(r.done)
		if err != nil {
			r.t.Errorf("master: Run returned %v", err)
		}
	}
}

func (r *mrun) count(kind master.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// waitReady waits for the master's EventReady.
func (r *mrun) waitReady(t testing.TB) {
	t.Helper()
	waitFor(t, 10*time.Second*slack, "master ready", func() bool { return r.count(master.EventReady) > 0 })
}

// waitFor polls cond every 10 ms until it holds, failing after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gapSink records the largest gap between video frames since mark.
type gapSink struct {
	mu     sync.Mutex
	last   time.Time
	maxGap time.Duration
	frames int
}

func (g *gapSink) WriteFrame(f media.Frame) error {
	if f.Codec == rtc.CodecOpus {
		return nil
	}
	now := time.Now()
	g.mu.Lock()
	if !g.last.IsZero() && now.Sub(g.last) > g.maxGap {
		g.maxGap = now.Sub(g.last)
	}
	g.last = now
	g.frames++
	g.mu.Unlock()
	return nil
}

// mark starts a new measurement.
func (g *gapSink) mark() {
	g.mu.Lock()
	g.maxGap = 0
	g.last = time.Now()
	g.frames = 0
	g.mu.Unlock()
}

func (g *gapSink) result() (time.Duration, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gap := g.maxGap
	if since := time.Since(g.last); since > gap {
		gap = since
	}
	return gap, g.frames
}

// vrun is a running viewer session.
type vrun struct {
	s      *viewer.Session
	gaps   *gapSink
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	mu     sync.Mutex
	events []viewer.Event
}

// fastRetry is a retry policy with short, CI-friendly timings (late
// answers are awaited for 4 s after an offer instead of 12 s).
func fastRetry() viewer.RetryPolicy {
	return viewer.RetryPolicy{AnswerTimeout: 2 * time.Second, MediaTimeout: 5 * time.Second, MaxAttempts: 4,
		BackoffBase: 50 * time.Millisecond, BackoffCap: 500 * time.Millisecond, TotalBudget: 40 * time.Second,
		LateAnswerWindow: 4 * time.Second}
}

// viewerConfig is a viewer on "cam" with fast timings.
func viewerConfig(ctl *control.Client) viewer.Config {
	return viewer.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, Retry: fastRetry(),
		StallTimeout: 2 * time.Second, DisconnectedGrace: 300 * time.Millisecond, ICERestartTimeout: 8 * time.Second}
}

// runViewer starts a session; the test's cleanup stops it.
func runViewer(t testing.TB, cfg viewer.Config) *vrun {
	t.Helper()
	v := &vrun{gaps: &gapSink{}, done: make(chan struct{})}
	cfg.Sinks = append(cfg.Sinks, v.gaps)
	prev := cfg.OnEvent
	cfg.OnEvent = func(e viewer.Event) {
		v.mu.Lock()
		v.events = append(v.events, e)
		v.mu.Unlock()
		if prev != nil {
			prev(e)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, "viewer")
	}
	s, err := viewer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v.s = s
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	go func() {
		defer close(v.done)
		v.err = s.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-v.done })
	return v
}

// wait waits for Run to return and returns its error.
func (v *vrun) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-v.done:
		return v.err
	case <-time.After(timeout):
		t.Fatalf("the viewer did not finish within %v; events:\n%s", timeout, v.history())
		return nil
	}
}

// stop ends the session and returns Run's error.
func (v *vrun) stop() error {
	v.cancel()
	<-v.done
	return v.err
}

func (v *vrun) snapshot() []viewer.Event {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]viewer.Event(nil), v.events...)
}

func (v *vrun) history() string {
	var b strings.Builder
	var t0 time.Time
	for _, e := range v.snapshot() {
		if t0.IsZero() {
			t0 = e.Time
		}
		fmt.Fprintf(&b, "  +%-8v %-15s attempt=%d cause=%s %s\n", e.Time.Sub(t0).Round(time.Millisecond), e.State, e.Attempt, e.Cause, e.Detail)
	}
	return b.String()
}

// waitEvent waits for an event after since matching match.
func (v *vrun) waitEvent(t testing.TB, timeout time.Duration, since time.Time, what string, match func(viewer.Event) bool) viewer.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range v.snapshot() {
			if !e.Time.Before(since) && match(e) {
				return e
			}
		}
		select {
		case <-v.done:
			for _, e := range v.snapshot() {
				if !e.Time.Before(since) && match(e) {
					return e
				}
			}
			t.Fatalf("the viewer ended (%v) before %s; events:\n%s", v.err, what, v.history())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; events:\n%s", what, timeout, v.history())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStreaming waits until the viewer streams with a frame newer than since.
func (v *vrun) waitStreaming(t testing.TB, timeout time.Duration, since time.Time) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		if v.s.State() == viewer.StateStreaming && v.s.Stats().LastFrame.After(since) {
			return time.Since(start)
		}
		select {
		case <-v.done:
			t.Fatalf("the viewer ended (%v) instead of streaming; events:\n%s", v.err, v.history())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not streaming within %v (state %s); events:\n%s", timeout, v.s.State(), v.history())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (v *vrun) count(match func(viewer.Event) bool) int {
	n := 0
	for _, e := range v.snapshot() {
		if match(e) {
			n++
		}
	}
	return n
}

func hasCause(c viewer.Cause) func(viewer.Event) bool {
	return func(e viewer.Event) bool { return e.Cause == c }
}

// sessionError asserts err is a *viewer.SessionError with cause and
// returns it.
func sessionError(t testing.TB, err error, cause viewer.Cause) *viewer.SessionError {
	t.Helper()
	var se *viewer.SessionError
	if !errors.As(err, &se) {
		t.Fatalf("got %v (%T), want a *viewer.SessionError with cause %s", err, err, cause)
	}
	if se.Cause != cause {
		t.Fatalf("cause %s, want %s: %v", se.Cause, cause, err)
	}
	if se.Diagnosis() == "" || !strings.Contains(se.Diagnosis(), cause.Advice()) {
		t.Fatalf("diagnosis %q lacks the advice for %s", se.Diagnosis(), cause)
	}
	return se
}

// within fails the test if more than bound has passed since start, and
// logs the time otherwise.
func within(t testing.TB, bound time.Duration, what string, start time.Time) time.Duration {
	t.Helper()
	d := time.Since(start)
	if d > bound {
		t.Fatalf("%s took %v, bound %v", what, d.Round(time.Millisecond), bound)
	}
	t.Logf("%s: %v (bound %v)", what, d.Round(time.Millisecond), bound)
	return d
}
