package rtc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// peerPair returns two loopback-only VP8 Peers, closed when the test ends:
// a viewer with a receive-only video transceiver, and its counterpart.
func peerPair(t *testing.T) (viewer, other *rtc.Peer) {
	t.Helper()
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, VideoCodecs: []string{"VP8"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []**rtc.Peer{&viewer, &other} {
		if *p, err = rtc.NewPeer(api, webrtc.Configuration{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = (*p).Close() })
	}
	if _, err := viewer.PC.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	return viewer, other
}

// TestPeerNegotiatesAndCloses: a Peer offers (trickle announced in what is
// sent, not in its local description), keeps remote candidates that come
// before the answer, delivers the remote track, and Close ends the
// goroutines it owns.
func TestPeerNegotiatesAndCloses(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	viewer, camera := peerPair(t)

	capability, err := rtc.Capability(rtc.CodecVP8)
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticSample(capability, "video", "kvsrtc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := camera.PC.AddTrack(track); err != nil {
		t.Fatal(err)
	}

	sent, err := viewer.Offer(nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := rtc.Summarize(sent)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Trickle {
		t.Error("the offer to send does not announce trickle ICE")
	}
	if ld := viewer.PC.LocalDescription(); ld == nil || ld.SDP == sent {
		t.Error("the local description was modified (pion would refuse it); only what is sent carries trickle")
	}
	if err := camera.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sent}); err != nil {
		t.Fatal(err)
	}
	answer, err := camera.PC.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := camera.PC.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}

	// The camera's candidates reach the viewer before the answer does.
	early := passCandidates(t, camera, viewer)
	if early == 0 || viewer.Pending() != early {
		t.Fatalf("%d candidates before the answer, %d kept", early, viewer.Pending())
	}
	if err := viewer.SetAnswer(answer.SDP); err != nil {
		t.Fatal(err)
	}
	if viewer.Pending() != 0 {
		t.Errorf("%d candidates still pending after the answer", viewer.Pending())
	}
	if err := viewer.AddCandidate(webrtc.ICECandidateInit{Candidate: "candidate:not a candidate"}); !errors.Is(err, rtc.ErrCandidate) {
		t.Errorf("a malformed candidate after the answer: %v, want ErrCandidate", err)
	}

	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	var got rtc.Track
	connected := false
	for got.Remote == nil {
		select {
		case c := <-viewer.Candidates():
			if err := camera.PC.AddICECandidate(c.ToJSON()); err != nil {
				t.Fatal(err)
			}
		case st := <-camera.States():
			connected = connected || st == webrtc.PeerConnectionStateConnected
		case <-viewer.States():
		case <-viewer.ICEStates():
		case <-camera.ICEStates():
		case <-ticker.C:
			if connected {
				if err := track.WriteSample(media.Sample{Data: vp8Keyframe(), Duration: 33 * time.Millisecond}); err != nil {
					t.Fatal(err)
				}
			}
		case got = <-viewer.Tracks():
		case <-ctx.Done():
			t.Fatal("no remote track before the timeout")
		}
	}
	viewer.ReadRTCP(got.Receiver)
	read := make(chan error, 1)
	viewer.Go(func(ctx context.Context) {
		for {
			if _, _, err := got.Remote.ReadRTP(); err != nil {
				read <- err
				return
			}
		}
	})

	if err := viewer.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// Close waited for the goroutines it owns: the reader has ended.
	select {
	case err := <-read:
		if err == nil {
			t.Error("the track reader ended without an error")
		}
	default:
		t.Error("Close returned while a goroutine it owns was still running")
	}
	select {
	case <-viewer.Done():
	default:
		t.Error("Done is not closed after Close")
	}
	if err := viewer.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if st := viewer.PC.ConnectionState(); st != webrtc.PeerConnectionStateClosed {
		t.Errorf("state after Close: %v", st)
	}
}

