package signaling

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// Defaults of Config.
const (
	DefaultPingInterval     = 10 * time.Second
	DefaultPongTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
)

// readLimit bounds one incoming frame. The service never sends more than
// kvsproto.MaxFrameLen bytes; the limit leaves room for other servers.
const readLimit = 64 << 10

// maxQueuedEvents bounds the events waiting to be read from Events.
const maxQueuedEvents = 4096

// Config configures a signaling connection.
type Config struct {
	// Endpoint is the WSS endpoint of the channel for the role, from
	// GetSignalingChannelEndpoint (control.Client.Endpoints).
	Endpoint string
	// ChannelARN is the channel's ARN.
	ChannelARN string
	// Role is MASTER or VIEWER.
	Role kvsproto.Role
	// ClientID identifies a viewer (required for viewers, must be empty for
	// the master); see kvsproto.ValidateClientID.
	ClientID string
	// Region is the channel's region (signing region).
	Region string
	// Credentials returns the credentials to presign with; called on every
	// Dial. Use StaticCredentials for fixed ones.
	Credentials func(ctx context.Context) (sigv4.Credentials, error)
	// Now is the clock to sign with, corrected for the service's clock
	// (control.Client.Now). Nil: time.Now.
	Now func() time.Time
	// PingInterval is the interval of WebSocket pings. 0: 10 s; negative:
	// no pings (and no dead-connection detection).
	PingInterval time.Duration
	// PongTimeout is how long to wait for the pong of a ping before the
	// connection is declared dead. 0: 5 s.
	PongTimeout time.Duration
	// HandshakeTimeout bounds Dial when ctx has no earlier deadline. 0: 10 s.
	HandshakeTimeout time.Duration
	// HoldEarlyCandidates holds ICE candidates from a sender until that
	// sender's SDP offer or answer has been delivered, then delivers them in
	// order (as the official JS SDK does).
	HoldEarlyCandidates bool
	// HTTPClient is used for the WebSocket handshake (TLS roots, proxies).
	// Nil: http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives debug logs. Nil: discard.
	Logger *slog.Logger
}

// StaticCredentials returns a Config.Credentials function that always
// returns c.
func StaticCredentials(c sigv4.Credentials) func(context.Context) (sigv4.Credentials, error) {
	return func(context.Context) (sigv4.Credentials, error) { return c, nil }
}

func (cfg *Config) now() time.Time {
	if cfg.Now != nil {
		return cfg.Now()
	}
	return time.Now()
}

// validate checks cfg and fills in defaults.
func (cfg *Config) validate() error {
	bad := func(field, value, reason string) error {
		return fmt.Errorf("signaling: %w", &kvsproto.ValidationError{Field: field, Value: value, Reason: reason})
	}
	if cfg.Endpoint == "" {
		return bad("Endpoint", "", "must be the WSS endpoint from GetSignalingChannelEndpoint")
	}
	if s, _, _ := strings.Cut(cfg.Endpoint, "://"); s != "wss" && s != "ws" {
		return bad("Endpoint", cfg.Endpoint, "must be a wss:// URL")
	}
	if _, err := kvsproto.ParseChannelARN(cfg.ChannelARN); err != nil {
		return fmt.Errorf("signaling: %w", err)
	}
	switch cfg.Role {
	case kvsproto.RoleViewer:
		if err := kvsproto.ValidateClientID(cfg.ClientID); err != nil {
			return fmt.Errorf("signaling: %w", err)
		}
	case kvsproto.RoleMaster:
		if cfg.ClientID != "" {
			return bad("clientId", cfg.ClientID, "must be empty for the master (only viewers have a client id)")
		}
	default:
		return bad("Role", string(cfg.Role), "must be MASTER or VIEWER")
	}
	if cfg.Region == "" {
		return bad("Region", "", "must be the channel's region, e.g. us-west-2")
	}
	if cfg.Credentials == nil {
		return bad("Credentials", "", "must be set (use StaticCredentials for fixed credentials)")
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = DefaultPongTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	return nil
}

// Client is one signaling WebSocket connection. Its methods are safe for
// concurrent use. A Client does not reconnect: when Done is closed, dial a
// new one.
type Client struct {
	cfg  Config
	conn *websocket.Conn
	url  PresignedURL
	log  *slog.Logger

	events chan Event
	done   chan struct{}
	stop   chan struct{} // closed by Close: stop delivering events
	wake   chan struct{} // reader -> dispatcher: queue not empty

	mu       sync.Mutex
	err      error
	queue    []Event
	ended    bool // reader finished: no more events will be queued
	stopOnce sync.Once

	wg sync.WaitGroup
}

// Dial validates cfg (invalid values fail before any network traffic with an
// error matching kvsproto.ErrInvalid), presigns the endpoint and opens the
// WebSocket. A refused upgrade is a *HandshakeError.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("role", cfg.Role)
	u, err := cfg.presign(ctx)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	log.Debug("dialing signaling", "url", u)
	conn, resp, err := websocket.Dial(dctx, string(u), &websocket.DialOptions{HTTPClient: cfg.HTTPClient})
	if resp != nil && resp.Body != nil {
		defer resp.Body.Close() // a buffered copy; the socket belongs to conn
	}
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			var body []byte
			if resp.Body != nil {
				body, _ = io.ReadAll(io.LimitReader(resp.Body, 4096))
			}
			he := parseHandshakeError(resp, body)
			log.Debug("signaling handshake refused", "status", he.StatusCode, "code", he.Code, "message", he.Message)
			return nil, he
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("signaling: dial: %w", ctx.Err())
		}
		return nil, dialError(cfg.Endpoint, u.Redacted(), err)
	}
	conn.SetReadLimit(readLimit)
	c := &Client{
		cfg:    cfg,
		conn:   conn,
		url:    u,
		log:    log,
		events: make(chan Event),
		done:   make(chan struct{}),
		stop:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.dispatchLoop()
	if cfg.PingInterval > 0 {
		c.wg.Add(1)
		go c.keepalive()
	}
	log.Debug("signaling connected")
	return c, nil
}

