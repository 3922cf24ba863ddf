package signaling

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testARN = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/demo/1700000000000"

var testCreds = sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}

// testHTTPClient returns a client whose idle connections are closed at the
// end of the test (so that goleak sees no transport goroutines).
func testHTTPClient(t *testing.T) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func baseConfig(t *testing.T, endpoint string, role kvsproto.Role, clientID string) Config {
	return Config{
		Endpoint:    endpoint,
		ChannelARN:  testARN,
		Role:        role,
		ClientID:    clientID,
		Region:      "us-west-2",
		Credentials: StaticCredentials(testCreds),
		HTTPClient:  testHTTPClient(t),
	}
}

// scriptServer is a WebSocket server that runs script on each accepted
// connection. It is closed (and its handlers waited for) at the end of the
// test.
func scriptServer(t *testing.T, script func(ctx context.Context, c *websocket.Conn, r *http.Request)) string {
	u, _ := scriptServerCloser(t, script)
	return u
}

func scriptServerCloser(t *testing.T, script func(ctx context.Context, c *websocket.Conn, r *http.Request)) (string, func()) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		script(r.Context(), c, r)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), srv.Close
}

func recv(t *testing.T, c *Client) Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("events closed: %v", c.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return Event{}
}

func TestDialValidatesBeforeNetwork(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	ep := "ws" + strings.TrimPrefix(srv.URL, "http")
	for _, mut := range []func(*Config){
		func(c *Config) { c.ClientID = "bad id" },
		func(c *Config) { c.ClientID = "AWS_viewer" },
		func(c *Config) { c.ClientID = "" },
		func(c *Config) { c.ChannelARN = "arn:aws:kinesisvideo:us-west-2:1:stream/x/1" },
		func(c *Config) { c.Role = "OBSERVER" },
		func(c *Config) { c.Role = kvsproto.RoleMaster }, // master with a client id
		func(c *Config) { c.Region = "" },
		func(c *Config) { c.Credentials = nil },
		func(c *Config) { c.Endpoint = "https://example.com" },
	} {
		cfg := baseConfig(t, ep, kvsproto.RoleViewer, "viewer-1")
		mut(&cfg)
		c, err := Dial(context.Background(), cfg)
		if !errors.Is(err, kvsproto.ErrInvalid) {
			t.Errorf("Dial(%+v) = %v, want kvsproto.ErrInvalid", cfg, err)
		}
		if c != nil {
			c.Close()
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d requests reached the server", hits.Load())
	}
}

func TestHandshakeErrors(t *testing.T) {
	cases := []struct {
		status  int
		errType string
		body    string
		want    error
		code    string
	}{
		{403, "", `{"message":"Forbidden"}`, ErrForbidden, ""},
		{401, "", ``, ErrForbidden, ""},
		{404, "ResourceNotFoundException:https://kinesisvideo.amazonaws.com/doc/2017-09-30/", `{"Message":"The requested channel is not found or not active."}`, ErrNotFound, "ResourceNotFoundException"},
		{400, "ClientLimitExceededException", `{"Message":"Too many connection attempts"}`, ErrThrottled, "ClientLimitExceededException"},
		{400, "ClientLimitExceededException", `{"Message":"The channel already has the maximum number of viewers (10)"}`, ErrChannelFull, "ClientLimitExceededException"},
		{400, "", `{"__type":"InvalidArgumentException","message":"bad"}`, ErrBadRequest, "InvalidArgumentException"},
		{503, "", `oops`, ErrServer, ""},
	}
	for _, c := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.errType != "" {
				w.Header().Set("x-amzn-ErrorType", c.errType)
			}
			w.WriteHeader(c.status)
			io.WriteString(w, c.body)
		}))
		start := time.Now()
		_, err := Dial(context.Background(), baseConfig(t, "ws"+strings.TrimPrefix(srv.URL, "http"), kvsproto.RoleViewer, "viewer-1"))
		srv.Close()
		var he *HandshakeError
		if !errors.As(err, &he) || !errors.Is(err, c.want) {
			t.Errorf("status %d %s: err = %v, want %v", c.status, c.errType, err, c.want)
			continue
		}
		if he.StatusCode != c.status || he.Code != c.code {
			t.Errorf("status %d: %+v", c.status, he)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("status %d: took %v", c.status, time.Since(start))
		}
	}
}

