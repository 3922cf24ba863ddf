package resilience

// One test per row of docs/RESILIENCE.md. Each reproduces the cause
// against the emulator with real clients, checks what the viewer (or the
// master) does about it within a time bound, and, where kvsrtc doctor can
// see the cause from outside, that doctor names it.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/doctor"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/sigv4"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// This file is over 500 lines on purpose: it is the resilience matrix of
// docs/RESILIENCE.md, one test per row in the matrix's order, so that a
// row and its test are found in one place.

// runDoctor runs kvsrtc doctor's checks with short waits.
func runDoctor(t testing.TB, cfg doctor.Config) *doctor.Report {
	t.Helper()
	cfg.LoopbackOnly = true
	if cfg.Channel == "" {
		cfg.Channel = "cam"
	}
	if cfg.AnswerWait == 0 {
		cfg.AnswerWait = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, "doctor")
	}
	rep, err := doctor.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// wantVerdict asserts that doctor's verdict names cause, found by check.
func wantVerdict(t testing.TB, rep *doctor.Report, cause viewer.Cause, check string) {
	t.Helper()
	if rep.OK() || rep.Verdict.Cause != cause || rep.Verdict.Check != check {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("doctor's verdict: cause %q by check %q, want %q by %q; report:\n%s", rep.Verdict.Cause, rep.Verdict.Check, cause, check, b.String())
	}
	if rep.Verdict.Advice == "" {
		t.Fatalf("the verdict says nothing about what to do: %+v", rep.Verdict)
	}
	if n, _ := doctor.SeedReason(cause); n != rep.Verdict.SeedReason {
		t.Fatalf("seed reason %d, want %d", rep.Verdict.SeedReason, n)
	}
}

// failsFast runs a viewer that must fail with cause on its first attempt
// within bound.
func failsFast(t *testing.T, cfg viewer.Config, cause viewer.Cause, bound time.Duration) *viewer.SessionError {
	t.Helper()
	start := time.Now()
	v := runViewer(t, cfg)
	se := sessionError(t, v.wait(t, 20*time.Second*slack), cause)
	within(t, bound, "failing with "+string(cause), start)
	if se.Attempts != 1 {
		t.Fatalf("%d attempts, want 1 (retrying cannot fix %s); events:\n%s", se.Attempts, cause, v.history())
	}
	return se
}

// Row 1: wrong credentials or region.
func TestRow01WrongCredentialsOrRegion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	for _, c := range []struct {
		name string
		o    ctlOpts
	}{
		{"wrong secret key", ctlOpts{secret: "not-the-secret"}},
		{"unknown access key", ctlOpts{akid: "AKIDUNKNOWNKEY00"}},
		{"wrong region", ctlOpts{region: "eu-west-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctl := e.control(t, c.o)
			se := failsFast(t, viewerConfig(ctl), viewer.CauseCredentials, 2*time.Second*slack)
			if !errors.Is(se, control.ErrAccessDenied) {
				t.Fatalf("%v does not match control.ErrAccessDenied", se)
			}
			wantVerdict(t, runDoctor(t, doctor.Config{Control: ctl}), viewer.CauseCredentials, doctor.CheckCredentials)
		})
	}
}

// Row 2: the channel does not exist, is being deleted, or is deleted
// while streaming.
func TestRow02ChannelMissingOrDeleting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	t.Run("unknown name", func(t *testing.T) {
		cfg := viewerConfig(e.ctl)
		cfg.Channel = "no-such-channel"
		se := failsFast(t, cfg, viewer.CauseChannelNotFound, 2*time.Second*slack)
		if !errors.Is(se, control.ErrChannelNotFound) {
			t.Fatalf("%v does not match control.ErrChannelNotFound", se)
		}
		rep := runDoctor(t, doctor.Config{Control: e.ctl, Channel: "no-such-channel"})
		wantVerdict(t, rep, viewer.CauseChannelNotFound, doctor.CheckChannel)
		if ev := rep.Check(doctor.CheckChannel).Evidence; !strings.Contains(fmt.Sprint(ev), "cam") {
			t.Fatalf("doctor does not list the existing channel: %v", ev)
		}
	})
	t.Run("unknown ARN", func(t *testing.T) {
		cfg := viewerConfig(e.ctl)
		cfg.Channel = strings.Replace(e.arn, "channel/cam/", "channel/cam/9", 1)
		failsFast(t, cfg, viewer.CauseChannelNotFound, 2*time.Second*slack)
	})
	t.Run("being deleted", func(t *testing.T) {
		px := newCtlProxy(t, e)
		px.setDeleting(true)
		ctl := e.control(t, ctlOpts{endpoint: px.URL()})
		se := failsFast(t, viewerConfig(ctl), viewer.CauseChannelNotFound, 2*time.Second*slack)
		if !errors.Is(se, control.ErrChannelDeleting) {
			t.Fatalf("%v does not match control.ErrChannelDeleting", se)
		}
		wantVerdict(t, runDoctor(t, doctor.Config{Control: ctl}), viewer.CauseChannelNotFound, doctor.CheckChannel)
	})
	t.Run("deleted while streaming", func(t *testing.T) {
		arn, err := e.srv.CreateChannel(t.Context(), "doomed", 0)
		if err != nil {
			t.Fatal(err)
		}
		startMaster(t, e.ctl, func(c *master.Config) { c.Channel = "doomed" })
		cfg := viewerConfig(e.ctl)
		cfg.Channel = "doomed"
		v := runViewer(t, cfg)
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		start := time.Now()
		if err := e.ctl.DeleteChannel(t.Context(), arn); err != nil {
			t.Fatal(err)
		}
		sessionError(t, v.wait(t, 20*time.Second*slack), viewer.CauseChannelNotFound)
		within(t, 3*time.Second*slack, "failing after the deletion", start)
	})
}

