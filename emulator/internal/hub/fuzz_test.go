package hub

import (
	"testing"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// FuzzHandle feeds arbitrary frames to a master and a viewer: the hub must
// never panic, and everything it sends must be a valid service event within
// the frame limit.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		`{"action":"SDP_OFFER","messagePayload":"` + offerP + `"}`,
		`{"action":"SDP_ANSWER","messagePayload":"` + answerP + `","recipientClientId":"viewer-1","correlationId":"1700000000123"}`,
		`{"action":"ICE_CANDIDATE","messagePayload":"` + iceP + `","recipientClientId":"viewer-1"}`,
		"{\n\t\"action\": \"SDP_OFFER\",\n\t\"RecipientClientId\": \"ProducerMaster\",\n\t\"MessagePayload\": \"" + offerP + "\",\n\t\"CorrelationId\": \"1_2\",\n\t\"IceServerList\": [{\"Uris\":[\"turn:x\"]}]\n}",
		`{"action":"SDP_OFFER","messagePayload":"` + offerP + `","recipientClientId":"AWS_x","correlationId":"k3"}`,
		`{"action":"SDP_OFFER","messagePayload":"a b","correlationId":"bad id!"}`,
		`{"action":1,"correlationId":"k10"}`,
		`["SDP_OFFER"]`, ``, `{`, `null`, `{"correlationId":"x"}`,
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	h := New(Config{MessageBurst: 1 << 20})
	defer h.Close()
	mc, vc := &fakeConn{}, &fakeConn{}
	master, err := h.Join(JoinRequest{ChannelARN: testARN, Role: kvsproto.RoleMaster, Conn: mc})
	if err != nil {
		f.Fatal(err)
	}
	viewer, err := h.Join(JoinRequest{ChannelARN: testARN, Role: kvsproto.RoleViewer, ClientID: "viewer-1", Conn: vc})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte, fromMaster bool) {
		if fromMaster {
			master.Handle(frame)
		} else {
			viewer.Handle(frame)
		}
		for _, c := range []*fakeConn{mc, vc} {
			for _, out := range c.take() {
				ev, err := kvsproto.DecodeEvent([]byte(out))
				if err != nil || !ev.MessageType.Known() {
					t.Fatalf("sent an invalid event %q: %v", out, err)
				}
				if len(out) > kvsproto.MaxFrameLen {
					t.Fatalf("sent a %d-byte frame", len(out))
				}
				if ev.MessageType == kvsproto.MessageStatusResponse && (ev.StatusResponse == nil || ev.StatusResponse.CorrelationID == "") {
					t.Fatalf("STATUS_RESPONSE without a correlation id: %s", out)
				}
			}
		}
	})
}
