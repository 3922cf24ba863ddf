package resilience

// Real network parts the tests put between the clients and the emulator,
// to reproduce what the emulator's own faults cannot: a control plane
// that reports a channel as DELETING, a NAT in front of TURN whose
// mappings can be cut (a network change), and a relay on the signaling
// WebSocket that can go silent (a socket that dies without a close frame)
// or answer an offer with a STATUS_RESPONSE.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// ctlProxy is a reverse proxy in front of the emulator's REST APIs. It
// keeps the Host header (the clients sign it), counts calls per path and
// can rewrite answers.
type ctlProxy struct {
	srv    *httptest.Server
	target string // emulator URL

	mu       sync.Mutex
	calls    map[string]int
	deleting bool   // describeSignalingChannel reports DELETING
	turnUDP  string // host:port replacing the TURN UDP URI ("" = unchanged)
}

func newCtlProxy(t testing.TB, e *env) *ctlProxy {
	t.Helper()
	target, err := url.Parse(e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &ctlProxy{target: e.srv.URL(), calls: map[string]int{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // signed by the client
		},
		ModifyResponse: p.modify,
	}
	p.srv = httptest.NewServer(rp)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *ctlProxy) URL() string { return p.srv.URL }

func (p *ctlProxy) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[path]
}

func (p *ctlProxy) setDeleting(v bool) {
	p.mu.Lock()
	p.deleting = v
	p.mu.Unlock()
}

func (p *ctlProxy) setTURN(hostPort string) {
	p.mu.Lock()
	p.turnUDP = hostPort
	p.mu.Unlock()
}

func (p *ctlProxy) modify(resp *http.Response) error {
	path := resp.Request.URL.Path
	p.mu.Lock()
	p.calls[path]++
	deleting, turnUDP := p.deleting, p.turnUDP
	p.mu.Unlock()
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	switch path {
	case kvsproto.PathGetSignalingChannelEndpoint:
		// GetIceServerConfig goes through the proxy too.
		body = bytes.ReplaceAll(body, []byte(`"`+p.target+`"`), []byte(`"`+p.srv.URL+`"`))
	case kvsproto.PathDescribeSignalingChannel:
		if deleting {
			body = bytes.ReplaceAll(body, []byte(`"ACTIVE"`), []byte(`"DELETING"`))
		}
	case kvsproto.PathGetIceServerConfig:
		if turnUDP != "" {
			body = rewriteTURN(body, turnUDP)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// rewriteTURN points the TURN UDP URI at hostPort and drops the others,
// so that every relay path goes through the NAT.
func rewriteTURN(body []byte, hostPort string) []byte {
	s := string(body)
	start := strings.Index(s, `"Uris":[`)
	if start < 0 {
		return body
	}
	end := strings.Index(s[start:], "]")
	if end < 0 {
		return body
	}
	return []byte(s[:start] + `"Uris":["turn:` + hostPort + `?transport=udp"` + s[start+end:])
}

// turnNAT is a UDP proxy in front of the TURN server: each client address
// gets its own upstream socket (a NAT mapping). cut() makes every existing
// mapping drop its packets, as when a phone leaves Wi-Fi: the old path is
// dead, a new socket (an ICE restart gathers new ones) works.
type turnNAT struct {
	pc     net.PacketConn
	target *net.UDPAddr

	mu     sync.Mutex
	maps   map[string]*natMap
	closed bool
	wg     sync.WaitGroup
}

type natMap struct {
	up   *net.UDPConn
	dead atomic.Bool
}

func newTURNNAT(t testing.TB, target string) *turnNAT {
	t.Helper()
	ta, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &turnNAT{pc: pc, target: ta, maps: map[string]*natMap{}}
	n.wg.Add(1)
	go n.loop()
	t.Cleanup(n.close)
	return n
}

func (n *turnNAT) addr() string { return n.pc.LocalAddr().String() }

func (n *turnNAT) loop() {
	defer n.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		k, from, err := n.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			continue
		}
		m := n.maps[from.String()]
		if m == nil {
			up, err := net.DialUDP("udp4", nil, n.target)
			if err != nil {
				n.mu.Unlock()
				continue
			}
			m = &natMap{up: up}
			n.maps[from.String()] = m
			n.wg.Add(1)
			go n.back(m, from)
		}
		n.mu.Unlock()
		if !m.dead.Load() {
			_, _ = m.up.Write(buf[:k])
		}
	}
}

func (n *turnNAT) back(m *natMap, to net.Addr) {
	defer n.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		k, err := m.up.Read(buf)
		if err != nil {
			return
		}
		if !m.dead.Load() {
			_, _ = n.pc.WriteTo(buf[:k], to)
		}
	}
}

// cut kills every existing mapping.
func (n *turnNAT) cut() {
	n.mu.Lock()
	for _, m := range n.maps {
		m.dead.Store(true)
	}
	n.mu.Unlock()
}

func (n *turnNAT) close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	for _, m := range n.maps {
		_ = m.up.Close()
	}
	n.mu.Unlock()
	_ = n.pc.Close()
	n.wg.Wait()
}

