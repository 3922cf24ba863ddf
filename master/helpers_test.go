package master_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// testLogger writes to the test's output at the level of KVSRTC_TEST_LOG
// (default warn).
func testLogger(t testing.TB) *slog.Logger {
	var lvl slog.Level = slog.LevelWarn
	if v := os.Getenv("KVSRTC_TEST_LOG"); v != "" {
		_ = lvl.UnmarshalText([]byte(v))
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: lvl}))
}

// testEnv is an in-process emulator with channel "demo" and a control
// client for it.
type testEnv struct {
	*kvstest.Env
	arn string
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	kvstest.IsolateEnv(t)
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{
		Channels:      []string{"demo"},
		DisableQuotas: true,
		Logger:        testLogger(t).With("side", "emulator"),
	}})
	return &testEnv{Env: env, arn: env.ChannelARN(t, "demo")}
}

// eventLog records the master's events.
type eventLog struct {
	mu      sync.Mutex
	events  []master.Event
	changed chan struct{}
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) add(ev master.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *eventLog) all() []master.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]master.Event(nil), l.events...)
}

// wait returns the first event matching match, failing the test after
// timeout.
func (l *eventLog) wait(t testing.TB, timeout time.Duration, what string, match func(master.Event) bool) master.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for _, ev := range l.events {
			if match(ev) {
				l.mu.Unlock()
				return ev
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no %s event within %v; events: %v", what, timeout, l.summary())
		}
	}
}

func (l *eventLog) summary() []string {
	var out []string
	for _, ev := range l.all() {
		s := string(ev.Kind)
		if ev.ClientID != "" {
			s += " " + ev.ClientID
		}
		if ev.Reason != "" {
			s += " " + ev.Reason
		}
		if ev.Err != nil {
			s += " (" + ev.Err.Error() + ")"
		}
		out = append(out, s)
	}
	return out
}

func kindFor(kind master.EventKind, id string) func(master.Event) bool {
	return func(ev master.Event) bool { return ev.Kind == kind && ev.ClientID == id }
}

// runningMaster is a Master running in the background.
type runningMaster struct {
	m      *master.Master
	h      *kvstest.Master
	events *eventLog
}

// stop cancels Run and returns its result.
func (rm *runningMaster) stop(t testing.TB) error {
	t.Helper()
	return rm.h.Stop()
}

// startMaster runs a master on channel "demo" with the H.264 test pattern
// (and the Opus tone when audio is set) and waits until it is ready.
func startMaster(t testing.TB, env *testEnv, audio bool, mutate ...func(*master.Config)) *runningMaster {
	t.Helper()
	events := newEventLog()
	h := env.StartMaster(t, kvstest.MasterOptions{
		Channel:        "demo",
		Audio:          audio,
		Logger:         testLogger(t).With("side", "master"),
		IgnoreRunError: true,
		Configure: func(cfg *master.Config) {
			cfg.DisconnectedTimeout = 300 * time.Millisecond
			for _, f := range mutate {
				f(cfg)
			}
			cfg.OnEvent = events.add
		},
	})
	return &runningMaster{m: h.Master, h: h, events: events}
}

// frameLog is a media.Sink recording what a test viewer receives.
type frameLog struct {
	mu       sync.Mutex
	frames   []media.Frame // Data dropped
	firstKey chan struct{}
	keyOnce  sync.Once
}

func newFrameLog() *frameLog { return &frameLog{firstKey: make(chan struct{})} }

func (f *frameLog) WriteFrame(fr media.Frame) error {
	fr.Data = nil
	f.mu.Lock()
	f.frames = append(f.frames, fr)
	f.mu.Unlock()
	return nil
}

func (f *frameLog) snapshot() []media.Frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]media.Frame(nil), f.frames...)
}

func (f *frameLog) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.frames)
}

// viewerOpts configure a test viewer.
type viewerOpts struct {
	codecs []string // video codecs to offer; nil = H264 only
	audio  bool     // also offer to receive audio
	ufrag  bool     // put usernameFragment in candidates, as browsers do
}

// testViewer is a minimal KVS viewer: signaling as VIEWER, a pion peer
// with recvonly transceivers, trickle ICE both ways, and receivers that
// depacketize what arrives.
type testViewer struct {
	id       string
	sig      *signaling.Client
	pc       *webrtc.PeerConnection
	video    *frameLog
	audio    *frameLog
	answered chan struct{}
	ssrc     atomic.Uint32 // of the video track
	videoPT  atomic.Uint32 // payload type the video arrives with
	answer   atomic.Pointer[string]

	mu      sync.Mutex
	closed  bool
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	closeMu sync.Once
}

