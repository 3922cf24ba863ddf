package master

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// The master's signaling runs on a signaling.Session: renewal at
// Config.RenewAfter, on GO_AWAY and when the connection ends, with the
// backoff below; the old connection is read for a grace period (offers it
// still delivers are answered); answers and candidates sent while no
// connection is up wait in the session's outbox.

// Reconnect backoff: the C SDK's (100 ms base, doubling, 10 s cap), with
// jitter: each wait is drawn from [d, 2d) capped at the cap.
const (
	backoffBase = 100 * time.Millisecond
	backoffCap  = 10 * time.Second
)

// backoff returns the wait before reconnect attempt n+1 (n >= 1).
func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffCap; i++ {
		d *= 2
	}
	d = min(d, backoffCap)
	return min(d+rand.N(d), backoffCap)
}

// dial opens a signaling connection as MASTER.
func (r *run) dial(ctx context.Context, ep control.Endpoints) (*signaling.Client, error) {
	return signaling.Dial(ctx, signaling.Config{
		Endpoint:     ep.WSS,
		ChannelARN:   r.arn,
		Role:         kvsproto.RoleMaster,
		Region:       r.ctl.Region(),
		Credentials:  r.ctl.SigV4Credentials,
		Now:          r.ctl.Now,
		PingInterval: r.cfg.PingInterval,
		PongTimeout:  r.cfg.PongTimeout,
		HTTPClient:   r.cfg.HTTPClient,
		Logger:       r.log,
	})
}

// dialCurrent dials the current endpoint. After a failed dial of a
// renewal it fetches the endpoint again for the next one (the C SDK goes
// back to GetSignalingChannelEndpoint after a failed connect).
func (r *run) dialCurrent(ctx context.Context) (signaling.Conn, error) {
	c, err := r.dial(ctx, r.endpoints())
	if err != nil {
		if r.dialed.Load() > 0 && ctx.Err() == nil {
			if ep, eerr := r.ctl.Endpoints(ctx, r.arn, kvsproto.RoleMaster); eerr == nil {
				r.setEndpoints(ep)
			} else if ctx.Err() == nil {
				r.log.Warn("refreshing the signaling endpoints failed", "err", eerr)
			}
		}
		return nil, err
	}
	r.dialed.Add(1)
	return c, nil
}

// startSignaling runs the signaling session and waits for its first
// connection; a first dial that fails is Run's error (nothing is retried
// before the master was ever up).
func (r *run) startSignaling(ctx context.Context) error {
	sess, err := signaling.NewSession(signaling.SessionConfig{
		Dialer:     signaling.DialerFunc(r.dialCurrent),
		RenewAfter: r.cfg.RenewAfter,
		Backoff:    backoff,
		GiveUp:     func(error, int) bool { return r.dialed.Load() == 0 },
		Logger:     r.log,
	})
	if err != nil {
		return err
	}
	r.sess, r.sessEv = sess, sess.Events()
	r.sessDone = make(chan error, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.sessDone <- sess.Run(ctx)
	}()
	for ev := range r.sessEv {
		if ev.Kind == signaling.SessionConnected {
			r.sigStarted = time.Now()
			return nil
		}
	}
	r.sessEv = nil
	if err := <-r.sessDone; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return signaling.ErrSessionClosed
}

// renewReasons name a renewal's reason in EventSignalingRenewed.
var renewReasons = map[signaling.RenewReason]string{
	signaling.RenewAge:    "scheduled",
	signaling.RenewGoAway: "go-away",
	signaling.RenewClosed: "connection-lost",
}

// onSession handles an event of the signaling session. It returns an
// error when the session has ended for good.
func (r *run) onSession(ctx context.Context, ev signaling.SessionEvent) {
	switch ev.Kind {
	case signaling.SessionMessage:
		r.onSignal(ctx, ev.Event, ev.Draining)
	case signaling.SessionRenewing:
		r.renewReason = renewReasons[ev.Why]
		switch ev.Why {
		case signaling.RenewAge:
			r.log.Info("renewing the signaling connection ahead of the service's 1-hour limit", "age", time.Since(r.sigStarted).Round(time.Second))
		case signaling.RenewGoAway:
			r.log.Info("GO_AWAY from the service; renewing the signaling connection (viewers keep streaming)")
		case signaling.RenewClosed:
			r.log.Warn("the signaling connection ended; reconnecting (viewers keep streaming)", "err", ev.Err)
			r.emit(Event{Kind: EventSignalingLost, Err: ev.Err})
		}
	case signaling.SessionRenewed:
		r.sigStarted = time.Now()
		r.log.Info("signaling connection renewed", "reason", r.renewReason, "viewers", r.peers.count())
		r.emit(Event{Kind: EventSignalingRenewed, Reason: r.renewReason})
		r.onStorageRenewed(ctx)
	case signaling.SessionOutboxDropped:
		if m := ev.Message; m != nil {
			r.log.Warn("a message waited too long for signaling; dropped", "action", m.Action, "viewer", m.RecipientClientID)
		}
	}
}

// sessionEnded turns the end of the signaling session into Run's result.
func (r *run) sessionEnded(ctx context.Context) error {
	r.sessEv = nil
	err := <-r.sessDone
	r.sessDone <- err
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, signaling.ErrTakenOver):
		return fmt.Errorf("master: another master connected to channel %s and took it over (the newest master connection wins): %w", r.name, err)
	case err != nil:
		return fmt.Errorf("master: signaling: %w", err)
	}
	return fmt.Errorf("master: signaling: %w", signaling.ErrSessionClosed)
}

// outMsg is a message for a viewer.
type outMsg struct {
	action kvsproto.Action
	sd     *kvsproto.SessionDescription
	cand   *kvsproto.ICECandidate
	to     string
	corr   string
}

// send sends msg; while no connection is up it waits in the session's
// outbox for the next one.
func (r *run) send(ctx context.Context, msg outMsg) {
	var (
		m   kvsproto.ClientMessage
		err error
	)
	switch msg.action {
	case kvsproto.ActionSDPAnswer:
		m, err = signaling.AnswerMessage(*msg.sd, msg.to, msg.corr)
	default:
		m, err = signaling.CandidateMessage(*msg.cand, msg.to, msg.corr)
	}
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, sendTimeout)
		err = r.sess.Send(sctx, m)
		cancel()
	}
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.Is(err, kvsproto.ErrInvalid):
		r.log.Error("not sending an invalid message", "action", msg.action, "viewer", msg.to, "err", err)
	default:
		r.log.Warn("sending failed", "action", msg.action, "viewer", msg.to, "err", err)
	}
}
