package whep

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/relay"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// ClientConfig configures a WHEP [Client]. The zero value works.
type ClientConfig struct {
	// HTTPClient makes the WHEP requests (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Header is added to every request (Authorization...).
	Header http.Header
	// Audio also asks for audio.
	Audio bool
	// VideoCodecs are the video codecs to offer (nil: H.264, then VP8).
	VideoCodecs []string
	// LoopbackOnly gathers loopback ICE candidates only (tests).
	LoopbackOnly bool
	// ICEServers are the client's STUN and TURN servers.
	ICEServers []webrtc.ICEServer
	// Sinks receive every frame received (video and audio; called from
	// one goroutine per track).
	Sinks []media.Sink
	// Talk, if set, is an Opus source the client sends as talk-back
	// audio (through a relay with relay.Config.Talk): the offer's audio
	// section sends (sendrecv with Audio, sendonly without). The client
	// reads it from when the connection is up until it ends or the
	// client closes, and closes it.
	Talk media.Source
	// Data opens a data channel (label "kvsDataChannel"); see Send,
	// SendText and Receive.
	Data bool
	// Logger receives the client's log (nil: discard).
	Logger *slog.Logger
}

// HTTPError is a WHEP request's unexpected response.
type HTTPError struct {
	Method, URL string
	StatusCode  int
	Body        string // the server's explanation, trimmed
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("whep: %s %s: %d %s: %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode), e.Body)
}

// Client is one WHEP session: a peer connection that receives the
// channel's media (and, with ClientConfig.Talk and Data, sends talk-back
// audio and data channel messages), whose offer was POSTed to a WHEP
// endpoint. Its methods are safe for concurrent use.
type Client struct {
	cfg      ClientConfig
	hc       *http.Client
	log      *slog.Logger
	pc       *webrtc.PeerConnection
	location *url.URL
	events   *url.URL // nil: the server links no events
	video    *media.Stats
	first    chan struct{}
	firstAt  time.Time
	wg       sync.WaitGroup
	ctx      context.Context // ends at Close
	cancel   context.CancelFunc

	talkTrack   *webrtc.TrackLocalStaticSample // nil without Talk
	talkOnce    sync.Once
	talkPackets atomic.Int64
	dc          *webrtc.DataChannel // nil without Data
	dcOpen      chan struct{}       // closed when dc opens
	dcOnce      sync.Once
	msgs        chan Message

	mu        sync.Mutex
	remote    string
	connAt    time.Time
	closed    bool // Close was called
	done      bool // shutdown began: no more goroutines
	firstOnce sync.Once
}

// Dial creates a peer connection, POSTs its offer (with all of its
// candidates) to the WHEP endpoint and applies the answer. Errors are
// an *HTTPError for an unexpected response.
func Dial(ctx context.Context, endpoint string, cfg ClientConfig) (*Client, error) {
	ep, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("whep: endpoint %q: %w", endpoint, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := media.CheckTalkback(cfg.Talk, "ClientConfig.Talk"); err != nil {
		return nil, err
	}
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: cfg.LoopbackOnly, Logger: log, Audio: cfg.Audio || cfg.Talk != nil, VideoCodecs: cfg.VideoCodecs})
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: cfg.ICEServers})
	if err != nil {
		return nil, fmt.Errorf("whep: creating the peer connection: %w", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, hc: cfg.HTTPClient, log: log, pc: pc, video: media.NewStats(0),
		first: make(chan struct{}), ctx: cctx, cancel: cancel,
		dcOpen: make(chan struct{}), msgs: make(chan Message, messageQueue),
	}
	if c.hc == nil {
		c.hc = http.DefaultClient
	}
	fail := func(err error) (*Client, error) {
		c.shutdown()
		return nil, err
	}
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}
	if cfg.Audio && cfg.Talk == nil {
		kinds = append(kinds, webrtc.RTPCodecTypeAudio)
	}
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return fail(fmt.Errorf("whep: adding a %s transceiver: %w", k, err))
		}
	}
	if err := c.setupTwoWay(); err != nil {
		return fail(err)
	}
	pc.OnTrack(c.onTrack)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			c.mu.Lock()
			if c.connAt.IsZero() {
				c.connAt = time.Now()
			}
			c.mu.Unlock()
			c.startTalk()
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(fmt.Errorf("whep: creating the offer: %w", err))
	}
	local, err := c.setLocal(ctx, offer)
	if err != nil {
		return fail(err)
	}
	resp, body, err := c.do(ctx, http.MethodPost, ep, ContentTypeSDP, local, nil)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusCreated {
		return fail(&HTTPError{Method: http.MethodPost, URL: ep.String(), StatusCode: resp.StatusCode, Body: strings.TrimSpace(body)})
	}
	loc, err := ep.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return fail(fmt.Errorf("whep: POST %s: the 201 response has no usable Location (%q)", ep, resp.Header.Get("Location")))
	}
	c.location = loc
	c.events = eventsLink(ep, resp.Header.Values("Link"))
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		return fail(fmt.Errorf("whep: applying the answer: %w", err))
	}
	c.remote = body
	return c, nil
}

