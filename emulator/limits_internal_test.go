package emulator

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// closedWithin reports whether the server closes conn within d (a read
// returns EOF or a reset rather than timing out on our side).
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestSlowClientsAreCut: a client that sends its headers or its body a
// byte at a time, or holds an idle keep-alive connection, is disconnected
// by the server's timeouts (slowloris); a WebSocket outlives them all.
// Not parallel: it shortens the package's limits.
func TestSlowClientsAreCut(t *testing.T) {
	saved := httpLimits
	httpLimits.readHeader, httpLimits.read, httpLimits.write, httpLimits.idle = time.Second, 2*time.Second, 2*time.Second, time.Second
	t.Cleanup(func() { httpLimits = saved })
	srv, err := Start(context.Background(), Config{TURNDisabled: true, Channels: []string{"slow"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addr().String()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// A slow body: the headers arrive, the body never does.
	c := dial()
	_, _ = io.WriteString(c, "POST /describeSignalingChannel HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	if !closedWithin(c, 20*time.Second) {
		t.Error("a request whose body never arrives kept its connection for 20 s")
	}
	// Slow headers.
	c = dial()
	_, _ = io.WriteString(c, "GET /_kvsrtc/healthz HTTP/1.1\r\nHost: "+addr+"\r\n")
	if !closedWithin(c, 20*time.Second) {
		t.Error("a request whose headers never end kept its connection for 20 s")
	}
	// An idle keep-alive connection after one request.
	c = dial()
	_, _ = io.WriteString(c, "GET /_kvsrtc/healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !closedWithin(c, 20*time.Second) {
		t.Error("an idle keep-alive connection stayed open for 20 s")
	}

	// A WebSocket stays usable well past the read and write timeouts.
	arn, _ := srv.store.byNameGet("slow")
	u, err := sigv4.PresignURL(srv.WSSEndpoint(kvsproto.RoleMaster), map[string]string{"X-Amz-ChannelARN": arn.ARN}, srv.Credentials(), srv.Region(), time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	rctx := ws.CloseRead(ctx)
	time.Sleep(3 * time.Second)
	if err := ws.Ping(rctx); err != nil {
		t.Fatalf("the WebSocket did not outlive the HTTP timeouts: %v", err)
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
}

// TestLimitListener: at most n connections are open at once; closing one
// lets the next in.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitListener(raw, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	second := <-accepted
	defer second.Close()
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted over the cap of 2")
	case <-time.After(300 * time.Millisecond):
	}
	_ = first.Close()
	select {
	case c := <-accepted:
		_ = c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("closing a connection did not let the next one in")
	}
	_ = ln.Close()
	<-done
}