// TestPeerBadAnswer: an answer that is not SDP is refused with an error and
// the candidates kept for it stay pending.
func TestPeerBadAnswer(t *testing.T) {
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rtc.NewPeer(api, webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.PC.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Offer(nil); err != nil {
		t.Fatal(err)
	}
	if err := p.AddCandidate(webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"}); err != nil {
		t.Fatal(err)
	}
	err = p.SetAnswer("not sdp")
	if err == nil {
		t.Fatal("a non-SDP answer was applied")
	}
	if p.Pending() != 1 {
		t.Errorf("pending = %d after a refused answer, want 1", p.Pending())
	}
}

// TestPeerAnswers: the answering side. Candidates that come before the
// offer wait for it; the answer to send announces trickle ICE and carries
// the host candidates gathered within the wait (the local description
// itself is pion's); both peers connect.
func TestPeerAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	viewer, master := peerPair(t)
	offer, err := viewer.Offer(nil)
	if err != nil {
		t.Fatal(err)
	}

	// The viewer's candidates reach the master before its offer does.
	early := passCandidates(t, viewer, master)
	if early == 0 || master.Pending() != early {
		t.Fatalf("%d candidates before the offer, %d kept", early, master.Pending())
	}
	if err := master.SetOffer(offer); err != nil {
		t.Fatal(err)
	}
	if master.Pending() != 0 {
		t.Errorf("%d candidates still pending after the offer", master.Pending())
	}
	capability, err := rtc.Capability(rtc.CodecVP8)
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticSample(capability, "video", "kvsrtc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := master.PC.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	answer, err := master.Answer(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := rtc.Summarize(answer)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Trickle {
		t.Error("the answer to send does not announce trickle ICE")
	}
	if !strings.Contains(answer, "a=candidate:") {
		t.Error("the answer to send carries no host candidate")
	}
	if ld := master.PC.LocalDescription(); ld == nil || ld.Type != webrtc.SDPTypeAnswer || ld.SDP == answer {
		t.Error("the local description is not pion's own answer")
	}
	if err := viewer.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}

	var viewerUp, masterUp bool
	for !viewerUp || !masterUp {
		select {
		case c := <-master.Candidates():
			if err := viewer.AddCandidate(c.ToJSON()); err != nil {
				t.Fatal(err)
			}
		case st := <-viewer.States():
			viewerUp = viewerUp || st == webrtc.PeerConnectionStateConnected
		case st := <-master.States():
			masterUp = masterUp || st == webrtc.PeerConnectionStateConnected
		case <-viewer.ICEStates():
		case <-master.ICEStates():
		case <-viewer.Tracks():
		case <-ctx.Done():
			t.Fatalf("not connected before the timeout (viewer %v, master %v)", viewerUp, masterUp)
		}
	}
	if err := master.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestPeerBadOffer: an offer that is not SDP is refused with an error, and
// the candidates kept for it stay pending.
func TestPeerBadOffer(t *testing.T) {
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rtc.NewPeer(api, webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.AddCandidate(webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetOffer("not sdp"); err == nil {
		t.Fatal("a non-SDP offer was applied")
	}
	if p.Pending() != 1 {
		t.Errorf("pending = %d after a refused offer, want 1", p.Pending())
	}
}

// passCandidates hands every candidate from gathers until its gathering
// ends to to's AddCandidate and returns how many there were.
func passCandidates(t *testing.T, from, to *rtc.Peer) int {
	t.Helper()
	n := 0
	add := func(c *webrtc.ICECandidate) {
		if err := to.AddCandidate(c.ToJSON()); err != nil {
			t.Fatal(err)
		}
		n++
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-from.Candidates():
			add(c)
		case <-from.Gathered():
			// The end of gathering and the last candidates can both be
			// ready, and select picks either: take what is still queued.
			for {
				select {
				case c := <-from.Candidates():
					add(c)
				default:
					return n
				}
			}
		case <-deadline:
			t.Fatal("gathering did not end")
		}
	}
}
