package hub

import (
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// masterKey is the buffer and routing key of the master (viewer client ids
// are never empty).
const masterKey = ""

// queued is one message waiting for its recipient.
type queued struct {
	sender  string // the sending viewer's client id; "" = the master
	action  kvsproto.Action
	frame   []byte // the event, encoded
	expires time.Time
}

// channel is one signaling channel. Everything below mu is guarded by it.
type channel struct {
	h         *hubImpl
	arn, name string

	mu      sync.Mutex
	removed bool // no longer in the hub's map; look the ARN up again
	ttl     time.Duration
	master  *memberImpl
	viewers map[string]*memberImpl
	queues  map[string][]queued // by recipient key
	nbuf    int                 // messages in queues
	connect [2]bucket           // by roleIndex
}

func newChannel(h *hubImpl, arn string, ttl time.Duration, now time.Time) *channel {
	ch := &channel{
		h:       h,
		arn:     arn,
		name:    channelName(arn),
		ttl:     ttl,
		viewers: make(map[string]*memberImpl),
		queues:  make(map[string][]queued),
	}
	for i := range ch.connect {
		ch.connect[i] = newBucket(h.set.connectRate, h.set.connectBurst, now)
	}
	return ch
}

// channelName returns the name part of a channel ARN, or the whole string if
// it is not a channel ARN.
func channelName(arn string) string {
	if a, err := kvsproto.ParseChannelARN(arn); err == nil {
		return a.Name
	}
	return arn
}

func roleIndex(r kvsproto.Role) int {
	if r == kvsproto.RoleMaster {
		return 0
	}
	return 1
}

func (ch *channel) memberLocked(key string) *memberImpl {
	if key == masterKey {
		return ch.master
	}
	return ch.viewers[key]
}

func (ch *channel) attachLocked(m *memberImpl) {
	m.attached = true
	if m.role == kvsproto.RoleMaster {
		ch.master = m
		ch.h.c.masters.Add(1)
	} else {
		ch.viewers[m.clientID] = m
		ch.h.c.viewers.Add(1)
	}
}

// detachLocked stops routing to and from m. It reports whether m was
// attached.
func (ch *channel) detachLocked(m *memberImpl) bool {
	if !m.attached {
		return false
	}
	m.attached = false
	if m.role == kvsproto.RoleMaster {
		if ch.master == m {
			ch.master = nil
		}
		ch.h.c.masters.Add(-1)
	} else {
		if ch.viewers[m.clientID] == m {
			delete(ch.viewers, m.clientID)
		}
		ch.h.c.viewers.Add(-1)
	}
	return true
}

// idleLocked reports whether the channel can be forgotten: no connections,
// nothing buffered, and connect buckets refilled (forgetting them must not
// reset the connect rate limit).
func (ch *channel) idleLocked(now time.Time) bool {
	if ch.master != nil || len(ch.viewers) > 0 || ch.nbuf > 0 {
		return false
	}
	if ch.h.set.quotas {
		for i := range ch.connect {
			if !ch.connect[i].full(now) {
				return false
			}
		}
	}
	return true
}

// outcome is what routing did with a message.
type outcome int

const (
	outcomeDelivered outcome = iota
	outcomeBuffered
	outcomeBufferFull
)

// routeLocked hands q to the recipient's connection, or buffers it when the
// recipient is not connected or its Send fails; gone is then the recipient
// whose Send failed (detached; the caller closes it).
func (ch *channel) routeLocked(key string, q queued, now time.Time) (res outcome, gone *memberImpl) {
	if r := ch.memberLocked(key); r != nil {
		if err := r.conn.Send(q.frame); err == nil {
			ch.h.c.routed.Add(1)
			return outcomeDelivered, nil
		}
		ch.detachLocked(r)
		gone = r
	}
	q.expires = now.Add(ch.ttl)
	if !ch.bufferLocked(key, q, now) {
		ch.h.c.dropped.Add(1)
		return outcomeBufferFull, gone
	}
	ch.h.c.buffered.Add(1)
	return outcomeBuffered, gone
}

// bufferLocked appends q to the recipient's queue. An undelivered SDP offer
// or answer from the same sender is replaced (removed, and q appended at the
// end, so it follows whatever the sender queued before it). It reports false
// when the buffer bounds are reached.
func (ch *channel) bufferLocked(key string, q queued, now time.Time) bool {
	msgs := ch.queues[key]
	if len(msgs) > 0 {
		msgs = ch.pruneLocked(msgs, now)
		if q.action != kvsproto.ActionICECandidate {
			for i := range msgs {
				if msgs[i].sender == q.sender && msgs[i].action == q.action {
					copy(msgs[i:], msgs[i+1:])
					msgs[len(msgs)-1] = queued{} // let the old frame be collected
					msgs = msgs[:len(msgs)-1]
					ch.nbuf--
					ch.h.c.dropped.Add(1)
					break
				}
			}
		}
	}
	if len(msgs) >= ch.h.set.maxPerRecipient || ch.nbuf >= ch.h.set.maxPerChannel {
		ch.setQueueLocked(key, msgs)
		return false
	}
	ch.queues[key] = append(msgs, q)
	ch.nbuf++
	return true
}

func (ch *channel) setQueueLocked(key string, msgs []queued) {
	if len(msgs) == 0 {
		delete(ch.queues, key)
		return
	}
	ch.queues[key] = msgs
}

// pruneLocked removes the expired messages of one queue, in place.
func (ch *channel) pruneLocked(msgs []queued, now time.Time) []queued {
	kept := msgs[:0]
	for _, q := range msgs {
		if now.Before(q.expires) {
			kept = append(kept, q)
		}
	}
	if n := len(msgs) - len(kept); n > 0 {
		clear(msgs[len(kept):])
		ch.nbuf -= n
		ch.h.c.expired.Add(uint64(n))
	}
	return kept
}

// expireLocked drops every expired message and returns how many.
func (ch *channel) expireLocked(now time.Time) int {
	before := ch.nbuf
	for key, msgs := range ch.queues {
		ch.setQueueLocked(key, ch.pruneLocked(msgs, now))
	}
	return before - ch.nbuf
}

// flushLocked delivers, in order, the unexpired messages buffered for m,
// which has just been attached. If m's Send fails, m is detached, the
// undelivered rest stays buffered and failed is true.
func (ch *channel) flushLocked(m *memberImpl, now time.Time) (delivered, expired int, failed bool) {
	msgs := ch.queues[m.key]
	if len(msgs) == 0 {
		return 0, 0, false
	}
	delete(ch.queues, m.key)
	ch.nbuf -= len(msgs)
	for i, q := range msgs {
		if !now.Before(q.expires) {
			expired++
			continue
		}
		if err := m.conn.Send(q.frame); err != nil {
			ch.detachLocked(m)
			rest := msgs[i:]
			ch.nbuf += len(rest)
			ch.setQueueLocked(m.key, ch.pruneLocked(rest, now))
			failed = true
			break
		}
		delivered++
	}
	ch.h.c.routed.Add(uint64(delivered))
	ch.h.c.expired.Add(uint64(expired))
	return delivered, expired, failed
}

// shutdown marks the channel removed, detaches every member and drops the
// buffered messages. It returns the members (to be closed by the caller
// without the lock) and how many messages it dropped.
func (ch *channel) shutdown() ([]*memberImpl, int) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.removed = true
	members := make([]*memberImpl, 0, len(ch.viewers)+1)
	if ch.master != nil {
		members = append(members, ch.master)
	}
	for _, v := range ch.viewers {
		members = append(members, v)
	}
	for _, m := range members {
		ch.detachLocked(m)
	}
	n := ch.nbuf
	ch.h.c.dropped.Add(uint64(n))
	clear(ch.queues)
	ch.nbuf = 0
	return members, n
}

// membersLocked returns the members a fault target selects.
func (ch *channel) membersLocked(target string) []*memberImpl {
	var ms []*memberImpl
	if ch.master != nil && matchTarget(target, ch.master) {
		ms = append(ms, ch.master)
	}
	for _, v := range ch.viewers {
		if matchTarget(target, v) {
			ms = append(ms, v)
		}
	}
	return ms
}
