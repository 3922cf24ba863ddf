package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// This file is over 500 lines on purpose: it holds one type, Session,
// and its run loop. Send and the outbox (under s.mu) on the caller's
// side, and Run's single select loop with its handlers (nextDeadline,
// onTimer, renew, startDial, onDial, onConn, closeLater: only they change
// runState) and the flush it starts, keep one invariant together: a
// message goes to the current connection or waits in the outbox, and a
// new connection sends the outbox, oldest first, before Send may use it
// (s.flushing). Read apart, the two halves would hide that ordering. How
// connections are made (Conn, Dialer, ConfigDialer) is in dialer.go.

// Defaults of SessionConfig.
const (
	// DefaultRenewAfter is the age at which a Session replaces its
	// connection, ahead of the service's 1-hour limit.
	DefaultRenewAfter = 50 * time.Minute
	// DefaultDrainGrace is how long a replaced connection is still read.
	DefaultDrainGrace = 5 * time.Second
	// DefaultOutboxTTL is how long a message waits for a connection.
	DefaultOutboxTTL = 30 * time.Second
	// MaxOutbox bounds the messages waiting for a connection; beyond it
	// the oldest is dropped.
	MaxOutbox = 512
)

// flushTimeout bounds the sending of one queued message.
const flushTimeout = 10 * time.Second

// CloseCodeReplaced is the WebSocket close code with which the local
// emulator closes a connection when a newer one with the same client id
// (or a newer master) takes over. The service's own code is not
// documented; a close reason naming the replacement is recognised too
// (see TakenOver).
const CloseCodeReplaced = 4001

// Errors of a Session.
var (
	// ErrTakenOver: the service closed the current connection because a
	// newer connection with the same client id (or a newer master) took
	// over. Run returns it wrapped with the *CloseError.
	ErrTakenOver = errors.New("signaling: a newer connection with the same identity took over")
	// ErrSessionClosed: Send was called after Run returned.
	ErrSessionClosed = errors.New("signaling: session ended")
	// ErrSessionRunning: Run was called a second time.
	ErrSessionRunning = errors.New("signaling: session already running")
	// ErrNotConnected: Send was called while no connection is up and the
	// session has no outbox (SessionConfig.OutboxTTL < 0).
	ErrNotConnected = errors.New("signaling: not connected")
)

// TakenOver reports whether err (a connection's Err) says that the service
// closed the connection because a newer one with the same identity took
// over: close code 4001, or a close reason naming the replacement.
func TakenOver(err error) bool {
	var ce *CloseError
	return errors.As(err, &ce) && (ce.Code == CloseCodeReplaced || strings.Contains(strings.ToLower(ce.Reason), "replaced"))
}

// SessionConfig configures a Session.
type SessionConfig struct {
	// Dialer opens the connections (DialerFor for the real service).
	// Required.
	Dialer Dialer
	// RenewAfter is the age at which the connection is replaced. 0:
	// DefaultRenewAfter; negative: never by age.
	RenewAfter time.Duration
	// Backoff returns the wait after the n-th consecutive failed dial
	// (n >= 1). Nil: DefaultBackoff.
	Backoff func(n int) time.Duration
	// GiveUp, if set, is asked after every failed dial; when it returns
	// true, Run returns the error. Nil: retry until ctx is done.
	GiveUp func(err error, attempt int) bool
	// DrainGrace is how long a replaced connection is still read (its
	// messages are delivered) before it is closed. 0: DefaultDrainGrace;
	// negative: close it at once.
	DrainGrace time.Duration
	// OutboxTTL is how long a message sent while no connection is up waits
	// for one before it is dropped (with a SessionOutboxDropped event). 0:
	// DefaultOutboxTTL; negative: no outbox, Send fails with
	// ErrNotConnected.
	OutboxTTL time.Duration
	// Logger receives debug logs. Nil: discard.
	Logger *slog.Logger
}

// DefaultBackoff waits 250 ms after the first failure, doubling up to 8 s,
// with jitter (between half and all of that).
func DefaultBackoff(n int) time.Duration {
	d := 8 * time.Second
	if n >= 1 && n <= 6 {
		d = 250 * time.Millisecond << (n - 1)
	}
	return d/2 + rand.N(d/2+1)
}

