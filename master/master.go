package master

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// Internal limits and timings.
const (
	iceFetchTimeout  = 10 * time.Second
	sendTimeout      = 5 * time.Second
	earlyCandTTL     = 20 * time.Second // candidates from a viewer without an offer are kept this long
	maxEarlyPerPeer  = 64
	maxEarlyPeers    = 64
	peerEventBuffer  = 256
	maxSweepInterval = time.Second
)

// Master serves one signaling channel as its MASTER: it answers every
// viewer's offer with a PeerConnection of its own and streams the shared
// sources to all of them.
type Master struct {
	cfg     Config
	started atomic.Bool

	peers peerSet // the current viewers

	storage storageState // the storage session link (ingest.go)
}

// New validates cfg and returns a Master. Nothing starts before Run.
func New(cfg Config) (*Master, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Master{cfg: c, peers: peerSet{m: make(map[string]*peer)}}, nil
}

// Viewers returns the current viewers, sorted by client id.
func (m *Master) Viewers() []ViewerInfo {
	m.peers.mu.Lock()
	defer m.peers.mu.Unlock()
	out := make([]ViewerInfo, 0, len(m.peers.m))
	for _, p := range m.peers.m {
		out = append(out, ViewerInfo{
			ClientID: p.id, State: p.state, Since: p.since, ConnectedAt: p.connectedAt,
			Audio: p.audio != nil, BytesSent: p.bytes.Load(), Samples: p.samples.Load(),
		})
	}
	slices.SortFunc(out, func(a, b ViewerInfo) int { return cmp.Compare(a.ClientID, b.ClientID) })
	return out
}

// Run resolves the channel, connects to signaling as MASTER and serves
// viewers until ctx ends (it then returns nil) or the video source ends
// (nil at its end, an error if it fails). Setup failures (unknown
// channel, access denied, no ICE servers, signaling refused) are returned
// at once. Run returns only after every viewer's PeerConnection, the
// signaling connections and all its goroutines are gone; the sources are
// closed. Call it once.
func (m *Master) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	r := &run{
		m:          m,
		cfg:        m.cfg,
		log:        m.cfg.Logger,
		ctl:        m.cfg.Control,
		codec:      m.cfg.Video.Codec(),
		peers:      &m.peers,
		admission:  admission{max: m.cfg.MaxViewers},
		early:      make(map[string]*earlyQueue),
		peerEvents: make(chan peerEvent, peerEventBuffer),
		iceKick:    make(chan struct{}, 1),
		videoDone:  make(chan error, 1),
		audioDone:  make(chan error, 1),
		calls:      make(chan func(context.Context)),
	}
	if m.cfg.Ingest {
		r.ing = &ingest{}
	}
	return r.run(ctx)
}

// run is the state of one Run; the loop goroutine owns everything but the
// fields noted otherwise.
type run struct {
	m     *Master
	cfg   Config
	log   *slog.Logger
	ctl   *control.Client
	codec rtc.Codec
	api   *webrtc.API
	ice   *control.ICECache
	arn   string
	name  string

	epMu sync.Mutex // endpoints are read by the ICE refresher
	ep   control.Endpoints

	video, audio *media.Broadcaster

	sess        *signaling.Session // the signaling connection, renewed (signal.go)
	sessEv      <-chan signaling.SessionEvent
	sessDone    chan error   // the session's Run result (put back after reading)
	dialed      atomic.Int64 // successful dials (read by the session's goroutine)
	sigStarted  time.Time    // when the current connection came up
	renewReason string       // of the renewal in progress

	peers     *peerSet  // the Master's; the loop is its only writer
	admission admission // who gets a viewer slot (admission.go)
	early     map[string]*earlyQueue

	peerEvents chan peerEvent
	iceKick    chan struct{}
	videoDone  chan error
	audioDone  chan error

	ing   *ingest                    // the storage session link; nil without Config.Ingest
	calls chan func(context.Context) // work for the loop from the run's goroutines

	wg sync.WaitGroup // every goroutine the run starts
}

func (r *run) endpoints() control.Endpoints {
	r.epMu.Lock()
	defer r.epMu.Unlock()
	return r.ep
}

func (r *run) setEndpoints(ep control.Endpoints) {
	r.epMu.Lock()
	if ep.WebRTC == "" {
		ep.WebRTC = r.ep.WebRTC // Endpoints (a renewal's) does not ask for it
	}
	r.ep = ep
	r.epMu.Unlock()
}

func (r *run) emit(ev Event) {
	if r.cfg.OnEvent == nil {
		return
	}
	ev.Time = time.Now()
	ev.ChannelARN = r.arn
	r.cfg.OnEvent(ev)
}

