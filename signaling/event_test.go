package signaling

import (
	"errors"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func payload(t testing.TB, v any) string {
	t.Helper()
	p, err := kvsproto.EncodePayload(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var parseSeeds = []string{
	`{"messagePayload":"eyJ0eXBlIjoib2ZmZXIiLCJzZHAiOiJ2PTAuLi4ifQ==","messageType":"SDP_OFFER","senderClientId":"viewer-1"}`,
	`{"messagePayload":"eyJ0eXBlIjoiYW5zd2VyIiwic2RwIjoidj0wIn0=","messageType":"SDP_ANSWER"}`,
	`{"messagePayload":"eyJjYW5kaWRhdGUiOiJ1cGQgMTAuMTExLjM0Ljg4Iiwic2RwTWlkIjoiMSIsInNkcE1MaW5lSW5kZXgiOjF9","messageType":"ICE_CANDIDATE","senderClientId":"v"}`,
	`{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"1697058567743","errorType":"InvalidArgumentException","statusCode":"400","success":false}}`,
	`{"messageType":"STATUS_RESPONSE"}`,
	`{"messageType":"GO_AWAY"}`,
	`{"messageType":"RECONNECT_ICE_SERVER"}`,
	`{"messageType":"GO_AWAY","messagePayload":"bm90IGpzb24=","senderClientId":"x"}`,
	`{"message":"Endpoint request timed out","connectionId":"x","requestId":"y"}`,
	`{"messageType":"NEW_THING","messagePayload":"eA=="}`,
	`{"messageType":"SDP_OFFER","messagePayload":"%%%"}`,
	`{"messageType":"SDP_OFFER","messagePayload":"e30="}`,
	`{"MessageType":"SDP_ANSWER","MessagePayload":"eyJzZHAiOiJ2PTAifQ"}`,
	`not json`,
	``,
	`[]`,
}

func TestParseEvent(t *testing.T) {
	mid := "0"
	cases := []struct {
		frame   string
		typ     kvsproto.MessageType
		sender  string
		wantErr error
		check   func(t *testing.T, ev Event)
	}{
		{frame: parseSeeds[0], typ: kvsproto.MessageSDPOffer, sender: "viewer-1", check: func(t *testing.T, ev Event) {
			if ev.SDP == nil || ev.SDP.Type != "offer" || ev.SDP.SDP != "v=0..." {
				t.Errorf("SDP = %+v", ev.SDP)
			}
		}},
		{frame: parseSeeds[1], typ: kvsproto.MessageSDPAnswer, check: func(t *testing.T, ev Event) {
			if !ev.FromMaster() || ev.SDP.Type != "answer" {
				t.Errorf("%+v", ev)
			}
		}},
		{frame: parseSeeds[2], typ: kvsproto.MessageICECandidate, sender: "v", check: func(t *testing.T, ev Event) {
			if ev.Candidate == nil || ev.Candidate.Candidate != "upd 10.111.34.88" || *ev.Candidate.SDPMid != "1" || *ev.Candidate.SDPMLineIndex != 1 {
				t.Errorf("candidate = %+v", ev.Candidate)
			}
		}},
		{frame: parseSeeds[3], typ: kvsproto.MessageStatusResponse, check: func(t *testing.T, ev Event) {
			if ev.Status.CorrelationID != "1697058567743" || ev.Status.StatusCode.Int() != 400 || ev.Status.ErrorType != "InvalidArgumentException" {
				t.Errorf("status = %+v", ev.Status)
			}
		}},
		{frame: parseSeeds[4], typ: kvsproto.MessageStatusResponse, check: func(t *testing.T, ev Event) {
			if ev.Status == nil {
				t.Error("Status is nil")
			}
		}},
		{frame: parseSeeds[5], typ: kvsproto.MessageGoAway},
		{frame: parseSeeds[6], typ: kvsproto.MessageReconnectICEServer},
		{frame: parseSeeds[7], typ: kvsproto.MessageGoAway, sender: "x"},
		{frame: parseSeeds[8], wantErr: ErrUnknownEvent},
		{frame: parseSeeds[9], wantErr: ErrUnknownEvent},
		{frame: parseSeeds[10], wantErr: kvsproto.ErrMalformedMessage},
		{frame: parseSeeds[11], wantErr: kvsproto.ErrMalformedMessage}, // {} has no sdp
		{frame: parseSeeds[12], typ: kvsproto.MessageSDPAnswer, check: func(t *testing.T, ev Event) {
			if ev.SDP.Type != "answer" || ev.SDP.SDP != "v=0" {
				t.Errorf("SDP = %+v (type filled in, unpadded base64)", ev.SDP)
			}
		}},
		{frame: parseSeeds[13], wantErr: kvsproto.ErrMalformedMessage},
		{frame: parseSeeds[14], wantErr: kvsproto.ErrMalformedMessage},
		{frame: parseSeeds[15], wantErr: kvsproto.ErrMalformedMessage},
		{frame: `{"messageType":"ICE_CANDIDATE","messagePayload":"` + payload(t, kvsproto.ICECandidate{Candidate: "", SDPMid: &mid}) + `"}`,
			typ: kvsproto.MessageICECandidate, check: func(t *testing.T, ev Event) {
				if ev.Candidate.Candidate != "" {
					t.Error("end-of-candidates must be kept")
				}
			}},
	}
	for _, c := range cases {
		ev, err := ParseEvent([]byte(c.frame))
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) {
				t.Errorf("ParseEvent(%.60q) = %v, want %v", c.frame, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseEvent(%.60q): %v", c.frame, err)
			continue
		}
		if ev.Type != c.typ || ev.SenderClientID != c.sender || string(ev.Raw) != c.frame {
			t.Errorf("ParseEvent(%.60q) = %+v", c.frame, ev)
		}
		if c.check != nil {
			c.check(t, ev)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		ev, err := ParseEvent(frame)
		if err != nil {
			if !errors.Is(err, ErrUnknownEvent) && !errors.Is(err, kvsproto.ErrMalformedMessage) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !ev.Type.Known() {
			t.Fatalf("unknown type delivered: %q", ev.Type)
		}
		switch ev.Type {
		case kvsproto.MessageSDPOffer, kvsproto.MessageSDPAnswer:
			if ev.SDP == nil || ev.SDP.SDP == "" || ev.SDP.Type == "" {
				t.Fatalf("SDP event without SDP: %+v", ev)
			}
		case kvsproto.MessageICECandidate:
			if ev.Candidate == nil {
				t.Fatal("ICE event without candidate")
			}
		case kvsproto.MessageStatusResponse:
			if ev.Status == nil {
				t.Fatal("STATUS_RESPONSE without Status")
			}
		}
		var h candidateHolder
		_, _ = h.add(ev)
	})
}

func TestCandidateHolder(t *testing.T) {
	ice := func(sender, cand string) Event {
		return Event{Type: kvsproto.MessageICECandidate, SenderClientID: sender, Candidate: &kvsproto.ICECandidate{Candidate: cand}}
	}
	sdp := func(typ kvsproto.MessageType, sender string) Event {
		return Event{Type: typ, SenderClientID: sender, SDP: &kvsproto.SessionDescription{Type: "offer", SDP: "v=0"}}
	}
	var h candidateHolder
	var got []string
	push := func(ev Event) {
		out, dropped := h.add(ev)
		if dropped {
			t.Fatal("unexpected drop")
		}
		for _, e := range out {
			s := string(e.Type) + "/" + e.SenderClientID
			if e.Candidate != nil {
				s += "/" + e.Candidate.Candidate
			}
			got = append(got, s)
		}
	}
	push(ice("a", "1"))
	push(ice("b", "1"))
	push(ice("a", "2"))
	push(Event{Type: kvsproto.MessageGoAway})
	push(sdp(kvsproto.MessageSDPOffer, "a"))
	push(ice("a", "3"))
	push(ice("", "m1"))
	push(sdp(kvsproto.MessageSDPAnswer, ""))
	want := []string{
		"GO_AWAY/",
		"SDP_OFFER/a", "ICE_CANDIDATE/a/1", "ICE_CANDIDATE/a/2",
		"ICE_CANDIDATE/a/3",
		"SDP_ANSWER/", "ICE_CANDIDATE//m1",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if len(h.held["b"]) != 1 {
		t.Fatalf("b's candidate should still be held: %v", h.held)
	}
	for i := 0; i < maxHeldPerSender; i++ {
		h.add(ice("c", "x"))
	}
	if _, dropped := h.add(ice("c", "x")); !dropped {
		t.Fatal("expected a drop past the per-sender limit")
	}
}

func TestPresignedURLRedacted(t *testing.T) {
	u := PresignedURL("wss://h:1/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-ChannelARN=arn&X-Amz-Credential=AKID%2F20200101%2Fus-west-2%2Fkinesisvideo%2Faws4_request&X-Amz-Security-Token=tok&X-Amz-Signature=abcdef")
	r := u.Redacted()
	for _, secret := range []string{"AKID", "tok", "abcdef"} {
		if strings.Contains(r, secret) || strings.Contains(u.String(), secret) || strings.Contains(u.LogValue().String(), secret) {
			t.Errorf("redacted URL %q contains %q", r, secret)
		}
	}
	if !strings.Contains(r, "X-Amz-ChannelARN=arn") || !strings.Contains(r, "X-Amz-Signature=REDACTED") {
		t.Errorf("redacted URL = %q", r)
	}
}

func TestNewCorrelationID(t *testing.T) {
	a, b := NewCorrelationID(), NewCorrelationID()
	if a == b {
		t.Fatal("correlation ids repeat")
	}
	if err := kvsproto.ValidateCorrelationID(a); err != nil {
		t.Fatal(err)
	}
}
