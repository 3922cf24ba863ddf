package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// masterTestViewer connects to channel "demo" as a viewer and returns the
// first video frame it receives.
func masterTestViewer(t *testing.T, env *kvstest.Env) media.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctl := env.Control
	ch, err := ctl.ResolveChannel(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := ctl.Endpoints(ctx, ch.ARN, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signaling.Dial(ctx, signaling.Config{
		Endpoint: ep.WSS, ChannelARN: ch.ARN, Role: kvsproto.RoleViewer, ClientID: "cli-test-viewer",
		Region: ctl.Region(), Credentials: ctl.SigV4Credentials, Now: ctl.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sig.Close()
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, VideoCodecs: []string{"H264"}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	frames := make(chan media.Frame, 1)
	var trackOnce sync.Once
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		trackOnce.Do(func() {
			sink := masterTestSink(func(f media.Frame) {
				select {
				case frames <- f:
				default:
				}
			})
			rcv, err := media.NewReceiver(track, media.ReceiverConfig{Sinks: []media.Sink{sink}})
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = rcv.Run(ctx)
			}()
		})
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			j := c.ToJSON()
			_ = sig.SendICECandidate(ctx, kvsproto.ICECandidate{Candidate: j.Candidate, SDPMid: j.SDPMid, SDPMLineIndex: j.SDPMLineIndex}, "", "")
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if err := sig.SendOffer(ctx, kvsproto.SessionDescription{Type: "offer", SDP: offer.SDP}, "", ""); err != nil {
		t.Fatal(err)
	}
	var pending []webrtc.ICECandidateInit
	remote := false
	for {
		select {
		case ev, ok := <-sig.Events():
			if !ok {
				t.Fatalf("signaling ended: %v", sig.Err())
			}
			switch ev.Type {
			case kvsproto.MessageSDPAnswer:
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ev.SDP.SDP}); err != nil {
					t.Fatal(err)
				}
				remote = true
				for _, c := range pending {
					_ = pc.AddICECandidate(c)
				}
			case kvsproto.MessageICECandidate:
				c := webrtc.ICECandidateInit{Candidate: ev.Candidate.Candidate, SDPMid: ev.Candidate.SDPMid, SDPMLineIndex: ev.Candidate.SDPMLineIndex}
				if remote {
					_ = pc.AddICECandidate(c)
				} else {
					pending = append(pending, c)
				}
			}
		case f := <-frames:
			return f
		case <-ctx.Done():
			t.Fatal("no video frame from the master within 30 s")
		}
	}
}

// masterTestSink adapts a function to media.Sink.
type masterTestSink func(media.Frame)

func (f masterTestSink) WriteFrame(fr media.Frame) error { f(fr); return nil }

func waitOutput(t *testing.T, buf *testutil.Buffer, want string, done <-chan int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(buf.String(), want) {
		select {
		case code := <-done:
			t.Fatalf("kvsrtc master exited with %d before printing %q:\n%s", code, want, buf.String())
		case <-deadline:
			t.Fatalf("no %q within 30 s:\n%s", want, buf.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestMasterCommandServesAViewer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		stdin []byte
	}{
		{"testsrc", []string{"--audio"}, nil},
		{"stdin", []string{"--source", "-", "--fps", "30"}, testsrc.H264()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaks := goleak.IgnoreCurrent()
			kvstest.IsolateEnv(t) // so that env.Control uses env.HTTPClient, which env.Close cleans up
			env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{DisableQuotas: true}})
			env.Setenv(t)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout, stderr testutil.Buffer
			done := make(chan int, 1)
			args := append([]string{"master", "--channel", "demo", "--create", "--loopback-only"}, tc.args...)
			go func() { done <- Main(ctx, args, bytes.NewReader(tc.stdin), &stdout, &stderr) }()
			waitOutput(t, &stderr, "master ready on channel demo (arn:aws:kinesisvideo:", done)
			if !strings.Contains(stderr.String(), "channel created") {
				t.Errorf("--create did not report creating the channel:\n%s", stderr.String())
			}

			f := masterTestViewer(t, env)
			if !f.Keyframe || f.Codec != rtc.CodecH264 || f.Width != testsrc.Width || f.Height != testsrc.Height {
				t.Fatalf("first frame: %s keyframe=%v %dx%d", f.Codec, f.Keyframe, f.Width, f.Height)
			}
			waitOutput(t, &stderr, "viewer joined", done)
			waitOutput(t, &stderr, "viewer left", done) // the test viewer hung up

			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Fatalf("exit code %d:\n%s", code, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("kvsrtc master did not stop within 30 s of cancellation")
			}
			if stdout.String() != "" {
				t.Errorf("unexpected stdout: %q", stdout.String())
			}
			// Closing the emulator ends the idle keep-alive connections of
			// the AWS SDK's HTTP clients (the command's and env.Control's);
			// nothing else of the command may be left.
			_ = env.Close()
			goleak.VerifyNone(t, leaks)
		})
	}
}

func TestMasterCommandUsageErrors(t *testing.T) {
	kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"demo"}}}).Setenv(t)
	dir := t.TempDir()
	mp4 := filepath.Join(dir, "clip.mp4")
	if err := os.WriteFile(mp4, []byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"), 0o644); err != nil {
		t.Fatal(err)
	}
	ogg := filepath.Join(dir, "tone.ogg")
	if err := os.WriteFile(ogg, testsrc.OpusOgg(), 0o644); err != nil {
		t.Fatal(err)
	}
	ivf := filepath.Join(dir, "pattern.ivf")
	if err := os.WriteFile(ivf, testsrc.VP8IVF(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no channel", nil, 2, "--channel"},
		{"both channels", []string{"--channel", "demo", "--channel-arn", "arn:aws:kinesisvideo:us-west-2:123456789012:channel/demo/1"}, 2, "not both"},
		{"name as arn", []string{"--channel-arn", "demo"}, 2, "not an ARN"},
		{"create with arn", []string{"--channel-arn", "arn:aws:kinesisvideo:us-west-2:123456789012:channel/demo/1", "--create"}, 2, "--create"},
		{"missing file", []string{"--channel", "demo", "--source", filepath.Join(dir, "nope.h264")}, 2, "no such file"},
		{"mp4", []string{"--channel", "demo", "--source", mp4}, 2, "MP4"},
		{"audio as video", []string{"--channel", "demo", "--source", ogg}, 2, "--audio-file"},
		{"video as audio", []string{"--channel", "demo", "--audio-file", ivf}, 2, "Ogg/Opus"},
		{"tone twice", []string{"--channel", "demo", "--audio", "--audio-file", ogg}, 2, "not both"},
		{"bad fps", []string{"--channel", "demo", "--fps", "0"}, 2, "--fps"},
		{"bad viewers", []string{"--channel", "demo", "--max-viewers", "0"}, 2, "--max-viewers"},
		{"bad log level", []string{"--channel", "demo", "--log-level", "loud"}, 2, "--log-level"},
		{"stray argument", []string{"--channel", "demo", "extra"}, 2, "unexpected argument"},
		{"bad channel name", []string{"--channel", "a b"}, 2, "invalid"},
		{"unknown channel", []string{"--channel", "nope", "--loopback-only"}, 1, "--create"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stdout, stderr testutil.Buffer
			code := Main(ctx, append([]string{"master"}, tc.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\n(want it to mention %q)", code, tc.code, stderr.String(), tc.want)
			}
		})
	}
}