func (r *run) run(parent context.Context) (err error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	sourcesOwned := true
	defer func() {
		if sourcesOwned {
			r.cfg.Video.Close()
			if r.cfg.Audio != nil {
				r.cfg.Audio.Close()
			}
		}
	}()

	ch, err := r.ctl.ResolveChannel(ctx, r.cfg.Channel)
	if err != nil {
		return fmt.Errorf("master: resolving channel %q: %w", r.cfg.Channel, err)
	}
	r.arn, r.name = ch.ARN, ch.Name
	var ep control.Endpoints
	if r.cfg.Ingest {
		ep, err = r.ctl.StorageEndpoints(ctx, r.arn, kvsproto.RoleMaster)
	} else {
		ep, err = r.ctl.Endpoints(ctx, r.arn, kvsproto.RoleMaster)
	}
	if err != nil {
		return fmt.Errorf("master: signaling endpoints of %s: %w", r.arn, err)
	}
	r.setEndpoints(ep)
	r.ice = control.NewICECache(r.ctl)
	ictx, icancel := context.WithTimeout(ctx, iceFetchTimeout)
	_, err = r.ice.Get(ictx, r.arn, kvsproto.RoleMaster, ep.HTTPS, "")
	icancel()
	if err != nil {
		return fmt.Errorf("master: fetching ICE servers of %s: %w", r.arn, err)
	}
	r.api, err = rtc.NewAPI(rtc.Config{
		LoopbackOnly: r.cfg.LoopbackOnly,
		Logger:       pionLogger(r.log),
		VideoCodecs:  []string{r.codec.String()},
		Audio:        r.cfg.Audio != nil || r.cfg.Talkback != nil || r.cfg.Ingest, // the storage session's offer has audio: answer it, not reject it
		ICEPortMin:   r.cfg.ICEPortMin,
		ICEPortMax:   r.cfg.ICEPortMax,
		TURNRootCAs:  rtc.RootCAs(r.cfg.HTTPClient),
	})
	if err != nil {
		return fmt.Errorf("master: %w", err)
	}
	if err := r.startSignaling(ctx); err != nil {
		cancel()
		r.wg.Wait()
		return fmt.Errorf("master: connecting to signaling as MASTER: %w", err)
	}

	// From here on everything runs until the loop ends.
	sourcesOwned = false
	r.startSources(ctx)
	r.wg.Add(1)
	go r.refreshICE(ctx)
	r.log.Info(fmt.Sprintf("master ready on channel %s (%s); waiting for viewers", r.name, r.arn),
		"channel", r.name, "arn", r.arn, "codec", r.codec.String(), "audio", r.audio != nil, "max_viewers", r.cfg.MaxViewers)
	r.emit(Event{Kind: EventReady})
	r.startJoin(ctx, "connected")

	err = r.loop(ctx)
	cancel()
	r.shutdown()
	return err
}

// startSources runs the broadcasters, each on a goroutine of its own.
func (r *run) startSources(ctx context.Context) {
	bcfg := media.BroadcasterConfig{Logger: r.log}
	r.video = media.NewBroadcaster(r.cfg.Video, bcfg)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.videoDone <- r.video.Run(ctx)
	}()
	if r.cfg.Audio != nil {
		r.audio = media.NewBroadcaster(r.cfg.Audio, bcfg)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.audioDone <- r.audio.Run(ctx)
		}()
	}
}

func (r *run) sweepInterval() time.Duration {
	d := min(maxSweepInterval, r.cfg.DisconnectedTimeout/4, r.cfg.ConnectTimeout/4)
	return max(d, 10*time.Millisecond)
}

// loop handles every event until ctx ends or the video source ends.
func (r *run) loop(ctx context.Context) error {
	sweep := time.NewTicker(r.sweepInterval())
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-r.sessEv:
			if !ok {
				return r.sessionEnded(ctx)
			}
			r.onSession(ctx, ev)
		case pe := <-r.peerEvents:
			r.onPeer(ctx, pe)
		case f := <-r.calls:
			f(ctx)
		case now := <-sweep.C:
			r.sweep(ctx, now)
		case err := <-r.videoDone:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("master: video source: %w", err)
			}
			r.log.Info("the video source ended; stopping")
			return nil
		case err := <-r.audioDone:
			if err != nil && ctx.Err() == nil {
				r.log.Warn("the audio source failed; continuing without audio", "err", err)
			} else {
				r.log.Info("the audio source ended; continuing without audio")
			}
		}
	}
}

// shutdown closes every peer and connection and waits for all goroutines.
func (r *run) shutdown() {
	r.stopIngest()
	for _, p := range r.peers.m {
		r.removePeer(p, ErrShutdown)
	}
	clear(r.early)
	r.wg.Wait() // the session's Run has returned: its context ended
}

// refreshICE keeps the ICE cache fresh, so that an offer never waits for
// GetIceServerConfig: it fetches again at each configuration's RefreshAt,
// and at once after RECONNECT_ICE_SERVER.
func (r *run) refreshICE(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := 5 * time.Second
		cfg, err := r.ice.Get(ctx, r.arn, kvsproto.RoleMaster, r.endpoints().HTTPS, "")
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.Warn("refreshing ICE servers failed; retrying", "err", err, "retry_in", wait)
		default:
			wait = max(time.Until(cfg.RefreshAt), time.Second)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.iceKick:
		}
	}
}

// pionLogger returns the logger pion's messages go to: all of them when
// the master logs at debug level, else only errors (pion warns about
// routine things, such as streams closed while a peer shuts down).
func pionLogger(l *slog.Logger) *slog.Logger {
	if l.Enabled(context.Background(), slog.LevelDebug) {
		return l
	}
	return slog.New(minLevel{Handler: l.Handler(), min: slog.LevelError})
}

// minLevel is a slog.Handler that drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(as), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}
