package emulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// This file is over 500 lines on purpose: one test per behaviour of the
// signaling WebSocket endpoint (routing, message TTL, the master and viewer
// limits, refusals and throttling, bad messages, timeouts, faults, slow
// consumers, shutdown, TLS).

const (
	master = kvsproto.RoleMaster
	viewer = kvsproto.RoleViewer
)

func offerPayload(t testing.TB) string {
	return payload(t, kvsproto.SessionDescription{Type: "offer", SDP: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"})
}

func TestOfferAnswerCandidates(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true})
	c := newClient(t, srv)
	arn := c.createChannel("talk")
	m := c.mustDial(master, arn, "")
	v := c.mustDial(viewer, arn, "viewer-1")

	offer := offerPayload(t)
	send(t, v, `{"action":"SDP_OFFER","messagePayload":"`+offer+`"}`)
	ev := recv(t, m, 5*time.Second)
	if ev.MessageType != kvsproto.MessageSDPOffer || ev.SenderClientID != "viewer-1" || ev.MessagePayload != offer {
		t.Fatalf("master got %+v", ev)
	}
	answer := payload(t, kvsproto.SessionDescription{Type: "answer", SDP: "v=0\r\n"})
	send(t, m, `{"action":"SDP_ANSWER","messagePayload":"`+answer+`","recipientClientId":"viewer-1","correlationId":"1700000000123"}`)
	ev = recv(t, v, 5*time.Second)
	if ev.MessageType != kvsproto.MessageSDPAnswer || ev.SenderClientID != "" || ev.MessagePayload != answer {
		t.Fatalf("viewer got %+v", ev)
	}
	// The C SDK form: capitalized keys, a RecipientClientId from a viewer
	// (ignored) and an extra IceServerList.
	cand := payload(t, map[string]any{"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0})
	send(t, v, "{\n\t\"action\": \"ICE_CANDIDATE\",\n\t\"RecipientClientId\": \"ProducerMaster\",\n\t\"MessagePayload\": \""+cand+"\",\n\t\"IceServerList\": []\n}")
	ev = recv(t, m, 5*time.Second)
	if ev.MessageType != kvsproto.MessageICECandidate || ev.SenderClientID != "viewer-1" || ev.MessagePayload != cand {
		t.Fatalf("master got %+v", ev)
	}
	send(t, m, `{"action":"ICE_CANDIDATE","messagePayload":"`+cand+`","recipientClientId":"viewer-1"}`)
	if ev = recv(t, v, 5*time.Second); ev.MessageType != kvsproto.MessageICECandidate || ev.SenderClientID != "" {
		t.Fatalf("viewer got %+v", ev)
	}

	// Pings are answered (coder/websocket needs a reader running for the pong).
	done := make(chan kvsproto.Event, 1)
	go func() {
		ev, _ := tryRecv(v, 5*time.Second)
		done <- ev
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	send(t, m, `{"action":"ICE_CANDIDATE","messagePayload":"`+cand+`","recipientClientId":"viewer-1"}`)
	if ev := <-done; ev.MessageType != kvsproto.MessageICECandidate {
		t.Fatalf("after ping: %+v", ev)
	}

	// The frames on the wire keep the key order real KVS uses.
	send(t, v, `{"action":"ICE_CANDIDATE","messagePayload":"`+cand+`"}`)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	_, raw, err := m.Read(ctx2)
	if err != nil || !strings.HasPrefix(string(raw), `{"messagePayload":"`) {
		t.Fatalf("raw frame %s %v", raw, err)
	}
}

func TestLateConnectWithinTTLAndLossAfter(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true})
	c := newClient(t, srv)
	arn, err := srv.CreateChannel(context.Background(), "late", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v := c.mustDial(viewer, arn, "early-viewer")
	offer := offerPayload(t)
	send(t, v, `{"action":"SDP_OFFER","messagePayload":"`+offer+`"}`)
	time.Sleep(100 * time.Millisecond)

	m := c.mustDial(master, arn, "")
	ev := recv(t, m, 5*time.Second)
	if ev.MessageType != kvsproto.MessageSDPOffer || ev.SenderClientID != "early-viewer" {
		t.Fatalf("late master got %+v", ev)
	}
	// Consumed on delivery: a reconnecting master does not get it again.
	_ = m.Close(websocket.StatusNormalClosure, "")
	// Buffer another offer, then move the service clock past the 5 s TTL.
	send(t, v, `{"action":"SDP_OFFER","messagePayload":"`+offer+`"}`)
	time.Sleep(100 * time.Millisecond)
	srv.SetClockSkew(6 * time.Second)
	m2 := c.mustDial(master, arn, "")
	expectNothing(t, m2, 500*time.Millisecond)
	if st := srv.Stats(); st.Expired == 0 {
		t.Fatalf("stats %+v: want an expired message", st)
	}
}

func TestNewestMasterWinsAndViewerLimit(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, DisableQuotas: true})
	c := newClient(t, srv)
	arn := c.createChannel("crowd")
	m1 := c.mustDial(master, arn, "")
	m2 := c.mustDial(master, arn, "")
	if code := closeCode(t, m1, 5*time.Second); code != 4001 {
		t.Fatalf("displaced master closed with %d, want 4001", code)
	}
	var viewers []*websocket.Conn
	for i := 0; i < 10; i++ {
		viewers = append(viewers, c.mustDial(viewer, arn, "v"+string(rune('a'+i))))
	}
	st, et, body := c.dialStatus(viewer, arn, "eleventh")
	if st != 400 || et != kvsproto.ErrCodeClientLimitExceeded || !strings.Contains(body, `"message"`) {
		t.Fatalf("11th viewer: %d %s %s", st, et, body)
	}
	// A reconnect with an existing client id replaces the older connection.
	again := c.mustDial(viewer, arn, "va")
	if code := closeCode(t, viewers[0], 5*time.Second); code != 4001 {
		t.Fatalf("displaced viewer closed with %d", code)
	}
	send(t, again, `{"action":"SDP_OFFER","messagePayload":"`+offerPayload(t)+`"}`)
	if ev := recv(t, m2, 5*time.Second); ev.SenderClientID != "va" {
		t.Fatalf("newest master got %+v", ev)
	}
}