func TestSendReceiveScripted(t *testing.T) {
	got := make(chan string, 10)
	offer := payload(t, kvsproto.SessionDescription{Type: "offer", SDP: "v=0 offer"})
	cand := payload(t, kvsproto.ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"})
	ep := scriptServer(t, func(ctx context.Context, c *websocket.Conn, r *http.Request) {
		q := r.URL.Query()
		if q.Get("X-Amz-ChannelARN") != testARN || q.Get("X-Amz-ClientId") != "" || q.Get("X-Amz-Expires") != "299" {
			c.Close(websocket.StatusPolicyViolation, "bad query")
			return
		}
		frames := []string{
			`{"message":"Endpoint request timed out","connectionId":"x","requestId":"y"}`,
			`{"messagePayload":"` + cand + `","messageType":"ICE_CANDIDATE","senderClientId":"v1"}`,
			`{"messageType":"SOMETHING_NEW"}`,
			`{"messageType":"SDP_OFFER","messagePayload":"!!"}`,
			`{"messagePayload":"` + offer + `","messageType":"SDP_OFFER","senderClientId":"v1"}`,
			`{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"c1","errorType":"InvalidArgumentException","statusCode":"400","success":false}}`,
			`{"messageType":"GO_AWAY"}`,
		}
		for _, f := range frames {
			if err := c.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
				return
			}
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			got <- string(b)
		}
	})
	cfg := baseConfig(t, ep, kvsproto.RoleMaster, "")
	cfg.HoldEarlyCandidates = true
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ev := recv(t, c)
	if ev.Type != kvsproto.MessageSDPOffer || ev.SenderClientID != "v1" || ev.SDP.SDP != "v=0 offer" {
		t.Fatalf("first event = %+v (the held candidate must come after the offer)", ev)
	}
	ev = recv(t, c)
	if ev.Type != kvsproto.MessageICECandidate || ev.SenderClientID != "v1" || !strings.Contains(ev.Candidate.Candidate, "127.0.0.1") {
		t.Fatalf("second event = %+v", ev)
	}
	ev = recv(t, c)
	if ev.Type != kvsproto.MessageStatusResponse || ev.Status.CorrelationID != "c1" {
		t.Fatalf("third event = %+v", ev)
	}
	if ev = recv(t, c); ev.Type != kvsproto.MessageGoAway {
		t.Fatalf("fourth event = %+v", ev)
	}

	ctx := context.Background()
	corr := NewCorrelationID()
	if err := c.SendAnswer(ctx, kvsproto.SessionDescription{SDP: "v=0 answer"}, "v1", corr); err != nil {
		t.Fatal(err)
	}
	msg, err := kvsproto.DecodeClientMessage([]byte(<-got))
	if err != nil || msg.Action != kvsproto.ActionSDPAnswer || msg.RecipientClientID != "v1" || msg.CorrelationID != corr {
		t.Fatalf("sent %+v, %v", msg, err)
	}
	var sd kvsproto.SessionDescription
	if err := kvsproto.DecodePayload(msg.MessagePayload, &sd); err != nil || sd.Type != "answer" {
		t.Fatalf("payload %+v %v", sd, err)
	}
	// The master must name the recipient of an offer (its answers and
	// candidates to a storage session go without one); correlation ids
	// are validated.
	if err := c.SendOffer(ctx, kvsproto.SessionDescription{SDP: "v=0"}, "", ""); !errors.Is(err, kvsproto.ErrInvalid) {
		t.Fatalf("master offer without recipient: %v", err)
	}
	if err := c.SendOffer(ctx, kvsproto.SessionDescription{SDP: "v=0"}, "v1", "bad id!"); !errors.Is(err, kvsproto.ErrInvalid) {
		t.Fatalf("bad correlation id: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err after Close = %v", c.Err())
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("events not closed after Close")
	}
	if err := c.SendICECandidate(ctx, kvsproto.ICECandidate{Candidate: "x"}, "v1", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

func TestViewerSend(t *testing.T) {
	got := make(chan string, 1)
	ep := scriptServer(t, func(ctx context.Context, c *websocket.Conn, r *http.Request) {
		if r.URL.Query().Get("X-Amz-ClientId") != "viewer-1" {
			c.Close(websocket.StatusPolicyViolation, "no client id")
			return
		}
		_, b, err := c.Read(ctx)
		if err == nil {
			got <- string(b)
		}
		c.Read(ctx)
	})
	c, err := Dial(context.Background(), baseConfig(t, ep, kvsproto.RoleViewer, "viewer-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendOffer(context.Background(), kvsproto.SessionDescription{SDP: "v=0"}, "master", ""); !errors.Is(err, kvsproto.ErrInvalid) {
		t.Fatalf("viewer with recipient: %v", err)
	}
	if err := c.SendOffer(context.Background(), kvsproto.SessionDescription{SDP: "v=0"}, "", ""); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != `{"action":"SDP_OFFER","messagePayload":"`+payload(t, kvsproto.SessionDescription{Type: "offer", SDP: "v=0"})+`"}` {
		t.Fatalf("sent %s", s)
	}
}

func TestServiceClose(t *testing.T) {
	ep := scriptServer(t, func(ctx context.Context, c *websocket.Conn, r *http.Request) {
		c.Write(ctx, websocket.MessageText, []byte(`{"messageType":"GO_AWAY"}`))
		c.Close(websocket.StatusGoingAway, "maintenance")
	})
	c, err := Dial(context.Background(), baseConfig(t, ep, kvsproto.RoleMaster, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Events received before the close are still delivered, then the
	// channel is closed.
	if ev := recv(t, c); ev.Type != kvsproto.MessageGoAway {
		t.Fatalf("event = %+v", ev)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed")
	}
	var ce *CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != int(websocket.StatusGoingAway) || ce.Reason != "maintenance" {
		t.Fatalf("Err = %v", c.Err())
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("events not closed")
	}
}

// silentServer completes the WebSocket handshake and then reads and
// discards everything, never answering a ping.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
			base64.StdEncoding.EncodeToString(h[:])+"\r\n\r\n")
		io.Copy(io.Discard, br) // until the client hangs up
	}()
	return "ws://" + ln.Addr().String()
}

func TestKeepaliveTimeout(t *testing.T) {
	cfg := baseConfig(t, silentServer(t), kvsproto.RoleViewer, "viewer-1")
	cfg.PingInterval = 50 * time.Millisecond
	cfg.PongTimeout = 200 * time.Millisecond
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("dead connection not detected")
	}
	if !errors.Is(c.Err(), ErrKeepaliveTimeout) {
		t.Fatalf("Err = %v", c.Err())
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("events not closed")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), ErrKeepaliveTimeout) {
		t.Fatalf("Close changed Err to %v", c.Err())
	}
}

