package master

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
)

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

// adopt makes c the current connection and starts forwarding its events.
func (r *run) adopt(ctx context.Context, c *signaling.Client) {
	r.sig = c
	r.sigStarted = time.Now()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for ev := range c.Events() {
			select {
			case r.sigEvents <- sigEvent{c: c, ev: ev}:
			case <-ctx.Done():
				return
			}
		}
		select {
		case r.sigEvents <- sigEvent{c: c, end: true}:
		case <-ctx.Done():
		}
	}()
}

// closeClient closes a signaling connection in the background.
func (r *run) closeClient(c *signaling.Client) {
	delete(r.draining, c)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		c.Close()
	}()
}

// renew starts dialing a replacement signaling connection (unless one is
// being dialed already). The current connection stays in use until the
// new one is up; viewers are not affected.
func (r *run) renew(ctx context.Context, reason string) {
	if r.renewing || ctx.Err() != nil {
		return
	}
	r.renewing = true
	ep := r.endpoints()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for attempt := 1; ; attempt++ {
			c, err := r.dial(ctx, ep)
			if err == nil {
				select {
				case r.renewed <- renewal{c: c, ep: ep, reason: reason}:
				case <-ctx.Done():
					c.Close()
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			wait := backoff(attempt)
			r.log.Warn("connecting to signaling failed; retrying", "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			// The endpoint may have moved (the C SDK goes back to
			// GetSignalingChannelEndpoint after a failed connect).
			if e, err := r.ctl.Endpoints(ctx, r.arn, kvsproto.RoleMaster); err == nil {
				ep = e
			} else if ctx.Err() == nil {
				r.log.Warn("refreshing the signaling endpoints failed", "err", err)
			}
		}
	}()
}

// onRenewed switches to a new signaling connection. The old one is read
// for a little longer (events it received before the switch are still
// handled) and then closed; the service closes it anyway, as the newest
// master connection wins.
func (r *run) onRenewed(ctx context.Context, res renewal) {
	r.renewing = false
	old := r.sig
	r.setEndpoints(res.ep)
	r.adopt(ctx, res.c)
	if old != nil {
		if old.Err() != nil {
			r.closeClient(old)
		} else {
			r.draining[old] = time.Now()
		}
	}
	r.log.Info("signaling connection renewed", "reason", res.reason, "viewers", len(r.peers))
	r.emit(Event{Kind: EventSignalingRenewed, Reason: res.reason})
	r.flushOutbox(ctx)
}

// outMsg is a message for a viewer.
type outMsg struct {
	action kvsproto.Action
	sd     *kvsproto.SessionDescription
	cand   *kvsproto.ICECandidate
	to     string
	corr   string
	p      *peer
	at     time.Time
}

// send sends msg over the current connection. If there is none that
// works, msg waits in the outbox for the next connection.
func (r *run) send(ctx context.Context, msg outMsg) {
	if len(r.outbox) > 0 || r.sig == nil || r.sig.Err() != nil {
		r.queue(msg)
		if r.sig == nil || r.sig.Err() != nil {
			r.renew(ctx, "connection-lost")
		}
		return
	}
	if err := r.sendNow(ctx, msg); err != nil {
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, kvsproto.ErrInvalid) {
			r.log.Error("not sending an invalid message", "action", msg.action, "viewer", msg.to, "err", err)
			return
		}
		r.log.Warn("sending failed; retrying on a new signaling connection", "action", msg.action, "viewer", msg.to, "err", err)
		r.queue(msg)
		r.renew(ctx, "connection-lost")
	}
}

func (r *run) sendNow(ctx context.Context, msg outMsg) error {
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	switch msg.action {
	case kvsproto.ActionSDPAnswer:
		return r.sig.SendAnswer(sctx, *msg.sd, msg.to, msg.corr)
	default:
		return r.sig.SendICECandidate(sctx, *msg.cand, msg.to, msg.corr)
	}
}

func (r *run) queue(msg outMsg) {
	if msg.at.IsZero() {
		msg.at = time.Now()
	}
	if len(r.outbox) >= maxOutbox {
		r.log.Warn("too many messages waiting for signaling; dropping the oldest", "viewer", r.outbox[0].to)
		r.outbox = r.outbox[1:]
	}
	r.outbox = append(r.outbox, msg)
}

// flushOutbox sends the waiting messages of current peers, in order.
func (r *run) flushOutbox(ctx context.Context) {
	box := r.outbox
	r.outbox = nil
	for i, msg := range box {
		if r.peers[msg.to] != msg.p || time.Since(msg.at) > outboxTTL {
			continue // the peer is gone or replaced, or the message is stale
		}
		if r.sig == nil || r.sig.Err() != nil {
			r.outbox = append(r.outbox, box[i:]...)
			return
		}
		r.send(ctx, msg)
	}
}
