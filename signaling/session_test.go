package signaling_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// memConn is an in-memory signaling connection.
type memConn struct {
	id     int
	events chan signaling.Event

	mu       sync.Mutex
	err      error
	sent     []kvsproto.ClientMessage
	closedAt time.Time
}

func (c *memConn) Events() <-chan signaling.Event { return c.events }

func (c *memConn) Send(_ context.Context, msg kvsproto.ClientMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.sent = append(c.sent, msg)
	return nil
}

func (c *memConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// end ends the connection with err (as the service or the network would).
func (c *memConn) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.events)
	}
}

func (c *memConn) Close() error {
	c.end(signaling.ErrClosed)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closedAt.IsZero() {
		c.closedAt = time.Now()
	}
	return nil
}

func (c *memConn) closed() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closedAt
}

func (c *memConn) sentMessages() []kvsproto.ClientMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]kvsproto.ClientMessage(nil), c.sent...)
}

// memDialer hands out memConns; fail[i] makes the i-th dial (0-based)
// fail with that error.
type memDialer struct {
	mu    sync.Mutex
	fail  map[int]error
	dials []time.Time
	conns []*memConn
}

func (d *memDialer) Dial(context.Context) (signaling.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.dials)
	d.dials = append(d.dials, time.Now())
	if err := d.fail[n]; err != nil {
		return nil, err
	}
	c := &memConn{id: n, events: make(chan signaling.Event, 16)}
	d.conns = append(d.conns, c)
	return c, nil
}

func (d *memDialer) conn(i int) *memConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[i]
}

func (d *memDialer) dialTimes(start time.Time) []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []time.Duration
	for _, t := range d.dials {
		out = append(out, t.Sub(start))
	}
	return out
}

// harness runs a Session in a synctest bubble.
type harness struct {
	t     *testing.T
	d     *memDialer
	s     *signaling.Session
	start time.Time
	done  chan error
}

func startSession(t *testing.T, cfg signaling.SessionConfig, d *memDialer) *harness {
	t.Helper()
	cfg.Dialer = d
	if cfg.Backoff == nil {
		cfg.Backoff = func(n int) time.Duration { return time.Duration(n) * time.Second }
	}
	s, err := signaling.NewSession(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h := &harness{t: t, d: d, s: s, start: time.Now(), done: make(chan error, 1)}
	go func() { h.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil && !errors.Is(err, signaling.ErrTakenOver) {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// expect reads the next event, which must be of kind, and checks that it
// comes at the fake time at (since the start).
func (h *harness) expect(kind signaling.SessionEventKind, at time.Duration) signaling.SessionEvent {
	h.t.Helper()
	ev, ok := <-h.s.Events()
	if !ok {
		h.t.Fatalf("events closed; want %s", kind)
	}
	if ev.Kind != kind {
		h.t.Fatalf("got %s event %+v; want %s", ev.Kind, ev, kind)
	}
	if got := time.Since(h.start); got != at {
		h.t.Fatalf("%s event at %v; want %v", kind, got, at)
	}
	return ev
}

func goAway() signaling.Event { return signaling.Event{Type: kvsproto.MessageGoAway} }

func offer(sender string) signaling.Event {
	return signaling.Event{Type: kvsproto.MessageSDPOffer, SenderClientID: sender, SDP: &kvsproto.SessionDescription{Type: "offer", SDP: "v=0"}}
}

func candidateMsg(c string) kvsproto.ClientMessage {
	p, _ := kvsproto.EncodePayload(kvsproto.ICECandidate{Candidate: c})
	return kvsproto.ClientMessage{Action: kvsproto.ActionICECandidate, MessagePayload: p}
}

func TestSessionRenewsAtAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startSession(t, signaling.SessionConfig{RenewAfter: 10 * time.Minute, DrainGrace: 2 * time.Second}, &memDialer{})
		h.expect(signaling.SessionConnected, 0)
		ev := h.expect(signaling.SessionRenewing, 10*time.Minute)
		if ev.Why != signaling.RenewAge {
			t.Fatalf("why %q", ev.Why)
		}
		h.expect(signaling.SessionRenewed, 10*time.Minute)
		// The next renewal counts from the new connection.
		h.expect(signaling.SessionRenewing, 20*time.Minute)
		h.expect(signaling.SessionRenewed, 20*time.Minute)
		if got := h.d.dialTimes(h.start); len(got) != 3 {
			t.Fatalf("dials at %v", got)
		}
	})
}

func TestSessionGoAwayRenewsAndDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startSession(t, signaling.SessionConfig{DrainGrace: 3 * time.Second}, &memDialer{})
		h.expect(signaling.SessionConnected, 0)
		old := h.d.conn(0)
		time.Sleep(time.Second)
		old.events <- goAway()
		if ev := h.expect(signaling.SessionMessage, time.Second); ev.Event.Type != kvsproto.MessageGoAway || ev.Draining {
			t.Fatalf("got %+v", ev)
		}
		if ev := h.expect(signaling.SessionRenewing, time.Second); ev.Why != signaling.RenewGoAway {
			t.Fatalf("why %q", ev.Why)
		}
		h.expect(signaling.SessionRenewed, time.Second)
		// A message of the old connection within the grace still counts.
		time.Sleep(time.Second)
		old.events <- offer("v1")
		if ev := h.expect(signaling.SessionMessage, 2*time.Second); !ev.Draining || ev.Event.SenderClientID != "v1" {
			t.Fatalf("got %+v", ev)
		}
		// Sends go to the new connection.
		if err := h.s.Send(t.Context(), candidateMsg("c1")); err != nil {
			t.Fatal(err)
		}
		if n := len(h.d.conn(1).sentMessages()); n != 1 {
			t.Fatalf("new connection sent %d messages", n)
		}
		// The old one is closed at the end of the grace, not before.
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if !old.closed().IsZero() {
			t.Fatalf("old connection closed at %v, before the grace", old.closed().Sub(h.start))
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := old.closed().Sub(h.start); got != 4*time.Second {
			t.Fatalf("old connection closed at %v; want 4s (renewal + 3s grace)", got)
		}
		if !h.d.conn(1).closed().IsZero() {
			t.Fatal("new connection closed")
		}
	})
}

