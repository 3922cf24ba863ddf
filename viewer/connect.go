package viewer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// This file is the session's connect loop: it starts attempts, backs off
// between them, and lets the attempt before the current one keep listening
// for a late answer (RetryPolicy.LateAnswerWindow).
//
// The rules, with the default policy:
//   - an attempt that gets no answer within AnswerTimeout (2.5 s) reports
//     it; the next attempt starts after the backoff while the old one keeps
//     listening until LateAnswerWindow (12 s) after its offer. A lost answer
//     is still retried at 2.5 s; a master that answers every offer after
//     10 s (a KVS C SDK camera answering a non-trickle offer, an aiortc
//     master) gives video at ~10 s instead of never;
//   - at most two attempts are open. When both have timed out, no third is
//     started until one of them ends: each abandoned offer costs a camera a
//     candidate-gathering session and a viewer slot;
//   - the first answer wins (Session.winner) and every other open attempt is
//     torn down completely before the loop goes on.

// handle is a running attempt as the connect loop sees it.
type handle struct {
	a        *attemptRun
	cancel   context.CancelFunc
	done     chan struct{} // closed once the attempt is torn down and res is set
	res      attemptResult
	timedOut bool // reported noteTimedOut: lingering for a late answer
}

// connect runs attempts until one streams and ends (context, Duration), or
// the session gives up.
func (s *Session) connect(ctx context.Context, ch control.Channel) error {
	var (
		budgetEnd    time.Time
		attempt      = 0 // attempts started in the current connect cycle
		streamedOnce bool
		recoveries   int
		nextCause    = CauseNone
		lastErr      *SessionError // the last failed attempt's error, if giving up
		endpoints    control.Endpoints
		haveEP       bool
		open         []*handle
		backoff      timer
		waiting      bool   // backoff runs before the next attempt
		full         bool   // the channel refused an attempt as full while an older one is open: wait for it
		held         string // storage mode: the client id of the latest ended attempt, whose slot the session keeps
		notes        = make(chan attemptNote, 8)
		results      = make(chan *handle)
		stop         = make(chan struct{}) // closed when connect returns
		wg           sync.WaitGroup        // attempt goroutines
	)
	defer func() {
		backoff.stop()
		close(stop)
		wg.Wait()
	}()
	if s.cfg.Retry.TotalBudget > 0 {
		budgetEnd = time.Now().Add(s.cfg.Retry.TotalBudget)
	}
	// closeAll tears every open attempt down and waits for it.
	closeAll := func(keep *handle) {
		var kept []*handle
		for _, h := range open {
			if h == keep {
				kept = append(kept, h)
				continue
			}
			h.cancel()
			<-h.done
		}
		open = kept
	}
	defer closeAll(nil)

	// start launches attempt number attempt+1 now.
	start := func() (*SessionError, bool) {
		attempt++
		s.mu.Lock()
		s.summary.Attempts++
		total := s.summary.Attempts
		s.mu.Unlock()
		if !haveEP {
			var err error
			endpoints, err = s.endpoints(ctx, ch.ARN)
			if err != nil {
				if ctx.Err() != nil {
					return nil, false
				}
				cause, fatal := classify(err)
				se := &SessionError{Stage: "control", Cause: cause, Attempts: total, Err: err}
				if fatal {
					return se, false
				}
				nextCause, lastErr = cause, se
				return nil, true // counts as a failed attempt
			}
			haveEP = true
		}
		clientID := s.cfg.ClientID
		switch {
		case s.cfg.Storage && held != "" && !clientIDOpen(open, held):
			// The storage session keeps a viewer's slot for a while after
			// it leaves, for its client id: joining again with it takes
			// that slot back (a fresh id would need another, and a full
			// session has none). Signaling-wise the id is free: the
			// attempt that used it has ended.
			clientID = held
		case total > 1 || clientID == "":
			var err error
			if clientID, err = s.ids.Next(); err != nil {
				return &SessionError{Stage: "config", Cause: CauseClientID, Attempts: total, Err: err}, false
			}
		}
		actx, cancel := context.WithCancel(ctx)
		h := &handle{cancel: cancel, done: make(chan struct{})}
		h.a = &attemptRun{s: s, n: attempt, clientID: clientID, ch: ch, ep: endpoints, notes: notes}
		open = append(open, h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.res = h.a.run(actx)
			cancel()
			close(h.done)
			select {
			case results <- h:
			case <-stop:
			}
		}()
		return nil, false
	}

	// next schedules the next attempt after the backoff, or reports that
	// the session has to give up (attempts or budget used up).
	next := func() (giveUp bool) {
		if waiting || ctx.Err() != nil {
			return false
		}
		if full {
			return false // the open attempt decides; see the results case
		}
		if attempt >= s.cfg.Retry.MaxAttempts && !((nextCause == CauseChannelFull || nextCause == CauseStorageFull) && s.cfg.WaitForSlot) {
			return true
		}
		if attempt == 0 {
			waiting = true
			backoff.set(0)
			return false
		}
		wait := s.cfg.Retry.Backoff(attempt, s.cfg.rand)
		if nextCause == CauseThrottled {
			wait = max(wait, s.cfg.Retry.Throttled(attempt, s.cfg.rand))
		}
		if !budgetEnd.IsZero() && time.Now().Add(wait).After(budgetEnd) {
			if lastErr == nil || !errors.Is(lastErr.Err, ErrBudget) {
				lastErr = &SessionError{Stage: "connect", Cause: nextCause, Attempts: s.Summary().Attempts, Err: ErrBudget}
			}
			return true
		}
		detail := fmt.Sprintf("attempt %d in %v", attempt+1, wait.Round(time.Millisecond))
		for _, h := range open {
			if h.timedOut {
				detail += fmt.Sprintf(" (still listening for a late answer to attempt %d)", h.a.n)
			}
		}
		s.emit(Event{State: StateReconnecting, Attempt: attempt + 1, Cause: nextCause, Detail: detail})
		waiting = true
		backoff.set(wait)
		return false
	}

	// giveUp returns the error that ends the session once nothing is open.
	giveUp := func() error {
		if lastErr == nil {
			lastErr = &SessionError{Stage: "connect", Cause: nextCause, Attempts: s.Summary().Attempts, Err: ErrGaveUp}
		}
		return lastErr
	}

	if next() {
		return giveUp()
	}
	for {
		// Start the next attempt only while none is fresh (every open one
		// has timed out) and fewer than two are open.
		select {
		case <-ctx.Done():
			return nil

		case <-backoff.c():
			backoff.stop()
			waiting = false
			fresh := false
			for _, h := range open {
				fresh = fresh || !h.timedOut
			}
			if fresh || len(open) >= 2 {
				continue // an answer came meanwhile, or no room: wait
			}
			se, failed := start()
			if se != nil {
				return se
			}
			if failed && len(open) == 0 && next() {
				return giveUp()
			}

		case n := <-notes:
			h := findHandle(open, n.a)
			if h == nil {
				continue // already torn down
			}
			switch n.kind {
			case noteTimedOut:
				h.timedOut = true
				nextCause = CauseNoAnswer
				if len(open) < 2 && next() && len(open) == 0 {
					return giveUp()
				}
			case noteAnswered:
				// The first answer wins: tear the other attempt down
				// before anything else happens.
				backoff.stop()
				waiting = false
				full = false // the winner has its slot
				for _, o := range open {
					if o != h {
						s.log.Info("an answer arrived; closing the other open attempt", "answered", h.a.n, "closed", o.a.n, "late", h.timedOut)
					}
				}
				closeAll(h)
				if h.timedOut {
					s.emit(Event{State: StateConnected, Attempt: h.a.n, ClientID: h.a.clientID, Detail: fmt.Sprintf("late answer to attempt %d (after more than %v): connecting ICE", h.a.n, s.cfg.Retry.AnswerTimeout)})
				}
			}

		case h := <-results:
			if findHandle(open, h.a) == nil {
				continue // torn down by closeAll; its result was taken there
			}
			open = removeHandle(open, h)
			<-h.done
			res := h.res
			if s.cfg.Storage {
				held = h.a.clientID
			}
			s.mu.Lock()
			if s.winner == h.a {
				s.winner = nil // the next connect cycle may take an answer
			}
			total := s.summary.Attempts
			s.mu.Unlock()
			if res.streamed {
				streamedOnce = true
			}
			if res.err == nil {
				return nil // context ended or Duration streamed
			}
			cause, fatal := res.cause, res.fatal
			if (cause == CauseChannelFull || cause == CauseStorageFull) && s.cfg.WaitForSlot {
				fatal = false
			}
			if errors.Is(res.err, signaling.ErrNotFound) {
				haveEP = false // endpoints may be stale
			}
			if cause == CauseICEExpired || cause == CauseNetworkChange {
				s.ice.Invalidate(ch.ARN)
			}
			if streamedOnce && (cause == CauseNoAnswer || cause == CauseNoMedia) {
				// It streamed before, so the viewer's setup works: the
				// master stopped answering or sending.
				cause = CauseMasterGone
			}
			if cause == CauseChannelFull && len(open) > 0 {
				// The channel is full, and an earlier attempt of this
				// session, still listening for a late answer, holds one of
				// its slots (on a channel at its viewer limit, that is
				// what fills it): that attempt decides. No attempt starts
				// while it is open, and this refusal does not count
				// against MaxAttempts; when it ends without an answer, its
				// slot is free for the next attempt.
				s.log.Info("channel full while an earlier attempt still waits for its answer; waiting for that one", "refused", h.a.n)
				attempt--
				full = true
				continue
			}
			full = false
			if fatal {
				return &SessionError{Stage: res.stage, Cause: cause, Attempts: total, Err: res.err}
			}
			nextCause = cause
			if res.streamed {
				// Media flowed in this attempt: a new connect cycle with a
				// fresh budget.
				if s.cfg.MaxRecoveries < 0 || (s.cfg.MaxRecoveries > 0 && recoveries >= s.cfg.MaxRecoveries) {
					return &SessionError{Stage: res.stage, Cause: cause, Attempts: total, Err: res.err}
				}
				closeAll(nil)
				recoveries++
				s.mu.Lock()
				s.summary.Recoveries = recoveries
				if !h.a.streamStart.IsZero() {
					s.streamed += time.Since(h.a.streamStart)
				}
				s.reconnectAt = time.Now()
				s.mu.Unlock()
				s.emit(Event{State: StateReconnecting, Attempt: 1, Cause: cause, Detail: fmt.Sprintf("reconnecting (recovery %d): %v", recoveries, res.err)})
				attempt, lastErr = 0, nil
				backoff.stop()
				waiting = false
				if s.cfg.Retry.TotalBudget > 0 {
					budgetEnd = time.Now().Add(s.cfg.Retry.TotalBudget)
				}
				if next() {
					return giveUp()
				}
				continue
			}
			err := res.err
			if !errors.Is(err, ErrAnswerTimeout) && !errors.Is(err, ErrNoMedia) {
				err = fmt.Errorf("%w: %w", ErrGaveUp, err)
			}
			lastErr = &SessionError{Stage: res.stage, Cause: cause, Attempts: total, Err: err}
			if len(open) > 0 {
				// Another attempt is still open: it decides, and the next
				// one starts when it times out.
				fresh := false
				for _, o := range open {
					fresh = fresh || !o.timedOut
				}
				if fresh {
					continue
				}
			}
			if next() && len(open) == 0 {
				return giveUp()
			}
		}
	}
}

// clientIDOpen reports whether an open attempt uses id.
func clientIDOpen(open []*handle, id string) bool {
	for _, h := range open {
		if h.a.clientID == id {
			return true
		}
	}
	return false
}

func findHandle(open []*handle, a *attemptRun) *handle {
	for _, h := range open {
		if h.a == a {
			return h
		}
	}
	return nil
}

func removeHandle(open []*handle, h *handle) []*handle {
	out := open[:0]
	for _, o := range open {
		if o != h {
			out = append(out, o)
		}
	}
	return out
}