func TestKeepaliveHealthy(t *testing.T) {
	ep := scriptServer(t, func(ctx context.Context, c *websocket.Conn, r *http.Request) {
		c.Read(ctx) // answers pings while reading
	})
	cfg := baseConfig(t, ep, kvsproto.RoleViewer, "viewer-1")
	cfg.PingInterval = 20 * time.Millisecond
	cfg.PongTimeout = 5 * time.Second
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
		t.Fatalf("connection ended: %v", c.Err())
	case <-time.After(300 * time.Millisecond):
	}
	if err := c.Close(); err != nil || !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Close = %v, Err = %v", err, c.Err())
	}
}

func TestCloseWaitsWithUnreadEvents(t *testing.T) {
	ep, closeServer := scriptServerCloser(t, func(ctx context.Context, c *websocket.Conn, r *http.Request) {
		for i := 0; i < 50; i++ {
			c.Write(ctx, websocket.MessageText, []byte(`{"messageType":"RECONNECT_ICE_SERVER"}`))
		}
		c.Read(ctx)
	})
	cfg := baseConfig(t, ep, kvsproto.RoleMaster, "")
	cfg.PingInterval = 10 * time.Millisecond
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, c) // read one, leave the rest queued
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	closeServer()
	cfg.HTTPClient.Transport.(*http.Transport).CloseIdleConnections()
	goleak.VerifyNone(t)
}