func startViewer(t testing.TB, env *testEnv, id string, o viewerOpts) *testViewer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	v := &testViewer{id: id, video: newFrameLog(), audio: newFrameLog(), answered: make(chan struct{}), cancel: cancel}
	t.Cleanup(v.close)
	ep, err := env.Control.Endpoints(ctx, env.arn, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	v.sig, err = signaling.Dial(ctx, signaling.Config{
		Endpoint: ep.WSS, ChannelARN: env.arn, Role: kvsproto.RoleViewer, ClientID: id,
		Region: env.Control.Region(), Credentials: env.Control.SigV4Credentials, Now: env.Control.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	codecs := o.codecs
	if codecs == nil {
		codecs = []string{"H264"}
	}
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, VideoCodecs: codecs, Audio: o.audio})
	if err != nil {
		t.Fatal(err)
	}
	if v.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}
	if o.audio {
		kinds = append(kinds, webrtc.RTPCodecTypeAudio)
	}
	for _, k := range kinds {
		if _, err := v.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.closed {
			return
		}
		sink := v.video
		if tr.Kind() == webrtc.RTPCodecTypeAudio {
			sink = v.audio
		} else {
			v.ssrc.Store(uint32(tr.SSRC()))
			v.videoPT.Store(uint32(tr.PayloadType()))
		}
		pc := v.pc
		rcv, err := media.NewReceiver(tr, media.ReceiverConfig{
			Sinks: []media.Sink{sink},
			RequestKeyframe: func() {
				_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
			},
		})
		if err != nil {
			return
		}
		v.wg.Add(2)
		go func() {
			defer v.wg.Done()
			_ = rcv.Run(ctx)
		}()
		go func() {
			defer v.wg.Done()
			select {
			case <-rcv.FirstKeyframe():
				sink.keyOnce.Do(func() { close(sink.firstKey) })
			case <-ctx.Done():
			}
		}()
	})
	offer, err := v.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	var ufrag *string
	if o.ufrag {
		_, rest, _ := strings.Cut(offer.SDP, "a=ice-ufrag:")
		u, _, _ := strings.Cut(rest, "\r\n")
		ufrag = &u
	}
	v.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		j := c.ToJSON()
		_ = v.sig.SendICECandidate(ctx, kvsproto.ICECandidate{Candidate: j.Candidate, SDPMid: j.SDPMid, SDPMLineIndex: j.SDPMLineIndex, UsernameFragment: ufrag}, "", "")
	})
	if err := v.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if err := v.sig.SendOffer(ctx, kvsproto.SessionDescription{Type: "offer", SDP: offer.SDP}, "", ""); err != nil {
		t.Fatal(err)
	}
	v.wg.Add(1)
	go v.signalLoop()
	return v
}

// signalLoop applies the master's answer and candidates (candidates that
// come before the answer wait for it).
func (v *testViewer) signalLoop() {
	defer v.wg.Done()
	var pending []webrtc.ICECandidateInit
	remote := false
	for ev := range v.sig.Events() {
		switch ev.Type {
		case kvsproto.MessageSDPAnswer:
			if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ev.SDP.SDP}); err != nil {
				continue
			}
			if !remote {
				remote = true
				sdp := ev.SDP.SDP
				v.answer.Store(&sdp)
				close(v.answered)
			}
			for _, c := range pending {
				_ = v.pc.AddICECandidate(c)
			}
			pending = nil
		case kvsproto.MessageICECandidate:
			c := webrtc.ICECandidateInit{Candidate: ev.Candidate.Candidate, SDPMid: ev.Candidate.SDPMid, SDPMLineIndex: ev.Candidate.SDPMLineIndex}
			if remote {
				_ = v.pc.AddICECandidate(c)
			} else {
				pending = append(pending, c)
			}
		}
	}
}

// close hangs up: closes the peer connection and signaling, and waits for
// the viewer's goroutines.
func (v *testViewer) close() {
	v.closeMu.Do(func() {
		v.mu.Lock()
		v.closed = true
		v.mu.Unlock()
		v.cancel()
		if v.pc != nil {
			_ = v.pc.Close()
		}
		if v.sig != nil {
			_ = v.sig.Close()
		}
		v.wg.Wait()
	})
}

// waitKeyframe waits for the first complete video keyframe.
func (v *testViewer) waitKeyframe(t testing.TB, timeout time.Duration) media.Frame {
	t.Helper()
	select {
	case <-v.video.firstKey:
	case <-time.After(timeout):
		t.Fatalf("viewer %s: no video keyframe within %v (%d frames)", v.id, timeout, v.video.count())
	}
	return v.video.snapshot()[0]
}

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