// Row 3: client ids outside the rules fail before any network traffic;
// the service enforces the same rules.
func TestRow03ClientIDRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	bad := []string{"has space", "AWS_viewer", "aws_lowercase", "slash/id", "colon:id", "quote\"id", strings.Repeat("a", 257)}
	for _, id := range bad {
		cfg := viewerConfig(e.ctl)
		cfg.ClientID = id
		_, err := viewer.New(cfg)
		var se *viewer.SessionError
		if !errors.As(err, &se) || se.Cause != viewer.CauseClientID || !errors.Is(err, kvsproto.ErrInvalid) {
			t.Errorf("client id %.20q: viewer.New returned %v, want a client-id SessionError", id, err)
		}
	}
	cfg := viewerConfig(e.ctl)
	cfg.ClientIDPrefix = "AWS_"
	if _, err := viewer.New(cfg); !errors.Is(err, kvsproto.ErrInvalid) {
		t.Errorf("prefix AWS_: %v", err)
	}
	// The service refuses them too (a presigned URL built by hand).
	creds := e.srv.Credentials()
	for _, id := range bad[:3] {
		u, err := sigv4.PresignURL(e.srv.WSSEndpoint(kvsproto.RoleViewer), map[string]string{"X-Amz-ChannelARN": e.arn, "X-Amz-ClientId": id},
			creds, e.srv.Region(), time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		c, resp, err := websocket.Dial(t.Context(), u, nil)
		if err == nil {
			_ = c.CloseNow()
			t.Fatalf("the service accepted client id %q", id)
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("X-Amzn-Errortype"), kvsproto.ErrCodeInvalidArgument) {
			t.Fatalf("client id %q: %v %v", id, resp, err)
		}
	}
	rep := runDoctor(t, doctor.Config{Control: e.ctl, ClientID: "AWS_reserved"})
	wantVerdict(t, rep, viewer.CauseClientID, doctor.CheckClientID)
}