// SessionEventKind says what a SessionEvent is.
type SessionEventKind string

// Kinds of SessionEvent.
const (
	// SessionMessage: Event is a message of the service, from the current
	// connection or (Draining) from a replaced one still being read.
	SessionMessage SessionEventKind = "message"
	// SessionConnected: the first connection is up.
	SessionConnected SessionEventKind = "connected"
	// SessionRenewing: a replacement connection is being dialed, for Why
	// (Err is why the connection ended, for RenewClosed).
	SessionRenewing SessionEventKind = "renewing"
	// SessionRenewed: a replacement connection is up and current.
	SessionRenewed SessionEventKind = "renewed"
	// SessionRenewFailed: a dial failed (Err), the Attempt-th in a row
	// (the first connection's dials included); the next is in RetryIn
	// (0 when GiveUp ended the session).
	SessionRenewFailed SessionEventKind = "renew-failed"
	// SessionTakenOver: the service closed the connection for a newer one
	// with the same identity (Err); there is no renewal, Run returns.
	SessionTakenOver SessionEventKind = "taken-over"
	// SessionOutboxDropped: Message waited too long for a connection (or
	// the outbox was full) and was dropped.
	SessionOutboxDropped SessionEventKind = "outbox-dropped"
)

// RenewReason is why a Session renews its connection.
type RenewReason string

// Reasons of a renewal.
const (
	RenewAge    RenewReason = "age"     // the connection reached RenewAfter
	RenewGoAway RenewReason = "go-away" // the service sent GO_AWAY
	RenewClosed RenewReason = "closed"  // the connection ended unexpectedly
)

// SessionEvent is one event of a Session (see SessionEventKind for which
// fields are set).
type SessionEvent struct {
	Kind SessionEventKind
	// Event is the message (SessionMessage).
	Event Event
	// Draining: the message came from a replaced connection.
	Draining bool
	// Why is the reason of a renewal (SessionRenewing).
	Why RenewReason
	// Err: the dial error (SessionRenewFailed), why the connection ended
	// (SessionRenewing for RenewClosed, SessionTakenOver).
	Err error
	// Attempt counts the consecutive failed dials (SessionRenewFailed).
	Attempt int
	// RetryIn is the wait before the next dial (SessionRenewFailed).
	RetryIn time.Duration
	// Message is the dropped message (SessionOutboxDropped).
	Message *kvsproto.ClientMessage
}

// queued is a message waiting in the outbox.
type queued struct {
	msg kvsproto.ClientMessage
	at  time.Time
}

// Session is a signaling connection that renews itself: at an age, on
// GO_AWAY and when the connection ends unexpectedly, with backoff between
// failed dials. The old connection stays in use until the new one is up,
// and is read for DrainGrace after. Messages sent while no connection is up
// wait in an outbox. Create it with NewSession, then call Run.
type Session struct {
	cfg  SessionConfig
	log  *slog.Logger
	out  chan SessionEvent
	wake chan struct{}
	quit chan struct{}
	in   chan connNote
	ran  atomic.Bool

	mu       sync.Mutex
	cur      Conn
	flushing bool
	ended    bool
	outbox   []queued
	queue    []SessionEvent
}

// connNote is an event (or the end, !ok) of the connection gen.
type connNote struct {
	gen int
	ev  Event
	ok  bool
}