// URL returns the presigned URL the connection was opened with.
func (c *Client) URL() PresignedURL { return c.url }

// Role returns the role of the connection.
func (c *Client) Role() kvsproto.Role { return c.cfg.Role }

// ClientID returns the viewer's client id ("" for the master).
func (c *Client) ClientID() string { return c.cfg.ClientID }

// Events returns the channel of incoming events. It is closed after Done,
// once the events received before the end have been delivered (or at once
// after Close). Read it promptly: if too many events queue up, the
// connection is closed with ErrEventOverflow.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended; Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is open, then why it ended: ErrClosed
// (Close was called), a *CloseError (the service closed it),
// ErrKeepaliveTimeout, ErrEventOverflow or an error wrapping
// ErrConnectionLost.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// finish records why the connection ended (the first reason wins) and
// closes Done. It reports whether this call ended it.
func (c *Client) finish(err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false
	}
	c.err = err
	close(c.done)
	return true
}

// Close closes the connection with a normal close frame (waiting at most 5 s
// for the service's answer) and waits for every goroutine of the client to
// end. Pending events are discarded. It returns nil, also when the
// connection had already ended.
func (c *Client) Close() error {
	ended := c.finish(ErrClosed)
	c.stopOnce.Do(func() { close(c.stop) })
	if ended {
		_ = c.conn.Close(websocket.StatusNormalClosure, "")
	} else {
		_ = c.conn.CloseNow()
	}
	c.wg.Wait()
	return nil
}

// readLoop reads frames until the connection ends, queueing parsed events.
func (c *Client) readLoop() {
	defer c.wg.Done()
	var holder candidateHolder
	for {
		typ, frame, err := c.conn.Read(context.Background())
		if err != nil {
			c.endRead(err)
			return
		}
		if typ != websocket.MessageText {
			c.log.Debug("ignoring a binary frame", "len", len(frame))
			continue
		}
		if len(strings.TrimSpace(string(frame))) == 0 {
			continue
		}
		ev, err := ParseEvent(frame)
		if err != nil {
			c.log.Debug("ignoring a frame", "err", err, "frame", truncate(frame))
			continue
		}
		evs := []Event{ev}
		if c.cfg.HoldEarlyCandidates {
			var dropped bool
			evs, dropped = holder.add(ev)
			if dropped {
				c.log.Warn("too many ICE candidates before an SDP; dropping one", "sender", ev.SenderClientID)
			}
			if len(evs) == 0 {
				c.log.Debug("holding an ICE candidate until the sender's SDP", "sender", ev.SenderClientID)
			}
		}
		if !c.enqueue(evs) {
			c.log.Warn("events are not being read; closing the signaling connection")
			c.finish(ErrEventOverflow)
			_ = c.conn.CloseNow()
			c.endRead(nil)
			return
		}
	}
}

// endRead records the end of the read side.
func (c *Client) endRead(err error) {
	if err != nil {
		var reason error
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			reason = &CloseError{Code: int(ce.Code), Reason: ce.Reason}
		} else {
			reason = fmt.Errorf("%w: %w", ErrConnectionLost, err)
		}
		if c.finish(reason) {
			c.log.Debug("signaling connection ended", "err", reason)
		}
		_ = c.conn.CloseNow()
	}
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	c.signal()
}

func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueue adds events for the dispatcher; false if the queue is full.
func (c *Client) enqueue(evs []Event) bool {
	if len(evs) == 0 {
		return true
	}
	c.mu.Lock()
	if len(c.queue)+len(evs) > maxQueuedEvents {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, evs...)
	c.mu.Unlock()
	c.signal()
	return true
}