// Row 4: a newer connection with the same client id displaces the older
// one; the displaced viewer continues with a fresh client id instead of
// taking the id back (which would displace the other in turn, forever).
func TestRow04ClientIDReused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	startMaster(t, e.ctl, nil)
	cfg := viewerConfig(e.ctl)
	cfg.ClientID = "shared-id"
	a := runViewer(t, cfg)
	a.waitStreaming(t, 20*time.Second*slack, time.Time{})
	start := time.Now()
	b := runViewer(t, cfg)
	b.waitStreaming(t, 20*time.Second*slack, time.Time{})
	ev := a.waitEvent(t, 10*time.Second*slack, start, "client-id-reuse", hasCause(viewer.CauseClientIDReuse))
	t.Logf("displaced viewer: %s", ev.Detail)
	a.waitStreaming(t, 20*time.Second*slack, start)
	within(t, 15*time.Second*slack, "both viewers streaming again", start)
	time.Sleep(2 * time.Second) // no ping-pong
	if n := a.count(hasCause(viewer.CauseClientIDReuse)); n != 1 {
		t.Fatalf("the first viewer was displaced %d times; events:\n%s", n, a.history())
	}
	if n := b.count(hasCause(viewer.CauseClientIDReuse)); n != 0 {
		t.Fatalf("the second viewer was displaced %d times; events:\n%s", n, b.history())
	}
	evs := a.snapshot()
	if last := evs[len(evs)-1].ClientID; last == "shared-id" || last == "" {
		t.Fatalf("the displaced viewer streams as %q, want a fresh id", last)
	}

	// doctor: a viewer that takes the doctor's client id over while it
	// waits for an answer (no master on this channel) is named.
	if _, err := e.srv.CreateChannel(t.Context(), "quiet", 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan *doctor.Report, 1)
	go func() {
		rep, _ := doctor.Run(context.Background(), doctor.Config{Channel: "quiet", Control: e.ctl, ClientID: "doctor-id", AnswerWait: 10 * time.Second, LoopbackOnly: true})
		done <- rep
	}()
	ch, err := e.ctl.ResolveChannel(t.Context(), "quiet")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := e.ctl.Endpoints(t.Context(), ch.ARN, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the doctor is waiting for its answer
	other, err := signaling.Dial(t.Context(), signaling.Config{Endpoint: ep.WSS, ChannelARN: ch.ARN, Role: kvsproto.RoleViewer, ClientID: "doctor-id",
		Region: e.ctl.Region(), Credentials: e.ctl.SigV4Credentials, Now: e.ctl.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	rep := <-done
	wantVerdict(t, rep, viewer.CauseClientIDReuse, doctor.CheckMaster)
}

// Row 5: connect throttling and API throttling are retried with backoff;
// the viewer gets video.
func TestRow05Throttling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	startMaster(t, e.ctl, nil).waitReady(t)
	t.Run("connects", func(t *testing.T) {
		e.inject(t, "throttle,channel=cam,count=2,target=viewer")
		start := time.Now()
		v := runViewer(t, viewerConfig(e.ctl))
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		within(t, 6*time.Second*slack, "video despite two refused connects", start)
		if n := v.count(hasCause(viewer.CauseThrottled)); n < 2 {
			t.Fatalf("%d throttled retries; events:\n%s", n, v.history())
		}
	})
	t.Run("control plane", func(t *testing.T) {
		e.inject(t, "throttle-api,target=DescribeSignalingChannel,count=2")
		e.inject(t, "throttle-api,target=GetIceServerConfig,count=1")
		start := time.Now()
		v := runViewer(t, viewerConfig(e.ctl))
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		within(t, 6*time.Second*slack, "video despite throttled API calls", start)
	})
	t.Run("doctor", func(t *testing.T) {
		e.inject(t, "throttle,channel=cam,count=1,target=viewer")
		wantVerdict(t, runDoctor(t, doctor.Config{Control: e.ctl}), viewer.CauseThrottled, doctor.CheckSignaling)
	})
}

// turnUDP returns the emulator's TURN UDP address.
func turnUDP(t testing.TB, e *env) string {
	t.Helper()
	ice, err := e.ctl.ICEServers(t.Context(), e.arn, e.srv.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ice.Servers {
		for _, u := range s.URLs {
			if rest, ok := strings.CutPrefix(u, "turn:"); ok && strings.HasSuffix(u, "?transport=udp") {
				return strings.TrimSuffix(rest, "?transport=udp")
			}
		}
	}
	t.Fatal("no TURN UDP URI")
	return ""
}

// relayThroughNAT returns a control client whose ICE servers point at a
// NAT in front of the emulator's TURN server.
func relayThroughNAT(t testing.TB, e *env) (*control.Client, *turnNAT, *ctlProxy) {
	t.Helper()
	nat := newTURNNAT(t, turnUDP(t, e))
	px := newCtlProxy(t, e)
	px.setTURN(nat.addr())
	return e.control(t, ctlOpts{endpoint: px.URL()}), nat, px
}

// Row 6: the network changes while streaming. The viewer (relay only,
// through a NAT whose mappings are cut) restarts ICE over signaling and
// keeps its peer connection; when the restart fails it reconnects.
func TestRow06NetworkChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	m := startMaster(t, e.ctl, nil)
	ctl, nat, _ := relayThroughNAT(t, e)
	cfg := viewerConfig(ctl)
	cfg.ForceRelay = true

	t.Run("ICE restart keeps the session", func(t *testing.T) {
		v := runViewer(t, cfg)
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		left := m.count(master.EventViewerLeft)
		start := time.Now()
		nat.cut()
		v.waitEvent(t, 15*time.Second*slack, start, "an ICE restart", hasCause(viewer.CauseNetworkChange))
		v.waitStreaming(t, 20*time.Second*slack, time.Now())
		within(t, 12*time.Second*slack, "video after the network change", start)
		if sum := v.s.Summary(); sum.Attempts != 1 || sum.Recoveries != 0 {
			t.Fatalf("the viewer reconnected (%+v); an ICE restart should have kept the peer connection; events:\n%s", sum, v.history())
		}
		if m.count(master.EventViewerRestarted) < 1 || m.count(master.EventViewerLeft) != left {
			t.Fatalf("the master did not keep the session: restarted %d, left %d", m.count(master.EventViewerRestarted), m.count(master.EventViewerLeft)-left)
		}
		_ = v.stop()
	})
	t.Run("a failed restart reconnects", func(t *testing.T) {
		v := runViewer(t, cfg)
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		e.inject(t, "drop,channel=cam,action=SDP_ANSWER,count=1") // the restart's answer is lost
		start := time.Now()
		nat.cut()
		v.waitStreaming(t, 30*time.Second*slack, time.Now().Add(time.Second))
		within(t, 20*time.Second*slack, "video after a failed ICE restart", start)
		if sum := v.s.Summary(); sum.Recoveries != 1 {
			t.Fatalf("recoveries %d, want 1 full reconnect; events:\n%s", sum.Recoveries, v.history())
		}
	})
}

// rawMaster is a misbehaving master: it answers every offer with answer(offer).
func rawMaster(t testing.TB, e *env, channel string, answer func(offer string) string) {
	t.Helper()
	ch, err := e.ctl.ResolveChannel(t.Context(), channel)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := e.ctl.Endpoints(t.Context(), ch.ARN, kvsproto.RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	c, err := signaling.Dial(t.Context(), signaling.Config{Endpoint: ep.WSS, ChannelARN: ch.ARN, Role: kvsproto.RoleMaster,
		Region: e.ctl.Region(), Credentials: e.ctl.SigV4Credentials, Now: e.ctl.Now})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range c.Events() {
			if ev.Type == kvsproto.MessageSDPOffer && ev.SDP != nil {
				_ = c.SendAnswer(context.Background(), kvsproto.SessionDescription{Type: "answer", SDP: answer(ev.SDP.SDP)}, ev.SenderClientID, signaling.NewCorrelationID())
			}
		}
	}()
	t.Cleanup(func() { _ = c.Close(); wg.Wait() })
}

// Row 7: the viewer never sends a malformed offer, and says so when the
// master cannot use it (no answer, a declined video section, or the
// service's STATUS_RESPONSE; see row 14).
func TestRow07UnanswerableOffer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	startMaster(t, e.ctl, nil).waitReady(t)
	t.Run("offers are well formed", func(t *testing.T) {
		relay := newSigRelay(t)
		var mu sync.Mutex
		var offers []string
		relay.setOnOffer(func(_ *relayConn, m kvsproto.ClientMessage) []byte {
			var sd kvsproto.SessionDescription
			if err := kvsproto.DecodePayload(m.MessagePayload, &sd); err != nil {
				t.Errorf("undecodable offer payload: %v", err)
			}
			mu.Lock()
			offers = append(offers, sd.SDP)
			mu.Unlock()
			if m.CorrelationID == "" || len(m.MessagePayload) > kvsproto.MaxMessagePayloadLen {
				t.Errorf("offer without correlation id or too large (%d)", len(m.MessagePayload))
			}
			return nil
		})
		for _, audio := range []bool{false, true} {
			cfg := viewerConfig(e.ctl)
			cfg.HTTPClient, cfg.Audio, cfg.Duration = relay.HTTPClient(), audio, 300*time.Millisecond
			v := runViewer(t, cfg)
			if err := v.wait(t, 30*time.Second*slack); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(offers) < 2 {
			t.Fatalf("%d offers seen", len(offers))
		}
		for _, sdp := range offers {
			for _, want := range []string{"m=video 9 ", "a=recvonly", "H264/90000", "VP8/90000", "a=ice-ufrag:", "a=fingerprint:", "a=setup:actpass"} {
				if !strings.Contains(sdp, want) {
					t.Fatalf("offer lacks %q:\n%s", want, sdp)
				}
			}
		}
	})
	t.Run("a codec the master cannot send", func(t *testing.T) {
		cfg := viewerConfig(e.ctl)
		cfg.VideoCodecs = []string{"VP8"} // the master sends H.264
		cfg.Retry.MaxAttempts, cfg.Retry.AnswerTimeout = 2, time.Second
		start := time.Now()
		v := runViewer(t, cfg)
		se := sessionError(t, v.wait(t, 20*time.Second*slack), viewer.CauseNoAnswer)
		if !errors.Is(se, viewer.ErrAnswerTimeout) {
			t.Fatal(se)
		}
		within(t, 4*time.Second*slack, "giving up", start)
		rep := runDoctor(t, doctor.Config{Control: e.ctl, VideoCodecs: []string{"VP8"}, AnswerWait: 2 * time.Second})
		wantVerdict(t, rep, viewer.CauseBadOffer, doctor.CheckMaster)
	})
	t.Run("the master declines the video", func(t *testing.T) {
		if _, err := e.srv.CreateChannel(t.Context(), "decliner", 0); err != nil {
			t.Fatal(err)
		}
		rawMaster(t, e, "decliner", func(string) string {
			return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=inactive\r\n"
		})
		cfg := viewerConfig(e.ctl)
		cfg.Channel = "decliner"
		failsFast(t, cfg, viewer.CauseBadOffer, 2*time.Second*slack)
		wantVerdict(t, runDoctor(t, doctor.Config{Control: e.ctl, Channel: "decliner"}), viewer.CauseBadOffer, doctor.CheckMaster)
	})
}

// Row 8: the channel's viewer limit is reached.
func TestRow08ChannelFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	startMaster(t, e.ctl, nil).waitReady(t)
	t.Run("fails fast", func(t *testing.T) {
		e.inject(t, "full,channel=cam,count=1")
		se := failsFast(t, viewerConfig(e.ctl), viewer.CauseChannelFull, 2*time.Second*slack)
		if !errors.Is(se, signaling.ErrChannelFull) {
			t.Fatal(se)
		}
	})
	t.Run("waits when asked", func(t *testing.T) {
		e.inject(t, "full,channel=cam,count=5") // more than MaxAttempts
		cfg := viewerConfig(e.ctl)
		cfg.WaitForSlot = true
		start := time.Now()
		v := runViewer(t, cfg)
		v.waitStreaming(t, 30*time.Second*slack, time.Time{})
		within(t, 10*time.Second*slack, "video once a slot freed", start)
		if n := v.count(hasCause(viewer.CauseChannelFull)); n != 5 {
			t.Fatalf("%d channel-full retries, want 5; events:\n%s", n, v.history())
		}
	})
	t.Run("bounded wait", func(t *testing.T) {
		e.inject(t, "full,channel=cam,count=1000")
		cfg := viewerConfig(e.ctl)
		cfg.WaitForSlot, cfg.Retry.TotalBudget = true, 3*time.Second
		start := time.Now()
		v := runViewer(t, cfg)
		se := sessionError(t, v.wait(t, 20*time.Second*slack), viewer.CauseChannelFull)
		if !errors.Is(se, viewer.ErrBudget) {
			t.Fatal(se)
		}
		within(t, 4*time.Second*slack, "giving up at the budget", start)
	})
	t.Run("doctor", func(t *testing.T) {
		e.inject(t, "full,channel=cam,count=1")
		wantVerdict(t, runDoctor(t, doctor.Config{Control: e.ctl}), viewer.CauseChannelFull, doctor.CheckSignaling)
	})
}

