package master

import (
	"errors"
	"testing"
	"time"
)

// TestAdmission is the admission policy as a table: who is dropped to
// make room for a new viewer, and when the new viewer is refused.
func TestAdmission(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	silent := func(d time.Duration) func() time.Duration { return func() time.Duration { return d } }
	live := func(id string, since int) seat {
		return seat{id: id, joined: true, since: at(since), silent: silent(time.Second)}
	}
	waiting := func(id string, since int) seat { return seat{id: id, since: at(since), silent: silent(0)} }
	down := func(id string, downAt int) seat {
		s := live(id, 0)
		s.down = at(downAt)
		return s
	}
	quiet := func(id string, d time.Duration) seat {
		s := live(id, 0)
		s.silent = silent(d)
		return s
	}
	noStats := func(s seat) seat { s.silent = nil; return s }

	tests := []struct {
		name   string
		max    int
		seats  []seat
		evict  string
		rule   evictRule
		why    error
		refuse bool
	}{
		{name: "room left", max: 3, seats: []seat{live("a", 1), waiting("b", 2)}},
		{name: "empty", max: 1},
		{name: "full of live viewers: refused", max: 2, seats: []seat{live("a", 1), live("b", 2)}, refuse: true},
		{name: "zero slots: refused", max: 0, refuse: true},
		{
			name: "the oldest viewer that never connected", max: 3,
			seats: []seat{waiting("late", 5), live("a", 1), waiting("early", 3)},
			evict: "early", rule: evictNeverConnected, why: ErrConnectTimeout,
		},
		{
			name: "never connected comes before down", max: 2,
			seats: []seat{down("d", 1), waiting("w", 9)},
			evict: "w", rule: evictNeverConnected, why: ErrConnectTimeout,
		},
		{
			name: "the viewer down the longest", max: 3,
			seats: []seat{down("recent", 8), live("a", 1), down("long", 2)},
			evict: "long", rule: evictDown, why: ErrDisconnected,
		},
		{
			name: "down comes before silent", max: 2,
			seats: []seat{quiet("q", time.Minute), down("d", 5)},
			evict: "d", rule: evictDown, why: ErrDisconnected,
		},
		{
			name: "the viewer silent the longest", max: 3,
			seats: []seat{quiet("q5", 5*time.Second), quiet("q9", 9*time.Second), live("a", 1)},
			evict: "q9", rule: evictSilent, why: ErrDisconnected,
		},
		{
			name: "silent up to the threshold is live: refused", max: 2,
			seats: []seat{quiet("q", silentThreshold), live("a", 1)}, refuse: true,
		},
		{
			name: "a viewer without stats is never silent: refused", max: 1,
			seats: []seat{noStats(live("a", 1))}, refuse: true,
		},
		{
			name: "over the limit: one dropped, still refused", max: 1,
			seats: []seat{waiting("w", 1), live("a", 2)},
			evict: "w", rule: evictNeverConnected, why: ErrConnectTimeout, refuse: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			asked := 0
			for i := range tc.seats {
				if f := tc.seats[i].silent; f != nil {
					tc.seats[i].silent = func() time.Duration { asked++; return f() }
				}
			}
			ev, refuse := admission{max: tc.max}.admit(tc.seats)
			if refuse != tc.refuse {
				t.Errorf("refuse = %v, want %v", refuse, tc.refuse)
			}
			switch {
			case tc.evict == "" && ev != nil:
				t.Fatalf("evicts %q (rule %d), want no one", ev.id, ev.rule)
			case tc.evict == "":
				return
			case ev == nil:
				t.Fatalf("evicts no one, want %q", tc.evict)
			}
			if ev.id != tc.evict || ev.rule != tc.rule || !errors.Is(ev.why, tc.why) {
				t.Errorf("evicts %q by rule %d (%v), want %q by rule %d (%v)", ev.id, ev.rule, ev.why, tc.evict, tc.rule, tc.why)
			}
			if tc.rule != evictSilent && asked > 0 {
				t.Errorf("the stats were read %d times; an earlier rule decided", asked)
			}
		})
	}
}

// TestAdmissionRestarts: a new offer from a current viewer restarts ICE on
// its peer only for the same DTLS fingerprint with a new ICE username
// fragment; anything else replaces the peer.
func TestAdmissionRestarts(t *testing.T) {
	tests := []struct {
		name     string
		offered  offerSummary
		parseErr error
		want     bool
	}{
		{name: "same fingerprint, new ufrag", offered: offerSummary{fingerprint: "fp", ufrag: "u2"}, want: true},
		{name: "same fingerprint, same ufrag", offered: offerSummary{fingerprint: "fp", ufrag: "u1"}},
		{name: "new fingerprint", offered: offerSummary{fingerprint: "fp2", ufrag: "u2"}},
		{name: "no fingerprint", offered: offerSummary{ufrag: "u2"}},
		{name: "unparsable", offered: offerSummary{fingerprint: "fp", ufrag: "u2"}, parseErr: errors.New("bad")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (admission{}).restarts("fp", "u1", tc.offered, tc.parseErr); got != tc.want {
				t.Errorf("restarts = %v, want %v", got, tc.want)
			}
		})
	}
}
