package signaling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// emu is an emulator with one channel "demo".
type emu struct {
	s    *emulator.Server
	arn  string
	http *http.Client
}

func startEmulator(t *testing.T, cfg emulator.Config) *emu {
	t.Helper()
	ctx := context.Background()
	s, err := emulator.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		s.Close()
	})
	arn, err := s.CreateChannel(ctx, "demo", 0)
	if err != nil {
		t.Fatal(err)
	}
	return &emu{s: s, arn: arn, http: &http.Client{Transport: tr}}
}

// wss asks the emulator for the channel's WSS endpoint of role with a
// hand-signed GetSignalingChannelEndpoint (the control package is not
// used here, to keep the package's tests independent of it).
func (e *emu) wss(t *testing.T, arn string, role kvsproto.Role) string {
	t.Helper()
	body, _ := json.Marshal(kvsproto.GetSignalingChannelEndpointInput{
		ChannelARN: arn,
		SingleMasterChannelEndpointConfiguration: &kvsproto.SingleMasterChannelEndpointConfiguration{
			Protocols: []string{"WSS", "HTTPS"}, Role: string(role),
		},
	})
	req, _ := http.NewRequest(http.MethodPost, e.s.URL()+kvsproto.PathGetSignalingChannelEndpoint, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := sigv4.SignRequest(req, body, e.s.Credentials(), e.s.Region(), time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out kvsproto.GetSignalingChannelEndpointOutput
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("GetSignalingChannelEndpoint: HTTP %d", resp.StatusCode)
	}
	for _, ep := range out.ResourceEndpointList {
		if ep.Protocol == kvsproto.ProtocolWSS {
			return ep.ResourceEndpoint
		}
	}
	t.Fatal("no WSS endpoint")
	return ""
}

func (e *emu) config(t *testing.T, role kvsproto.Role, clientID string) signaling.Config {
	return signaling.Config{
		Endpoint:    e.wss(t, e.arn, role),
		ChannelARN:  e.arn,
		Role:        role,
		ClientID:    clientID,
		Region:      e.s.Region(),
		Credentials: signaling.StaticCredentials(e.s.Credentials()),
		HTTPClient:  e.http,
	}
}

func dial(t *testing.T, cfg signaling.Config) *signaling.Client {
	t.Helper()
	c, err := signaling.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial %s %s: %v", cfg.Role, cfg.ClientID, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func next(t *testing.T, c *signaling.Client) signaling.Event {
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
	return signaling.Event{}
}

func waitDone(t *testing.T, c *signaling.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(10 * time.Second):
		t.Fatal("connection did not end within 10 s")
	}
	return nil
}

func cand(s string) kvsproto.ICECandidate {
	mid, idx := "0", uint16(0)
	return kvsproto.ICECandidate{Candidate: s, SDPMid: &mid, SDPMLineIndex: &idx}
}