// Row 9: expired ICE server credentials.
func TestRow09ExpiredICEServers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true, ICETTL: 4 * time.Second})
	startMaster(t, e.ctl, nil).waitReady(t)
	t.Run("a refused allocation refreshes", func(t *testing.T) {
		// The cache holds credentials the TURN server no longer accepts.
		cache := control.NewICECache(e.ctl)
		if _, err := cache.Get(t.Context(), e.arn, kvsproto.RoleViewer, e.srv.URL(), ""); err != nil {
			t.Fatal(err)
		}
		e.srv.ExpireTURNCredentials()
		cfg := viewerConfig(e.ctl)
		cfg.ICECache, cfg.ForceRelay = cache, true
		start := time.Now()
		v := runViewer(t, cfg)
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		within(t, 8*time.Second*slack, "video over a relay with refreshed credentials", start)
		if n := v.count(hasCause(viewer.CauseICEExpired)); n != 1 || v.s.Summary().Attempts != 2 {
			t.Fatalf("want one ice-expired retry, got %d (%+v); events:\n%s", n, v.s.Summary(), v.history())
		}
	})
	t.Run("an ICE restart after the TTL uses fresh credentials", func(t *testing.T) {
		ctl, nat, px := relayThroughNAT(t, e)
		cfg := viewerConfig(ctl)
		cfg.ForceRelay = true
		v := runViewer(t, cfg)
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		fetched := px.count(kvsproto.PathGetIceServerConfig)
		time.Sleep(5 * time.Second) // the session's TURN credentials expire
		start := time.Now()
		nat.cut()
		v.waitEvent(t, 15*time.Second*slack, start, "an ICE restart", hasCause(viewer.CauseNetworkChange))
		v.waitStreaming(t, 20*time.Second*slack, time.Now())
		within(t, 12*time.Second*slack, "video after the restart", start)
		if sum := v.s.Summary(); sum.Attempts != 1 || sum.Recoveries != 0 {
			t.Fatalf("the restart did not recover (%+v); events:\n%s", sum, v.history())
		}
		if px.count(kvsproto.PathGetIceServerConfig) == fetched {
			t.Fatal("the restart did not fetch fresh ICE servers")
		}
	})
	t.Run("doctor reports the lifetime", func(t *testing.T) {
		rep := runDoctor(t, doctor.Config{Control: e.ctl})
		if !rep.OK() || !strings.Contains(fmt.Sprint(rep.Check(doctor.CheckICEServers).Evidence), "4s") ||
			rep.Check(doctor.CheckTURN).Status != doctor.StatusPass {
			var b strings.Builder
			rep.WriteText(&b)
			t.Fatal(b.String())
		}
	})
}

