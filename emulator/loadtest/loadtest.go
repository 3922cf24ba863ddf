package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// ErrConfig is matched by errors for an unusable Config.
var ErrConfig = errors.New("loadtest: invalid config")

// Config describes one load run. Zero fields get the defaults noted.
type Config struct {
	// Endpoint is the control-plane URL of the service (required).
	Endpoint string
	// AdminToken is the emulator's admin token (emulator.Server.AdminToken,
	// $KVSRTC_ADMIN_TOKEN), for the server figures from /_kvsrtc/stats;
	// without it the result has none.
	AdminToken string
	// Region is the signing region; default "us-west-2".
	Region string
	// Credentials sign every request; default the AWS documentation
	// example pair (the emulator's default).
	Credentials sigv4.Credentials
	// Channels is the number of channels; default 10.
	Channels int
	// ViewersPerChannel is the number of viewers per channel (each channel
	// also gets one master); default 10.
	ViewersPerChannel int
	// ChannelPrefix names the channels PREFIX-0001...; default
	// "loadtest-<random>".
	ChannelPrefix string
	// ConnectConcurrency bounds concurrent REST calls and WebSocket
	// handshakes; default 64.
	ConnectConcurrency int
	// ConnectsPerChannel, when positive, paces the viewer connects of each
	// channel to that many per second (KVS allows 3 per second per channel
	// and role); 0 connects as fast as ConnectConcurrency allows.
	ConnectsPerChannel int
	// Rate is the number of messages per second all viewers together send
	// to their masters; every master echoes each one back, so about twice
	// as many messages are routed. Default 1000.
	Rate float64
	// Duration is how long messages are sent; default 10 s.
	Duration time.Duration
	// PayloadBytes is the approximate size of each messagePayload (an ICE
	// candidate JSON, base64); default 200.
	PayloadBytes int
	// HTTPClient is used for REST calls and WebSocket handshakes (set its
	// TLS RootCAs for a wss service); default a plain client.
	HTTPClient *http.Client
	// KeepChannels leaves the channels in place after the run.
	KeepChannels bool
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// ServerStats are the emulator's process figures from GET /_kvsrtc/stats
// (absent for other services).
type ServerStats struct {
	Connections int   `json:"connections"`
	Goroutines  int   `json:"goroutines"`
	RSSBytes    int64 `json:"rssBytes"`
	HeapBytes   int64 `json:"heapBytes"`
}

// Result is what a run measured.
type Result struct {
	Connections   int           // WebSockets open after the connect phase
	ConnectErrors int           // failed connects
	ConnectTime   time.Duration // time to open all WebSockets
	ConnectRate   float64       // WebSockets opened per second
	Sent          uint64        // messages sent by viewers and masters
	Received      uint64        // messages received
	Lost          uint64        // sent but not received by the end of the drain
	SendDuration  time.Duration
	Throughput    float64 // messages received per second of SendDuration
	P50, P90, P99 time.Duration
	P999, Max     time.Duration
	// SecondP99 is the p99 latency of each second of the send phase (it
	// shows whether the tail is spread out or comes from a few stalls).
	SecondP99 []time.Duration
	// Server figures (nil when the service has no /_kvsrtc/stats): before
	// connecting, with every connection open, and after the message phase.
	ServerIdle, ServerConnected, ServerAfter *ServerStats
	// BytesPerConn is (RSS connected - RSS idle) / Connections; 0 without
	// server figures.
	BytesPerConn float64
}

// String renders the result as a small report.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:   %d open, %d failed, in %v (%.0f/s)\n", r.Connections, r.ConnectErrors, r.ConnectTime.Round(time.Millisecond), r.ConnectRate)
	fmt.Fprintf(&b, "messages:      %d sent, %d received, %d lost in %v\n", r.Sent, r.Received, r.Lost, r.SendDuration.Round(time.Millisecond))
	fmt.Fprintf(&b, "throughput:    %.0f messages/s routed\n", r.Throughput)
	fmt.Fprintf(&b, "latency:       p50 %v, p90 %v, p99 %v, p99.9 %v, max %v\n", r.P50, r.P90, r.P99, r.P999, r.Max)
	if len(r.SecondP99) > 0 {
		b.WriteString("p99 by second:")
		for _, d := range r.SecondP99 {
			fmt.Fprintf(&b, " %.1f", float64(d.Microseconds())/1000)
		}
		b.WriteString(" ms\n")
	}
	if r.ServerConnected != nil {
		fmt.Fprintf(&b, "service:       RSS %.1f MiB idle, %.1f MiB with %d connections (%.1f KiB/connection), %d goroutines\n",
			mib(r.ServerIdle.RSSBytes), mib(r.ServerConnected.RSSBytes), r.ServerConnected.Connections, r.BytesPerConn/1024, r.ServerConnected.Goroutines)
	}
	if r.ServerAfter != nil {
		fmt.Fprintf(&b, "after load:    RSS %.1f MiB, heap %.1f MiB, %d goroutines\n", mib(r.ServerAfter.RSSBytes), mib(r.ServerAfter.HeapBytes), r.ServerAfter.Goroutines)
	}
	return b.String()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func (c *Config) defaults() error {
	if c.Endpoint == "" {
		return fmt.Errorf("%w: Endpoint is required (the service URL)", ErrConfig)
	}
	c.Endpoint = strings.TrimRight(c.Endpoint, "/")
	if c.Region == "" {
		c.Region = "us-west-2"
	}
	if c.Credentials.AccessKeyID == "" {
		c.Credentials = sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	}
	if c.Channels == 0 {
		c.Channels = 10
	}
	if c.ViewersPerChannel == 0 {
		c.ViewersPerChannel = 10
	}
	if c.Channels < 0 || c.ViewersPerChannel < 0 || c.Rate < 0 || c.Duration < 0 {
		return fmt.Errorf("%w: negative Channels, ViewersPerChannel, Rate or Duration", ErrConfig)
	}
	if c.ChannelPrefix == "" {
		c.ChannelPrefix = "loadtest-" + strings.ToLower(rand.Text()[:8])
	}
	if err := kvsproto.ValidateChannelName(c.ChannelPrefix); err != nil {
		return fmt.Errorf("%w: ChannelPrefix: %v", ErrConfig, err)
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 64
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.PayloadBytes <= 0 {
		c.PayloadBytes = 200
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

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

// call makes one signed REST call and decodes the JSON answer into out.
func (r *runner) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.Endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := sigv4.SignRequest(req, body, r.cfg.Credentials, r.cfg.Region, time.Now()); err != nil {
		return err
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d %s: %s", path, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), raw)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func (r *runner) createChannels(ctx context.Context) ([]*channelState, error) {
	chans := make([]*channelState, r.cfg.Channels)
	var firstErr error
	var mu sync.Mutex
	r.parallel(len(chans), func(i int) {
		ch := &channelState{name: fmt.Sprintf("%s-%05d", r.cfg.ChannelPrefix, i)}
		err := func() error {
			var out kvsproto.CreateSignalingChannelOutput
			if err := r.call(ctx, kvsproto.PathCreateSignalingChannel, kvsproto.CreateSignalingChannelInput{ChannelName: ch.name}, &out); err != nil {
				return err
			}
			ch.arn = out.ChannelARN
			for _, role := range []kvsproto.Role{kvsproto.RoleMaster, kvsproto.RoleViewer} {
				var ep kvsproto.GetSignalingChannelEndpointOutput
				in := kvsproto.GetSignalingChannelEndpointInput{ChannelARN: ch.arn, SingleMasterChannelEndpointConfiguration: &kvsproto.SingleMasterChannelEndpointConfiguration{
					Protocols: []string{"WSS", "HTTPS"}, Role: string(role)}}
				if err := r.call(ctx, kvsproto.PathGetSignalingChannelEndpoint, in, &ep); err != nil {
					return err
				}
				for _, e := range ep.ResourceEndpointList {
					if e.Protocol == kvsproto.ProtocolWSS {
						if role == kvsproto.RoleMaster {
							ch.masterEP = e.ResourceEndpoint
						} else {
							ch.viewEP = e.ResourceEndpoint
						}
					}
				}
			}
			if ch.masterEP == "" || ch.viewEP == "" {
				return fmt.Errorf("channel %s: no WSS endpoint returned", ch.name)
			}
			return nil
		}()
		mu.Lock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if err == nil {
			chans[i] = ch
		}
		mu.Unlock()
	})
	ok := chans[:0]
	for _, c := range chans {
		if c != nil {
			ok = append(ok, c)
		}
	}
	if firstErr != nil {
		return ok, fmt.Errorf("loadtest: creating channels: %w", firstErr)
	}
	return ok, nil
}

func (r *runner) deleteChannels(chans []*channelState) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.parallel(len(chans), func(i int) {
		_ = r.call(ctx, kvsproto.PathDeleteSignalingChannel, kvsproto.DeleteSignalingChannelInput{ChannelARN: chans[i].arn}, nil)
	})
	r.cfg.HTTPClient.CloseIdleConnections()
}

func (r *runner) connect(ctx context.Context, p *peer) error {
	params := map[string]string{"X-Amz-ChannelARN": p.ch.arn}
	ep := p.ch.masterEP
	if !p.master {
		params["X-Amz-ClientId"] = p.clientID
		ep = p.ch.viewEP
	}
	u, err := sigv4.PresignURL(ep, params, r.cfg.Credentials, r.cfg.Region, time.Now(), 0)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: r.wsClient})
	if resp != nil && resp.Body != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return fmt.Errorf("connect %s: HTTP %d: %w", p.ch.name, resp.StatusCode, err)
		}
		return err
	}
	ws.SetReadLimit(64 << 10)
	p.ws = ws
	if p.master {
		p.ch.masterUp.Store(true)
	}
	r.wg.Add(1)
	go r.read(p)
	return nil
}

