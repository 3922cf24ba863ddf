package viewer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// cSDKCanTrickle is how the KVS WebRTC C SDK v1.14.0 decides whether the
// remote peer trickles (PeerConnection.c: it assumes it cannot, then looks
// for "trickle" in the SDP's ice-options): an offer without it is answered
// only when the camera's own candidate gathering ends, 10 s later.
func cSDKCanTrickle(sdp string) bool {
	for line := range strings.SplitSeq(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-options:"); ok && strings.Contains(v, "trickle") {
			return true
		}
	}
	return false
}

// rawMaster connects to channel "cam" as its master, with nothing behind
// the signaling connection: the test plays the camera.
func rawMaster(t *testing.T, e *kvstest.Env) *signaling.Client {
	t.Helper()
	ch, err := e.Control.ResolveChannel(t.Context(), "cam")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := e.Control.Endpoints(t.Context(), ch.ARN, kvsproto.RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	m, err := signaling.Dial(t.Context(), signaling.Config{Endpoint: ep.WSS, ChannelARN: ch.ARN, Role: kvsproto.RoleMaster,
		Region: e.Control.Region(), Credentials: e.Control.SigV4Credentials, Now: e.Control.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestViewerOfferIsTrickleForTheCSDK: the offers the viewer sends (the
// first and a retry's) are ones the C SDK answers at once. A raw master on
// the emulator captures them as they cross the service.
func TestViewerOfferIsTrickleForTheCSDK(t *testing.T) {
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	ctx := t.Context()
	m := rawMaster(t, e)
	defer m.Close()
	vctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true,
			Retry: viewer.RetryPolicy{AnswerTimeout: 300 * time.Millisecond, MaxAttempts: 2, BackoffBase: 10 * time.Millisecond, BackoffCap: 20 * time.Millisecond, LateAnswerWindow: -1}})
		if err == nil {
			err = s.Run(vctx)
		}
		done <- err
	}()
	offers := 0
	deadline := time.After(20 * time.Second)
	for offers < 2 {
		select {
		case ev := <-m.Events():
			if ev.Type == kvsproto.MessageSDPOffer && ev.SDP != nil {
				offers++
				if !cSDKCanTrickle(ev.SDP.SDP) {
					t.Errorf("offer %d is non-trickle to the C SDK (no a=ice-options:trickle): a C SDK camera answers it only after 10 s\n%s", offers, ev.SDP.SDP)
				}
			}
		case <-deadline:
			t.Fatalf("%d offers arrived", offers)
		}
	}
	cancel()
	<-done
}

// TestViewerNamesAMasterThatSendsNoCandidates: a master that answers but
// never trickles and puts no candidate in its answer cannot be reached; the
// error says so instead of a bare "no media".
func TestViewerNamesAMasterThatSendsNoCandidates(t *testing.T) {
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	ctx := t.Context()
	m := rawMaster(t, e)
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var pcs []*webrtc.PeerConnection
	served := make(chan struct{})
	defer func() {
		_ = m.Close()
		<-served
		for _, pc := range pcs {
			_ = pc.Close()
		}
	}()
	go func() {
		defer close(served)
		for ev := range m.Events() {
			if ev.Type != kvsproto.MessageSDPOffer || ev.SDP == nil {
				continue // the viewer's candidates are ignored too
			}
			pc, err := api.NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				return
			}
			pcs = append(pcs, pc)
			if pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: ev.SDP.SDP}) != nil {
				return
			}
			ans, err := pc.CreateAnswer(nil) // before gathering: no candidates in it
			if err != nil {
				return
			}
			_ = m.SendAnswer(ctx, kvsproto.SessionDescription{Type: "answer", SDP: ans.SDP}, ev.SenderClientID, "")
		}
	}()
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true,
		Retry: viewer.RetryPolicy{AnswerTimeout: 2 * time.Second, MediaTimeout: time.Second, MaxAttempts: 1, LateAnswerWindow: -1}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "sent no ICE candidates") {
		t.Fatalf("want an error naming the missing candidates, got %v", err)
	}
	t.Log(err)
}