// Row 10: the master is not connected, or goes away mid-session.
func TestRow10MasterAbsentOrGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	t.Run("absent", func(t *testing.T) {
		cfg := viewerConfig(e.ctl)
		cfg.Retry.MaxAttempts, cfg.Retry.AnswerTimeout = 2, time.Second
		start := time.Now()
		v := runViewer(t, cfg)
		se := sessionError(t, v.wait(t, 20*time.Second*slack), viewer.CauseNoAnswer)
		if !errors.Is(se, viewer.ErrAnswerTimeout) || se.Attempts != 2 {
			t.Fatal(se)
		}
		within(t, 4*time.Second*slack, "giving up", start)
		wantVerdict(t, runDoctor(t, doctor.Config{Control: e.ctl, AnswerWait: time.Second}), viewer.CauseNoAnswer, doctor.CheckMaster)
	})
	t.Run("goes away and comes back", func(t *testing.T) {
		m := startMaster(t, e.ctl, nil)
		v := runViewer(t, viewerConfig(e.ctl))
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		start := time.Now()
		m.stop()
		v.waitEvent(t, 5*time.Second*slack, start, "noticing the master left", hasCause(viewer.CauseMasterGone))
		within(t, 4*time.Second*slack, "noticing the master left", start)
		startMaster(t, e.ctl, nil)
		v.waitStreaming(t, 30*time.Second*slack, time.Now())
		if sum := v.s.Summary(); sum.Recoveries < 1 {
			t.Fatalf("%+v", sum)
		}
	})
	t.Run("goes away for good", func(t *testing.T) {
		m := startMaster(t, e.ctl, nil)
		cfg := viewerConfig(e.ctl)
		cfg.Retry.MaxAttempts, cfg.Retry.AnswerTimeout = 2, time.Second
		v := runViewer(t, cfg)
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		start := time.Now()
		m.stop()
		sessionError(t, v.wait(t, 30*time.Second*slack), viewer.CauseMasterGone)
		within(t, 8*time.Second*slack, "failing with master-gone", start)
	})
}

