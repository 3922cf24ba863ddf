package control

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// ICECache caches ICE configurations per channel ARN and role. Get returns
// the cached configuration until its RefreshAt; from then on it fetches a
// new one (one fetch at a time per key, shared by concurrent callers) and,
// if that fails while the old one has not expired, returns the old one. It
// never returns an expired configuration. It starts no goroutines.
type ICECache struct {
	client *Client
	now    func() time.Time

	mu      sync.Mutex
	entries map[iceKey]*iceEntry
}

type iceKey struct {
	arn  string
	role kvsproto.Role
}

type iceEntry struct {
	cfg      ICEConfig
	valid    bool
	gen      uint64 // bumped by Invalidate
	inflight *iceFetch
}

type iceFetch struct {
	done chan struct{}
	cfg  ICEConfig
	err  error
}

// NewICECache returns a cache that fetches with c.ICEServers.
func NewICECache(c *Client) *ICECache {
	return &ICECache{client: c, now: c.now, entries: make(map[iceKey]*iceEntry)}
}

// Get returns the ICE configuration of the channel for role, fetching it
// from httpsEndpoint (with clientID, see Client.ICEServers) when there is
// no fresh one.
func (ic *ICECache) Get(ctx context.Context, arn string, role kvsproto.Role, httpsEndpoint, clientID string) (ICEConfig, error) {
	key := iceKey{arn, role}
	for {
		ic.mu.Lock()
		e := ic.entries[key]
		if e == nil {
			e = &iceEntry{}
			ic.entries[key] = e
		}
		now := ic.now()
		if e.valid && now.Before(e.cfg.RefreshAt) {
			cfg := e.cfg
			ic.mu.Unlock()
			return cfg, nil
		}
		f := e.inflight
		leader := f == nil
		if leader {
			f = &iceFetch{done: make(chan struct{})}
			e.inflight = f
		}
		gen := e.gen
		ic.mu.Unlock()

		if leader {
			cfg, err := ic.client.ICEServers(ctx, arn, httpsEndpoint, clientID)
			if err == nil {
				cfg = cfg.withTimes(ic.now())
			}
			ic.mu.Lock()
			f.cfg, f.err = cfg, err
			e.inflight = nil
			if err == nil && e.gen == gen {
				e.cfg, e.valid = cfg, true
			}
			ic.mu.Unlock()
			close(f.done)
		} else {
			select {
			case <-f.done:
			case <-ctx.Done():
				return ICEConfig{}, ctx.Err()
			}
		}

		if f.err == nil {
			return f.cfg, nil
		}
		// The leader's own context ended: fetch again with ours.
		if !leader && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) && ctx.Err() == nil {
			continue
		}
		// The refresh failed: fall back to the old configuration while it
		// is still valid.
		ic.mu.Lock()
		if e.valid && e.gen == gen && ic.now().Before(e.cfg.Expires) {
			cfg := e.cfg
			ic.mu.Unlock()
			ic.client.log.Warn("refreshing ICE servers failed; using the cached configuration until it expires",
				"arn", arn, "role", role, "expires", cfg.Expires, "err", f.err)
			return cfg, nil
		}
		ic.mu.Unlock()
		return ICEConfig{}, f.err
	}
}

// Invalidate drops the cached configurations of a channel (every role), for
// example after a TURN server refused an allocation with its credentials.
// A fetch under way when Invalidate is called is not cached.
func (ic *ICECache) Invalidate(arn string) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for k, e := range ic.entries {
		if k.arn == arn {
			e.valid = false
			e.cfg = ICEConfig{}
			e.gen++
		}
	}
}