func TestConnectThrottled(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true})
	c := newClient(t, srv)
	arn := c.createChannel("rate")
	refused := 0
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ws, resp, err := c.dial(ctx, viewer, arn, "r"+string(rune('a'+i)))
		cancel()
		if err == nil {
			defer ws.CloseNow()
			continue
		}
		if resp == nil || resp.StatusCode != 400 || resp.Header.Get("x-amzn-ErrorType") != kvsproto.ErrCodeClientLimitExceeded {
			t.Fatalf("connect %d: %v %v", i, resp, err)
		}
		refused++
	}
	if refused == 0 {
		t.Fatal("10 connects in a row were all accepted; want the 3/s limit to refuse some")
	}
}

func TestConnectRefusals(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true})
	c := newClient(t, srv)
	arn := c.createChannel("guard")

	check := func(name string, st int, et string, wantSt int, wantET string) {
		t.Helper()
		if st != wantSt || et != wantET {
			t.Errorf("%s: got %d %s, want %d %s", name, st, et, wantSt, wantET)
		}
	}
	for _, id := range []string{"AWS_viewer", "aws_x", "has space", strings.Repeat("x", 257), "sl/ash"} {
		st, et, _ := c.dialStatus(viewer, arn, id)
		check("clientId "+id, st, et, 400, kvsproto.ErrCodeInvalidArgument)
	}
	st, et, _ := c.dialStatus(viewer, arn, "")
	check("viewer without clientId", st, et, 400, kvsproto.ErrCodeInvalidArgument)
	st, et, _ = c.dialStatus(viewer, "arn:aws:kinesisvideo:us-west-2:123456789012:channel/none/1", "v")
	check("unknown channel", st, et, 404, kvsproto.ErrCodeResourceNotFound)
	st, et, _ = c.dialStatus(viewer, "not-an-arn", "v")
	check("bad ARN", st, et, 400, kvsproto.ErrCodeInvalidArgument)
	st, et, _ = c.dialStatus(master, "arn:aws:kinesisvideo:eu-west-1:123456789012:channel/guard/1", "")
	check("foreign ARN", st, et, 403, kvsproto.ErrCodeAccessDenied)

	dial := func(u string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ws, resp, err := c.dialURL(ctx, u, "")
		if err == nil {
			ws.CloseNow()
			return 101, "", ""
		}
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		return resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), string(buf[:n])
	}
	ep := srv.WSSEndpoint(master)
	// No signature at all.
	st, et, _ = dial(ep + "?X-Amz-ChannelARN=" + arn)
	check("unsigned", st, et, 403, kvsproto.ErrCodeAccessDenied)
	// Expired: signed 10 minutes ago with a 299 s lifetime.
	u, _ := sigv4.PresignURL(ep, map[string]string{"X-Amz-ChannelARN": arn}, srv.Credentials(), srv.Region(), time.Now().Add(-10*time.Minute), 0)
	st, et, body := dial(u)
	check("expired", st, et, 403, kvsproto.ErrCodeAccessDenied)
	if !strings.Contains(body, "Signature expired") {
		t.Errorf("expired body %q", body)
	}
	// Within the lifetime but the clock is 6 minutes ahead.
	u, _ = sigv4.PresignURL(ep, map[string]string{"X-Amz-ChannelARN": arn}, srv.Credentials(), srv.Region(), time.Now().Add(6*time.Minute), 0)
	st, et, _ = dial(u)
	check("future", st, et, 403, kvsproto.ErrCodeAccessDenied)
	// Signed for another region.
	u, _ = sigv4.PresignURL(ep, map[string]string{"X-Amz-ChannelARN": arn}, srv.Credentials(), "eu-west-1", time.Now(), 0)
	st, et, _ = dial(u)
	check("region", st, et, 403, kvsproto.ErrCodeAccessDenied)
	// Wrong secret.
	u, _ = sigv4.PresignURL(ep, map[string]string{"X-Amz-ChannelARN": arn}, sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wrong"}, srv.Region(), time.Now(), 0)
	st, et, _ = dial(u)
	check("secret", st, et, 403, kvsproto.ErrCodeAccessDenied)
	// Tampered client id.
	u, _ = sigv4.PresignURL(srv.WSSEndpoint(viewer), map[string]string{"X-Amz-ChannelARN": arn, "X-Amz-ClientId": "alice"}, srv.Credentials(), srv.Region(), time.Now(), 0)
	st, et, _ = dial(strings.Replace(u, "alice", "mallory", 1))
	check("tampered", st, et, 403, kvsproto.ErrCodeAccessDenied)
	// Missing ARN (signed).
	u, _ = sigv4.PresignURL(ep, nil, srv.Credentials(), srv.Region(), time.Now(), 0)
	st, et, _ = dial(u)
	check("no ARN", st, et, 400, kvsproto.ErrCodeInvalidArgument)

	// Deleting the channel closes its connections; later connects get 404.
	m := c.mustDial(master, arn, "")
	c.mustPost(kvsproto.PathDeleteSignalingChannel, kvsproto.DeleteSignalingChannelInput{ChannelARN: arn}, nil)
	if code := closeCode(t, m, 5*time.Second); code != 4004 {
		t.Fatalf("connection of a deleted channel closed with %d", code)
	}
	st, et, _ = c.dialStatus(master, arn, "")
	check("deleted", st, et, 404, kvsproto.ErrCodeResourceNotFound)
}