// Row 11: clock skew between client and service.
func TestRow11ClockSkew(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	t.Run("from the start", func(t *testing.T) {
		e.srv.SetClockSkew(10 * time.Minute)
		defer e.srv.SetClockSkew(0)
		ctl := e.control(t, ctlOpts{}) // a fresh client: no offset measured yet
		startMaster(t, e.control(t, ctlOpts{}), nil)
		v := runViewer(t, viewerConfig(ctl))
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		if v.s.Summary().Attempts != 1 {
			t.Fatalf("events:\n%s", v.history())
		}
		rep := runDoctor(t, doctor.Config{Control: e.control(t, ctlOpts{})})
		wantVerdict(t, rep, viewer.CauseClockSkew, doctor.CheckClock)
		if rep.Check(doctor.CheckCredentials).Status != doctor.StatusPass || rep.Check(doctor.CheckMedia).Status != doctor.StatusPass {
			t.Fatal("with the offset corrected, the other checks should pass")
		}
	})
	t.Run("appears mid-session", func(t *testing.T) {
		startMaster(t, e.ctl, nil)
		relay := newSigRelay(t)
		cfg := viewerConfig(e.control(t, ctlOpts{}))
		cfg.HTTPClient = relay.HTTPClient()
		v := runViewer(t, cfg)
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		e.srv.SetClockSkew(-10 * time.Minute)
		defer e.srv.SetClockSkew(0)
		v.gaps.mark()
		before := relay.count()
		e.inject(t, "goaway,channel=cam,target=viewer,grace=1s")
		waitFor(t, 10*time.Second*slack, "a renewed signaling connection", func() bool { return relay.count() > before })
		time.Sleep(1500 * time.Millisecond)
		if gap, n := v.gaps.result(); gap > time.Second*slack || n == 0 {
			t.Fatalf("media interrupted: gap %v, %d frames; events:\n%s", gap, n, v.history())
		}
		if v.s.Summary().Recoveries != 0 {
			t.Fatalf("events:\n%s", v.history())
		}
	})
}

