package emulator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/emulator/internal/hub"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// WebSocket close codes chosen by the emulator (the service's are not
// documented: kvs-protocol.md §9.2). The hub chooses its own for
// displacement, deletion and GO_AWAY (hub.CloseCode*).
const (
	closeCodeIdle        = int(websocket.StatusGoingAway)
	closeReasonIdle      = "idle timeout"
	closeCodeMaxDuration = int(websocket.StatusGoingAway)
	closeReasonMaxDur    = "maximum connection duration reached"
	closeCodeSlow        = int(websocket.StatusPolicyViolation)
	closeReasonSlow      = "slow consumer: too many undelivered messages"
)

var (
	errConnClosed   = errors.New("emulator: connection closed")
	errSlowConsumer = errors.New("emulator: connection too slow; closed")
)

// serveWS handles ConnectAsMaster / ConnectAsViewer: it authenticates the
// presigned URL and admits the connection to the hub before upgrading, so
// every refusal is a plain HTTP response; then it runs the connection.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, reqID string) {
	reject := func(e *apiError, reason string) {
		s.log.Info("connect refused", "path", r.URL.Path, "status", e.Status, "code", e.Code, "reason", reason, "remote", r.RemoteAddr, "request_id", reqID)
		writeWSError(w, e)
	}
	res, err := s.verifier.VerifyPresigned(r)
	if err != nil {
		e := sigv4APIError(err)
		if e.Status == http.StatusForbidden {
			e.Code = kvsproto.ErrCodeAccessDenied
		}
		reject(e, err.Error())
		return
	}
	if res.Region != s.cfg.Region {
		msg := fmt.Sprintf("Credential should be scoped to a valid region. This service runs in '%s', the URL was signed for '%s'.", s.cfg.Region, res.Region)
		reject(&apiError{http.StatusForbidden, kvsproto.ErrCodeAccessDenied, msg}, msg)
		return
	}
	q := r.URL.Query()
	arn := q.Get("X-Amz-ChannelARN")
	if arn == "" {
		reject(errInvalidArgument("The X-Amz-ChannelARN query parameter is required."), "missing X-Amz-ChannelARN")
		return
	}
	a, err := kvsproto.ParseChannelARN(arn)
	if err != nil {
		reject(errInvalidArgument(err.Error()), err.Error())
		return
	}
	if e := s.checkOwnARN(a, arn); e != nil {
		e.Status = http.StatusForbidden
		reject(e, e.Message)
		return
	}
	ch, ok := s.store.byARNGet(arn)
	if !ok || ch.Status != string(kvsproto.StatusActive) {
		reject(errNotFound(channelNotFoundMsg), "no such channel: "+arn)
		return
	}
	clientID := q.Get("X-Amz-ClientId")
	role := kvsproto.RoleMaster
	switch r.URL.Path {
	case pathWSViewer:
		role = kvsproto.RoleViewer
	case pathWSMaster:
	default:
		if clientID != "" {
			role = kvsproto.RoleViewer
		}
	}
	if role == kvsproto.RoleViewer {
		if clientID == "" {
			reject(errInvalidArgument("The X-Amz-ClientId query parameter is required to connect as a viewer."), "viewer without X-Amz-ClientId")
			return
		}
		if err := kvsproto.ValidateClientID(clientID); err != nil {
			reject(errInvalidArgument(err.Error()), err.Error())
			return
		}
	} else if clientID != "" {
		s.log.Debug("master connect with X-Amz-ClientId; ignored", "client_id", clientID)
		clientID = ""
	}
	if r.Header.Get("Sec-WebSocket-Key") == "" || r.Header.Get("Sec-WebSocket-Version") != "13" || !headerHasToken(r.Header, "Connection", "upgrade") {
		reject(errInvalidArgument("Not a WebSocket handshake (Sec-WebSocket-Key, Sec-WebSocket-Version 13 and Connection: Upgrade are required)."), "bad handshake")
		return
	}

	c := &wsConn{
		s:        s,
		id:       s.connSeq.Add(1),
		role:     role,
		clientID: clientID,
		channel:  ch.Name,
		remote:   r.RemoteAddr,
	}
	c.log = s.log.With("conn", c.id, "channel", ch.Name, "role", string(role))
	if clientID != "" {
		c.log = c.log.With("client_id", clientID)
	}
	if !s.track(c) {
		reject(&apiError{http.StatusServiceUnavailable, "ServiceUnavailableException", "The service is shutting down."}, "shutting down")
		return
	}
	m, err := s.hub.Join(hub.JoinRequest{
		ChannelARN: arn,
		MessageTTL: ch.messageTTL(),
		Role:       role,
		ClientID:   clientID,
		RemoteAddr: r.RemoteAddr,
		Conn:       c,
	})
	if err != nil {
		s.untrack(c)
		reject(joinError(err), err.Error())
		return
	}
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		Subprotocols:       []string{"wss"},
		InsecureSkipVerify: true,
		OnPingReceived:     c.onPing,
	})
	if err != nil || hw.conn == nil {
		m.Leave()
		s.untrack(c)
		s.log.Info("connect failed during upgrade", "err", err, "remote", r.RemoteAddr)
		if ws != nil {
			_ = ws.CloseNow()
		}
		return
	}
	ws.SetReadLimit(wsReadLimit)
	c.log.Info("connected", "remote", r.RemoteAddr, "expires", res.Date.Add(res.Expires).UTC().Format(time.RFC3339))
	// The connection runs in its own goroutine (owned by the Server through
	// wsWG) so that the HTTP handler goroutine, with its deep stack and the
	// request, ends here: an idle connection costs one small goroutine.
	nc := hw.conn
	go func() {
		defer s.untrack(c)
		c.run(ws, nc, m)
	}()
}

