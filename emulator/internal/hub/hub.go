package hub

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Defaults of Config.
const (
	defaultConnectRate     = 3
	defaultConnectBurst    = 3
	defaultOfferRate       = 5
	defaultAnswerRate      = 5
	defaultICERate         = 20
	defaultSweepInterval   = time.Second
	defaultMessageTTL      = kvsproto.DefaultMessageTTLSeconds * time.Second
	defaultPerRecipient    = 100
	defaultPerChannel      = 1000
	defaultChannelTomb     = 5 * time.Second
	defaultGoAwayGrace     = time.Minute
	maxStatusDescriptionLn = 1024
)

// settings is a Config with its defaults filled in.
type settings struct {
	maxViewers                     int
	connectRate                    float64
	connectBurst                   int
	rates                          [3]float64 // by actionIndex
	bursts                         [3]int
	quotas                         bool
	now                            func() time.Time
	sweep                          time.Duration
	maxPerRecipient, maxPerChannel int
	tombstone                      time.Duration
	intercept                      func(string, kvsproto.Role, string, kvsproto.ClientMessage) bool
}

func positive[T int | float64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func (c Config) settings() settings {
	s := settings{
		maxViewers:      positive(c.MaxViewers, kvsproto.MaxViewersPerChannel),
		connectRate:     positive(c.ConnectRate, defaultConnectRate),
		connectBurst:    positive(c.ConnectBurst, defaultConnectBurst),
		rates:           [3]float64{positive(c.OfferRate, defaultOfferRate), positive(c.AnswerRate, defaultAnswerRate), positive(c.ICERate, defaultICERate)},
		quotas:          !c.DisableQuotas,
		now:             c.Now,
		sweep:           positive(c.SweepInterval, defaultSweepInterval),
		maxPerRecipient: positive(c.MaxBufferedPerRecipient, defaultPerRecipient),
		maxPerChannel:   positive(c.MaxBufferedPerChannel, defaultPerChannel),
		tombstone:       positive(c.ChannelTombstone, defaultChannelTomb),
		intercept:       c.Intercept,
	}
	for i, r := range s.rates {
		s.bursts[i] = positive(c.MessageBurst, max(1, int(math.Ceil(2*r))))
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// actionIndex maps a valid action to its rate bucket.
func actionIndex(a kvsproto.Action) int {
	switch a {
	case kvsproto.ActionSDPOffer:
		return 0
	case kvsproto.ActionSDPAnswer:
		return 1
	default:
		return 2
	}
}

type counters struct {
	routed, buffered, expired, dropped, errors atomic.Uint64
	channels, masters, viewers                 atomic.Int64
}

// hubImpl is the Hub. Locking: mu guards the channel map and tombstones;
// each channel's mu guards its members, buffers and buckets; fmu guards the
// armed faults; tmu guards the timers. Order: mu -> channel.mu -> fmu. Conn
// methods other than Send are never called with a lock held.
type hubImpl struct {
	set settings
	log *slog.Logger

	mu         sync.RWMutex
	channels   map[string]*channel
	tombstones map[string]time.Time // ARN -> until

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup // sweeper and timer callbacks

	tmu       sync.Mutex
	timers    map[*hubTimer]struct{}
	timersOff bool

	fmu    sync.Mutex
	faults []*armedFault
	armed  atomic.Int32 // len(faults), read without fmu on the hot path

	c counters

	goAwayFrame, reconnectFrame []byte
}

func newHub(cfg Config) *hubImpl {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &hubImpl{
		set:        cfg.settings(),
		log:        log,
		channels:   make(map[string]*channel),
		tombstones: make(map[string]time.Time),
		stop:       make(chan struct{}),
		timers:     make(map[*hubTimer]struct{}),
	}
	h.goAwayFrame = mustEncode(kvsproto.Event{MessageType: kvsproto.MessageGoAway})
	h.reconnectFrame = mustEncode(kvsproto.Event{MessageType: kvsproto.MessageReconnectICEServer})
	h.wg.Add(1)
	go h.sweepLoop()
	return h
}

// mustEncode encodes an event whose fields cannot fail to marshal.
func mustEncode(ev kvsproto.Event) []byte {
	b, err := ev.Encode()
	if err != nil {
		// Only strings and a bool: json.Marshal does not fail on them.
		return []byte(`{"messageType":"` + string(ev.MessageType) + `"}`)
	}
	return b
}

func (h *hubImpl) now() time.Time { return h.set.now() }

func (h *hubImpl) logAttrs(level slog.Level, msg string, attrs ...slog.Attr) {
	h.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// channelFor returns the live channel for arn, creating it when needed.
// ttl is used only when it creates the channel.
func (h *hubImpl) channelFor(arn string, ttl time.Duration, now time.Time) (*channel, error) {
	h.mu.RLock()
	ch := h.channels[arn]
	h.mu.RUnlock()
	if ch != nil {
		return ch, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return nil, ErrHubClosed
	}
	if until, ok := h.tombstones[arn]; ok && now.Before(until) {
		return nil, ErrChannelGone
	}
	if ch = h.channels[arn]; ch == nil {
		ch = newChannel(h, arn, ttl, now)
		h.channels[arn] = ch
		h.c.channels.Add(1)
	}
	return ch, nil
}

// lockChannel returns the live channel for arn, locked.
func (h *hubImpl) lockChannel(arn string, ttl time.Duration, now time.Time) (*channel, error) {
	for {
		ch, err := h.channelFor(arn, ttl, now)
		if err != nil {
			return nil, err
		}
		ch.mu.Lock()
		if !ch.removed {
			return ch, nil
		}
		ch.mu.Unlock() // removed between lookup and lock: look again
	}
}

func (h *hubImpl) connected(arn string, role kvsproto.Role, clientID string) bool {
	h.mu.RLock()
	ch := h.channels[arn]
	h.mu.RUnlock()
	if ch == nil {
		return false
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if role == kvsproto.RoleMaster {
		return ch.master != nil
	}
	return clientID != "" && ch.viewers[clientID] != nil
}

// deliver sends ev to a connected member of the channel (Hub.Deliver).
func (h *hubImpl) deliver(arn string, role kvsproto.Role, clientID string, ev kvsproto.Event) error {
	if h.closed.Load() {
		return ErrHubClosed
	}
	fr, err := ev.Encode()
	if err != nil {
		return err
	}
	h.mu.RLock()
	ch := h.channels[arn]
	h.mu.RUnlock()
	if ch == nil {
		return ErrNotConnected
	}
	key := masterKey
	if role != kvsproto.RoleMaster {
		if clientID == "" {
			return ErrNotConnected
		}
		key = clientID
	}
	ch.mu.Lock()
	m := ch.memberLocked(key)
	if m == nil || !m.attached {
		ch.mu.Unlock()
		return ErrNotConnected
	}
	err = m.conn.Send(fr)
	if err != nil {
		ch.detachLocked(m)
	}
	ch.mu.Unlock()
	if err != nil {
		m.sendFailed()
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	h.c.routed.Add(1)
	return nil
}

// maybeRemove drops ch from the map if it is idle.
func (h *hubImpl) maybeRemove(ch *channel) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.removed || h.channels[ch.arn] != ch || !ch.idleLocked(h.now()) {
		return
	}
	ch.removed = true
	delete(h.channels, ch.arn)
	h.c.channels.Add(-1)
}

func validateJoin(req *JoinRequest) error {
	if req.Conn == nil {
		return &kvsproto.ValidationError{Field: "Conn", Reason: "must not be nil"}
	}
	if req.ChannelARN == "" {
		return &kvsproto.ValidationError{Field: "ChannelARN", Reason: "must not be empty"}
	}
	if len(req.ChannelARN) > kvsproto.MaxARNLen {
		return &kvsproto.ValidationError{Field: "ChannelARN", Value: req.ChannelARN[:64] + "...",
			Reason: fmt.Sprintf("is %d characters long; the limit is %d", len(req.ChannelARN), kvsproto.MaxARNLen)}
	}
	if _, err := kvsproto.ParseRole(string(req.Role)); err != nil {
		return err
	}
	if req.Role == kvsproto.RoleViewer {
		return kvsproto.ValidateClientID(req.ClientID)
	}
	return nil
}

func (h *hubImpl) join(req JoinRequest) (*memberImpl, error) {
	if err := validateJoin(&req); err != nil {
		return nil, fmt.Errorf("hub: join: %w", err)
	}
	if req.Role == kvsproto.RoleMaster {
		req.ClientID = ""
	}
	if h.closed.Load() {
		return nil, ErrHubClosed
	}
	if req.MessageTTL <= 0 {
		req.MessageTTL = defaultMessageTTL
	}
	m := &memberImpl{
		h:        h,
		arn:      req.ChannelARN,
		role:     req.Role,
		clientID: req.ClientID,
		key:      req.ClientID, // masterKey for the master
		remote:   req.RemoteAddr,
		conn:     req.Conn,
	}
	if h.armed.Load() > 0 {
		if err := h.connectFault(m); err != nil {
			return nil, err
		}
	}
	now := h.now()
	ch, err := h.lockChannel(req.ChannelARN, req.MessageTTL, now)
	if err != nil {
		return nil, err
	}
	m.ch = ch
	if h.closed.Load() { // Close may have run between the check above and the lock
		ch.mu.Unlock()
		return nil, ErrHubClosed
	}
	ri := roleIndex(req.Role)
	if h.set.quotas && !ch.connect[ri].allow(now) {
		ch.mu.Unlock()
		m.logAttrs(slog.LevelInfo, "connection refused", slog.String("reason", "connect rate exceeded"),
			slog.Float64("limitPerSecond", h.set.connectRate), slog.String("remote", m.remote))
		return nil, ErrThrottled
	}
	var old *memberImpl
	if req.Role == kvsproto.RoleMaster {
		old = ch.master
	} else {
		old = ch.viewers[req.ClientID]
		if old == nil && len(ch.viewers) >= h.set.maxViewers {
			ch.mu.Unlock()
			m.logAttrs(slog.LevelInfo, "connection refused", slog.String("reason", "viewer limit reached"),
				slog.Int("maxViewers", h.set.maxViewers), slog.String("remote", m.remote))
			return nil, ErrTooManyViewers
		}
	}
	if old != nil {
		ch.detachLocked(old)
	}
	if h.set.quotas {
		for i := range m.rates {
			m.rates[i] = newBucket(h.set.rates[i], h.set.bursts[i], now)
		}
	}
	ch.ttl = req.MessageTTL
	ch.attachLocked(m)
	delivered, expired, failed := ch.flushLocked(m, now)
	ch.mu.Unlock()

	if old != nil {
		reason := CloseReasonMasterReplaced
		if req.Role == kvsproto.RoleViewer {
			reason = CloseReasonViewerReplaced
		}
		old.logAttrs(slog.LevelInfo, "connection replaced", slog.String("reason", reason),
			slog.String("remote", old.remote), slog.String("newRemote", m.remote))
		old.conn.Close(CloseCodeReplaced, reason, false)
	}
	m.logAttrs(slog.LevelInfo, "connection joined", slog.String("remote", m.remote),
		slog.Bool("replaced", old != nil), slog.Int("delivered", delivered), slog.Int("expired", expired))
	if failed {
		m.sendFailed()
	}
	return m, nil
}

// sweepLoop drops expired buffered messages and idle channels.
func (h *hubImpl) sweepLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.set.sweep)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.sweep()
		}
	}
}

func (h *hubImpl) sweep() {
	now := h.now()
	h.mu.RLock()
	chans := make([]*channel, 0, len(h.channels))
	for _, ch := range h.channels {
		chans = append(chans, ch)
	}
	tombs := len(h.tombstones)
	h.mu.RUnlock()
	for _, ch := range chans {
		ch.mu.Lock()
		n := ch.expireLocked(now)
		idle := !ch.removed && ch.idleLocked(now)
		ch.mu.Unlock()
		if n > 0 {
			h.logAttrs(slog.LevelDebug, "buffered messages expired", slog.String("channel", ch.arn), slog.Int("count", n))
		}
		if idle {
			h.maybeRemove(ch)
		}
	}
	if tombs > 0 {
		h.mu.Lock()
		for arn, until := range h.tombstones {
			if !now.Before(until) {
				delete(h.tombstones, arn)
			}
		}
		h.mu.Unlock()
	}
}

// hubTimer is a time.AfterFunc timer the hub owns.
type hubTimer struct{ t *time.Timer }

// after runs fn after d on its own goroutine, unless the hub closes first.
func (h *hubImpl) after(d time.Duration, fn func()) {
	h.tmu.Lock()
	defer h.tmu.Unlock()
	if h.timersOff {
		return
	}
	ht := &hubTimer{}
	h.wg.Add(1)
	ht.t = time.AfterFunc(d, func() {
		defer h.wg.Done()
		h.tmu.Lock()
		_, live := h.timers[ht]
		delete(h.timers, ht)
		h.tmu.Unlock()
		if live {
			fn()
		}
	})
	h.timers[ht] = struct{}{}
}

func (h *hubImpl) closeChannel(arn string) {
	now := h.now()
	h.mu.Lock()
	h.tombstones[arn] = now.Add(h.set.tombstone)
	ch := h.channels[arn]
	if ch != nil {
		delete(h.channels, arn)
		h.c.channels.Add(-1)
	}
	h.mu.Unlock()
	if ch == nil {
		h.logAttrs(slog.LevelInfo, "channel closed", slog.String("channel", arn), slog.Int("connections", 0))
		return
	}
	members, dropped := ch.shutdown()
	for _, m := range members {
		m.conn.Close(CloseCodeChannelDeleted, CloseReasonChannelDeleted, false)
	}
	h.logAttrs(slog.LevelInfo, "channel closed", slog.String("channel", arn),
		slog.Int("connections", len(members)), slog.Int("droppedMessages", dropped))
}

func (h *hubImpl) close() {
	h.closeOnce.Do(func() {
		h.closed.Store(true)
		close(h.stop)
		h.mu.Lock()
		chans := h.channels
		h.channels = make(map[string]*channel)
		h.c.channels.Add(-int64(len(chans)))
		h.mu.Unlock()
		n := 0
		for _, ch := range chans {
			members, _ := ch.shutdown()
			for _, m := range members {
				m.conn.Close(CloseCodeShutdown, CloseReasonShutdown, false)
			}
			n += len(members)
		}
		h.tmu.Lock()
		h.timersOff = true
		for ht := range h.timers {
			if ht.t.Stop() {
				h.wg.Done()
			}
		}
		clear(h.timers)
		h.tmu.Unlock()
		h.wg.Wait()
		h.logAttrs(slog.LevelInfo, "hub closed", slog.Int("connections", n))
	})
}

func (h *hubImpl) stats() Stats {
	return Stats{
		Channels: int(h.c.channels.Load()),
		Masters:  int(h.c.masters.Load()),
		Viewers:  int(h.c.viewers.Load()),
		Routed:   h.c.routed.Load(),
		Buffered: h.c.buffered.Load(),
		Expired:  h.c.expired.Load(),
		Dropped:  h.c.dropped.Load(),
		Errors:   h.c.errors.Load(),
	}
}

// statusFrame encodes a failure STATUS_RESPONSE (kvs-protocol.md §4.6).
func statusFrame(corr, errType, desc string) []byte {
	if len(corr) > kvsproto.MaxCorrelationIDLen {
		corr = corr[:kvsproto.MaxCorrelationIDLen]
	}
	if len(desc) > maxStatusDescriptionLn {
		desc = desc[:maxStatusDescriptionLn]
	}
	return mustEncode(kvsproto.Event{
		MessageType: kvsproto.MessageStatusResponse,
		StatusResponse: &kvsproto.StatusResponse{
			CorrelationID: corr,
			ErrorType:     errType,
			StatusCode:    "400",
			Description:   desc,
			Success:       false,
		},
	})
}