// Row 12: GO_AWAY, RECONNECT_ICE_SERVER, the idle close and the 1-hour cap
// renew the signaling connection without interrupting media.
func TestRow12SignalingRenewal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		cfg   emulator.Config
		fault string
		vmod  func(*viewer.Config)
		wait  time.Duration
		min   int // renewals at least
	}{
		{name: "GO_AWAY", fault: "goaway,channel=cam,target=viewer,grace=1s", wait: 2 * time.Second, min: 1},
		{name: "RECONNECT_ICE_SERVER", fault: "reconnect-ice,channel=cam,target=viewer", wait: 2 * time.Second},
		{name: "idle timeout", cfg: emulator.Config{IdleTimeout: time.Second}, wait: 4 * time.Second, min: 2},
		{name: "connection cap", cfg: emulator.Config{MaxConnDuration: 2 * time.Second, GoAwayGrace: time.Second}, wait: 5 * time.Second, min: 2},
		{name: "proactive renewal", vmod: func(c *viewer.Config) { c.SignalingRenewAfter = time.Second }, wait: 4 * time.Second, min: 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.cfg.DisableQuotas = true
			e := newEnv(t, c.cfg)
			startMaster(t, e.ctl, nil)
			relay := newSigRelay(t)
			px := newCtlProxy(t, e)
			cfg := viewerConfig(e.control(t, ctlOpts{endpoint: px.URL()}))
			cfg.HTTPClient = relay.HTTPClient()
			if c.vmod != nil {
				c.vmod(&cfg)
			}
			v := runViewer(t, cfg)
			v.waitStreaming(t, 20*time.Second*slack, time.Time{})
			before, fetched := relay.count(), px.count(kvsproto.PathGetIceServerConfig)
			v.gaps.mark()
			if c.fault != "" {
				e.inject(t, c.fault)
			}
			time.Sleep(c.wait)
			gap, n := v.gaps.result()
			renewals := relay.count() - before
			t.Logf("%d signaling renewals, largest frame gap %v over %d frames", renewals, gap.Round(time.Millisecond), n)
			if renewals < c.min {
				t.Fatalf("%d renewals, want at least %d; events:\n%s", renewals, c.min, v.history())
			}
			if gap > time.Second*slack || n < 10 || v.s.Summary().Recoveries != 0 {
				t.Fatalf("media interrupted: gap %v, %d frames, %+v; events:\n%s", gap, n, v.s.Summary(), v.history())
			}
			if c.name == "RECONNECT_ICE_SERVER" && px.count(kvsproto.PathGetIceServerConfig) == fetched {
				t.Fatal("RECONNECT_ICE_SERVER did not refresh the ICE servers")
			}
		})
	}
}

// Row 13: a signaling socket that dies silently (no close frame, no FIN)
// is noticed by the keepalive and renewed.
func TestRow13SilentSocketDeath(t *testing.T) {
	t.Parallel()
	t.Run("viewer", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, emulator.Config{DisableQuotas: true})
		startMaster(t, e.ctl, nil)
		relay := newSigRelay(t)
		cfg := viewerConfig(e.ctl)
		cfg.HTTPClient, cfg.PingInterval, cfg.PongTimeout = relay.HTTPClient(), 500*time.Millisecond, 500*time.Millisecond
		v := runViewer(t, cfg)
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		v.gaps.mark()
		start := time.Now()
		if relay.freeze(func(rc *relayConn) bool { return rc.role == kvsproto.RoleViewer }) != 1 {
			t.Fatal("no viewer connection to freeze")
		}
		waitFor(t, 10*time.Second*slack, "a new signaling connection", func() bool { return relay.count() == 2 })
		within(t, 2*time.Second*slack, "noticing and renewing a dead socket", start)
		if gap, _ := v.gaps.result(); gap > time.Second*slack {
			t.Fatalf("media interrupted for %v", gap)
		}
		v.waitEvent(t, time.Second, start, "signaling-lost", hasCause(viewer.CauseSignalingLost))
	})
	t.Run("master", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, emulator.Config{DisableQuotas: true})
		relay := newSigRelay(t)
		m := startMaster(t, e.ctl, func(c *master.Config) {
			c.HTTPClient, c.PingInterval, c.PongTimeout = relay.HTTPClient(), 500*time.Millisecond, 500*time.Millisecond
		})
		m.waitReady(t)
		start := time.Now()
		relay.freeze(func(rc *relayConn) bool { return rc.role == kvsproto.RoleMaster })
		waitFor(t, 10*time.Second*slack, "the master's renewal", func() bool { return m.count(master.EventSignalingRenewed) > 0 })
		within(t, 3*time.Second*slack, "noticing and renewing the master's dead socket", start)
		v := runViewer(t, viewerConfig(e.ctl))
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
	})
}

