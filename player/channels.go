package player

import (
	"context"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// resolveTimeout bounds one background or on-demand resolution.
const resolveTimeout = 15 * time.Second

// retryAfterError is how soon a failed background resolution is tried again.
const retryAfterError = 5 * time.Second

// channelInfo is what the server knows about one served channel.
type channelInfo struct {
	arn      string
	ep       control.Endpoints
	storage  storageInfo
	resolved time.Time // when arn and ep were fetched (zero: never)
	err      error     // the last resolution's error, if it failed
	errAt    time.Time
}

// channels caches, per served channel, its ARN and VIEWER endpoints, and
// through an ICECache its ICE servers. The background refresher (run) keeps
// both fresh so that minting a session makes no control-plane call.
type channels struct {
	ctl   *control.Client
	ice   *control.ICECache
	every time.Duration
	now   func() time.Time
	// The storage path (storage.go): the mode, the client of its calls and
	// where to say that a channel's storage configuration is unknown.
	storageMode StorageMode
	store       StorageClient
	log         func(msg string, args ...any)

	mu    sync.Mutex
	infos map[string]*channelInfo
	locks map[string]*sync.Mutex // one resolution at a time per channel
	kick  chan struct{}
}

func newChannels(ctl *control.Client, names []string, every time.Duration, now func() time.Time) *channels {
	c := &channels{
		ctl: ctl, ice: control.NewICECache(ctl), every: every, now: now,
		infos: make(map[string]*channelInfo), locks: make(map[string]*sync.Mutex),
		kick: make(chan struct{}, 1),
	}
	for _, n := range names {
		c.infos[n] = &channelInfo{}
		c.locks[n] = &sync.Mutex{}
	}
	return c
}

// served reports whether name is one of the served channels.
func (c *channels) served(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.infos[name]
	return ok
}

// get returns the channel's ARN and endpoints, resolving them when they are
// not known or older than maxAge.
func (c *channels) get(ctx context.Context, name string, maxAge time.Duration) (string, control.Endpoints, error) {
	c.mu.Lock()
	info, ok := c.infos[name]
	lock := c.locks[name]
	var cached channelInfo
	if ok {
		cached = *info
	}
	c.mu.Unlock()
	if !ok {
		return "", control.Endpoints{}, errNotServed
	}
	if !cached.resolved.IsZero() && c.now().Sub(cached.resolved) < maxAge {
		return cached.arn, cached.ep, nil
	}
	lock.Lock()
	defer lock.Unlock()
	// Someone else may have resolved it while we waited.
	c.mu.Lock()
	cached = *info
	c.mu.Unlock()
	if !cached.resolved.IsZero() && c.now().Sub(cached.resolved) < maxAge {
		return cached.arn, cached.ep, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	arn, ep, st, err := c.resolve(ctx, name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		info.err, info.errAt = err, c.now()
		return "", control.Endpoints{}, err
	}
	if info.arn != "" && info.arn != arn {
		// The channel was deleted and created again: its ICE servers too.
		c.ice.Invalidate(info.arn)
	}
	*info = channelInfo{arn: arn, ep: ep, storage: st, resolved: c.now()}
	return arn, ep, nil
}

// resolve finds the channel's ARN, whether it is watched through its
// storage session, and its VIEWER endpoints (with the WEBRTC endpoint of
// the storage calls when it is).
func (c *channels) resolve(ctx context.Context, name string) (string, control.Endpoints, storageInfo, error) {
	ch, err := c.ctl.ResolveChannel(ctx, name)
	if err != nil {
		return "", control.Endpoints{}, storageInfo{}, err
	}
	st := c.detectStorage(ctx, name, ch.ARN)
	var ep control.Endpoints
	if st.on {
		ep, err = c.store.StorageEndpoints(ctx, ch.ARN, kvsproto.RoleViewer)
	} else {
		ep, err = c.ctl.Endpoints(ctx, ch.ARN, kvsproto.RoleViewer)
	}
	if err != nil {
		return "", control.Endpoints{}, storageInfo{}, err
	}
	return ch.ARN, ep, st, nil
}

// iceServers returns the channel's cached ICE configuration (fetching it if
// there is none).
func (c *channels) iceServers(ctx context.Context, arn string, ep control.Endpoints) (control.ICEConfig, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	return c.ice.Get(ctx, arn, kvsproto.RoleViewer, ep.HTTPS, "")
}

// forget drops what is known about a channel, so that the next session
// resolves it again (after a failure the page reported).
func (c *channels) forget(name string) {
	c.mu.Lock()
	info, ok := c.infos[name]
	if ok {
		info.resolved = time.Time{}
	}
	c.mu.Unlock()
	if ok {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// names returns the served channel names.
func (c *channels) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.infos))
	for n := range c.infos {
		out = append(out, n)
	}
	return out
}

// run keeps every channel's ARN, endpoints and ICE servers fresh until ctx
// ends: it resolves them at once, again every c.every, and fetches ICE
// servers at their RefreshAt, before they expire.
func (c *channels) run(ctx context.Context, log func(msg string, args ...any)) {
	for {
		next := c.refreshAll(ctx, log)
		t := time.NewTimer(max(next.Sub(c.now()), 100*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// refreshAll refreshes what is due and returns when to look again.
func (c *channels) refreshAll(ctx context.Context, log func(msg string, args ...any)) time.Time {
	now := c.now()
	next := now.Add(c.every)
	var wg sync.WaitGroup
	var mu sync.Mutex
	due := func(t time.Time) {
		mu.Lock()
		if t.Before(next) {
			next = t
		}
		mu.Unlock()
	}
	for _, name := range c.names() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.mu.Lock()
			info := *c.infos[name]
			c.mu.Unlock()
			stale := info.resolved.IsZero() || now.Sub(info.resolved) >= c.every
			if stale && !info.errAt.IsZero() && now.Sub(info.errAt) < retryAfterError && info.resolved.IsZero() {
				due(info.errAt.Add(retryAfterError))
				return
			}
			maxAge := c.every + time.Minute
			if stale {
				maxAge = 0
			}
			arn, ep, err := c.get(ctx, name, maxAge)
			if err != nil {
				if ctx.Err() == nil {
					log("resolving channel failed; will retry", "channel", name, "err", err)
				}
				due(c.now().Add(retryAfterError))
				return
			}
			due(c.now().Add(c.every))
			cfg, err := c.iceServers(ctx, arn, ep)
			if err != nil {
				if ctx.Err() == nil {
					log("fetching ICE servers failed; will retry", "channel", name, "err", err)
				}
				due(c.now().Add(retryAfterError))
				return
			}
			due(cfg.RefreshAt)
		}()
	}
	wg.Wait()
	return next
}