// hijackWriter records the net.Conn that websocket.Accept hijacks, so that
// writes can use deadlines instead of per-write contexts.
type hijackWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("emulator: response writer cannot hijack")
	}
	c, brw, err := hj.Hijack()
	h.conn = c
	return c, brw, err
}

// closeReq is a pending close of a connection.
type closeReq struct {
	code   int
	reason string
	abrupt bool
}

// wsConn is one WebSocket connection: hub.Conn for the hub, a read loop in
// the handler goroutine, and a writer goroutine that runs only while frames
// are queued (so an idle connection costs one goroutine).
type wsConn struct {
	s        *Server
	id       uint64
	role     kvsproto.Role
	clientID string
	channel  string
	remote   string
	log      *slog.Logger

	lastActive atomic.Int64 // s.mono() of the last activity
	done       atomic.Bool  // set when run is tearing down (timers must not re-arm)

	mu        sync.Mutex
	ws        *websocket.Conn // nil until upgraded
	nc        net.Conn
	queue     [][]byte
	queued    int // bytes in queue
	writing   bool
	closeReq  *closeReq
	finished  bool
	writersWG sync.WaitGroup
}

// Send implements hub.Conn: it queues the frame and never blocks.
func (c *wsConn) Send(frame []byte) error {
	c.mu.Lock()
	if c.closeReq != nil || c.finished {
		c.mu.Unlock()
		return errConnClosed
	}
	if len(c.queue) >= maxQueueFrames || c.queued+len(frame) > maxQueueBytes {
		c.closeReq = &closeReq{closeCodeSlow, closeReasonSlow, true}
		ws := c.ws
		n := len(c.queue)
		c.mu.Unlock()
		c.log.Warn("closing slow consumer", "queued_frames", n)
		if ws != nil {
			_ = ws.CloseNow()
		}
		return errSlowConsumer
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.startWriterLocked()
	c.mu.Unlock()
	return nil
}

// startWriterLocked starts the writer goroutine if there is work and none
// runs; c.mu is held.
func (c *wsConn) startWriterLocked() {
	if c.ws == nil || c.writing || (len(c.queue) == 0 && c.closeReq == nil) {
		return
	}
	c.writing = true
	c.writersWG.Add(1)
	go c.writeLoop()
}

// Close implements hub.Conn. A graceful close is sent after the frames
// already queued; an abrupt one drops the TCP connection at once.
func (c *wsConn) Close(code int, reason string, abrupt bool) {
	if len(reason) > 120 {
		reason = reason[:120]
	}
	c.mu.Lock()
	if c.closeReq != nil || c.finished {
		ws := c.ws
		escalate := abrupt && c.closeReq != nil && !c.closeReq.abrupt
		c.mu.Unlock()
		if escalate && ws != nil {
			_ = ws.CloseNow()
		}
		return
	}
	c.closeReq = &closeReq{code, reason, abrupt}
	ws := c.ws
	if abrupt || ws == nil {
		c.mu.Unlock()
		if ws != nil {
			c.log.Info("closing connection abruptly", "reason", reason)
			_ = ws.CloseNow()
		}
		return
	}
	c.startWriterLocked()
	c.mu.Unlock()
}

// writeLoop writes queued frames, then the pending close, then exits.
func (c *wsConn) writeLoop() {
	defer c.writersWG.Done()
	deadlineSet := false
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			cr := c.closeReq
			if cr == nil {
				c.writing = false
				c.mu.Unlock()
				if deadlineSet {
					_ = c.nc.SetWriteDeadline(time.Time{})
				}
				return
			}
			c.queue = nil
			c.mu.Unlock()
			if cr.abrupt {
				_ = c.ws.CloseNow()
				return
			}
			c.log.Info("closing connection", "code", cr.code, "reason", cr.reason)
			_ = c.nc.SetWriteDeadline(time.Time{})
			_ = c.ws.Close(websocket.StatusCode(cr.code), cr.reason)
			return // c.writing stays true: no writer starts again
		}
		f := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.queued -= len(f)
		if len(c.queue) == 0 {
			c.queue = nil
		}
		c.mu.Unlock()
		if !deadlineSet {
			_ = c.nc.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
			deadlineSet = true
		}
		if err := c.ws.Write(context.Background(), websocket.MessageText, f); err != nil {
			c.log.Info("write failed; dropping connection", "err", err)
			c.mu.Lock()
			if c.closeReq == nil {
				c.closeReq = &closeReq{int(websocket.StatusAbnormalClosure), "write failed", true}
			}
			c.queue = nil
			c.mu.Unlock()
			_ = c.ws.CloseNow()
			return
		}
	}
}