func TestBadMessages(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true})
	c := newClient(t, srv)
	arn := c.createChannel("bad")
	m := c.mustDial(master, arn, "")
	v := c.mustDial(viewer, arn, "v1")
	p := offerPayload(t)

	// Master without recipient and with a correlation id: STATUS_RESPONSE.
	send(t, m, `{"action":"SDP_OFFER","messagePayload":"`+p+`","correlationId":"c-1"}`)
	ev := recv(t, m, 5*time.Second)
	sr := ev.StatusResponse
	if ev.MessageType != kvsproto.MessageStatusResponse || sr == nil || sr.CorrelationID != "c-1" ||
		sr.ErrorType != kvsproto.ErrCodeInvalidArgument || sr.StatusCode != "400" || sr.Success {
		t.Fatalf("status response %+v %+v", ev, sr)
	}
	// Garbage without a correlation id: silently dropped, connection open.
	send(t, v, `not json`)
	send(t, v, `{"action":"SDP_OFFER","messagePayload":"`+strings.Repeat("A", kvsproto.MaxMessagePayloadLen+4)+`","correlationId":"big"}`)
	if ev := recv(t, v, 5*time.Second); ev.StatusResponse == nil || ev.StatusResponse.CorrelationID != "big" {
		t.Fatalf("oversize payload: %+v", ev)
	}
	send(t, v, `{"action":"SDP_OFFER","messagePayload":"`+p+`"}`)
	if ev := recv(t, m, 5*time.Second); ev.MessageType != kvsproto.MessageSDPOffer {
		t.Fatalf("after bad frames: %+v", ev)
	}
	// A binary frame is ignored.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	// A frame over the 32 KiB read limit closes the connection with 1009.
	big := `{"action":"SDP_OFFER","messagePayload":"` + strings.Repeat("A", 40<<10) + `"}`
	_ = v.Write(ctx, websocket.MessageText, []byte(big))
	if code := closeCode(t, v, 5*time.Second); code != websocket.StatusMessageTooBig {
		t.Fatalf("oversize frame: close %d", code)
	}
}