// eventsLink finds the server-sent events link of a 201 response.
func eventsLink(base *url.URL, links []string) *url.URL {
	for _, l := range links {
		for part := range strings.SplitSeq(l, ",") {
			target, params, ok := strings.Cut(part, ";")
			if !ok || !strings.Contains(params, EventsRel) {
				continue
			}
			target = strings.Trim(strings.TrimSpace(target), "<>")
			if u, err := base.Parse(target); err == nil {
				return u
			}
		}
	}
	return nil
}

// setLocal sets a local description and returns it with the candidates
// gathered (within 5 s).
func (c *Client) setLocal(ctx context.Context, d webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(d); err != nil {
		return "", fmt.Errorf("whep: setting the local description: %w", err)
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return c.pc.LocalDescription().SDP, nil
}

// response is what do read of a response.
type response struct {
	StatusCode int
	Header     http.Header
}

// do makes a request and reads the whole response.
func (c *Client) do(ctx context.Context, method string, u *url.URL, ctype, body string, hdr http.Header) (response, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), strings.NewReader(body))
	if err != nil {
		return response{}, "", fmt.Errorf("whep: %w", err)
	}
	for k, v := range c.cfg.Header {
		req.Header[k] = v
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return response{}, "", fmt.Errorf("whep: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return response{}, "", fmt.Errorf("whep: %s %s: reading the response: %w", method, u, err)
	}
	return response{StatusCode: resp.StatusCode, Header: resp.Header}, string(b), nil
}

// onTrack receives a remote track until the client closes.
func (c *Client) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	sinks := append([]media.Sink{}, c.cfg.Sinks...)
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	if video {
		sinks = append([]media.Sink{c.video, firstSink{c}}, sinks...)
	}
	ssrc := uint32(tr.SSRC())
	r, err := media.NewReceiver(tr, media.ReceiverConfig{
		Logger: c.log, Sinks: sinks,
		RequestKeyframe: func() {
			_ = c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		},
	})
	if err != nil {
		c.log.Warn("whep: cannot receive the track", "kind", tr.Kind(), "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		_ = r.Run(c.ctx)
	}()
	go func() {
		defer c.wg.Done()
		for {
			pkts, _, err := recv.ReadRTCP()
			if err != nil {
				return
			}
			r.HandleRTCP(pkts)
		}
	}()
}

// firstSink closes the client's first-frame channel on the first
// keyframe.
type firstSink struct{ c *Client }

func (s firstSink) WriteFrame(f media.Frame) error {
	if f.Keyframe {
		s.c.firstOnce.Do(func() {
			s.c.mu.Lock()
			s.c.firstAt = time.Now()
			s.c.mu.Unlock()
			close(s.c.first)
		})
	}
	return nil
}

// PeerConnection returns the client's peer connection.
func (c *Client) PeerConnection() *webrtc.PeerConnection { return c.pc }

// Location returns the URL of the WHEP session (the resource).
func (c *Client) Location() string { return c.location.String() }