// sigRelay relays signaling WebSockets message by message. Clients reach
// it through HTTPClient(), whose dialer connects every request to the
// relay while the URL (and so the signed Host) stays the emulator's.
type sigRelay struct {
	srv *httptest.Server

	mu      sync.Mutex
	conns   []*relayConn
	onOffer func(rc *relayConn, msg kvsproto.ClientMessage) []byte // non-nil reply: answer it, do not forward
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// relayConn is one relayed connection.
type relayConn struct {
	role     kvsproto.Role
	clientID string
	tcp      *freezeConn // the client's TCP connection to the relay
}

func (rc *relayConn) freeze() { rc.tcp.freeze() }

// freezeConn is a TCP connection that can go silent: once frozen, what
// arrives is never read (so pings get no pong) and what is written is
// dropped, while the connection stays open.
type freezeConn struct {
	net.Conn
	frozen, closed chan struct{}
	fonce, conce   sync.Once
}

func (c *freezeConn) freeze() { c.fonce.Do(func() { close(c.frozen) }) }

func (c *freezeConn) isFrozen() bool {
	select {
	case <-c.frozen:
		return true
	default:
		return false
	}
}

func (c *freezeConn) Read(p []byte) (int, error) {
	if !c.isFrozen() {
		n, err := c.Conn.Read(p)
		if !c.isFrozen() {
			return n, err
		}
	}
	<-c.closed
	return 0, net.ErrClosed
}

func (c *freezeConn) Write(p []byte) (int, error) {
	if c.isFrozen() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *freezeConn) Close() error {
	c.conce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

type freezeListener struct{ net.Listener }

func (l freezeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &freezeConn{Conn: c, frozen: make(chan struct{}), closed: make(chan struct{})}, nil
}

type connKey struct{}

func newSigRelay(t testing.TB) *sigRelay {
	t.Helper()
	r := &sigRelay{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.srv.Listener = freezeListener{r.srv.Listener}
	r.srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) }
	r.srv.Start()
	t.Cleanup(func() {
		r.cancel()
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.wg.Wait()
	})
	return r
}

// HTTPClient returns a client whose connections all go to the relay.
func (r *sigRelay) HTTPClient() *http.Client {
	addr := r.srv.Listener.Addr().String()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	return &http.Client{Transport: tr}
}

// freeze makes the matching connections go silent: the client's frames
// (pings included) go unanswered and nothing reaches it, but TCP stays up.
func (r *sigRelay) freeze(match func(*relayConn) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rc := range r.conns {
		if match(rc) {
			rc.freeze()
			n++
		}
	}
	return n
}

func (r *sigRelay) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

func (r *sigRelay) serve(w http.ResponseWriter, req *http.Request) {
	r.wg.Add(1)
	defer r.wg.Done()
	up := "ws://" + req.Host + req.URL.RequestURI()
	uc, resp, err := websocket.Dial(r.ctx, up, &websocket.DialOptions{HTTPClient: &http.Client{}})
	if err != nil {
		if resp == nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		for _, h := range []string{"Content-Type", "X-Amzn-Errortype", "X-Amzn-Requestid", "Date"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		if resp.Body != nil {
			_, _ = io.Copy(w, resp.Body)
		}
		return
	}
	cc, err := websocket.Accept(w, req, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		_ = uc.CloseNow()
		return
	}
	fc, _ := req.Context().Value(connKey{}).(*freezeConn)
	rc := &relayConn{role: kvsproto.RoleMaster, clientID: req.URL.Query().Get("X-Amz-ClientId"), tcp: fc}
	if rc.clientID != "" {
		rc.role = kvsproto.RoleViewer
	}
	r.mu.Lock()
	r.conns = append(r.conns, rc)
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	closeLike := func(dst *websocket.Conn, err error) {
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			_ = dst.Close(ce.Code, ce.Reason)
			return
		}
		_ = dst.CloseNow()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // client -> service
		defer wg.Done()
		defer cancel()
		for {
			typ, msg, err := cc.Read(ctx)
			if err != nil {
				closeLike(uc, err)
				return
			}
			if reply := r.intercept(rc, msg); reply != nil {
				_ = cc.Write(ctx, websocket.MessageText, reply)
				continue
			}
			if err := uc.Write(ctx, typ, msg); err != nil {
				_ = cc.CloseNow()
				return
			}
		}
	}()
	go func() { // service -> client
		defer wg.Done()
		defer cancel()
		for {
			typ, msg, err := uc.Read(ctx)
			if err != nil {
				closeLike(cc, err)
				return
			}
			if err := cc.Write(ctx, typ, msg); err != nil {
				_ = uc.CloseNow()
				return
			}
		}
	}()
	wg.Wait()
	_ = cc.CloseNow()
	_ = uc.CloseNow()
}

// intercept returns a reply for a client message that is not to be
// forwarded, or nil.
func (r *sigRelay) intercept(rc *relayConn, msg []byte) []byte {
	r.mu.Lock()
	hook := r.onOffer
	r.mu.Unlock()
	if hook == nil {
		return nil
	}
	m, err := kvsproto.DecodeClientMessage(msg)
	if err != nil || m.Action != kvsproto.ActionSDPOffer {
		return nil
	}
	return hook(rc, m)
}

// setOnOffer installs the offer hook.
func (r *sigRelay) setOnOffer(f func(rc *relayConn, msg kvsproto.ClientMessage) []byte) {
	r.mu.Lock()
	r.onOffer = f
	r.mu.Unlock()
}

// statusFrame is a STATUS_RESPONSE frame as the service sends it.
func statusFrame(t testing.TB, corr, errType, desc string) []byte {
	t.Helper()
	ev := kvsproto.Event{MessageType: kvsproto.MessageStatusResponse, StatusResponse: &kvsproto.StatusResponse{
		CorrelationID: corr, ErrorType: errType, StatusCode: "400", Description: desc}}
	b, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