// NewSession validates cfg and returns a Session.
func NewSession(cfg SessionConfig) (*Session, error) {
	if cfg.Dialer == nil {
		return nil, fmt.Errorf("signaling: %w", &kvsproto.ValidationError{Field: "Dialer", Reason: "must be set (DialerFor(cfg) for the service)"})
	}
	if cfg.RenewAfter == 0 {
		cfg.RenewAfter = DefaultRenewAfter
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.DrainGrace == 0 {
		cfg.DrainGrace = DefaultDrainGrace
	}
	if cfg.OutboxTTL == 0 {
		cfg.OutboxTTL = DefaultOutboxTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Session{
		cfg:  cfg,
		log:  log,
		out:  make(chan SessionEvent),
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		in:   make(chan connNote),
	}, nil
}

// Events returns the session's events: the messages of the current and
// draining connections and the lifecycle events. It is closed when Run
// returns. Read it promptly: while events are not read, the connections
// are not read either.
func (s *Session) Events() <-chan SessionEvent { return s.out }

// Send sends msg on the current connection. While none is up (before the
// first connection, during a renewal after the connection ended), msg waits
// in the outbox and is sent on the next connection, unless it is older than
// OutboxTTL by then; Send returns nil. A message the connection refuses
// (kvsproto.ErrInvalid) is an error.
func (s *Session) Send(ctx context.Context, msg kvsproto.ClientMessage) error {
	if err := msg.Validate(); err != nil {
		return fmt.Errorf("signaling: send: %w", err)
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return ErrSessionClosed
	}
	c := s.cur
	if c == nil || s.flushing {
		err := s.enqueueLocked(msg)
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	err := c.Send(ctx, msg)
	if err != nil && c.Err() != nil && ctx.Err() == nil {
		// The connection has ended: the next one sends it.
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ended {
			return ErrSessionClosed
		}
		return s.enqueueLocked(msg)
	}
	return err
}

// enqueueLocked adds msg to the outbox (s.mu held).
func (s *Session) enqueueLocked(msg kvsproto.ClientMessage) error {
	if s.cfg.OutboxTTL < 0 {
		return fmt.Errorf("signaling: send %s: %w", msg.Action, ErrNotConnected)
	}
	if len(s.outbox) >= MaxOutbox {
		m := s.outbox[0].msg
		s.outbox = s.outbox[1:]
		s.emitLocked(SessionEvent{Kind: SessionOutboxDropped, Message: &m})
	}
	s.outbox = append(s.outbox, queued{msg: msg, at: time.Now()})
	s.signal()
	return nil
}

// emitLocked queues an event for Events (s.mu held).
func (s *Session) emitLocked(ev SessionEvent) {
	s.queue = append(s.queue, ev)
	s.signal()
}

func (s *Session) emit(ev SessionEvent) {
	s.mu.Lock()
	s.emitLocked(ev)
	s.mu.Unlock()
}

func (s *Session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// expireOutbox drops the messages older than OutboxTTL and returns when
// the oldest remaining one expires (zero if none).
func (s *Session) expireOutbox(now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.outbox) > 0 {
		exp := s.outbox[0].at.Add(s.cfg.OutboxTTL)
		if now.Before(exp) {
			return exp
		}
		m := s.outbox[0].msg
		s.outbox = s.outbox[1:]
		s.log.Debug("dropping a message that waited too long for a connection", "action", m.Action, "ttl", s.cfg.OutboxTTL)
		s.emitLocked(SessionEvent{Kind: SessionOutboxDropped, Message: &m})
	}
	return time.Time{}
}

// connState is one connection of the session.
type connState struct {
	c       Conn
	drainAt time.Time // zero: current (or ended)
}

// runState is the state of Run's loop.
type runState struct {
	ctx       context.Context
	wg        sync.WaitGroup
	conns     map[int]*connState
	gen       int // of the latest connection
	cur       int // current connection, 0: none
	connected bool
	dialing   bool
	dialRes   chan dialResult
	attempts  int
	renewAt   time.Time
	retryAt   time.Time
}

type dialResult struct {
	c   Conn
	err error
}

// Run connects and keeps the session connected until ctx is done (then it
// returns nil), a newer connection takes over (an error matching
// ErrTakenOver) or GiveUp says so (the dial error). It returns once every
// goroutine of the session has ended and every connection is closed; in
// the last two cases, after the pending events (SessionTakenOver, the last
// SessionRenewFailed) have been read from Events (or ctx is done).
func (s *Session) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrSessionRunning
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	r := &runState{ctx: ctx, conns: make(map[int]*connState), dialRes: make(chan dialResult, 1)}
	err := s.loop(r)
	cancel()
	s.mu.Lock()
	s.ended = true
	s.cur = nil
	s.outbox = nil
	pending := s.queue
	s.queue = nil
	s.mu.Unlock()
	close(s.quit)
	for gen := range r.conns {
		s.closeLater(r, gen)
	}
	r.wg.Wait()
	if r.dialing {
		if res := <-r.dialRes; res.c != nil {
			_ = res.c.Close()
		}
	}
	if err != nil {
		// Taken over or given up: the caller learns it from the events
		// too, so deliver them (unless the caller is gone).
	deliver:
		for _, ev := range pending {
			select {
			case s.out <- ev:
			case <-parent.Done():
				break deliver
			}
		}
	}
	close(s.out)
	return err
}

func (s *Session) loop(r *runState) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	s.startDial(r)
	for {
		next := s.nextDeadline(r)
		if next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}
		s.mu.Lock()
		var out chan SessionEvent
		var head SessionEvent
		if len(s.queue) > 0 {
			out, head = s.out, s.queue[0]
		}
		in := s.in
		if len(s.queue) >= maxQueuedEvents {
			in = nil // stop reading the connections until events are read
		}
		s.mu.Unlock()

		select {
		case <-r.ctx.Done():
			return nil
		case out <- head:
			s.mu.Lock()
			s.queue[0] = SessionEvent{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
		case <-s.wake:
		case <-timer.C:
			s.onTimer(r, time.Now())
		case res := <-r.dialRes:
			if err := s.onDial(r, res); err != nil {
				return err
			}
		case n := <-in:
			if err := s.onConn(r, n); err != nil {
				return err
			}
		}
	}
}

// nextDeadline returns the earliest time the loop must act at.
func (s *Session) nextDeadline(r *runState) time.Time {
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	at(r.renewAt)
	at(r.retryAt)
	for _, cs := range r.conns {
		at(cs.drainAt)
	}
	s.mu.Lock()
	if len(s.outbox) > 0 && s.cfg.OutboxTTL > 0 {
		at(s.outbox[0].at.Add(s.cfg.OutboxTTL))
	}
	s.mu.Unlock()
	return next
}

func (s *Session) onTimer(r *runState, now time.Time) {
	if !r.retryAt.IsZero() && !now.Before(r.retryAt) {
		r.retryAt = time.Time{}
		s.startDial(r)
	}
	if !r.renewAt.IsZero() && !now.Before(r.renewAt) {
		r.renewAt = time.Time{}
		s.log.Info("renewing the signaling connection ahead of the service's 1-hour limit", "after", s.cfg.RenewAfter)
		s.renew(r, SessionEvent{Kind: SessionRenewing, Why: RenewAge})
	}
	for gen, cs := range r.conns {
		if !cs.drainAt.IsZero() && !now.Before(cs.drainAt) {
			s.closeLater(r, gen)
		}
	}
	s.expireOutbox(now)
}

// renew announces a renewal and dials, unless a dial is under way; after a
// failed dial, the next one waits for its backoff.
func (s *Session) renew(r *runState, ev SessionEvent) {
	if r.dialing {
		return
	}
	s.emit(ev)
	if r.retryAt.IsZero() {
		s.startDial(r)
	}
}

// startDial dials in the background.
func (s *Session) startDial(r *runState) {
	if r.dialing {
		return
	}
	r.dialing = true
	r.renewAt = time.Time{}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		c, err := s.cfg.Dialer.Dial(r.ctx)
		if err == nil && c == nil {
			err = errors.New("signaling: the Dialer returned neither a connection nor an error")
		}
		r.dialRes <- dialResult{c: c, err: err} // buffered: one dial at a time
	}()
}

