// Package retry is the failure budget of a KVS WebRTC viewer: how long to
// wait for the SDP answer and the media, how many attempts, the backoff
// between them, and a fresh client id per attempt that is never reused too
// soon. The viewer (viewer.RetryPolicy is Policy) and the web player (whose
// page follows the same policy) share it.
//
// The package depends on the standard library and kvsproto only, so that
// the web player does not pull in the WebRTC stack.
package retry

import (
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Policy is the viewer's failure budget for getting an SDP answer and
// media: how long to wait for the answer, how many attempts, how long to
// back off between them and how long the whole connect may take.
type Policy struct {
	// AnswerTimeout is how long one attempt waits for the master's SDP
	// answer after sending the offer. 0 = 2.5 s.
	AnswerTimeout time.Duration
	// MediaTimeout is how long one attempt waits, after the answer, for the
	// first complete video frame. 0 = 5 s.
	MediaTimeout time.Duration
	// MaxAttempts is the number of attempts (the first included). 0 = 5.
	MaxAttempts int
	// BackoffBase is the wait before the second attempt, doubling after
	// that. 0 = 250 ms.
	BackoffBase time.Duration
	// BackoffCap bounds the doubling. 0 = 5 s.
	BackoffCap time.Duration
	// NoJitter waits exactly the backoff. By default each wait is drawn
	// uniformly from [0, backoff) (AWS's "full jitter"), which spreads the
	// reconnects of many viewers.
	NoJitter bool
	// TotalBudget bounds the whole connect, all attempts and waits
	// included. 0 = 60 s; negative = no bound beyond the attempts.
	TotalBudget time.Duration
	// LateAnswerWindow is how long after sending its offer an attempt
	// that got no answer within AnswerTimeout keeps listening for a late
	// one, while the next attempt runs (at most two attempts are ever
	// open; the first answer wins and the other attempt is torn down).
	// A lost answer is then still retried after AnswerTimeout, and a
	// master that answers slowly (a KVS C SDK camera answering a
	// non-trickle offer after its 10 s candidate gathering, an aiortc
	// master, a camera on a slow uplink) is not locked out. 0 = 12 s;
	// negative, or not above AnswerTimeout, = off: an attempt ends at its
	// answer timeout.
	LateAnswerWindow time.Duration
}

// DefaultLateAnswerWindow is Default's LateAnswerWindow: the KVS
// C SDK answers a non-trickle offer once its candidate gathering times out
// (10 s by default, 10.06 s measured), plus room for signaling and a slow
// uplink.
const DefaultLateAnswerWindow = 12 * time.Second

// Default answers fast: the master normally answers within a few
// hundred milliseconds, so 3 s without an answer means the offer was lost,
// and a fresh attempt soon after is the quickest way to video.
func Default() Policy {
	return Policy{
		AnswerTimeout: 2500 * time.Millisecond,
		MediaTimeout:  5 * time.Second,
		MaxAttempts:   5,
		BackoffBase:   200 * time.Millisecond,
		BackoffCap:    5 * time.Second,
		TotalBudget:   60 * time.Second,

		LateAnswerWindow: DefaultLateAnswerWindow,
	}
}

// Seed reproduces the viewer of the blog post kvsrtc started from:
// wait 15 s for the answer, then tear down, wait 4 s and try exactly once
// more.
func Seed() Policy {
	return Policy{
		AnswerTimeout: 15 * time.Second,
		MediaTimeout:  15 * time.Second,
		MaxAttempts:   2,
		BackoffBase:   4 * time.Second,
		BackoffCap:    4 * time.Second,
		NoJitter:      true,
		TotalBudget:   -1,

		LateAnswerWindow: -1,
	}
}

// ErrInvalidPolicy is matched by every Policy validation error.
var ErrInvalidPolicy = errors.New("retry: invalid retry policy")

// WithDefaults returns p with its zero fields filled from
// Default, or an error matching ErrInvalidPolicy that names the
// bad field. viewer.Session does this itself; other users of a policy (the web
// player) call it to validate one up front.
func (p Policy) WithDefaults() (Policy, error) {
	d := Default()
	if p.AnswerTimeout == 0 {
		p.AnswerTimeout = d.AnswerTimeout
	}
	if p.MediaTimeout == 0 {
		p.MediaTimeout = d.MediaTimeout
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.BackoffBase == 0 {
		p.BackoffBase = d.BackoffBase
	}
	if p.BackoffCap == 0 {
		p.BackoffCap = d.BackoffCap
	}
	if p.TotalBudget == 0 {
		p.TotalBudget = d.TotalBudget
	}
	if p.LateAnswerWindow == 0 {
		p.LateAnswerWindow = d.LateAnswerWindow
	}
	switch {
	case p.AnswerTimeout < 0 || p.MediaTimeout < 0 || p.BackoffBase < 0 || p.BackoffCap < 0:
		return p, fmt.Errorf("%w: durations must not be negative", ErrInvalidPolicy)
	case p.MaxAttempts < 0:
		return p, fmt.Errorf("%w: max attempts %d must be at least 1", ErrInvalidPolicy, p.MaxAttempts)
	case p.BackoffCap < p.BackoffBase:
		return p, fmt.Errorf("%w: backoff cap %v is below the backoff base %v", ErrInvalidPolicy, p.BackoffCap, p.BackoffBase)
	}
	return p, nil
}

// Lingers reports whether an attempt whose answer timed out keeps
// listening for a late answer, and for how much longer.
func (p Policy) Lingers() (time.Duration, bool) {
	extra := p.LateAnswerWindow - p.AnswerTimeout
	return extra, p.LateAnswerWindow > 0 && extra > 0
}

// Backoff returns the wait before attempt n+1 after attempt n (n >= 1)
// failed: BackoffBase·2^(n-1), capped at BackoffCap, and unless NoJitter a
// uniform draw from [0, that) using r (nil = a shared source).
func (p Policy) Backoff(n int, r *rand.Rand) time.Duration {
	if n < 1 {
		n = 1
	}
	d := p.BackoffBase
	for i := 1; i < n && d < p.BackoffCap; i++ {
		d *= 2
	}
	d = min(d, p.BackoffCap)
	if !p.NoJitter && d > 0 {
		if r != nil {
			return time.Duration(r.Int64N(int64(d)))
		}
		return time.Duration(rand.Int64N(int64(d)))
	}
	return d
}

// Jitter returns a uniform draw from [0, d) using r (nil = a shared
// source), or 0 with NoJitter.
func (p Policy) Jitter(d time.Duration, r *rand.Rand) time.Duration {
	if p.NoJitter || d <= 0 {
		return 0
	}
	if r != nil {
		return time.Duration(r.Int64N(int64(d)))
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// ThrottledWait is the least a retry waits after the service throttled
// the viewer (see Policy.Throttled): the connect limit is 3 per second per
// channel, so retrying sooner only burns attempts.
const ThrottledWait = 500 * time.Millisecond

// Throttled returns the wait before retry n (n >= 1) after the service
// throttled the viewer: from ThrottledWait, doubling, up to 8 s, plus a
// jitter of up to as much again. It grows faster than Backoff because a
// channel admits only 3 connects per second: when many viewers retry at
// once, the herd has to thin out.
func (p Policy) Throttled(n int, r *rand.Rand) time.Duration {
	d := ThrottledWait
	for i := 1; i < n && d < 8*time.Second; i++ {
		d *= 2
	}
	d = min(d, 8*time.Second)
	return d + p.Jitter(d, r)
}

// ClientIDReuseWindow is how long a generated client id is never handed out
// again: the service may still hold state for a client id for about a
// minute after its connection closed.
const ClientIDReuseWindow = 60 * time.Second

// ClientIDs generates a fresh, valid viewer client id per attempt and
// remembers the ones it handed out, so none is reused within
// ClientIDReuseWindow. The zero value is ready to use.
type ClientIDs struct {
	// Prefix starts every id (validated: letters, digits, '-', '_', '.').
	Prefix string
	// Now is the clock (nil = time.Now).
	Now func() time.Time

	mu     sync.Mutex
	issued map[string]time.Time
}

// Next returns a new client id: Prefix + 16 random hex digits (or, without a
// prefix, "kvsrtc-" + 16 hex digits).
func (c *ClientIDs) Next() (string, error) {
	prefix := c.Prefix
	if prefix == "" {
		prefix = "kvsrtc-"
	}
	if err := kvsproto.ValidateClientID(prefix + "0"); err != nil {
		return "", fmt.Errorf("client id prefix %q: %w", c.Prefix, err)
	}
	if len(prefix)+16 > kvsproto.MaxClientIDLen {
		return "", fmt.Errorf("client id prefix %q is too long: at most %d characters", c.Prefix, kvsproto.MaxClientIDLen-16)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := now()
	for id, at := range c.issued {
		if t.Sub(at) >= ClientIDReuseWindow {
			delete(c.issued, id)
		}
	}
	if c.issued == nil {
		c.issued = make(map[string]time.Time)
	}
	for {
		var b [8]byte
		_, _ = crand.Read(b[:])
		id := prefix + hex.EncodeToString(b[:])
		if _, dup := c.issued[id]; dup {
			continue
		}
		c.issued[id] = t
		return id, nil
	}
}

// Use records a caller-chosen client id. It returns an error if the id is
// invalid or was used within ClientIDReuseWindow: reusing a client id that
// quickly can leave the service routing answers to the previous connection.
func (c *ClientIDs) Use(id string) error {
	if err := kvsproto.ValidateClientID(id); err != nil {
		return err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := now()
	if at, ok := c.issued[id]; ok && t.Sub(at) < ClientIDReuseWindow {
		return fmt.Errorf("%w: client id %q was used %v ago; wait %v or let kvsrtc generate one", ErrClientIDReused, id, t.Sub(at).Round(time.Second), (ClientIDReuseWindow - t.Sub(at)).Round(time.Second))
	}
	if c.issued == nil {
		c.issued = make(map[string]time.Time)
	}
	c.issued[id] = t
	return nil
}

// ErrClientIDReused is returned by ClientIDs.Use for a client id used within
// ClientIDReuseWindow.
var ErrClientIDReused = errors.New("retry: client id reused too soon")
