package master

import "time"

// admission is the master's policy for viewer slots: what an offer from a
// current viewer does to its peer, and which viewer, if any, makes room
// for a new one when Config.MaxViewers are there. It decides only; onOffer
// carries the decision out.
//
//  1. An offer from a current viewer with the same DTLS fingerprint and a
//     new ICE username fragment restarts ICE on its connection (the
//     viewer's network changed; its media survive). Any other offer from a
//     current viewer replaces its peer (ErrReplaced).
//  2. At the limit, one viewer is dropped to make room, the first that
//     applies of: the oldest viewer that was answered but never connected
//     (it most likely gave up: its answer was lost and it retried under a
//     new client id; ErrConnectTimeout); the viewer whose connection has
//     been down the longest (disconnected, failed, or an ICE restart that
//     is not getting anywhere; it may be this very viewer under a new
//     client id; ErrDisconnected); the viewer nothing has arrived from for
//     the longest, over silentThreshold (ICE has not noticed yet, but its
//     path is dead; ErrDisconnected).
//  3. Otherwise the offer is refused (ErrTooManyViewers): a connected,
//     live viewer is never dropped for a new one.
type admission struct {
	max int // Config.MaxViewers
}

// seat is what the policy knows of a current viewer.
type seat struct {
	id     string
	joined bool      // it has connected
	since  time.Time // when its offer was answered
	down   time.Time // when its connection went down; zero if it is up
	// silent returns how long nothing has arrived from the viewer (0 if
	// unknown). It reads the connection's stats, so it is asked only when
	// the rules before it found no one.
	silent func() time.Duration
}

// restarts reports whether an offer (summarized as offered, or
// unparsable) from a current viewer whose peer was set up with fingerprint
// and ufrag restarts ICE on that peer rather than replacing it.
func (admission) restarts(fingerprint, ufrag string, offered offerSummary, parseErr error) bool {
	return parseErr == nil && offered.fingerprint != "" && offered.fingerprint == fingerprint && offered.ufrag != ufrag
}

// evictRule names the rule that chose a viewer to drop.
type evictRule int

const (
	evictNeverConnected evictRule = iota + 1 // answered, never connected
	evictDown                                // its connection is down
	evictSilent                              // nothing has arrived from it
)

// eviction is a viewer to drop to make room for a new one.
type eviction struct {
	id        string
	rule      evictRule
	why       error         // ErrConnectTimeout or ErrDisconnected
	down      time.Time     // evictDown: since when
	silentFor time.Duration // evictSilent: how long it has been silent
}

// admit decides for an offer from a new viewer, given the current ones
// (a viewer being replaced is no longer among them): evict, if not nil,
// is the viewer to drop first; refuse reports that the offer must be
// refused even so.
func (a admission) admit(seats []seat) (evict *eviction, refuse bool) {
	if len(seats) < a.max {
		return nil, false
	}
	evict = a.victim(seats)
	n := len(seats)
	if evict != nil {
		n--
	}
	return evict, n >= a.max
}

// victim applies the rules of eviction in order.
func (admission) victim(seats []seat) *eviction {
	var stale *seat
	for i := range seats {
		if s := &seats[i]; !s.joined && (stale == nil || s.since.Before(stale.since)) {
			stale = s
		}
	}
	if stale != nil {
		return &eviction{id: stale.id, rule: evictNeverConnected, why: ErrConnectTimeout}
	}
	for i := range seats {
		if s := &seats[i]; !s.down.IsZero() && (stale == nil || s.down.Before(stale.down)) {
			stale = s
		}
	}
	if stale != nil {
		return &eviction{id: stale.id, rule: evictDown, why: ErrDisconnected, down: stale.down}
	}
	var silentFor time.Duration
	for i := range seats {
		s := &seats[i]
		if s.silent == nil {
			continue
		}
		if d := s.silent(); d > silentThreshold && d > silentFor {
			stale, silentFor = s, d
		}
	}
	if stale != nil {
		return &eviction{id: stale.id, rule: evictSilent, why: ErrDisconnected, silentFor: silentFor}
	}
	return nil
}

// silentThreshold is how long nothing may arrive from a connected viewer
// (it sends RTCP reports every second and ICE consent checks every 2 s)
// before the master may drop it to make room for a new viewer.
const silentThreshold = 4 * time.Second