func (s *Session) onDial(r *runState, res dialResult) error {
	r.dialing = false
	if res.err != nil {
		if r.ctx.Err() != nil {
			return nil
		}
		r.attempts++
		if s.cfg.GiveUp != nil && s.cfg.GiveUp(res.err, r.attempts) {
			s.emit(SessionEvent{Kind: SessionRenewFailed, Err: res.err, Attempt: r.attempts})
			return res.err
		}
		wait := s.cfg.Backoff(r.attempts)
		r.retryAt = time.Now().Add(wait)
		s.log.Warn("connecting to signaling failed; retrying", "attempt", r.attempts, "retry_in", wait.Round(time.Millisecond), "err", res.err)
		s.emit(SessionEvent{Kind: SessionRenewFailed, Err: res.err, Attempt: r.attempts, RetryIn: wait})
		return nil
	}
	r.attempts = 0
	r.retryAt = time.Time{}
	if old, ok := r.conns[r.cur]; ok {
		if s.cfg.DrainGrace < 0 || old.c.Err() != nil {
			s.closeLater(r, r.cur)
		} else {
			old.drainAt = time.Now().Add(s.cfg.DrainGrace)
		}
	}
	r.gen++
	gen := r.gen
	r.conns[gen] = &connState{c: res.c}
	r.cur = gen
	if s.cfg.RenewAfter > 0 {
		r.renewAt = time.Now().Add(s.cfg.RenewAfter)
	}
	r.wg.Add(1)
	go s.pump(r, gen, res.c)
	kind := SessionRenewed
	if !r.connected {
		kind = SessionConnected
		r.connected = true
	}
	s.mu.Lock()
	s.cur = res.c
	s.emitLocked(SessionEvent{Kind: kind})
	flush := len(s.outbox) > 0 && !s.flushing
	if flush {
		s.flushing = true
	}
	s.mu.Unlock()
	if flush {
		r.wg.Add(1)
		go s.flush(r)
	}
	s.log.Debug("signaling connection up", "kind", kind)
	return nil
}

