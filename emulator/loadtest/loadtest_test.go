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

func TestFileBudget(t *testing.T) {
	if got := FilesNeeded(10010); got != 10010+FileReserve {
		t.Errorf("FilesNeeded(10010) = %d", got)
	}
	// 20,000 files: 1,794 channels of 10 viewers in a process of their own,
	// 897 when generator and service share one.
	if got := MaxChannels(20000, 10, 1); got != (20000-FileReserve)/11 {
		t.Errorf("MaxChannels(20000, 10, 1) = %d", got)
	}
	if got := MaxChannels(20000, 10, 2); got != (10000-FileReserve)/11 {
		t.Errorf("MaxChannels(20000, 10, 2) = %d", got)
	}
	for _, c := range []int{MaxChannels(20000, 10, 1), MaxChannels(20000, 10, 2)} {
		if FilesNeeded(c*11) > 20000 {
			t.Errorf("%d channels do not fit", c)
		}
	}
	if got := MaxChannels(100, 10, 2); got != 0 {
		t.Errorf("MaxChannels(100, 10, 2) = %d, want 0", got)
	}
}

func TestRunRefusesOverFileLimit(t *testing.T) {
	limit, err := RaiseFileLimit()
	if err != nil {
		t.Skipf("no file limit: %v", err)
	}
	if limit > 1<<24 {
		t.Skipf("file limit %d too large to exceed", limit)
	}
	_, err = Run(context.Background(), Config{Endpoint: "http://127.0.0.1:1", Channels: int(limit), ViewersPerChannel: 1})
	if !errors.Is(err, ErrFileLimit) || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("Run over the file limit: %v", err)
	}
}
