package kvsproto

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestValidateClientID(t *testing.T) {
	cases := []struct {
		id      string
		ok      bool
		mention string
	}{
		{"viewer-1", true, ""},
		{"a", true, ""},
		{"A.b_c-9", true, ""},
		{strings.Repeat("x", 256), true, ""},
		{strings.Repeat("x", 257), false, "257"},
		{"", false, "empty"},
		{"has space", false, "' '"},
		{"slash/x", false, "'/'"},
		{"at@x", false, "'@'"},
		{"한글", false, "'한'"},
		{"AWS_viewer", false, "AWS_"},
		{"aws_viewer", false, "AWS_"},
		{"AWS", true, ""},
		{"AWSviewer", true, ""},
	}
	for _, c := range cases {
		err := ValidateClientID(c.id)
		if (err == nil) != c.ok {
			t.Errorf("ValidateClientID(%q) = %v, want ok=%v", c.id, err, c.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ValidateClientID(%q): error %v does not match ErrInvalid", c.id, err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "clientId" {
				t.Errorf("ValidateClientID(%q): want *ValidationError for clientId, got %#v", c.id, err)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("ValidateClientID(%q) = %q, want it to mention %q", c.id, err, c.mention)
			}
		}
	}
}

func TestParseChannelARN(t *testing.T) {
	good := "arn:aws:kinesisvideo:us-west-2:123456789012:channel/golden-channel/1700000000000"
	a, err := ParseChannelARN(good)
	if err != nil {
		t.Fatal(err)
	}
	want := ChannelARN{Partition: "aws", Region: "us-west-2", Account: "123456789012", Name: "golden-channel", CreationMillis: 1700000000000}
	if a != want {
		t.Fatalf("got %+v want %+v", a, want)
	}
	if a.String() != good {
		t.Fatalf("String() = %q", a.String())
	}
	for _, bad := range []string{
		"", "arn", "arn:aws:kinesisvideo:us-west-2:123456789012:channel/x", "arn:aws:s3:us-west-2:1:channel/x/1",
		"arn:aws:kinesisvideo:us-west-2:12a:channel/x/1", "arn:aws:kinesisvideo:us-west-2:1:stream/x/1",
		"arn:aws:kinesisvideo:us-west-2:1:channel/bad name/1", "arn:aws:kinesisvideo:US:1:channel/x/1",
		"arn:aws:kinesisvideo:us-west-2:1:channel/x/-1", "arn:aws:kinesisvideo:us-west-2:1:channel/x/1/2",
		"nope:aws:kinesisvideo:us-west-2:1:channel/x/1",
	} {
		if _, err := ParseChannelARN(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseChannelARN(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if PartitionForRegion("cn-north-1") != "aws-cn" || PartitionForRegion("us-gov-west-1") != "aws-us-gov" || PartitionForRegion("eu-west-1") != "aws" {
		t.Fatal("PartitionForRegion")
	}
}

func TestEnums(t *testing.T) {
	for _, s := range []string{"SDP_OFFER", "SDP_ANSWER", "ICE_CANDIDATE"} {
		a, err := ParseAction(s)
		if err != nil || a.String() != s {
			t.Errorf("ParseAction(%q) = %v, %v", s, a, err)
		}
	}
	if _, err := ParseAction("sdp_offer"); err == nil {
		t.Error("ParseAction is case-sensitive")
	}
	for _, s := range []string{"MASTER", "VIEWER"} {
		if r, err := ParseRole(s); err != nil || r.String() != s {
			t.Errorf("ParseRole(%q)", s)
		}
	}
	if _, err := ParseRole("viewer"); err == nil {
		t.Error("ParseRole(viewer) should fail")
	}
	for _, s := range []string{"WSS", "HTTPS", "WEBRTC"} {
		if p, err := ParseProtocol(s); err != nil || p.String() != s {
			t.Errorf("ParseProtocol(%q)", s)
		}
	}
	if _, err := ParseChannelType("SINGLE_MASTER"); err != nil {
		t.Error(err)
	}
	if !MessageGoAway.Known() || MessageType("X").Known() {
		t.Error("Known")
	}
}

func TestDecodeClientMessage(t *testing.T) {
	// JS SDK form.
	m, err := DecodeClientMessage([]byte(`{"action":"SDP_OFFER","messagePayload":"eyJ0eXBlIjoib2ZmZXIifQ=="}`))
	if err != nil || m.Action != ActionSDPOffer || m.RecipientClientID != "" {
		t.Fatalf("JS form: %+v %v", m, err)
	}
	// C SDK form: capitalised keys, pretty-printed, extra IceServerList.
	c := "{\n\t\"action\": \"SDP_OFFER\",\n\t\"RecipientClientId\": \"ProducerMaster\",\n\t\"MessagePayload\": \"eyJ0eXBlIjoib2ZmZXIifQ==\",\n\t\"CorrelationId\": \"1_2\",\n\t\"IceServerList\": [{\"Uris\":[\"turn:x\"]}]\n}"
	m, err = DecodeClientMessage([]byte(c))
	if err != nil || m.RecipientClientID != "ProducerMaster" || m.CorrelationID != "1_2" {
		t.Fatalf("C form: %+v %v", m, err)
	}
	// Validation errors keep the correlation id.
	m, err = DecodeClientMessage([]byte(`{"action":"NOPE","messagePayload":"eA==","correlationId":"c1"}`))
	if !errors.Is(err, ErrInvalid) || m.CorrelationID != "c1" {
		t.Fatalf("bad action: %+v %v", m, err)
	}
	for _, bad := range []string{``, `[]`, `{`, `"x"`, `{"action":1}`} {
		if _, err := DecodeClientMessage([]byte(bad)); !errors.Is(err, ErrMalformedMessage) {
			t.Errorf("DecodeClientMessage(%q) = %v, want ErrMalformedMessage", bad, err)
		}
	}
	for _, bad := range []string{
		`{"action":"SDP_OFFER","messagePayload":""}`,
		`{"action":"SDP_OFFER","messagePayload":"not base64!"}`,
		`{"action":"SDP_OFFER","messagePayload":"` + strings.Repeat("A", MaxMessagePayloadLen+1) + `"}`,
		`{"action":"SDP_OFFER","messagePayload":"eA==","recipientClientId":"bad id"}`,
		`{"action":"SDP_OFFER","messagePayload":"eA==","correlationId":"bad id"}`,
	} {
		if _, err := DecodeClientMessage([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeClientMessage(%.60q) = %v, want ErrInvalid", bad, err)
		}
	}
	out, _ := (&ClientMessage{Action: ActionSDPAnswer, MessagePayload: "eA==", RecipientClientID: "v1"}).Encode()
	if string(out) != `{"action":"SDP_ANSWER","messagePayload":"eA==","recipientClientId":"v1"}` {
		t.Fatalf("Encode = %s", out)
	}
}

func TestEvent(t *testing.T) {
	e := Event{MessageType: MessageICECandidate, MessagePayload: "eA==", SenderClientID: "v1"}
	b, _ := e.Encode()
	if string(b) != `{"messagePayload":"eA==","messageType":"ICE_CANDIDATE","senderClientId":"v1"}` {
		t.Fatalf("Encode = %s", b)
	}
	b, _ = (&Event{MessageType: MessageGoAway}).Encode()
	if string(b) != `{"messageType":"GO_AWAY"}` {
		t.Fatalf("GO_AWAY = %s", b)
	}
	sr := `{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"1697058567743","errorType":"InvalidArgumentException","statusCode":"400","success":false}}`
	ev, err := DecodeEvent([]byte(sr))
	if err != nil || ev.StatusResponse == nil || ev.StatusResponse.StatusCode.Int() != 400 || !ev.FromMaster() {
		t.Fatalf("status: %+v %v", ev, err)
	}
	ev, err = DecodeEvent([]byte(`{"messageType":"STATUS_RESPONSE","statusResponse":{"statusCode":400}}`))
	if err != nil || ev.StatusResponse.StatusCode != "400" {
		t.Fatalf("numeric statusCode: %+v %v", ev, err)
	}
	ev, err = DecodeEvent([]byte(`{"message":"Endpoint request timed out","connectionId":"x","requestId":"y"}`))
	if err != nil || ev.MessageType != "" {
		t.Fatalf("API gateway frame: %+v %v", ev, err)
	}
	if _, err := DecodeEvent([]byte(`nope`)); !errors.Is(err, ErrMalformedMessage) {
		t.Fatal("want ErrMalformedMessage")
	}
}

func TestPayload(t *testing.T) {
	mid := "0"
	idx := uint16(0)
	in := ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", SDPMid: &mid, SDPMLineIndex: &idx}
	p, err := EncodePayload(in)
	if err != nil {
		t.Fatal(err)
	}
	var out ICECandidate
	if err := DecodePayload(p, &out); err != nil || out.Candidate != in.Candidate || *out.SDPMid != "0" {
		t.Fatalf("%+v %v", out, err)
	}
	var sd SessionDescription
	if err := DecodePayload("%%%", &sd); !errors.Is(err, ErrMalformedMessage) {
		t.Fatal("bad base64")
	}
	if err := DecodePayload("eA==", &sd); !errors.Is(err, ErrMalformedMessage) {
		t.Fatal("bad json")
	}
}

// TestGoldenFrames parses every client->server frame the official JS SDK sent
// in the browser captures, and decodes every payload.
func TestGoldenFrames(t *testing.T) {
	for _, f := range []string{"browser-capture-fixed-time.json", "browser-capture-session-token.json"} {
		raw, err := os.ReadFile("../testdata/vectors/" + f)
		if err != nil {
			t.Fatal(err)
		}
		var cap struct {
			Messages []struct {
				Direction string `json:"direction"`
				Raw       string `json:"raw"`
				Role      string `json:"role"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(raw, &cap); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range cap.Messages {
			switch m.Direction {
			case "client->server":
				cm, err := DecodeClientMessage([]byte(m.Raw))
				if err != nil {
					t.Errorf("%s: %v: %.80s", f, err, m.Raw)
					continue
				}
				if m.Role == "VIEWER" && cm.RecipientClientID != "" {
					t.Errorf("viewer frame with recipient: %.80s", m.Raw)
				}
				var v map[string]any
				if err := DecodePayload(cm.MessagePayload, &v); err != nil {
					t.Error(err)
				}
				n++
			case "server->client":
				ev, err := DecodeEvent([]byte(m.Raw))
				if err != nil || !ev.MessageType.Known() {
					t.Errorf("%s: event %v: %.80s", f, err, m.Raw)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no client frames", f)
		}
	}
}

func FuzzDecodeClientMessage(f *testing.F) {
	f.Add([]byte(`{"action":"SDP_OFFER","messagePayload":"eA=="}`))
	f.Add([]byte("{\n\t\"action\": \"ICE_CANDIDATE\",\n\t\"RecipientClientId\": \"x\",\n\t\"MessagePayload\": \"eA==\"}"))
	f.Add([]byte(`{"action":"SDP_ANSWER","messagePayload":"eA==","correlationId":"a b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClientMessage(b)
		if err == nil {
			if m.Validate() != nil {
				t.Fatal("decoded message does not validate")
			}
			out, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			m2, err := DecodeClientMessage(out)
			if err != nil || m2 != m {
				t.Fatalf("round trip: %+v vs %+v (%v)", m, m2, err)
			}
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"messageType":"STATUS_RESPONSE","statusResponse":{"statusCode":400}}`))
	f.Add([]byte(`{"messagePayload":"eA==","messageType":"SDP_OFFER","senderClientId":"v"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeEvent(b)
	})
}

func FuzzParseChannelARN(f *testing.F) {
	f.Add("arn:aws:kinesisvideo:us-west-2:123456789012:channel/golden-channel/1700000000000")
	f.Add("arn:aws:kinesisvideo:us-west-2:1:channel//1")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseChannelARN(s)
		if err == nil {
			b, err := ParseChannelARN(a.String())
			if err != nil || a != b {
				t.Fatalf("round trip %q: %+v %+v %v", s, a, b, err)
			}
		}
	})
}

func FuzzValidateClientID(f *testing.F) {
	f.Add("viewer-1")
	f.Add("AWS_x")
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateClientID(s)
		if err == nil && (len(s) == 0 || len(s) > 256 || strings.HasPrefix(strings.ToUpper(s), "AWS_")) {
			t.Fatalf("accepted %q", s)
		}
	})
}