func TestSessionBackoffAfterFailedDials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := &signaling.HandshakeError{StatusCode: 500}
		d := &memDialer{fail: map[int]error{1: refused, 2: refused, 3: refused}}
		h := startSession(t, signaling.SessionConfig{}, d)
		h.expect(signaling.SessionConnected, 0)
		h.d.conn(0).end(&signaling.CloseError{Code: 1006})
		ev := h.expect(signaling.SessionRenewing, 0)
		var ce *signaling.CloseError
		if ev.Why != signaling.RenewClosed || !errors.As(ev.Err, &ce) {
			t.Fatalf("got %+v", ev)
		}
		// Backoff n seconds after the n-th failure: dials at 0, 1, 3, 6.
		for i, at := range []time.Duration{0, time.Second, 3 * time.Second} {
			ev := h.expect(signaling.SessionRenewFailed, at)
			if ev.Attempt != i+1 || ev.RetryIn != time.Duration(i+1)*time.Second || !errors.Is(ev.Err, signaling.ErrServer) {
				t.Fatalf("failure %d: %+v", i+1, ev)
			}
		}
		h.expect(signaling.SessionRenewed, 6*time.Second)
		want := []time.Duration{0, 0, time.Second, 3 * time.Second, 6 * time.Second}
		got := d.dialTimes(h.start)
		if len(got) != len(want) {
			t.Fatalf("dials at %v; want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("dials at %v; want %v", got, want)
			}
		}
	})
}

func TestSessionGiveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &memDialer{fail: map[int]error{0: &signaling.HandshakeError{StatusCode: 404}}}
		s, err := signaling.NewSession(signaling.SessionConfig{Dialer: d, GiveUp: func(err error, _ int) bool { return errors.Is(err, signaling.ErrNotFound) }})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Run(t.Context()) }()
		if ev := <-s.Events(); ev.Kind != signaling.SessionRenewFailed {
			t.Fatalf("got %+v", ev)
		}
		if err := <-done; !errors.Is(err, signaling.ErrNotFound) {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestSessionTakenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startSession(t, signaling.SessionConfig{}, &memDialer{})
		h.expect(signaling.SessionConnected, 0)
		h.d.conn(0).end(&signaling.CloseError{Code: signaling.CloseCodeReplaced, Reason: "replaced by a newer connection"})
		ev := h.expect(signaling.SessionTakenOver, 0)
		if !signaling.TakenOver(ev.Err) {
			t.Fatalf("got %+v", ev)
		}
		if _, ok := <-h.s.Events(); ok {
			t.Fatal("events after the takeover")
		}
		if err := <-h.done; !errors.Is(err, signaling.ErrTakenOver) {
			t.Fatalf("Run: %v", err)
		}
		h.done <- nil // for the cleanup
		if n := len(h.d.dialTimes(h.start)); n != 1 {
			t.Fatalf("%d dials; want no renewal", n)
		}
		if !signaling.TakenOver(&signaling.CloseError{Code: 1000, Reason: "Connection replaced"}) || signaling.TakenOver(&signaling.CloseError{Code: 1001}) {
			t.Fatal("TakenOver misclassifies")
		}
	})
}

func TestSessionOutbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := &signaling.HandshakeError{StatusCode: 503}
		d := &memDialer{fail: map[int]error{1: refused, 2: refused}}
		h := startSession(t, signaling.SessionConfig{OutboxTTL: 2 * time.Second, Backoff: func(int) time.Duration { return 1500 * time.Millisecond }}, d)
		h.expect(signaling.SessionConnected, 0)
		h.d.conn(0).end(&signaling.CloseError{Code: 1006})
		h.expect(signaling.SessionRenewing, 0)
		h.expect(signaling.SessionRenewFailed, 0)
		// Down: this one waits past the TTL (reconnect is at 3 s).
		if err := h.s.Send(t.Context(), candidateMsg("stale")); err != nil {
			t.Fatal(err)
		}
		h.expect(signaling.SessionRenewFailed, 1500*time.Millisecond)
		if err := h.s.Send(t.Context(), candidateMsg("fresh")); err != nil {
			t.Fatal(err)
		}
		ev := h.expect(signaling.SessionOutboxDropped, 2*time.Second)
		if ev.Message == nil || ev.Message.Action != kvsproto.ActionICECandidate || !containsCandidate(*ev.Message, "stale") {
			t.Fatalf("dropped %+v", ev.Message)
		}
		h.expect(signaling.SessionRenewed, 3*time.Second)
		synctest.Wait()
		sent := h.d.conn(1).sentMessages()
		if len(sent) != 1 || !containsCandidate(sent[0], "fresh") {
			t.Fatalf("sent on reconnect: %+v", sent)
		}
		// Invalid messages are refused at once.
		if err := h.s.Send(t.Context(), kvsproto.ClientMessage{}); !errors.Is(err, kvsproto.ErrInvalid) {
			t.Fatalf("Send invalid: %v", err)
		}
	})
}

func containsCandidate(m kvsproto.ClientMessage, c string) bool {
	var cand kvsproto.ICECandidate
	return kvsproto.DecodePayload(m.MessagePayload, &cand) == nil && cand.Candidate == c
}

func TestSessionSilentDeath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startSession(t, signaling.SessionConfig{}, &memDialer{})
		h.expect(signaling.SessionConnected, 0)
		time.Sleep(7 * time.Second)
		h.d.conn(0).end(signaling.ErrKeepaliveTimeout)
		ev := h.expect(signaling.SessionRenewing, 7*time.Second)
		if ev.Why != signaling.RenewClosed || !errors.Is(ev.Err, signaling.ErrKeepaliveTimeout) {
			t.Fatalf("got %+v", ev)
		}
		h.expect(signaling.SessionRenewed, 7*time.Second)
		h.d.conn(1).events <- offer("v2")
		if ev := h.expect(signaling.SessionMessage, 7*time.Second); ev.Draining || ev.Event.SenderClientID != "v2" {
			t.Fatalf("got %+v", ev)
		}
	})
}