func TestEmulatorRouting(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	ctx := context.Background()
	master := dial(t, e.config(t, kvsproto.RoleMaster, ""))
	viewer := dial(t, e.config(t, kvsproto.RoleViewer, "viewer-1"))

	if err := viewer.SendOffer(ctx, kvsproto.SessionDescription{SDP: "v=0 offer"}, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := viewer.SendICECandidate(ctx, cand("candidate:1 1 udp 1 127.0.0.1 5000 typ host"), "", ""); err != nil {
		t.Fatal(err)
	}
	ev := next(t, master)
	if ev.Type != kvsproto.MessageSDPOffer || ev.SenderClientID != "viewer-1" || ev.SDP.Type != "offer" || ev.SDP.SDP != "v=0 offer" {
		t.Fatalf("master got %+v", ev)
	}
	ev = next(t, master)
	if ev.Type != kvsproto.MessageICECandidate || ev.SenderClientID != "viewer-1" || ev.Candidate.Candidate != "candidate:1 1 udp 1 127.0.0.1 5000 typ host" || *ev.Candidate.SDPMid != "0" {
		t.Fatalf("master got %+v", ev)
	}

	if err := master.SendAnswer(ctx, kvsproto.SessionDescription{SDP: "v=0 answer"}, "viewer-1", signaling.NewCorrelationID()); err != nil {
		t.Fatal(err)
	}
	if err := master.SendICECandidate(ctx, cand("candidate:2 1 udp 1 127.0.0.1 6000 typ host"), "viewer-1", ""); err != nil {
		t.Fatal(err)
	}
	ev = next(t, viewer)
	if ev.Type != kvsproto.MessageSDPAnswer || !ev.FromMaster() || ev.SDP.SDP != "v=0 answer" {
		t.Fatalf("viewer got %+v", ev)
	}
	ev = next(t, viewer)
	if ev.Type != kvsproto.MessageICECandidate || !ev.FromMaster() || ev.Candidate.Candidate != "candidate:2 1 udp 1 127.0.0.1 6000 typ host" {
		t.Fatalf("viewer got %+v", ev)
	}

	// The master may send an offer to a viewer too.
	if err := master.SendOffer(ctx, kvsproto.SessionDescription{SDP: "v=0 restart"}, "viewer-1", ""); err != nil {
		t.Fatal(err)
	}
	if ev = next(t, viewer); ev.Type != kvsproto.MessageSDPOffer || ev.SDP.SDP != "v=0 restart" {
		t.Fatalf("viewer got %+v", ev)
	}
}

func TestEmulatorEarlyCandidates(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	ctx := context.Background()
	for _, hold := range []bool{true, false} {
		t.Run(fmt.Sprint("hold=", hold), func(t *testing.T) {
			mcfg := e.config(t, kvsproto.RoleMaster, "")
			mcfg.HoldEarlyCandidates = hold
			master := dial(t, mcfg)
			id := fmt.Sprint("viewer-hold-", hold)
			viewer := dial(t, e.config(t, kvsproto.RoleViewer, id))
			// Candidates before the offer (the order a trickling peer can
			// produce when the offer is slow to send).
			for i := range 2 {
				if err := viewer.SendICECandidate(ctx, cand(fmt.Sprint("c", i)), "", ""); err != nil {
					t.Fatal(err)
				}
			}
			if err := viewer.SendOffer(ctx, kvsproto.SessionDescription{SDP: "v=0"}, "", ""); err != nil {
				t.Fatal(err)
			}
			if err := viewer.SendICECandidate(ctx, cand("c2"), "", ""); err != nil {
				t.Fatal(err)
			}
			var got []string
			for range 4 {
				ev := next(t, master)
				if ev.SenderClientID != id {
					t.Fatalf("sender %q", ev.SenderClientID)
				}
				if ev.Candidate != nil {
					got = append(got, ev.Candidate.Candidate)
				} else {
					got = append(got, string(ev.Type))
				}
			}
			want := "[c0 c1 SDP_OFFER c2]"
			if hold {
				want = "[SDP_OFFER c0 c1 c2]"
			}
			if fmt.Sprint(got) != want {
				t.Fatalf("got %v, want %v", got, want)
			}
			master.Close()
			viewer.Close()
		})
	}
}

func TestEmulatorHandshakeErrors(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	ctx := context.Background()

	// Wrong secret: 403, fast.
	cfg := e.config(t, kvsproto.RoleViewer, "viewer-1")
	bad := e.s.Credentials()
	bad.SecretAccessKey = "not-the-secret"
	cfg.Credentials = signaling.StaticCredentials(bad)
	start := time.Now()
	_, err := signaling.Dial(ctx, cfg)
	var he *signaling.HandshakeError
	if !errors.As(err, &he) || !errors.Is(err, signaling.ErrForbidden) {
		t.Fatalf("wrong secret: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("wrong secret took %v", d)
	}

	// Unknown channel: 404.
	cfg = e.config(t, kvsproto.RoleViewer, "viewer-1")
	a, _ := kvsproto.ParseChannelARN(e.arn)
	a.Name = "no-such-channel"
	cfg.ChannelARN = a.String()
	if _, err := signaling.Dial(ctx, cfg); !errors.As(err, &he) || !errors.Is(err, signaling.ErrNotFound) {
		t.Fatalf("unknown channel: %v", err)
	}

	// Invalid client id: rejected locally.
	cfg = e.config(t, kvsproto.RoleViewer, "AWS_reserved")
	if _, err := signaling.Dial(ctx, cfg); !errors.Is(err, kvsproto.ErrInvalid) || errors.As(err, &he) {
		t.Fatalf("invalid client id: %v", err)
	}

	// Throttled connect.
	if _, err := e.s.Inject(emulator.Fault{Kind: emulator.FaultRefuseThrottle, Channel: "demo", Count: 1}); err != nil {
		t.Fatal(err)
	}
	cfg = e.config(t, kvsproto.RoleViewer, "viewer-1")
	if _, err := signaling.Dial(ctx, cfg); !errors.As(err, &he) || !errors.Is(err, signaling.ErrThrottled) || errors.Is(err, signaling.ErrChannelFull) {
		t.Fatalf("throttled: %v", err)
	}
}

func TestEmulatorChannelFull(t *testing.T) {
	e := startEmulator(t, emulator.Config{DisableQuotas: true})
	for i := range kvsproto.MaxViewersPerChannel {
		dial(t, e.config(t, kvsproto.RoleViewer, fmt.Sprint("viewer-", i)))
	}
	_, err := signaling.Dial(context.Background(), e.config(t, kvsproto.RoleViewer, "viewer-11"))
	var he *signaling.HandshakeError
	if !errors.As(err, &he) || !errors.Is(err, signaling.ErrChannelFull) || errors.Is(err, signaling.ErrThrottled) {
		t.Fatalf("11th viewer: %v", err)
	}
}

func TestEmulatorGoAwayAndReconnectICE(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	viewer := dial(t, e.config(t, kvsproto.RoleViewer, "viewer-1"))
	if n, err := e.s.Inject(emulator.Fault{Kind: emulator.FaultReconnectICE, Channel: "demo", Target: "viewer"}); err != nil || n != 1 {
		t.Fatalf("inject: %d %v", n, err)
	}
	if ev := next(t, viewer); ev.Type != kvsproto.MessageReconnectICEServer {
		t.Fatalf("got %+v", ev)
	}
	if n, err := e.s.Inject(emulator.Fault{Kind: emulator.FaultGoAway, Channel: "demo", Target: "viewer", Grace: 100 * time.Millisecond}); err != nil || n != 1 {
		t.Fatalf("inject: %d %v", n, err)
	}
	if ev := next(t, viewer); ev.Type != kvsproto.MessageGoAway {
		t.Fatalf("got %+v", ev)
	}
	// The service closes the connection after the grace period.
	err := waitDone(t, viewer)
	var ce *signaling.CloseError
	if !errors.As(err, &ce) && !errors.Is(err, signaling.ErrConnectionLost) {
		t.Fatalf("after GO_AWAY: %v", err)
	}
}

func TestEmulatorAbruptClose(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	master := dial(t, e.config(t, kvsproto.RoleMaster, ""))
	if n, err := e.s.Inject(emulator.Fault{Kind: emulator.FaultClose, Channel: "demo", Target: "master"}); err != nil || n != 1 {
		t.Fatalf("inject: %d %v", n, err)
	}
	if err := waitDone(t, master); !errors.Is(err, signaling.ErrConnectionLost) {
		t.Fatalf("abrupt close: %v", err)
	}
	if err := master.SendAnswer(context.Background(), kvsproto.SessionDescription{SDP: "v=0"}, "v", ""); !errors.Is(err, signaling.ErrConnectionLost) {
		t.Fatalf("send after loss: %v", err)
	}
}

func TestEmulatorStatusResponse(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	ctx := context.Background()
	viewer := dial(t, e.config(t, kvsproto.RoleViewer, "viewer-1"))
	// Far over the 5 offers/s quota: the excess ones carry correlation ids,
	// so the service reports them.
	for range 30 {
		if err := viewer.SendOffer(ctx, kvsproto.SessionDescription{SDP: "v=0"}, "", signaling.NewCorrelationID()); err != nil {
			t.Fatal(err)
		}
	}
	ev := next(t, viewer)
	if ev.Type != kvsproto.MessageStatusResponse || ev.Status.CorrelationID == "" || ev.Status.Success || ev.Status.StatusCode.Int() != 400 {
		t.Fatalf("got %+v / %+v", ev, ev.Status)
	}
}

func TestEmulatorClockSkew(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	cfg := e.config(t, kvsproto.RoleViewer, "viewer-1")
	e.s.SetClockSkew(10 * time.Minute)
	if _, err := signaling.Dial(context.Background(), cfg); !errors.Is(err, signaling.ErrForbidden) {
		t.Fatalf("skewed, uncorrected: %v", err)
	}
	cfg.Now = func() time.Time { return time.Now().Add(10 * time.Minute) }
	c := dial(t, cfg)
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
}

func TestEmulatorKeepaliveAndClose(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	cfg := e.config(t, kvsproto.RoleMaster, "")
	cfg.PingInterval = 20 * time.Millisecond
	cfg.PongTimeout = 5 * time.Second
	c, err := signaling.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
		t.Fatalf("ended: %v", c.Err())
	case <-time.After(300 * time.Millisecond):
	}
	if err := c.Close(); err != nil || !errors.Is(c.Err(), signaling.ErrClosed) {
		t.Fatalf("Close = %v, Err = %v", err, c.Err())
	}
	e.http.Transport.(*http.Transport).CloseIdleConnections()
	e.s.Close()
	goleak.VerifyNone(t)
}