// pump forwards the events of connection gen to the loop.
func (s *Session) pump(r *runState, gen int, c Conn) {
	defer r.wg.Done()
	for ev := range c.Events() {
		select {
		case s.in <- connNote{gen: gen, ev: ev, ok: true}:
		case <-s.quit:
			return
		}
	}
	select {
	case s.in <- connNote{gen: gen}:
	case <-s.quit:
	}
}

// onConn handles an event or the end of a connection.
func (s *Session) onConn(r *runState, n connNote) error {
	cs, known := r.conns[n.gen]
	if !known {
		return nil // closed already
	}
	draining := n.gen != r.cur
	if n.ok {
		s.emit(SessionEvent{Kind: SessionMessage, Event: n.ev, Draining: draining})
		if n.ev.Type == kvsproto.MessageGoAway && !draining {
			s.renew(r, SessionEvent{Kind: SessionRenewing, Why: RenewGoAway})
		}
		return nil
	}
	err := cs.c.Err()
	s.closeLater(r, n.gen)
	if draining {
		return nil
	}
	r.cur = 0
	r.renewAt = time.Time{}
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
	if r.dialing {
		// Usually the service closing it for the connection being dialed
		// (the newest one wins).
		s.log.Debug("signaling connection ended during a renewal", "err", err)
		return nil
	}
	if TakenOver(err) {
		s.emit(SessionEvent{Kind: SessionTakenOver, Err: err})
		return fmt.Errorf("%w: %w", ErrTakenOver, err)
	}
	s.log.Warn("signaling connection ended; renewing", "err", err)
	s.renew(r, SessionEvent{Kind: SessionRenewing, Why: RenewClosed, Err: err})
	return nil
}

// closeLater forgets connection gen and closes it in the background (Close
// may wait for the service's close frame).
func (s *Session) closeLater(r *runState, gen int) {
	cs, ok := r.conns[gen]
	if !ok {
		return
	}
	delete(r.conns, gen)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = cs.c.Close()
	}()
}

// flush sends the outbox on c, oldest first. Send queues behind it while
// it runs, so that the order is kept.
func (s *Session) flush(r *runState) {
	defer r.wg.Done()
	for {
		s.expireOutbox(time.Now())
		s.mu.Lock()
		c := s.cur // a renewal may have replaced it meanwhile
		if len(s.outbox) == 0 || c == nil || s.ended {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		q := s.outbox[0]
		s.outbox = s.outbox[1:]
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.ctx, flushTimeout)
		err := c.Send(ctx, q.msg)
		cancel()
		if err != nil {
			if c.Err() != nil || r.ctx.Err() != nil {
				// Ended: the next connection sends it.
				s.mu.Lock()
				s.outbox = append([]queued{q}, s.outbox...)
				s.flushing = false
				s.mu.Unlock()
				return
			}
			s.log.Warn("sending a queued message failed; dropping it", "action", q.msg.Action, "err", err)
		}
	}
}