func TestNewSessionNeedsDialer(t *testing.T) {
	if _, err := signaling.NewSession(signaling.SessionConfig{}); !errors.Is(err, kvsproto.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

// TestSessionEmulatorGoAway renews a real connection on a GO_AWAY of the
// local emulator. The emulator closes the old connection (code 4001) when
// the new one with the same client id joins: that is no takeover.
func TestSessionEmulatorGoAway(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	s, err := signaling.NewSession(signaling.SessionConfig{Dialer: signaling.DialerFor(e.config(t, kvsproto.RoleViewer, "viewer-1"))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	next := func(kind signaling.SessionEventKind) signaling.SessionEvent {
		t.Helper()
		for ev := range s.Events() {
			if ev.Kind == kind {
				return ev
			}
			if ev.Kind != signaling.SessionMessage {
				t.Fatalf("got %s %+v while waiting for %s", ev.Kind, ev, kind)
			}
		}
		t.Fatalf("events closed while waiting for %s", kind)
		return signaling.SessionEvent{}
	}
	next(signaling.SessionConnected)
	if n, err := e.s.Inject(emulator.Fault{Kind: emulator.FaultGoAway, Channel: "demo", Target: "viewer", Grace: 5 * time.Second}); err != nil || n != 1 {
		t.Fatalf("inject: %d %v", n, err)
	}
	if ev := next(signaling.SessionRenewing); ev.Why != signaling.RenewGoAway {
		t.Fatalf("got %+v", ev)
	}
	next(signaling.SessionRenewed)
	// The new connection works: the master's offer arrives on it.
	master := dial(t, e.config(t, kvsproto.RoleMaster, ""))
	if err := master.SendOffer(ctx, kvsproto.SessionDescription{SDP: "v=0\r\n"}, "viewer-1", ""); err != nil {
		t.Fatal(err)
	}
	if ev := next(signaling.SessionMessage); ev.Event.Type != kvsproto.MessageSDPOffer || ev.Draining {
		t.Fatalf("got %+v", ev)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestSessionReplacedByItself: the service closes the replaced connection
// with 4001 once the renewal is up; that is no takeover.
func TestSessionReplacedByItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startSession(t, signaling.SessionConfig{}, &memDialer{})
		h.expect(signaling.SessionConnected, 0)
		h.d.conn(0).events <- goAway()
		h.expect(signaling.SessionMessage, 0)
		h.expect(signaling.SessionRenewing, 0)
		h.expect(signaling.SessionRenewed, 0)
		h.d.conn(0).end(&signaling.CloseError{Code: signaling.CloseCodeReplaced, Reason: "replaced"})
		synctest.Wait()
		h.d.conn(1).events <- offer("v3")
		if ev := h.expect(signaling.SessionMessage, 0); ev.Event.SenderClientID != "v3" {
			t.Fatalf("got %+v", ev)
		}
		if n := len(h.d.dialTimes(h.start)); n != 2 {
			t.Fatalf("%d dials; want 2", n)
		}
	})
}

// TestSessionSendOnDeadConnection: a message whose send fails because the
// connection has ended goes out on the next one.
func TestSessionSendOnDeadConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &memDialer{fail: map[int]error{1: &signaling.HandshakeError{StatusCode: 500}}}
		h := startSession(t, signaling.SessionConfig{}, d)
		h.expect(signaling.SessionConnected, 0)
		c := h.d.conn(0)
		c.mu.Lock()
		c.err = signaling.ErrKeepaliveTimeout // dead, not yet noticed by the reader
		c.mu.Unlock()
		if err := h.s.Send(t.Context(), candidateMsg("late")); err != nil {
			t.Fatal(err)
		}
		close(c.events)
		h.expect(signaling.SessionRenewing, 0)
		h.expect(signaling.SessionRenewFailed, 0)
		h.expect(signaling.SessionRenewed, time.Second)
		synctest.Wait()
		if sent := h.d.conn(1).sentMessages(); len(sent) != 1 || !containsCandidate(sent[0], "late") {
			t.Fatalf("sent %+v", sent)
		}
	})
}

func TestDefaultBackoff(t *testing.T) {
	for n, hi := range map[int]time.Duration{1: 250 * time.Millisecond, 2: 500 * time.Millisecond, 6: 8 * time.Second, 7: 8 * time.Second, 100: 8 * time.Second} {
		for range 50 {
			if d := signaling.DefaultBackoff(n); d < hi/2 || d > hi {
				t.Fatalf("DefaultBackoff(%d) = %v; want within [%v, %v]", n, d, hi/2, hi)
			}
		}
	}
}