// dispatchLoop moves queued events to the Events channel, so that a slow
// reader of Events never stalls the WebSocket reader (which must keep
// reading to see pongs and close frames).
func (c *Client) dispatchLoop() {
	defer c.wg.Done()
	defer close(c.events)
	for {
		c.mu.Lock()
		var ev Event
		have := len(c.queue) > 0
		if have {
			ev = c.queue[0]
			c.queue[0] = Event{}
			c.queue = c.queue[1:]
		}
		ended := c.ended
		c.mu.Unlock()
		if !have {
			if ended {
				return
			}
			select {
			case <-c.wake:
			case <-c.stop:
				return
			}
			continue
		}
		select {
		case c.events <- ev:
		case <-c.stop:
			return
		}
	}
}

// keepalive pings every PingInterval and declares the connection dead when
// a pong does not come back within PongTimeout.
func (c *Client) keepalive() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PongTimeout)
		err := c.conn.Ping(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil {
			continue
		}
		if timedOut {
			if c.finish(ErrKeepaliveTimeout) {
				c.log.Warn("no pong from the signaling service; closing the connection", "timeout", c.cfg.PongTimeout)
			}
			_ = c.conn.CloseNow()
		}
		return
	}
}

// Send validates and sends one message. Viewers must leave
// RecipientClientID empty (the service always routes their messages to the
// master); the master must set it, except on the answer and candidates it
// sends the storage session of its channel (WebRTC ingestion), whose offer
// came without a senderClientId.
func (c *Client) Send(ctx context.Context, msg kvsproto.ClientMessage) error {
	if err := msg.Validate(); err != nil {
		return fmt.Errorf("signaling: send: %w", err)
	}
	switch c.cfg.Role {
	case kvsproto.RoleViewer:
		if msg.RecipientClientID != "" {
			return fmt.Errorf("signaling: send: %w", &kvsproto.ValidationError{Field: "recipientClientId", Value: msg.RecipientClientID,
				Reason: "a viewer's messages always go to the master; leave it empty"})
		}
	case kvsproto.RoleMaster:
		// The one exception: the answer and candidates of a master to its
		// channel's storage session (WebRTC ingestion), whose offer came
		// without senderClientId, go without a recipient.
		if msg.RecipientClientID == "" && msg.Action == kvsproto.ActionSDPOffer {
			return fmt.Errorf("signaling: send: %w", &kvsproto.ValidationError{Field: "recipientClientId",
				Reason: "the master must name the viewer (its senderClientId) to send to"})
		}
	}
	frame, err := msg.Encode()
	if err != nil {
		return fmt.Errorf("signaling: send: %w", err)
	}
	if err := c.Err(); err != nil {
		return fmt.Errorf("signaling: send %s: %w", msg.Action, err)
	}
	if err := c.conn.Write(ctx, websocket.MessageText, frame); err != nil {
		if e := c.Err(); e != nil {
			return fmt.Errorf("signaling: send %s: %w", msg.Action, e)
		}
		return fmt.Errorf("signaling: send %s: %w", msg.Action, err)
	}
	return nil
}

// SendOffer sends an SDP offer (see OfferMessage for the arguments).
func (c *Client) SendOffer(ctx context.Context, sd kvsproto.SessionDescription, recipient, correlationID string) error {
	return c.sendBuilt(ctx)(OfferMessage(sd, recipient, correlationID))
}

// SendAnswer sends an SDP answer (see OfferMessage for the arguments).
func (c *Client) SendAnswer(ctx context.Context, sd kvsproto.SessionDescription, recipient, correlationID string) error {
	return c.sendBuilt(ctx)(AnswerMessage(sd, recipient, correlationID))
}

// SendICECandidate sends an ICE candidate (see OfferMessage for the
// arguments).
func (c *Client) SendICECandidate(ctx context.Context, cand kvsproto.ICECandidate, recipient, correlationID string) error {
	return c.sendBuilt(ctx)(CandidateMessage(cand, recipient, correlationID))
}

// sendBuilt sends a message a builder returned, or the builder's error.
func (c *Client) sendBuilt(ctx context.Context) func(kvsproto.ClientMessage, error) error {
	return func(msg kvsproto.ClientMessage, err error) error {
		if err != nil {
			return err
		}
		return c.Send(ctx, msg)
	}
}

// NewCorrelationID returns a fresh correlation id: the Unix time in
// milliseconds (as the official clients use), '_' and 8 random hex digits.
func NewCorrelationID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(time.Now().UnixMilli(), 10) + "_" + hex.EncodeToString(b[:])
}

func truncate(b []byte) string {
	const n = 200
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