// Row 14: STATUS_RESPONSE for a message sent with a correlationId.
func TestRow14StatusResponse(t *testing.T) {
	t.Parallel()
	t.Run("ClientLimitExceededException from the service", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, emulator.Config{DisableQuotas: true})
		// Fill the absent master's queue (100 messages), so that the
		// service rejects the next offer.
		filler, err := signaling.Dial(t.Context(), signaling.Config{Endpoint: e.srv.WSSEndpoint(kvsproto.RoleViewer), ChannelARN: e.arn,
			Role: kvsproto.RoleViewer, ClientID: "filler", Region: e.ctl.Region(), Credentials: e.ctl.SigV4Credentials, Now: e.ctl.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer filler.Close()
		for i := range 100 {
			c := kvsproto.ICECandidate{Candidate: fmt.Sprintf("candidate:%d 1 udp 1 127.0.0.1 %d typ host", i, 10000+i)}
			if err := filler.SendICECandidate(t.Context(), c, "", ""); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
		wantVerdict(t, runDoctor(t, doctor.Config{Control: e.ctl, AnswerWait: 2 * time.Second}), viewer.CauseThrottled, doctor.CheckMaster)

		cfg := viewerConfig(e.ctl)
		cfg.Retry.AnswerTimeout = 5 * time.Second
		var once sync.Once
		started := make(chan struct{})
		cfg.OnEvent = func(ev viewer.Event) {
			if ev.Cause == viewer.CauseThrottled {
				once.Do(func() { close(started) })
			}
		}
		start := time.Now()
		v := runViewer(t, cfg)
		select {
		case <-started:
		case <-time.After(10 * time.Second * slack):
			t.Fatalf("no STATUS_RESPONSE; events:\n%s", v.history())
		}
		within(t, time.Second*slack, "ending the attempt on the STATUS_RESPONSE (not the 5 s answer timeout)", start)
		startMaster(t, e.ctl, nil) // it drains the queue
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
	})
	t.Run("InvalidArgumentException", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, emulator.Config{DisableQuotas: true})
		startMaster(t, e.ctl, nil).waitReady(t)
		relay := newSigRelay(t)
		relay.setOnOffer(func(_ *relayConn, m kvsproto.ClientMessage) []byte {
			return statusFrame(t, m.CorrelationID, kvsproto.ErrCodeInvalidArgument, "the offer is not acceptable")
		})
		cfg := viewerConfig(e.ctl)
		cfg.HTTPClient = relay.HTTPClient()
		se := failsFast(t, cfg, viewer.CauseBadOffer, 2*time.Second*slack)
		var st *viewer.StatusError
		if !errors.As(se, &st) || st.Type != kvsproto.ErrCodeInvalidArgument || st.Code != 400 {
			t.Fatalf("%v is not the service's StatusError", se)
		}
		wantVerdict(t, runDoctor(t, doctor.Config{Control: e.ctl, HTTPClient: relay.HTTPClient()}), viewer.CauseBadOffer, doctor.CheckMaster)
	})
}

// Row 15: media stops while the peer connection looks connected.
func TestRow15MediaStall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	m := startMaster(t, e.ctl, nil)
	cfg := viewerConfig(e.ctl)
	cfg.StallTimeout = time.Second
	v := runViewer(t, cfg)
	v.waitStreaming(t, 20*time.Second*slack, time.Time{})
	start := time.Now()
	m.src.pause(3 * time.Second)
	// First an ICE restart (the path may be dead), then, as video does
	// not resume, a reconnect.
	v.waitEvent(t, 5*time.Second*slack, start, "the stall watchdog", func(e viewer.Event) bool { return e.State == viewer.StateReconnecting })
	within(t, 2*time.Second*slack, "noticing the stall (ICE restart)", start)
	v.waitEvent(t, 5*time.Second*slack, start, "a reconnect", hasCause(viewer.CauseMasterGone))
	within(t, 3*time.Second*slack, "reconnecting when the restart did not bring video back", start)
	v.waitStreaming(t, 20*time.Second*slack, start.Add(3*time.Second))
	within(t, 10*time.Second*slack, "video again after the stall", start)
	if v.s.Summary().Recoveries < 1 {
		t.Fatalf("events:\n%s", v.history())
	}
}

// The master renews its signaling connection on GO_AWAY, on the idle close
// and before the connection cap, without dropping its viewers.
func TestMasterKeepsViewersAcrossRenewals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, emulator.Config{DisableQuotas: true, IdleTimeout: 1500 * time.Millisecond, MaxConnDuration: 3 * time.Second, GoAwayGrace: time.Second})
	m := startMaster(t, e.ctl, nil)
	vs := []*vrun{runViewer(t, viewerConfig(e.ctl)), runViewer(t, viewerConfig(e.ctl))}
	for _, v := range vs {
		v.waitStreaming(t, 20*time.Second*slack, time.Time{})
		v.gaps.mark()
	}
	e.inject(t, "goaway,channel=cam,target=master,grace=1s")
	time.Sleep(6 * time.Second)
	if n := m.count(master.EventSignalingRenewed); n < 2 {
		t.Fatalf("the master renewed %d times", n)
	}
	if n := m.count(master.EventViewerLeft); n != 0 {
		t.Fatalf("%d viewers left", n)
	}
	for _, v := range vs {
		if gap, _ := v.gaps.result(); gap > time.Second*slack || v.s.Summary().Recoveries != 0 {
			t.Fatalf("viewer interrupted: gap %v; events:\n%s", gap, v.history())
		}
	}
	// Still reachable for new viewers.
	runViewer(t, viewerConfig(e.ctl)).waitStreaming(t, 20*time.Second*slack, time.Time{})
}
