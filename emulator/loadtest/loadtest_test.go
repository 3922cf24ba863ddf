package loadtest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func TestFrameRoundTrip(t *testing.T) {
	r := &runner{pad: strings.Repeat("x", 50)}
	before := time.Now().UnixNano()
	f := r.frame("viewer-1")
	m, err := kvsproto.DecodeClientMessage(f)
	if err != nil || m.Action != kvsproto.ActionICECandidate || m.RecipientClientID != "viewer-1" {
		t.Fatalf("frame %s: %+v %v", f, m, err)
	}
	var cand kvsproto.ICECandidate
	if err := kvsproto.DecodePayload(m.MessagePayload, &cand); err != nil || !strings.HasPrefix(cand.Candidate, "candidate:") {
		t.Fatalf("payload: %+v %v", cand, err)
	}
	// The service turns it into an event; the receiver finds the time.
	ev := []byte(`{"messagePayload":"` + m.MessagePayload + `","messageType":"ICE_CANDIDATE","senderClientId":"v"}`)
	ts, ok := payloadTime(field(ev, `"messagePayload":"`))
	if !ok || ts < before || ts > time.Now().UnixNano() {
		t.Fatalf("payloadTime = %d, %v", ts, ok)
	}
	if string(field(ev, `"senderClientId":"`)) != "v" || field(ev, `"nope":"`) != nil {
		t.Fatal("field")
	}
	if _, ok := payloadTime([]byte("short")); ok {
		t.Fatal("payloadTime accepted a short payload")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{}, {Endpoint: "http://x", Channels: -1}, {Endpoint: "http://x", ChannelPrefix: "bad prefix"}} {
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("Run(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}
