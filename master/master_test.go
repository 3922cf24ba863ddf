package master_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// connectTimeout bounds how long a viewer may take to get its first
// keyframe (generous: -race on a shared 2-core machine).
const connectTimeout = 20 * time.Second

func checkKeyframe(t *testing.T, v *testViewer) {
	t.Helper()
	f := v.waitKeyframe(t, connectTimeout)
	if f.Codec != rtc.CodecH264 || !f.Keyframe || f.Width != testsrc.Width || f.Height != testsrc.Height {
		t.Fatalf("viewer %s: first frame is %s keyframe=%v %dx%d; want an H264 keyframe %dx%d",
			v.id, f.Codec, f.Keyframe, f.Width, f.Height, testsrc.Width, testsrc.Height)
	}
}

func viewerIDs(m *master.Master) []string {
	var ids []string
	for _, v := range m.Viewers() {
		ids = append(ids, v.ClientID)
	}
	return ids
}

func TestMasterStreamsToViewers(t *testing.T) {
	env := newEnv(t)
	leaks := goleak.IgnoreCurrent()
	rm := startMaster(t, env, true)

	// One viewer: the first frame is a keyframe of the test pattern.
	v1 := startViewer(t, env, "viewer-1", viewerOpts{})
	checkKeyframe(t, v1)
	rm.events.wait(t, 5*time.Second, "joined viewer-1", kindFor(master.EventViewerJoined, "viewer-1"))

	// Two more (one with audio): all three get video.
	v2 := startViewer(t, env, "viewer-2", viewerOpts{})
	v3 := startViewer(t, env, "viewer-3", viewerOpts{audio: true})
	checkKeyframe(t, v2)
	checkKeyframe(t, v3)
	select {
	case <-v3.audio.firstKey:
	case <-time.After(connectTimeout):
		t.Fatal("viewer-3 got no audio")
	}
	waitFor(t, 10*time.Second, "three connected viewers", func() bool {
		vs := rm.m.Viewers()
		return len(vs) == 3 && !slices.ContainsFunc(vs, func(v master.ViewerInfo) bool {
			return v.State != master.ViewerConnected || v.BytesSent == 0 || v.Samples == 0
		})
	})
	for _, vi := range rm.m.Viewers() {
		if vi.Audio != (vi.ClientID == "viewer-3") || vi.ConnectedAt.Before(vi.Since) {
			t.Errorf("viewer info %+v", vi)
		}
	}

	// viewer-2 hangs up: it is removed, the others keep streaming.
	v2.close()
	left := rm.events.wait(t, 20*time.Second, "left viewer-2", kindFor(master.EventViewerLeft, "viewer-2"))
	if left.Err == nil || errors.Is(left.Err, master.ErrShutdown) {
		t.Errorf("viewer-2 left with %v", left.Err)
	}
	if got := viewerIDs(rm.m); !slices.Equal(got, []string{"viewer-1", "viewer-3"}) {
		t.Fatalf("viewers after viewer-2 left: %v", got)
	}
	n1, n3 := v1.video.count(), v3.video.count()
	waitFor(t, 10*time.Second, "frames after viewer-2 left", func() bool {
		return v1.video.count() > n1+10 && v3.video.count() > n3+10
	})

	if err := rm.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if vs := rm.m.Viewers(); len(vs) != 0 {
		t.Fatalf("viewers after Run returned: %+v", vs)
	}
	for _, id := range []string{"viewer-1", "viewer-3"} {
		ev := rm.events.wait(t, time.Second, "left "+id, kindFor(master.EventViewerLeft, id))
		if !errors.Is(ev.Err, master.ErrShutdown) {
			t.Errorf("%s left with %v; want ErrShutdown", id, ev.Err)
		}
	}
	// Nothing of the master is left once Run has returned.
	v1.close()
	v3.close()
	env.HTTPClient.CloseIdleConnections()
	goleak.VerifyNone(t, leaks)
}

// maxGap returns the longest time between two consecutive frame arrivals
// from since on.
func maxGap(frames []media.Frame, since time.Time) time.Duration {
	var gap time.Duration
	prev := since
	for _, f := range frames {
		if f.Arrival.Before(since) {
			continue
		}
		gap = max(gap, f.Arrival.Sub(prev))
		prev = f.Arrival
	}
	return max(gap, time.Since(prev))
}