func TestIdleTimeoutAndMaxDuration(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, DisableQuotas: true, IdleTimeout: 400 * time.Millisecond,
		MaxConnDuration: 1500 * time.Millisecond, GoAwayGrace: 700 * time.Millisecond})
	c := newClient(t, srv)
	arn := c.createChannel("timers")

	idle := c.mustDial(viewer, arn, "idle")
	began := time.Now()
	if code := closeCode(t, idle, 5*time.Second); code != websocket.StatusGoingAway {
		t.Fatalf("idle close %d", code)
	}
	if el := time.Since(began); el < 300*time.Millisecond {
		t.Fatalf("idle close after %v", el)
	}

	// An active connection survives the idle timeout, gets GO_AWAY before
	// the maximum duration and is closed at it.
	busy := c.mustDial(master, arn, "")
	began = time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = busy.Write(ctx, websocket.MessageText, []byte(`{"action":"ICE_CANDIDATE","messagePayload":"eA==","recipientClientId":"nobody"}`))
				cancel()
			}
		}
	}()
	ev := recv(t, busy, 5*time.Second)
	if ev.MessageType != kvsproto.MessageGoAway {
		t.Fatalf("want GO_AWAY, got %+v", ev)
	}
	gotGoAway := time.Since(began)
	code := closeCode(t, busy, 5*time.Second)
	closedAt := time.Since(began)
	close(stop)
	wg.Wait()
	if code != websocket.StatusGoingAway || gotGoAway < 600*time.Millisecond || closedAt < 1300*time.Millisecond {
		t.Fatalf("GO_AWAY after %v, close %d after %v", gotGoAway, code, closedAt)
	}
}

