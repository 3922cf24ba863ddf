package doctor_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/doctor"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// Unresolvable host names in these tests have a 64-character label: Go's
// resolver refuses such a name as "no such host" before sending any query,
// so the tests send no DNS traffic off the machine.

func evidence(t *testing.T, rep *doctor.Report, check, key string) any {
	t.Helper()
	for _, f := range rep.Check(check).Evidence {
		if f.Key == key {
			return f.Value
		}
	}
	t.Fatalf("check %s has no %s evidence:\n%s", check, key, reportText(rep))
	return nil
}

func reportText(rep *doctor.Report) string {
	var b strings.Builder
	rep.WriteText(&b)
	return b.String()
}

func delayAnswers(t *testing.T, srv *emulator.Server, d time.Duration) {
	t.Helper()
	if _, err := srv.Inject(emulator.Fault{Kind: emulator.FaultDelay, Channel: "cam", Action: kvsproto.ActionSDPAnswer, Count: 100, Delay: d}); err != nil {
		t.Fatal(err)
	}
}

// TestSlowAnswerIsAFinding: a master that answers after 4 s, slower than
// the viewer's 2.5 s answer timeout but within its late-answer window,
// works: the master check says how slow, why and what to do, and the rest
// of the checks run.
func TestSlowAnswerIsAFinding(t *testing.T) {
	srv, ctl := startWithMaster(t, emulator.Config{})
	delayAnswers(t, srv, 4*time.Second)
	rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	text := reportText(rep)
	m := rep.Check(doctor.CheckMaster)
	if m.Status != doctor.StatusWarn || m.Cause != viewer.CauseSlowAnswer {
		t.Fatalf("master check %s %s:\n%s", m.Status, m.Cause, text)
	}
	took, err := time.ParseDuration(evidence(t, rep, doctor.CheckMaster, "answerTime").(string))
	if err != nil || took < 4*time.Second {
		t.Fatalf("answerTime %v (%v)", took, err)
	}
	for _, w := range []string{"later than the viewer's 2.5s answer timeout", "it trickles its candidates", "overloaded camera"} {
		if !strings.Contains(m.Detail, w) {
			t.Errorf("detail lacks %q: %s", w, m.Detail)
		}
	}
	for _, w := range []string{"still connects, but slowly", "--answer-timeout 5s"} {
		if !strings.Contains(m.Advice, w) {
			t.Errorf("advice lacks %q: %s", w, m.Advice)
		}
	}
	if rep.Check(doctor.CheckICE).Status != doctor.StatusPass || rep.Check(doctor.CheckMedia).Status != doctor.StatusPass {
		t.Fatalf("the checks after a slow answer:\n%s", text)
	}
	if rep.OK() || rep.Verdict.Cause != viewer.CauseSlowAnswer || rep.Verdict.Check != doctor.CheckMaster || rep.Verdict.Advice != m.Advice {
		t.Fatalf("verdict %+v", rep.Verdict)
	}
	if !strings.Contains(text, "[WARN] master") || !strings.Contains(text, "VERDICT: slow-answer: the master answered after 4") {
		t.Fatalf("text report:\n%s", text)
	}
	t.Log("\n" + text)
}

