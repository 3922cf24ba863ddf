package hub

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// memberImpl is a Member. The fields below ch are guarded by ch.mu.
type memberImpl struct {
	h        *hubImpl
	ch       *channel
	arn      string
	role     kvsproto.Role
	clientID string // "" for the master
	key      string // routing key: masterKey or clientID
	remote   string
	conn     Conn

	attached bool      // routed to and from
	rates    [3]bucket // message rates, by actionIndex
}

// logAttrs logs with the member's channel, role and client id.
func (m *memberImpl) logAttrs(level slog.Level, msg string, attrs ...slog.Attr) {
	l := m.h.log
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	all := make([]slog.Attr, 0, 3+len(attrs))
	all = append(all, slog.String("channel", m.arn), slog.String("role", string(m.role)))
	if m.role == kvsproto.RoleViewer {
		all = append(all, slog.String("clientId", m.clientID))
	}
	l.LogAttrs(ctx, level, msg, append(all, attrs...)...)
}

// handle routes one client frame (kvs-protocol.md §4.3, §4.7).
func (m *memberImpl) handle(frame []byte) {
	h := m.h
	if h.closed.Load() {
		return
	}
	msg, err := kvsproto.DecodeClientMessage(frame)
	if err != nil {
		m.fail(msg.CorrelationID, kvsproto.ErrCodeInvalidArgument, err.Error())
		return
	}
	if ic := h.set.intercept; ic != nil {
		m.ch.mu.Lock()
		attached := m.attached
		m.ch.mu.Unlock()
		if attached && ic(m.arn, m.role, m.clientID, msg) {
			h.c.routed.Add(1)
			return
		}
	}
	key, sender := masterKey, m.clientID // a viewer's recipientClientId is ignored
	if m.role == kvsproto.RoleMaster {
		sender = ""
		if msg.RecipientClientID == "" {
			m.fail(msg.CorrelationID, kvsproto.ErrCodeInvalidArgument,
				"recipientClientId is required on messages from the master; set it to the viewer's client id")
			return
		}
		if err := kvsproto.ValidateClientID(msg.RecipientClientID); err != nil {
			m.fail(msg.CorrelationID, kvsproto.ErrCodeInvalidArgument, "recipientClientId: "+err.Error())
			return
		}
		key = msg.RecipientClientID
	}
	ev := kvsproto.Event{MessagePayload: msg.MessagePayload, MessageType: kvsproto.MessageType(msg.Action), SenderClientID: sender}
	fr, err := ev.Encode()
	if err != nil { // strings only; does not happen
		m.fail(msg.CorrelationID, kvsproto.ErrCodeInvalidArgument, "cannot encode the message: "+err.Error())
		return
	}
	q := queued{sender: sender, action: msg.Action, frame: fr}

	now := h.now()
	ch := m.ch
	ch.mu.Lock()
	if !m.attached {
		ch.mu.Unlock()
		h.c.dropped.Add(1)
		m.logAttrs(slog.LevelInfo, "message dropped",
			slog.String("reason", "the connection was replaced, closed or left the channel"), slog.String("action", string(msg.Action)))
		return
	}
	if h.set.quotas {
		ai := actionIndex(msg.Action)
		if !m.rates[ai].allow(now) {
			ch.mu.Unlock()
			m.fail(msg.CorrelationID, kvsproto.ErrCodeClientLimitExceeded,
				fmt.Sprintf("%s rate exceeded: at most %g per second per connection", msg.Action, h.set.rates[ai]))
			return
		}
	}
	var f *Fault
	if h.armed.Load() > 0 {
		f = h.takeMessageFault(ch, m, msg.Action)
	}
	if f != nil {
		ttl := ch.ttl
		ch.mu.Unlock()
		m.messageFault(*f, key, q, ttl)
		return
	}
	res, gone := ch.routeLocked(key, q, now)
	ch.mu.Unlock()
	m.routed(res, gone, key, msg.Action, msg.CorrelationID)
}