func TestFaults(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, DisableQuotas: true, Faults: []string{"drop,action=SDP_ANSWER,count=1,channel=faulty"}})
	c := newClient(t, srv)
	arn := c.createChannel("faulty")
	m := c.mustDial(master, arn, "")
	v := c.mustDial(viewer, arn, "v1")
	ans := payload(t, kvsproto.SessionDescription{Type: "answer", SDP: "v=0\r\n"})
	send(t, m, `{"action":"SDP_ANSWER","messagePayload":"`+ans+`","recipientClientId":"v1"}`) // dropped
	send(t, m, `{"action":"ICE_CANDIDATE","messagePayload":"eA==","recipientClientId":"v1"}`)
	if ev := recv(t, v, 5*time.Second); ev.MessageType != kvsproto.MessageICECandidate {
		t.Fatalf("after the dropped answer: %+v", ev)
	}
	send(t, m, `{"action":"SDP_ANSWER","messagePayload":"`+ans+`","recipientClientId":"v1"}`)
	if ev := recv(t, v, 5*time.Second); ev.MessageType != kvsproto.MessageSDPAnswer {
		t.Fatalf("second answer: %+v", ev)
	}

	admin := func(spec string) int {
		t.Helper()
		resp, err := adminPost(c.http, srv, "/_kvsrtc/faults", "text/plain", strings.NewReader(spec))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Affected int    `json:"affected"`
			Message  string `json:"message"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			t.Fatalf("fault %q: %d %s", spec, resp.StatusCode, out.Message)
		}
		return out.Affected
	}
	// Delay.
	admin("delay,channel=faulty,action=ICE_CANDIDATE,delay=300ms")
	began := time.Now()
	send(t, m, `{"action":"ICE_CANDIDATE","messagePayload":"eA==","recipientClientId":"v1"}`)
	recv(t, v, 5*time.Second)
	if el := time.Since(began); el < 250*time.Millisecond {
		t.Fatalf("delayed message arrived after %v", el)
	}
	// RECONNECT_ICE_SERVER.
	if n := admin("reconnect-ice,channel=faulty,target=v1"); n != 1 {
		t.Fatalf("reconnect-ice affected %d", n)
	}
	if ev := recv(t, v, 5*time.Second); ev.MessageType != kvsproto.MessageReconnectICEServer {
		t.Fatalf("want RECONNECT_ICE_SERVER, got %+v", ev)
	}
	// GO_AWAY then close after the grace.
	if n := admin(`{"spec":"goaway,channel=faulty,target=master,grace=200ms"}`); n != 1 {
		t.Fatalf("goaway affected %d", n)
	}
	if ev := recv(t, m, 5*time.Second); ev.MessageType != kvsproto.MessageGoAway {
		t.Fatalf("want GO_AWAY, got %+v", ev)
	}
	if code := closeCode(t, m, 5*time.Second); code == -1 {
		t.Fatal("closed without a close frame after GO_AWAY")
	}
	// Abrupt close: no close frame.
	if n := admin("close,channel=faulty,target=viewer"); n != 1 {
		t.Fatalf("close affected %d", n)
	}
	if code := closeCode(t, v, 5*time.Second); code != -1 {
		t.Fatalf("abrupt close sent close code %d", code)
	}
	// Refusals.
	admin("throttle,channel=faulty,count=1")
	if st, et, _ := c.dialStatus(viewer, arn, "v2"); st != 400 || et != kvsproto.ErrCodeClientLimitExceeded {
		t.Fatalf("throttle fault: %d %s", st, et)
	}
	admin("full,channel=faulty")
	if st, et, _ := c.dialStatus(viewer, arn, "v3"); st != 400 || et != kvsproto.ErrCodeClientLimitExceeded {
		t.Fatalf("full fault: %d %s", st, et)
	}
	c.mustDial(viewer, arn, "v4")
	// Clock skew through the admin API.
	resp, err := adminPost(c.http, srv, "/_kvsrtc/clock", "application/json", strings.NewReader(`{"skew":"-90s"}`))
	if err != nil {
		t.Fatal(err)
	}
	var clock struct{ Skew string }
	_ = json.NewDecoder(resp.Body).Decode(&clock)
	resp.Body.Close()
	if clock.Skew != "-1m30s" {
		t.Fatalf("clock %+v", clock)
	}
	// Bad specs are refused with a reason.
	resp, err = adminPost(c.http, srv, "/_kvsrtc/faults", "text/plain", strings.NewReader("drop,count=zero"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad spec: %d", resp.StatusCode)
	}
}

func TestSlowConsumerIsClosed(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, DisableQuotas: true})
	c := newClient(t, srv)
	arn := c.createChannel("slow")
	m := c.mustDial(master, arn, "") // never reads until the end
	v := c.mustDial(viewer, arn, "fast")
	p := strings.Repeat("A", 9996)
	frame := []byte(`{"action":"ICE_CANDIDATE","messagePayload":"` + p + `"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 3000; i++ {
		if err := v.Write(ctx, websocket.MessageText, frame); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i%200 == 0 && srv.Stats().Masters == 0 {
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Masters != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := srv.Stats(); st.Masters != 0 {
		t.Fatalf("slow master still connected: %+v", st)
	}
	// The viewer is unaffected.
	send(t, v, `{"action":"ICE_CANDIDATE","messagePayload":"eA=="}`)
	_ = m.CloseNow()
}

func TestShutdownClosesWebSockets(t *testing.T) {
	srv, err := emulator.Start(context.Background(), emulator.Config{TURNDisabled: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, srv)
	arn := c.createChannel("bye")
	m := c.mustDial(master, arn, "")
	v := c.mustDial(viewer, arn, "v")
	codes := make(chan websocket.StatusCode, 2)
	for _, ws := range []*websocket.Conn{m, v} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					codes <- websocket.CloseStatus(err)
					return
				}
			}
		}()
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if code := <-codes; code != websocket.StatusGoingAway {
			t.Fatalf("shutdown close code %d", code)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestShutdownDoesNotWaitForSilentConnections: connections that never sent
// a request (a browser's spare socket) do not hold Close for net/http's 5 s.
func TestShutdownDoesNotWaitForSilentConnections(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			srv, err := emulator.Start(context.Background(), emulator.Config{TURNDisabled: true, TLS: useTLS, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			var silent []net.Conn
			for range 3 {
				nc, err := net.Dial("tcp", u.Host)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				silent = append(silent, nc)
			}
			// A request in flight still gets its answer.
			c := newClient(t, srv)
			c.createChannel("still-served")
			time.Sleep(50 * time.Millisecond) // let the server accept them
			began := time.Now()
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(began); took > 2*time.Second {
				t.Fatalf("Close took %v with %d silent connections open", took, len(silent))
			}
			for _, nc := range silent {
				_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := nc.Read(make([]byte, 1)); err == nil {
					t.Fatal("a silent connection got data instead of being closed")
				} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("a silent connection was left open")
				}
			}
		})
	}
}

func TestSendAlexaOfferToMaster(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true})
	c := newClient(t, srv)
	arn, err := srv.CreateChannel(context.Background(), "alexa", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := c.mustDial(master, arn, "")
	offer := offerPayload(t)
	answer := payload(t, kvsproto.SessionDescription{Type: "answer", SDP: "v=0\r\n"})
	go func() {
		ev, err := tryRecv(m, 5*time.Second)
		if err != nil || ev.MessageType != kvsproto.MessageSDPOffer || ev.SenderClientID != "alexa-1" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Write(ctx, websocket.MessageText, []byte(`{"action":"SDP_ANSWER","messagePayload":"`+answer+`","recipientClientId":"alexa-1"}`))
	}()
	var out kvsproto.SendAlexaOfferToMasterOutput
	c.mustPost(kvsproto.PathSendAlexaOfferToMaster, kvsproto.SendAlexaOfferToMasterInput{ChannelARN: arn, SenderClientID: "alexa-1", MessagePayload: offer}, &out)
	if out.Answer != answer {
		t.Fatalf("answer %q", out.Answer)
	}
	st, code, _ := c.post(kvsproto.PathSendAlexaOfferToMaster, kvsproto.SendAlexaOfferToMasterInput{ChannelARN: arn, SenderClientID: "alexa-1", MessagePayload: "not base64!"})
	if st != 400 || code != kvsproto.ErrCodeInvalidArgument {
		t.Fatalf("bad payload: %d %s", st, code)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, emulator.Config{TLS: true, DataDir: dir, TURNDisabled: true})
	if !strings.HasPrefix(srv.URL(), "https://") || !strings.HasPrefix(srv.WSSEndpoint(master), "wss://") || srv.SPKIHash() == "" || srv.CertPool() == nil {
		t.Fatalf("TLS server: %s %s %q", srv.URL(), srv.WSSEndpoint(master), srv.SPKIHash())
	}
	var bundle string
	for _, kv := range srv.Env() {
		if v, ok := strings.CutPrefix(kv, "AWS_CA_BUNDLE="); ok {
			bundle = v
		}
	}
	if bundle == "" || !strings.HasPrefix(bundle, dir) {
		t.Fatalf("AWS_CA_BUNDLE %q (env %v)", bundle, srv.Env())
	}
	c := newClient(t, srv)
	arn := c.createChannel("secure")
	m := c.mustDial(master, arn, "")
	v := c.mustDial(viewer, arn, "sv")
	send(t, v, `{"action":"SDP_OFFER","messagePayload":"`+offerPayload(t)+`"}`)
	if ev := recv(t, m, 5*time.Second); ev.SenderClientID != "sv" {
		t.Fatalf("over wss: %+v", ev)
	}
	hash := srv.SPKIHash()
	pem := string(srv.CACertPEM())
	_ = m.Close(websocket.StatusNormalClosure, "")
	_ = v.Close(websocket.StatusNormalClosure, "")
	_ = srv.Close()
	// The certificate is kept across restarts.
	srv2 := start(t, emulator.Config{TLS: true, DataDir: dir, TURNDisabled: true})
	if srv2.SPKIHash() != hash || string(srv2.CACertPEM()) != pem {
		t.Fatal("certificate not reused from the data dir")
	}
}