// FirstFrame is closed when the first video keyframe has arrived.
func (c *Client) FirstFrame() <-chan struct{} { return c.first }

// FirstFrameAt returns when the first video keyframe arrived (zero before).
func (c *Client) FirstFrameAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstAt
}

// ConnectedAt returns when the peer connection first connected (zero
// before).
func (c *Client) ConnectedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connAt
}

// Stats returns the statistics of the video received so far.
func (c *Client) Stats() media.StatsSnapshot { return c.video.Snapshot() }

// RestartICE restarts ICE through a PATCH with new credentials (RFC 9725
// section 4.4) and applies the server's new credentials and candidates.
func (c *Client) RestartICE(ctx context.Context) error {
	offer, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return fmt.Errorf("whep: creating the ICE restart offer: %w", err)
	}
	local, err := c.setLocal(ctx, offer)
	if err != nil {
		return err
	}
	resp, body, err := c.do(ctx, http.MethodPatch, c.location, ContentTypeSDPFrag, rtc.LocalICEFragment(local), http.Header{"If-Match": {"*"}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &HTTPError{Method: http.MethodPatch, URL: c.location.String(), StatusCode: resp.StatusCode, Body: strings.TrimSpace(body)}
	}
	f, err := rtc.ParseICEFragment(body)
	if err != nil {
		return fmt.Errorf("whep: the ICE restart answer: %w", err)
	}
	c.mu.Lock()
	remote := rtc.WithICECredentials(c.remote, f.Ufrag, f.Pwd)
	c.remote = remote
	c.mu.Unlock()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: remote}); err != nil {
		return fmt.Errorf("whep: applying the ICE restart answer: %w", err)
	}
	for _, cand := range f.Candidates {
		if err := c.pc.AddICECandidate(cand); err != nil {
			return fmt.Errorf("whep: the server's candidate %q: %w", cand.Candidate, err)
		}
	}
	return nil
}

// Statuses subscribes to the server-sent status events of the session
// and returns them on a channel, closed when ctx ends, the stream ends or
// the client closes. It fails if the server links no events.
func (c *Client) Statuses(ctx context.Context) (<-chan relay.Status, error) {
	if c.events == nil {
		return nil, errors.New("whep: the server's 201 response linked no status events")
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.events.String(), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("whep: %w", err)
	}
	for k, v := range c.cfg.Header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req) //nolint:bodyclose // the reader goroutine closes it
	if err != nil {
		cancel()
		return nil, fmt.Errorf("whep: GET %s: %w", c.events, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		return nil, &HTTPError{Method: http.MethodGet, URL: c.events.String(), StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	out := make(chan relay.Status, 16)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		resp.Body.Close()
		cancel()
		stop()
		return nil, errors.New("whep: the client is closed")
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var data bytes.Buffer
		for sc.Scan() {
			line := sc.Text()
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				data.WriteString(strings.TrimSpace(d))
				continue
			}
			if line != "" || data.Len() == 0 {
				continue
			}
			var st relay.Status
			if err := json.Unmarshal(data.Bytes(), &st); err == nil {
				select {
				case out <- st:
				case <-ctx.Done():
					return
				}
			}
			data.Reset()
		}
	}()
	return out, nil
}

// Close ends the session: DELETE on its resource (within ctx), then the
// peer connection is closed and the client's goroutines are waited for.
// It returns the DELETE's error, if any.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	var err error
	resp, body, derr := c.do(ctx, http.MethodDelete, c.location, "", "", nil)
	switch {
	case derr != nil:
		err = derr
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent:
		err = &HTTPError{Method: http.MethodDelete, URL: c.location.String(), StatusCode: resp.StatusCode, Body: strings.TrimSpace(body)}
	}
	c.shutdown()
	return err
}

// shutdown closes the peer connection and waits for the goroutines.
func (c *Client) shutdown() {
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
	c.cancel()
	_ = c.pc.Close()
	c.wg.Wait()
	if c.cfg.Talk != nil {
		_ = c.cfg.Talk.Close()
	}
}