// read is a peer's receive loop: it records latencies and, for masters,
// echoes every viewer message back to its sender.
func (r *runner) read(p *peer) {
	defer r.wg.Done()
	for {
		_, b, err := p.ws.Read(context.Background())
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		typ := field(b, `"messageType":"`)
		if string(typ) != string(kvsproto.MessageICECandidate) {
			p.other++
			continue
		}
		t, ok := payloadTime(field(b, `"messagePayload":"`))
		if !ok {
			p.other++
			continue
		}
		if r.recording.Load() {
			p.samples = append(p.samples, now-t)
			p.seconds = append(p.seconds, uint16((now-r.sendStart.Load())/int64(time.Second)))
			atomic.AddUint64(&p.received, 1)
		}
		if sender := field(b, `"senderClientId":"`); p.master && len(sender) > 0 && r.echo.Load() {
			if p.ws.Write(context.Background(), websocket.MessageText, r.frame(string(sender))) == nil {
				r.sent.Add(1)
			}
		}
	}
}

// field returns the value of a string member of a flat JSON object (the
// service's event frames), without unescaping; nil if absent.
func field(b []byte, key string) []byte {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil
	}
	v := b[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// frame builds an ICE_CANDIDATE message stamped with the current time. The
// timestamp leads the payload JSON so that the receiver decodes only the
// first 32 base64 characters.
func (r *runner) frame(recipient string) []byte {
	now := time.Now().UnixNano()
	body := `{"t":` + fmt.Sprintf("%019d", now) + `,"candidate":"candidate:842163049 1 udp 1677729535 127.0.0.1 ` +
		strconv.Itoa(int(now%50000)+10000) + ` typ host generation 0","sdpMid":"0","sdpMLineIndex":0,"pad":"` + r.pad + `"}`
	b := make([]byte, 0, base64.StdEncoding.EncodedLen(len(body))+len(recipient)+80)
	b = append(b, `{"action":"ICE_CANDIDATE","messagePayload":"`...)
	b = base64.StdEncoding.AppendEncode(b, []byte(body))
	b = append(b, '"')
	if recipient != "" {
		b = append(b, `,"recipientClientId":"`...)
		b = append(b, recipient...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// payloadTime extracts the send time from the first 24 bytes of the
// payload JSON: {"t":<19 digits>.
func payloadTime(p []byte) (int64, bool) {
	if len(p) < 32 {
		return 0, false
	}
	var raw [24]byte
	if n, err := base64.StdEncoding.Decode(raw[:], p[:32]); err != nil || n != 24 || string(raw[:5]) != `{"t":` {
		return 0, false
	}
	t, err := strconv.ParseInt(string(raw[5:]), 10, 64)
	return t, err == nil
}

// send paces viewer messages at cfg.Rate for cfg.Duration, spread over a
// few sender goroutines, each catching up when it falls behind.
func (r *runner) send(ctx context.Context, viewers []*peer) {
	if len(viewers) == 0 {
		sleep(ctx, r.cfg.Duration)
		return
	}
	shards := max(1, min(runtime.GOMAXPROCS(0)*2, len(viewers)))
	rate := r.cfg.Rate / float64(shards)
	start := time.Now()
	end := start.Add(r.cfg.Duration)
	var wg sync.WaitGroup
	for s := 0; s < shards; s++ {
		var mine []*peer
		for i := s; i < len(viewers); i += shards {
			mine = append(mine, viewers[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, next := 0, 0
			for {
				now := time.Now()
				if now.After(end) || ctx.Err() != nil {
					return
				}
				due := int(now.Sub(start).Seconds() * rate)
				for ; sent < due; sent++ {
					p := mine[next]
					next = (next + 1) % len(mine)
					if p.ws.Write(ctx, websocket.MessageText, r.frame("")) == nil {
						r.sent.Add(1)
					}
				}
				sleep(ctx, 2*time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

func (r *runner) closeAll(peers []*peer) {
	for _, p := range peers {
		if p.ws != nil {
			_ = p.ws.CloseNow()
		}
	}
	r.wg.Wait()
}

// serverStats fetches GET /_kvsrtc/stats; nil if the service has none.
func (r *runner) serverStats(ctx context.Context) *ServerStats {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.Endpoint+"/_kvsrtc/stats", nil)
	if err != nil {
		return nil
	}
	if r.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var st ServerStats
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return &st
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
