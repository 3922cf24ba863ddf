package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

type channelState struct {
	name, arn        string
	masterEP, viewEP string
	masterUp         atomic.Bool
}

type peer struct {
	ws       *websocket.Conn
	ch       *channelState
	master   bool
	clientID string
	samples  []int64
	seconds  []uint16 // second of the send phase each sample was received in
	received uint64
	other    uint64
}

type runner struct {
	cfg       Config
	wsClient  *http.Client
	recording atomic.Bool
	echo      atomic.Bool
	sent      atomic.Uint64
	sendStart atomic.Int64 // UnixNano
	pad       string
	wg        sync.WaitGroup
}

// Run performs one load run and returns what it measured. The error is
// non-nil when the run could not be carried out at all; failed connects and
// lost messages are reported in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	total := cfg.Channels * (1 + cfg.ViewersPerChannel)
	if limit, err := raiseFileLimit(); err == nil && FilesNeeded(total) > limit {
		return nil, fmt.Errorf("%w and %w: %d connections need about %d open files but the limit is %d (ulimit -n); use at most %d channels of %d viewers, or raise the hard limit",
			ErrConfig, ErrFileLimit, total, FilesNeeded(total), limit, MaxChannels(limit, cfg.ViewersPerChannel, 1), cfg.ViewersPerChannel)
	}
	r := &runner{cfg: cfg, wsClient: &http.Client{Transport: cfg.HTTPClient.Transport}}
	r.pad = strings.Repeat("x", max(0, cfg.PayloadBytes*3/4-120))
	res := &Result{}
	log := cfg.Logger

	res.ServerIdle = r.serverStats(ctx)
	chans, err := r.createChannels(ctx)
	defer func() {
		if !cfg.KeepChannels {
			r.deleteChannels(chans)
		}
	}()
	if err != nil {
		return nil, err
	}
	log.Info("channels ready", "channels", len(chans))

	// Connect in waves: the masters and the first viewers of every channel,
	// then (when paced) ConnectsPerChannel more viewers per channel each
	// second.
	wave := cfg.ViewersPerChannel
	if cfg.ConnectsPerChannel > 0 {
		wave = cfg.ConnectsPerChannel
	}
	peers := make([]*peer, 0, total)
	var waves [][]*peer
	for v := 0; v < max(1, cfg.ViewersPerChannel); v += max(1, wave) {
		var w []*peer
		for _, ch := range chans {
			if v == 0 {
				w = append(w, &peer{ch: ch, master: true})
			}
			for k := v; k < min(v+wave, cfg.ViewersPerChannel); k++ {
				w = append(w, &peer{ch: ch, clientID: fmt.Sprintf("v%03d-%s", k, ch.name)})
			}
		}
		waves = append(waves, w)
		peers = append(peers, w...)
	}
	start := time.Now()
	var connErrs atomic.Int64
	var firstErr atomic.Value
	for i, w := range waves {
		if cfg.ConnectsPerChannel > 0 && i > 0 {
			sleep(ctx, time.Second+50*time.Millisecond) // let every channel's connect allowance refill
		}
		r.parallel(len(w), func(j int) {
			if err := r.connect(ctx, w[j]); err != nil {
				connErrs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		})
	}
	res.ConnectTime = time.Since(start)
	res.ConnectErrors = int(connErrs.Load())
	res.Connections = len(peers) - res.ConnectErrors
	res.ConnectRate = float64(res.Connections) / res.ConnectTime.Seconds()
	if e := firstErr.Load(); e != nil {
		log.Warn("connects failed", "count", res.ConnectErrors, "first", e)
	}
	log.Info("connected", "connections", res.Connections, "took", res.ConnectTime)
	defer r.closeAll(peers)
	// Let the service settle (GC) before measuring its memory.
	sleep(ctx, 500*time.Millisecond)
	res.ServerConnected = r.serverStats(ctx)
	if res.ServerIdle != nil && res.ServerConnected != nil && res.Connections > 0 {
		res.BytesPerConn = float64(res.ServerConnected.RSSBytes-res.ServerIdle.RSSBytes) / float64(res.Connections)
	}

	var viewers []*peer
	for _, p := range peers {
		if !p.master && p.ws != nil && p.ch.masterConnected() {
			viewers = append(viewers, p)
		}
	}
	sendStart := time.Now()
	r.sendStart.Store(sendStart.UnixNano())
	r.echo.Store(true)
	r.recording.Store(true)
	r.send(ctx, viewers)
	res.SendDuration = time.Since(sendStart)
	// Drain: wait until everything sent arrived, at most 2 s.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && r.received(peers) < r.sent.Load() {
		sleep(ctx, 20*time.Millisecond)
	}
	r.echo.Store(false)
	r.recording.Store(false)
	res.ServerAfter = r.serverStats(ctx)
	r.closeAll(peers)

	var all []int64
	perSec := map[uint16][]int64{}
	for _, p := range peers {
		res.Received += p.received
		all = append(all, p.samples...)
		for i, sec := range p.seconds {
			perSec[sec] = append(perSec[sec], p.samples[i])
		}
	}
	for sec := uint16(0); int(sec) < len(perSec); sec++ {
		v := perSec[sec]
		slices.Sort(v)
		if len(v) == 0 {
			res.SecondP99 = append(res.SecondP99, 0)
			continue
		}
		res.SecondP99 = append(res.SecondP99, time.Duration(v[int(0.99*float64(len(v)-1))]))
	}
	res.Sent = r.sent.Load()
	if res.Sent > res.Received {
		res.Lost = res.Sent - res.Received
	}
	res.Throughput = float64(res.Received) / res.SendDuration.Seconds()
	slices.Sort(all)
	pct := func(q float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		i := int(q * float64(len(all)-1))
		return time.Duration(all[i])
	}
	res.P50, res.P90, res.P99, res.P999 = pct(0.50), pct(0.90), pct(0.99), pct(0.999)
	if len(all) > 0 {
		res.Max = time.Duration(all[len(all)-1])
	}
	return res, nil
}

// masterConnected reports whether the channel's master is connected.
func (c *channelState) masterConnected() bool { return c.masterUp.Load() }

func (r *runner) received(peers []*peer) uint64 {
	// Read without locks: only used as a drain heuristic; exact figures are
	// taken after the readers stopped.
	var n uint64
	for _, p := range peers {
		n += atomic.LoadUint64(&p.received)
	}
	return n
}

// parallel runs fn(0..n-1) with ConnectConcurrency workers.
func (r *runner) parallel(n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(r.cfg.ConnectConcurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