// routed finishes a routing decision outside the channel lock.
func (m *memberImpl) routed(res outcome, gone *memberImpl, key string, action kvsproto.Action, corr string) {
	if gone != nil {
		gone.sendFailed()
	}
	switch res {
	case outcomeDelivered:
		if m.h.log.Enabled(context.Background(), slog.LevelDebug) {
			m.logAttrs(slog.LevelDebug, "message routed", slog.String("action", string(action)), slog.String("recipient", recipientName(key)))
		}
	case outcomeBuffered:
		m.logAttrs(slog.LevelDebug, "message buffered", slog.String("action", string(action)),
			slog.String("recipient", recipientName(key)), slog.String("reason", "recipient not connected"))
	case outcomeBufferFull:
		desc := fmt.Sprintf("too many undelivered messages for %s (the limits are %d per recipient and %d per channel); the message was dropped",
			recipientName(key), m.h.set.maxPerRecipient, m.h.set.maxPerChannel)
		m.reject(corr, kvsproto.ErrCodeClientLimitExceeded, desc)
	}
}

func recipientName(key string) string {
	if key == masterKey {
		return "the master"
	}
	return "viewer " + key
}

// fail counts a rejected client message and rejects it.
func (m *memberImpl) fail(corr, errType, desc string) {
	m.h.c.errors.Add(1)
	m.reject(corr, errType, desc)
}

// reject logs why a client message failed and, when it carried a
// correlationId, answers with a STATUS_RESPONSE (kvs-protocol.md §4.6). The
// connection stays open.
func (m *memberImpl) reject(corr, errType, desc string) {
	m.logAttrs(slog.LevelInfo, "client message rejected", slog.String("reason", desc),
		slog.String("errorType", errType), slog.String("correlationId", corr), slog.Bool("statusResponse", corr != ""))
	if corr == "" {
		return
	}
	if err := m.conn.Send(statusFrame(corr, errType, desc)); err != nil {
		m.logAttrs(slog.LevelDebug, "STATUS_RESPONSE not sent", slog.String("reason", err.Error()))
	}
}

// sendFailed closes a member whose Send failed (it is already detached).
func (m *memberImpl) sendFailed() {
	m.logAttrs(slog.LevelWarn, "connection dropped", slog.String("reason", "Send failed; its messages are buffered again"),
		slog.String("remote", m.remote))
	m.conn.Close(CloseCodeSendFailed, CloseReasonSendFailed, false)
}

func (m *memberImpl) leave() {
	ch := m.ch
	h := m.h
	ch.mu.Lock()
	was := ch.detachLocked(m)
	idle := was && !ch.removed && ch.idleLocked(h.now())
	ch.mu.Unlock()
	if !was {
		return
	}
	m.logAttrs(slog.LevelInfo, "connection left", slog.String("remote", m.remote))
	if idle {
		h.maybeRemove(ch)
	}
}

// messageFault applies a fired drop or delay fault to one message.
func (m *memberImpl) messageFault(f Fault, key string, q queued, ttl time.Duration) {
	h := m.h
	attrs := []slog.Attr{slog.String("fault", string(f.Kind)), slog.String("action", string(q.action)), slog.String("recipient", recipientName(key))}
	if f.Kind == FaultDrop {
		h.c.dropped.Add(1)
		m.logAttrs(slog.LevelWarn, "fault fired: message dropped", attrs...)
		return
	}
	m.logAttrs(slog.LevelWarn, "fault fired: message delayed", append(attrs, slog.Duration("delay", f.Delay))...)
	h.after(f.Delay, func() { m.routeLater(key, q, ttl) })
}

// routeLater routes a delayed message to whoever is its recipient now.
func (m *memberImpl) routeLater(key string, q queued, ttl time.Duration) {
	h := m.h
	now := h.now()
	ch, err := h.lockChannel(m.arn, ttl, now)
	if err != nil {
		h.c.dropped.Add(1)
		m.logAttrs(slog.LevelInfo, "delayed message dropped", slog.String("reason", err.Error()))
		return
	}
	res, gone := ch.routeLocked(key, q, now)
	ch.mu.Unlock()
	m.logAttrs(slog.LevelWarn, "delayed message released", slog.String("fault", string(FaultDelay)),
		slog.String("action", string(q.action)), slog.String("recipient", recipientName(key)))
	m.routed(res, gone, key, q.action, "")
}