// TestTooSlowForTheViewer: an answer later than the viewer's late-answer
// window is a failure: that viewer never gets it.
func TestTooSlowForTheViewer(t *testing.T) {
	srv, ctl := startWithMaster(t, emulator.Config{})
	delayAnswers(t, srv, 3*time.Second)
	rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true,
		Viewer: viewer.RetryPolicy{AnswerTimeout: time.Second, LateAnswerWindow: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Check(doctor.CheckMaster)
	if m.Status != doctor.StatusFail || m.Cause != viewer.CauseSlowAnswer || !strings.Contains(m.Detail, "gives up on every attempt") ||
		!strings.Contains(m.Advice, "--answer-timeout 4s") {
		t.Fatalf("master check %s %s: %s / %s", m.Status, m.Cause, m.Detail, m.Advice)
	}
	if rep.Check(doctor.CheckMedia).Status != doctor.StatusPass {
		t.Fatalf("media after a slow answer:\n%s", reportText(rep))
	}
}

// TestDeadMasterIsNotSlow: no answer at all, waited for longer than the
// viewer's timeout, is no-answer and says so.
func TestDeadMasterIsNotSlow(t *testing.T) {
	srv, ctl := startWithMaster(t, emulator.Config{})
	if _, err := srv.Inject(emulator.Fault{Kind: emulator.FaultDrop, Channel: "cam", Action: kvsproto.ActionSDPAnswer, Count: 100}); err != nil {
		t.Fatal(err)
	}
	rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, AnswerWait: 2 * time.Second,
		Viewer: viewer.RetryPolicy{AnswerTimeout: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Check(doctor.CheckMaster)
	if m.Status != doctor.StatusFail || m.Cause != viewer.CauseNoAnswer || !strings.Contains(m.Detail, "4 times the viewer's 500ms answer timeout: the master is not merely slow") {
		t.Fatalf("master check %s %s: %s", m.Status, m.Cause, m.Detail)
	}
}

// nonTrickleMaster is a master that answers the way a peer without trickle
// ICE does (aiortc; the KVS C SDK for an offer it takes for non-trickle):
// only once its candidate gathering is complete, with every candidate in
// the SDP answer, and never an ICE_CANDIDATE message.
func nonTrickleMaster(t *testing.T, ctl *control.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := ctl.ResolveChannel(ctx, "cam")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := ctl.Endpoints(ctx, ch.ARN, kvsproto.RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signaling.Dial(ctx, signaling.Config{Endpoint: ep.WSS, ChannelARN: ch.ARN, Role: kvsproto.RoleMaster,
		Region: ctl.Region(), Credentials: ctl.SigV4Credentials, Now: ctl.Now})
	if err != nil {
		t.Fatal(err)
	}
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, Audio: true})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	pcs := map[string]*webrtc.PeerConnection{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range sig.Events() {
			switch {
			case ev.Type == kvsproto.MessageSDPOffer && ev.SDP != nil:
				pc, err := api.NewPeerConnection(webrtc.Configuration{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				pcs[ev.SenderClientID] = pc
				mu.Unlock()
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: ev.SDP.SDP}); err != nil {
					t.Error(err)
					return
				}
				answer, err := pc.CreateAnswer(nil)
				if err != nil {
					t.Error(err)
					return
				}
				gathered := webrtc.GatheringCompletePromise(pc)
				if err := pc.SetLocalDescription(answer); err != nil {
					t.Error(err)
					return
				}
				<-gathered
				_ = sig.SendAnswer(ctx, kvsproto.SessionDescription{Type: "answer", SDP: pc.LocalDescription().SDP}, ev.SenderClientID, "")
			case ev.Type == kvsproto.MessageICECandidate && ev.Candidate != nil:
				mu.Lock()
				pc := pcs[ev.SenderClientID]
				mu.Unlock()
				if pc != nil {
					c := ev.Candidate
					_ = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = sig.Close()
		<-done
		for _, pc := range pcs {
			_ = pc.Close()
		}
	})
}

// TestNonTrickleMaster: the ICE check counts the candidates a master put
// into its answer (it used to report 0 remote candidates), and a slow
// non-trickle answer is put down to the gathering wait.
func TestNonTrickleMaster(t *testing.T) {
	srv, ctl := start(t, emulator.Config{})
	nonTrickleMaster(t, ctl)
	delayAnswers(t, srv, 2*time.Second)
	rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, MediaWait: 500 * time.Millisecond,
		Viewer: viewer.RetryPolicy{AnswerTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	text := reportText(rep)
	ice := rep.Check(doctor.CheckICE)
	if ice.Status != doctor.StatusPass {
		t.Fatalf("ice %s:\n%s", ice.Status, text)
	}
	inAnswer := evidence(t, rep, doctor.CheckICE, "remoteInAnswer").(int)
	trickled := evidence(t, rep, doctor.CheckICE, "remoteTrickled").(int)
	remote := evidence(t, rep, doctor.CheckICE, "remoteCandidates").(map[string]int)
	if inAnswer == 0 || trickled != 0 || remote["host"] != inAnswer {
		t.Fatalf("remote candidates: %d in the answer, %d trickled, %v:\n%s", inAnswer, trickled, remote, text)
	}
	m := rep.Check(doctor.CheckMaster)
	if m.Status != doctor.StatusWarn || !strings.Contains(m.Detail, "it does not trickle ICE") ||
		evidence(t, rep, doctor.CheckMaster, "answerTrickle") != false || evidence(t, rep, doctor.CheckMaster, "offerTrickle") != true {
		t.Fatalf("master %s: %s\n%s", m.Status, m.Detail, text)
	}
	t.Log("\n" + text)
}

// TestOfferHasAudioAndTrickle: the doctor's offer announces trickle ICE
// and always has a receive-only Opus audio section, so that a master that
// sends audio is received (not logged by pion as unhandled RTP).
func TestOfferHasAudioAndTrickle(t *testing.T) {
	_, ctl := start(t, emulator.Config{})
	video, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	audio, err := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	m, err := master.New(master.Config{Channel: "cam", Control: ctl, Video: video, Audio: audio, LoopbackOnly: true,
		OnEvent: func(ev master.Event) {
			if ev.Kind == master.EventReady {
				close(ready)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-ready

	var logs testutil.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, Audio: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	text := reportText(rep)
	if !rep.OK() {
		t.Fatalf("%s", text)
	}
	if evidence(t, rep, doctor.CheckMaster, "offerTrickle") != true {
		t.Fatalf("the offer does not announce trickle:\n%s", text)
	}
	if n, ok := evidence(t, rep, doctor.CheckMedia, "audioPackets").(int64); !ok || n == 0 {
		t.Errorf("audioPackets %v: the master's audio was not received:\n%s", evidence(t, rep, doctor.CheckMedia, "audioPackets"), text)
	}
	if l := logs.String(); strings.Contains(strings.ToLower(l), "unhandled") || strings.Contains(l, "codec not found") {
		t.Errorf("pion complained about the audio:\n%s", l)
	}
}

// TestSTSEndpointNamed: with the control plane on an AWS host name, the
// STS check goes where AWS_ENDPOINT_URL_STS says, and names that endpoint
// (it used to say "AWS STS (us-west-2)"). Every connection is redirected
// to the local emulator.
func TestSTSEndpointNamed(t *testing.T) {
	srv, _ := start(t, emulator.Config{})
	addr := srv.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr) // never leaves loopback
	}
	t.Setenv("AWS_CA_BUNDLE", "") // the SDK refuses a plain *http.Client alongside it
	c := srv.Credentials()
	ctl, err := control.New(t.Context(), control.Config{Region: srv.Region(), STUNURL: control.STUNNone,
		EndpointURL: fmt.Sprintf("http://kinesisvideo.%s.amazonaws.com:%s", srv.Region(), port),
		HTTPClient:  &http.Client{Transport: tr},
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ENDPOINT_URL_STS", srv.URL())
	rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, AnswerWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cred := rep.Check(doctor.CheckCredentials)
	if got := evidence(t, rep, doctor.CheckCredentials, "endpoint"); cred.Status != doctor.StatusPass || got != srv.URL() {
		t.Fatalf("credentials %s, endpoint %v, want %s:\n%s", cred.Status, got, srv.URL(), reportText(rep))
	}
}

// TestUnreachableEndpointsHandedOut: the control plane answers, but the
// endpoints it hands out do not resolve: the first check that uses them
// names service-unreachable, the endpoint and what failed.
func TestUnreachableEndpointsHandedOut(t *testing.T) {
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, Hostname: "kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid"}})
	ctl := env.NewControl(t, func(c *control.Config) { c.EndpointURL = "http://" + env.Server.Addr().String() })
	rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ice := rep.Check(doctor.CheckICEServers)
	if ice.Status != doctor.StatusFail || ice.Cause != viewer.CauseUnreachable || rep.Verdict.Cause != viewer.CauseUnreachable ||
		evidence(t, rep, doctor.CheckICEServers, "failed") != "dns" || !strings.Contains(ice.Advice, "kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid does not resolve") {
		t.Fatalf("%s", reportText(rep))
	}
}