func TestMasterRenewsSignalingWithoutDroppingViewers(t *testing.T) {
	env := newEnv(t)
	rm := startMaster(t, env, false)
	v1 := startViewer(t, env, "viewer-1", viewerOpts{})
	checkKeyframe(t, v1)

	// GO_AWAY: the master dials a new connection; viewer-1 keeps getting
	// frames without a gap.
	start := time.Now()
	n, err := env.Server.Inject(emulator.Fault{Kind: emulator.FaultGoAway, Channel: "demo", Target: "master", Grace: 200 * time.Millisecond})
	if err != nil || n != 1 {
		t.Fatalf("Inject GO_AWAY: %d, %v", n, err)
	}
	ev := rm.events.wait(t, 10*time.Second, "signaling renewed", func(ev master.Event) bool {
		return ev.Kind == master.EventSignalingRenewed
	})
	if ev.Reason != "go-away" {
		t.Errorf("renewal reason %q; want go-away", ev.Reason)
	}
	time.Sleep(time.Second) // past the grace: the old connection is gone
	if gap := maxGap(v1.video.snapshot(), start); gap > time.Second {
		t.Errorf("viewer-1 had a %v gap in frames across the GO_AWAY", gap)
	}

	// A new viewer connects over the new connection.
	v2 := startViewer(t, env, "viewer-2", viewerOpts{})
	checkKeyframe(t, v2)

	// The signaling connection drops without a close frame: the master
	// reconnects, and viewers keep going.
	start = time.Now()
	if n, err := env.Server.Inject(emulator.Fault{Kind: emulator.FaultClose, Channel: "demo", Target: "master"}); err != nil || n != 1 {
		t.Fatalf("Inject close: %d, %v", n, err)
	}
	rm.events.wait(t, 10*time.Second, "renewed after connection loss", func(ev master.Event) bool {
		return ev.Kind == master.EventSignalingRenewed && ev.Reason == "connection-lost"
	})
	v3 := startViewer(t, env, "viewer-3", viewerOpts{})
	checkKeyframe(t, v3)
	for _, v := range []*testViewer{v1, v2} {
		if gap := maxGap(v.video.snapshot(), start); gap > time.Second {
			t.Errorf("%s had a %v gap in frames across the connection loss", v.id, gap)
		}
	}
	if got := viewerIDs(rm.m); !slices.Equal(got, []string{"viewer-1", "viewer-2", "viewer-3"}) {
		t.Fatalf("viewers: %v", got)
	}
	if err := rm.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestMasterCodecMismatchIsReportedNotAnswered(t *testing.T) {
	env := newEnv(t)
	rm := startMaster(t, env, false)
	v := startViewer(t, env, "vp8-only", viewerOpts{codecs: []string{"VP8"}})
	ev := rm.events.wait(t, 10*time.Second, "failed vp8-only", kindFor(master.EventViewerFailed, "vp8-only"))
	var ne *master.NegotiationError
	if !errors.Is(ev.Err, master.ErrCodecMismatch) || !errors.As(ev.Err, &ne) {
		t.Fatalf("error %v; want a *NegotiationError matching ErrCodecMismatch", ev.Err)
	}
	if ne.ClientID != "vp8-only" || ne.Want != "H264" || !slices.Equal(ne.Offered, []string{"VP8"}) {
		t.Errorf("negotiation error %+v", ne)
	}
	select {
	case <-v.answered:
		t.Fatal("the master answered an offer it cannot serve")
	case <-time.After(500 * time.Millisecond):
	}
	if vs := rm.m.Viewers(); len(vs) != 0 {
		t.Fatalf("viewers: %+v", vs)
	}
	// The master still serves viewers that can take H.264.
	checkKeyframe(t, startViewer(t, env, "h264", viewerOpts{codecs: []string{"VP8", "H264"}}))
}

func TestMasterViewerLimitAndReplacement(t *testing.T) {
	env := newEnv(t)
	rm := startMaster(t, env, false, func(c *master.Config) { c.MaxViewers = 1 })
	v1 := startViewer(t, env, "viewer-1", viewerOpts{})
	checkKeyframe(t, v1)

	// Over the limit: not answered, reported.
	v2 := startViewer(t, env, "viewer-2", viewerOpts{})
	ev := rm.events.wait(t, 10*time.Second, "failed viewer-2", kindFor(master.EventViewerFailed, "viewer-2"))
	if !errors.Is(ev.Err, master.ErrTooManyViewers) {
		t.Fatalf("viewer-2: %v; want ErrTooManyViewers", ev.Err)
	}
	select {
	case <-v2.answered:
		t.Fatal("viewer-2 was answered beyond MaxViewers")
	case <-time.After(300 * time.Millisecond):
	}
	v2.close()

	// The same client id offers again (a reloaded page): the new peer
	// replaces the old one, even at the limit.
	v1b := startViewer(t, env, "viewer-1", viewerOpts{})
	checkKeyframe(t, v1b)
	ev = rm.events.wait(t, 5*time.Second, "left viewer-1", kindFor(master.EventViewerLeft, "viewer-1"))
	if !errors.Is(ev.Err, master.ErrReplaced) {
		t.Fatalf("old viewer-1 left with %v; want ErrReplaced", ev.Err)
	}
	if got := viewerIDs(rm.m); !slices.Equal(got, []string{"viewer-1"}) {
		t.Fatalf("viewers: %v", got)
	}
}

func TestMasterReofferCandidatesWaitForTheirOffer(t *testing.T) {
	env := newEnv(t)
	rm := startMaster(t, env, false)
	checkKeyframe(t, startViewer(t, env, "viewer-1", viewerOpts{ufrag: true}))

	// viewer-1 offers again (a reloaded page). Its new candidates reach the
	// master before the new offer, while the old peer still exists; they
	// name the new ICE username fragment, so they wait for the new offer.
	// The master's candidates are dropped: the viewer's are the only way
	// to connect.
	for _, f := range []emulator.Fault{
		{Kind: emulator.FaultDelay, Channel: "demo", Target: "viewer-1", Action: "SDP_OFFER", Delay: 500 * time.Millisecond},
		{Kind: emulator.FaultDrop, Channel: "demo", Target: "master", Action: "ICE_CANDIDATE", Count: 1000},
	} {
		if _, err := env.Server.Inject(f); err != nil {
			t.Fatal(err)
		}
	}
	checkKeyframe(t, startViewer(t, env, "viewer-1", viewerOpts{ufrag: true}))
	ev := rm.events.wait(t, 5*time.Second, "left viewer-1", kindFor(master.EventViewerLeft, "viewer-1"))
	if !errors.Is(ev.Err, master.ErrReplaced) {
		t.Fatalf("old viewer-1 left with %v; want ErrReplaced", ev.Err)
	}
}

func TestMasterEarlyCandidatesAndConnectTimeout(t *testing.T) {
	env := newEnv(t)
	rm := startMaster(t, env, false, func(c *master.Config) { c.ConnectTimeout = 2 * time.Second })

	// The viewer's offer is held back, so its candidates reach the master
	// first: they are queued until the offer arrives. The master's own
	// candidates are dropped, so the viewer's are the only way to connect.
	if _, err := env.Server.Inject(emulator.Fault{Kind: emulator.FaultDelay, Channel: "demo", Target: "early", Action: "SDP_OFFER", Delay: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Server.Inject(emulator.Fault{Kind: emulator.FaultDrop, Channel: "demo", Target: "master", Action: "ICE_CANDIDATE", Count: 1000}); err != nil {
		t.Fatal(err)
	}
	checkKeyframe(t, startViewer(t, env, "early", viewerOpts{}))

	// A viewer that offers and disappears never connects: removed after
	// ConnectTimeout.
	gone := startViewer(t, env, "gone", viewerOpts{})
	gone.close()
	ev := rm.events.wait(t, 15*time.Second, "failed gone", kindFor(master.EventViewerFailed, "gone"))
	if !errors.Is(ev.Err, master.ErrConnectTimeout) && !errors.Is(ev.Err, master.ErrPeerFailed) {
		t.Fatalf("gone: %v; want ErrConnectTimeout", ev.Err)
	}
	if got := viewerIDs(rm.m); !slices.Equal(got, []string{"early"}) {
		t.Fatalf("viewers: %v", got)
	}
}

func TestMasterPLIResendsGOP(t *testing.T) {
	env := newEnv(t)
	startMaster(t, env, false)
	v := startViewer(t, env, "viewer-1", viewerOpts{})
	checkKeyframe(t, v)
	// A PLI makes the master resend the cached GOP at once: frames whose
	// RTP timestamps are much closer together than the 30 fps spacing
	// (3000 ticks). A PLI that arrives just before a keyframe is
	// answered by that keyframe alone, hence a few tries; the master
	// honours one request per second.
	for try := 0; try < 4; try++ {
		time.Sleep(1100 * time.Millisecond)
		sent := time.Now()
		if err := v.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: v.ssrc.Load()}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		var prev *media.Frame
		for _, f := range v.video.snapshot() {
			if f.Arrival.Before(sent) {
				continue
			}
			if prev != nil && prev.Keyframe && f.RTPTimestamp-prev.RTPTimestamp < 1500 {
				return // a keyframe followed by catch-up frames: the GOP
			}
			prev = &f
		}
	}
	t.Fatal("no GOP resend after four PLIs")
}

func TestRunSetupErrors(t *testing.T) {
	env := newEnv(t)
	video, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := master.New(master.Config{Channel: "no-such-channel", Control: env.Control, Video: video, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = m.Run(ctx)
	if !errors.Is(err, control.ErrChannelNotFound) {
		t.Fatalf("Run: %v; want ErrChannelNotFound", err)
	}
	// The source was closed by Run.
	if _, err := video.ReadSample(ctx); !errors.Is(err, media.ErrClosed) && err == nil {
		t.Errorf("source still readable after Run: %v", err)
	}
	if err := m.Run(ctx); !errors.Is(err, master.ErrAlreadyStarted) {
		t.Fatalf("second Run: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	env := newEnv(t)
	h264, _ := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	opus, _ := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	t.Cleanup(func() { h264.Close(); opus.Close() })
	ok := master.Config{Channel: "demo", Control: env.Control, Video: h264}
	for _, tc := range []struct {
		name string
		mut  func(*master.Config)
	}{
		{"no channel", func(c *master.Config) { c.Channel = "" }},
		{"bad channel name", func(c *master.Config) { c.Channel = "a b" }},
		{"bad ARN", func(c *master.Config) { c.Channel = "arn:aws:nope" }},
		{"no control", func(c *master.Config) { c.Control = nil }},
		{"no video", func(c *master.Config) { c.Video = nil }},
		{"audio as video", func(c *master.Config) { c.Video = opus }},
		{"video as audio", func(c *master.Config) { c.Audio = h264 }},
		{"negative viewers", func(c *master.Config) { c.MaxViewers = -1 }},
		{"policy", func(c *master.Config) { c.ICETransportPolicy = "stun" }},
		{"ports", func(c *master.Config) { c.ICEPortMin = 5000 }},
		{"timeout", func(c *master.Config) { c.DisconnectedTimeout = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mut(&cfg)
			if _, err := master.New(cfg); !errors.Is(err, master.ErrInvalidConfig) {
				t.Fatalf("New: %v; want ErrInvalidConfig", err)
			}
		})
	}
	for _, p := range []string{"", "all", "relay", "RELAY"} {
		cfg := ok
		cfg.ICETransportPolicy = p
		if _, err := master.New(cfg); err != nil {
			t.Errorf("policy %q: %v", p, err)
		}
	}
}

func TestParseViewerState(t *testing.T) {
	for _, s := range []master.ViewerState{master.ViewerConnecting, master.ViewerConnected, master.ViewerDisconnected} {
		got, err := master.ParseViewerState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseViewerState(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := master.ParseViewerState("gone"); err == nil {
		t.Error("ParseViewerState accepted an unknown state")
	}
}

func TestErrorMessages(t *testing.T) {
	ne := &master.NegotiationError{ClientID: "v", Want: "H264", Offered: []string{"VP8"}, Detail: "d", Err: master.ErrCodecMismatch}
	se := &master.StatusError{CorrelationID: "1_a", ClientID: "v", Code: 400, Type: "InvalidArgumentException", Description: "bad"}
	for _, err := range []error{ne, se, fmt.Errorf("wrapped: %w", ne)} {
		if err.Error() == "" {
			t.Errorf("%T has an empty message", err)
		}
	}
	if !errors.Is(fmt.Errorf("x: %w", ne), master.ErrCodecMismatch) {
		t.Error("NegotiationError does not unwrap")
	}
}

// restartOffer is v's current offer with new ICE credentials: an ICE
// restart of the same peer connection (same DTLS fingerprint) that v
// itself will never carry out.
func restartOffer(t *testing.T, v *testViewer) string {
	t.Helper()
	sdp := v.pc.LocalDescription().SDP
	for _, attr := range []string{"a=ice-ufrag:", "a=ice-pwd:"} {
		_, rest, ok := strings.Cut(sdp, attr)
		if !ok {
			t.Fatalf("no %s in the offer", attr)
		}
		old, _, _ := strings.Cut(rest, "\r\n")
		fresh := "x" + old[1:]
		if fresh == old {
			fresh = "y" + old[1:]
		}
		sdp = strings.ReplaceAll(sdp, attr+old+"\r\n", attr+fresh+"\r\n")
	}
	return sdp
}

// TestMasterDropsAStuckICERestart: a viewer restarts ICE and the restart
// never connects (its network is gone). The master counts it as down: at
// the viewer limit a new viewer takes its place, and otherwise it is
// dropped after DisconnectedTimeout, instead of holding a slot forever.
func TestMasterDropsAStuckICERestart(t *testing.T) {
	env := newEnv(t)
	rm := startMaster(t, env, false, func(c *master.Config) {
		c.MaxViewers = 1
		c.DisconnectedTimeout = 3 * time.Second
	})

	// At the limit: the stuck peer makes room for a new viewer.
	v1 := startViewer(t, env, "viewer-1", viewerOpts{})
	checkKeyframe(t, v1)
	if err := v1.sig.SendOffer(t.Context(), kvsproto.SessionDescription{Type: "offer", SDP: restartOffer(t, v1)}, "", ""); err != nil {
		t.Fatal(err)
	}
	rm.events.wait(t, 10*time.Second, "viewer-1 restarted", kindFor(master.EventViewerRestarted, "viewer-1"))
	time.Sleep(3500 * time.Millisecond) // past the restart's grace (DisconnectedTimeout here)
	v2 := startViewer(t, env, "viewer-2", viewerOpts{})
	checkKeyframe(t, v2)
	ev := rm.events.wait(t, 5*time.Second, "left viewer-1", kindFor(master.EventViewerLeft, "viewer-1"))
	if !errors.Is(ev.Err, master.ErrDisconnected) {
		t.Fatalf("viewer-1 left with %v; want ErrDisconnected", ev.Err)
	}
	v1.close()

	// Below the limit: dropped after DisconnectedTimeout.
	if err := v2.sig.SendOffer(t.Context(), kvsproto.SessionDescription{Type: "offer", SDP: restartOffer(t, v2)}, "", ""); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	rm.events.wait(t, 10*time.Second, "viewer-2 restarted", kindFor(master.EventViewerRestarted, "viewer-2"))
	ev = rm.events.wait(t, 15*time.Second, "left viewer-2", kindFor(master.EventViewerLeft, "viewer-2"))
	if !errors.Is(ev.Err, master.ErrDisconnected) {
		t.Fatalf("viewer-2 left with %v; want ErrDisconnected", ev.Err)
	}
	if took := time.Since(began); took < 3*time.Second {
		t.Fatalf("viewer-2 dropped after %v, before DisconnectedTimeout", took)
	}
	if got := viewerIDs(rm.m); len(got) != 0 {
		t.Fatalf("viewers: %v", got)
	}
}

// TestMasterAnswerListsOnlyTheCodecItSends pins what go2rtc needs: it binds
// to the first payload type the answer lists for a kind, so the answer must
// list exactly the one the media goes out on. The test viewer offers four
// H.264 payload types and Opus; the answer must carry one of each, trickle
// ICE must be announced, and the RTP must arrive on the listed type.
func TestMasterAnswerListsOnlyTheCodecItSends(t *testing.T) {
	env := newEnv(t)
	startMaster(t, env, true)
	v := startViewer(t, env, "one-codec", viewerOpts{codecs: []string{"H264"}, audio: true})
	checkKeyframe(t, v)
	answer := *v.answer.Load()
	sum, err := rtc.Summarize(answer)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Trickle {
		t.Errorf("the answer does not announce trickle ICE (a=ice-options:trickle):\n%s", answer)
	}
	var video []webrtc.RTPCodecParameters
	for _, m := range sum.Media {
		if len(m.Codecs) != 1 {
			t.Errorf("%s section lists %d codecs, want exactly 1:\n%s", m.Kind, len(m.Codecs), answer)
		}
		if m.Kind == "video" {
			video = m.Codecs
		}
	}
	if len(video) == 0 {
		t.Fatalf("no video codec in the answer:\n%s", answer)
	}
	if got := webrtc.PayloadType(v.videoPT.Load()); got != video[0].PayloadType {
		t.Errorf("video arrives on payload type %d; the answer lists %d", got, video[0].PayloadType)
	}
}