func (c *wsConn) touch() { c.lastActive.Store(int64(c.s.mono())) }

func (c *wsConn) onPing(ctx context.Context, payload []byte) bool {
	if c.s.cfg.PingResetsIdle {
		c.touch()
	}
	return true
}

// run attaches the upgraded connection and reads until it closes. It
// returns after the writer goroutine and timers are done.
func (c *wsConn) run(ws *websocket.Conn, nc net.Conn, m *hub.Member) {
	cfg := &c.s.cfg
	c.touch()
	c.mu.Lock()
	c.ws, c.nc = ws, nc
	cr := c.closeReq
	if cr != nil && cr.abrupt {
		c.mu.Unlock()
		_ = ws.CloseNow()
	} else {
		c.startWriterLocked()
		c.mu.Unlock()
	}

	// Idle timer: fires after IdleTimeout and re-arms while there was
	// activity since.
	var idle *time.Timer
	idle = time.AfterFunc(cfg.IdleTimeout, func() {
		if c.done.Load() {
			return
		}
		since := c.s.mono() - time.Duration(c.lastActive.Load())
		if since < cfg.IdleTimeout {
			idle.Reset(cfg.IdleTimeout - since)
			return
		}
		c.log.Info("idle timeout", "idle", since.Round(time.Millisecond))
		c.Close(closeCodeIdle, closeReasonIdle, false)
	})
	goAway := time.AfterFunc(cfg.MaxConnDuration-cfg.GoAwayGrace, func() {
		c.log.Info("sending GO_AWAY before the maximum connection duration", "closes_in", cfg.GoAwayGrace)
		_ = c.Send(goAwayFrame)
	})
	maxDur := time.AfterFunc(cfg.MaxConnDuration, func() {
		c.log.Info("maximum connection duration reached", "max", cfg.MaxConnDuration)
		c.Close(closeCodeMaxDuration, closeReasonMaxDur, false)
	})

	reason := c.readLoop(ws, m)

	c.done.Store(true)
	m.Leave()
	c.s.sessions.left(m.ChannelARN(), m.Role(), m.ClientID(), c.s.now())
	idle.Stop()
	goAway.Stop()
	maxDur.Stop()
	c.mu.Lock()
	c.finished = true
	if c.closeReq == nil {
		c.closeReq = &closeReq{abrupt: true}
	}
	c.queue = nil
	c.mu.Unlock()
	_ = ws.CloseNow()
	c.writersWG.Wait()
	c.log.Info("disconnected", "reason", reason)
}

var goAwayFrame = []byte(`{"messageType":"GO_AWAY"}`)

// readLoop hands text frames to the hub until the connection ends and
// returns why it ended. Frames are read into pooled buffers: the hub does
// not keep the frame after Handle returns.
func (c *wsConn) readLoop(ws *websocket.Conn, m *hub.Member) string {
	for {
		typ, rd, err := ws.Reader(context.Background())
		if err != nil {
			return describeReadErr(err)
		}
		bp := framePool.Get().(*[]byte)
		b, err := readAllInto((*bp)[:0], rd)
		if err != nil {
			*bp = b[:0]
			framePool.Put(bp)
			return describeReadErr(err)
		}
		if typ != websocket.MessageText {
			c.log.Info("binary frame ignored (KVS signaling is text only)", "bytes", len(b))
		} else {
			c.touch()
			m.Handle(b)
		}
		if cap(b) <= wsReadLimit+1 {
			*bp = b[:0]
			framePool.Put(bp)
		}
	}
}

// framePool holds read buffers for client frames.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// readAllInto appends everything r yields to b.
func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func describeReadErr(err error) string {
	if ce := websocket.CloseStatus(err); ce != -1 {
		var cerr websocket.CloseError
		if errors.As(err, &cerr) {
			return fmt.Sprintf("client closed (%d %s)", cerr.Code, cerr.Reason)
		}
		return fmt.Sprintf("client closed (%d)", ce)
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return fmt.Sprintf("frame larger than %d bytes; closed with 1009", wsReadLimit)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the client dropped the connection without a close frame"
	}
	msg := err.Error()
	if strings.Contains(msg, "use of closed network connection") || errors.Is(err, net.ErrClosed) {
		return "connection closed by the service"
	}
	return msg
}

var _ hub.Conn = (*wsConn)(nil)
