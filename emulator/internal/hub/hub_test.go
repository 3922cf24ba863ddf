package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// This file is over 500 lines on purpose: the hub's routing rules (who
// receives which message, buffering until a late join, expiry, quotas),
// one test per rule, most of them under testing/synctest.

// Payloads of kvs-protocol.md §4.12.
var (
	offerP  = "eyJ0eXBlIjoib2ZmZXIiLCJzZHAiOiJ2PTAuLi4ifQ==" // {"type":"offer","sdp":"v=0..."}
	answerP = "eyJ0eXBlIjoiYW5zd2VyIiwic2RwIjoidj0wLi4uIn0=" // {"type":"answer","sdp":"v=0..."}
	iceP    = "eyJjYW5kaWRhdGUiOiJjYW5kaWRhdGU6MSAxIHVkcCAxIDEyNy4wLjAuMSA1MDAwIHR5cCBob3N0Iiwic2RwTWlkIjoiMCIsInNkcE1MaW5lSW5kZXgiOjB9"
)

// TestWorkedExchange replays kvs-protocol.md §4.12 and compares every frame
// the hub sends byte for byte.
func TestWorkedExchange(t *testing.T) {
	h := newTestHub(t, Config{})
	master, mc := h.master(testARN)
	viewer, vc := h.viewer(testARN, "viewer-1")
	frames(t, mc)
	frames(t, vc) // nothing is sent on connect

	// 3, 4
	viewer.Handle([]byte(`{"action":"SDP_OFFER","messagePayload":"` + offerP + `"}`))
	frames(t, mc, `{"messagePayload":"`+offerP+`","messageType":"SDP_OFFER","senderClientId":"viewer-1"}`)
	// 5, 6
	viewer.Handle([]byte(`{"action":"ICE_CANDIDATE","messagePayload":"` + iceP + `"}`))
	frames(t, mc, `{"messagePayload":"`+iceP+`","messageType":"ICE_CANDIDATE","senderClientId":"viewer-1"}`)
	// 7, 8
	master.Handle([]byte(`{"action":"SDP_ANSWER","messagePayload":"` + answerP + `","recipientClientId":"viewer-1","correlationId":"1700000000123"}`))
	frames(t, vc, `{"messagePayload":"`+answerP+`","messageType":"SDP_ANSWER"}`)
	// 9
	master.Handle([]byte(`{"action":"ICE_CANDIDATE","messagePayload":"` + iceP + `","recipientClientId":"viewer-1"}`))
	frames(t, vc, `{"messagePayload":"`+iceP+`","messageType":"ICE_CANDIDATE"}`)
	frames(t, mc)
	// 10
	master.Handle([]byte(`{"action":"SDP_ANSWER","messagePayload":"` + answerP + `","recipientClientId":"viewer 1","correlationId":"1700000000123"}`))
	got := mc.take()
	if len(got) != 1 {
		t.Fatalf("want a STATUS_RESPONSE, got %q", got)
	}
	generic := regexp.MustCompile(`"description":"(?:[^"\\]|\\.)*"`).ReplaceAllString(got[0], `"description":"..."`)
	want := `{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"1700000000123","errorType":"InvalidArgumentException","statusCode":"400","description":"...","success":false}}`
	if generic != want {
		t.Fatalf("STATUS_RESPONSE\ngot:  %s\nwant: %s", got[0], want)
	}
	if !strings.Contains(got[0], "recipientClientId") {
		t.Errorf("description does not name the field: %s", got[0])
	}
	frames(t, vc)
	if s := h.Stats(); s.Routed != 4 || s.Errors != 1 || s.Masters != 1 || s.Viewers != 1 || s.Channels != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestSDKFrameVariants routes the frames the official clients really send.
func TestSDKFrameVariants(t *testing.T) {
	h := newTestHub(t, Config{})
	master, mc := h.master(testARN)
	viewer, vc := h.viewer(testARN, "ConsumerViewer")

	// C SDK viewer: capitalised keys, pretty-printed, a guessed recipient that
	// must be ignored, an extra IceServerList.
	cViewer := "{\n\t\"action\": \"SDP_OFFER\",\n\t\"RecipientClientId\": \"ProducerMaster\",\n\t\"MessagePayload\": \"" + offerP +
		"\",\n\t\"CorrelationId\": \"1_2\",\n\t\"IceServerList\": [{\"Password\":\"p\",\"Ttl\":300,\"Uris\":[\"turn:x\"],\"Username\":\"u\"}]\n}"
	viewer.Handle([]byte(cViewer))
	frames(t, mc, event(kvsproto.ActionSDPOffer, offerP, "ConsumerViewer"))

	// C SDK master.
	cMaster := "{\n\t\"action\": \"SDP_ANSWER\",\n\t\"RecipientClientId\": \"ConsumerViewer\",\n\t\"MessagePayload\": \"" + answerP + "\",\n\t\"CorrelationId\": \"\"\n}"
	master.Handle([]byte(cMaster))
	// An empty CorrelationId is "no correlation id".
	frames(t, vc, event(kvsproto.ActionSDPAnswer, answerP, ""))

	// JS SDK: lowercase keys, optional ones left out.
	viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))
	frames(t, mc, event(kvsproto.ActionICECandidate, iceP, "ConsumerViewer"))
	master.Handle(msg(kvsproto.ActionICECandidate, iceP, "ConsumerViewer", ""))
	frames(t, vc, event(kvsproto.ActionICECandidate, iceP, ""))
	if s := h.Stats(); s.Errors != 0 {
		t.Fatalf("errors: %+v", s)
	}
}

// TestBrowserSession routes the frames of a real browser session (official
// JS SDK in Chromium) and compares the result with what the capture relay
// forwarded.
func TestBrowserSession(t *testing.T) {
	raw, err := os.ReadFile("testdata/browser-session.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Pairs []struct {
			Role, ClientID, Frame, Relayed string
		} `json:"pairs"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Pairs) == 0 {
		t.Fatalf("testdata: %v", err)
	}
	h := newTestHub(t, Config{})
	var viewerID string
	for _, p := range doc.Pairs {
		if p.Role == "VIEWER" {
			viewerID = p.ClientID
		}
	}
	master, mc := h.master(testARN)
	viewer, vc := h.viewer(testARN, viewerID)
	for i, p := range doc.Pairs {
		from, to := viewer, mc
		if p.Role == "MASTER" {
			from, to = master, vc
		}
		from.Handle([]byte(p.Frame))
		got := to.take()
		if len(got) != 1 {
			t.Fatalf("pair %d: got %d frames", i, len(got))
		}
		g, err1 := kvsproto.DecodeEvent([]byte(got[0]))
		w, err2 := kvsproto.DecodeEvent([]byte(p.Relayed))
		if err1 != nil || err2 != nil || g != w {
			t.Fatalf("pair %d:\ngot:  %s\nwant: %s", i, got[0], p.Relayed)
		}
		if !strings.HasPrefix(got[0], `{"messagePayload":`) {
			t.Errorf("pair %d: key order: %.60s", i, got[0])
		}
	}
}

func TestBufferUntilLateJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, Config{})
		viewer, vc := h.viewer(testARN, "viewer-1")
		viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
		viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))
		ice2 := payload(t, kvsproto.ICECandidate{Candidate: "candidate:2"})
		viewer.Handle(msg(kvsproto.ActionICECandidate, ice2, "", ""))
		time.Sleep(59 * time.Second) // TTL is 60 s
		synctest.Wait()

		master, mc := h.master(testARN)
		frames(t, mc,
			event(kvsproto.ActionSDPOffer, offerP, "viewer-1"),
			event(kvsproto.ActionICECandidate, iceP, "viewer-1"),
			event(kvsproto.ActionICECandidate, ice2, "viewer-1"))

		// Master to a viewer that has not connected yet, and a viewer that left.
		master.Handle(msg(kvsproto.ActionSDPOffer, offerP, "late", ""))
		viewer.Leave()
		master.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "viewer-1", ""))
		frames(t, vc)
		_, lc := h.viewer(testARN, "late")
		frames(t, lc, event(kvsproto.ActionSDPOffer, offerP, ""))
		_, vc2 := h.viewer(testARN, "viewer-1")
		frames(t, vc2, event(kvsproto.ActionSDPAnswer, answerP, ""))

		// Each message is delivered once: the master reconnects and gets nothing.
		master.Leave()
		_, mc2 := h.master(testARN)
		frames(t, mc2)
		if s := h.Stats(); s.Buffered != 5 || s.Routed != 5 || s.Expired != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestBufferExpires(t *testing.T) {
	t.Run("sweeper", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newTestHub(t, Config{})
			viewer, _ := h.join(testARN, kvsproto.RoleViewer, "viewer-1")
			viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
			viewer.Leave()
			time.Sleep(60*time.Second + 500*time.Millisecond)
			synctest.Wait()
			if s := h.Stats(); s.Expired != 1 {
				t.Fatalf("stats %+v", s)
			}
			time.Sleep(time.Second) // the next sweep forgets the idle channel
			synctest.Wait()
			if s := h.Stats(); s.Channels != 0 {
				t.Fatalf("idle channel kept: %+v", s)
			}
			_, mc := h.master(testARN)
			frames(t, mc)
		})
	})
	t.Run("on delivery", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newTestHub(t, Config{SweepInterval: time.Hour})
			c := &fakeConn{}
			viewer, err := h.Join(JoinRequest{ChannelARN: testARN, MessageTTL: 5 * time.Second, Role: kvsproto.RoleViewer, ClientID: "v", Conn: c})
			if err != nil {
				t.Fatal(err)
			}
			viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
			time.Sleep(4 * time.Second)
			viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))
			time.Sleep(time.Second) // the offer is 5 s old now: expired
			_, mc := h.master(testARN)
			frames(t, mc, event(kvsproto.ActionICECandidate, iceP, "v"))
			if s := h.Stats(); s.Expired != 1 || s.Routed != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	})
}

func TestOfferOverwrite(t *testing.T) {
	h := newTestHub(t, Config{})
	v1, _ := h.viewer(testARN, "v1")
	v2, _ := h.viewer(testARN, "v2")
	offer2 := payload(t, kvsproto.SessionDescription{Type: "offer", SDP: "v=0 second"})
	v1.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
	v1.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))
	v2.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", "")) // another sender: kept
	v1.Handle(msg(kvsproto.ActionSDPOffer, offer2, "", "")) // replaces v1's first offer
	v1.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "", ""))
	v1.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "", "")) // replaces the answer
	master, mc := h.master(testARN)
	frames(t, mc,
		event(kvsproto.ActionICECandidate, iceP, "v1"),
		event(kvsproto.ActionSDPOffer, offerP, "v2"),
		event(kvsproto.ActionSDPOffer, offer2, "v1"),
		event(kvsproto.ActionSDPAnswer, answerP, "v1"))

	// From the master to an absent viewer.
	master.Handle(msg(kvsproto.ActionSDPOffer, offerP, "v3", ""))
	master.Handle(msg(kvsproto.ActionSDPOffer, offer2, "v3", ""))
	_, c3 := h.viewer(testARN, "v3")
	frames(t, c3, event(kvsproto.ActionSDPOffer, offer2, ""))
	if s := h.Stats(); s.Dropped != 3 || s.Buffered != 8 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBufferBounds(t *testing.T) {
	h := newTestHub(t, Config{DisableQuotas: true, MaxBufferedPerRecipient: 3, MaxBufferedPerChannel: 5})
	master, mc := h.master(testARN)
	for i := range 4 {
		master.Handle(msg(kvsproto.ActionICECandidate, iceP, "a", fmt.Sprint("c", i)))
	}
	st := statusOf(t, mc)
	if st.CorrelationID != "c3" || st.ErrorType != kvsproto.ErrCodeClientLimitExceeded || st.StatusCode != "400" {
		t.Fatalf("status %+v", st)
	}
	master.Handle(msg(kvsproto.ActionICECandidate, iceP, "b", ""))
	master.Handle(msg(kvsproto.ActionICECandidate, iceP, "b", ""))
	master.Handle(msg(kvsproto.ActionICECandidate, iceP, "b", "")) // channel bound: silent drop
	frames(t, mc)
	_, ac := h.viewer(testARN, "a")
	_, bc := h.viewer(testARN, "b")
	if a, b := len(ac.take()), len(bc.take()); a != 3 || b != 2 {
		t.Fatalf("delivered %d and %d", a, b)
	}
	if s := h.Stats(); s.Dropped != 2 || s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestViewerLimit(t *testing.T) {
	h := newTestHub(t, Config{ConnectRate: 1000, ConnectBurst: 100})
	conns := map[string]*fakeConn{}
	for i := range 10 {
		id := fmt.Sprint("viewer-", i)
		_, conns[id] = h.viewer(testARN, id)
	}
	if _, _, err := h.joinE(testARN, kvsproto.RoleViewer, "viewer-10"); !errors.Is(err, ErrTooManyViewers) {
		t.Fatalf("11th viewer: %v", err)
	}
	// A reconnect with the same client id replaces the viewer; it is not an 11th.
	v3, c3 := h.viewer(testARN, "viewer-3")
	if closed, code, reason, abrupt := conns["viewer-3"].closeState(); !closed || code != CloseCodeReplaced || reason != CloseReasonViewerReplaced || abrupt {
		t.Fatalf("old viewer-3: %v %d %q %v", closed, code, reason, abrupt)
	}
	// The master still connects; another channel is independent.
	master, mc := h.master(testARN)
	h.viewer(otherARN, "viewer-10")
	if s := h.Stats(); s.Viewers != 11 || s.Masters != 1 || s.Channels != 2 {
		t.Fatalf("stats %+v", s)
	}
	// Messages go to the new viewer-3 connection only.
	master.Handle(msg(kvsproto.ActionSDPOffer, offerP, "viewer-3", ""))
	frames(t, c3, event(kvsproto.ActionSDPOffer, offerP, ""))
	frames(t, conns["viewer-3"])
	v3.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "", ""))
	frames(t, mc, event(kvsproto.ActionSDPAnswer, answerP, "viewer-3"))
	// A leave frees a slot.
	v3.Leave()
	h.viewer(testARN, "viewer-10")
}

func TestMasterNewestWins(t *testing.T) {
	h := newTestHub(t, Config{})
	m1, c1 := h.master(testARN)
	viewer, vc := h.viewer(testARN, "v")
	m2, c2 := h.master(testARN)
	if closed, code, reason, _ := c1.closeState(); !closed || code != CloseCodeReplaced || reason != CloseReasonMasterReplaced {
		t.Fatalf("old master: %v %d %q", closed, code, reason)
	}
	viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
	frames(t, c2, event(kvsproto.ActionSDPOffer, offerP, "v"))
	frames(t, c1)
	// The displaced master's late messages go nowhere; its Leave does not
	// affect the new master.
	m1.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "v", ""))
	frames(t, vc)
	m1.Leave()
	m2.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "v", ""))
	frames(t, vc, event(kvsproto.ActionSDPAnswer, answerP, ""))
	if s := h.Stats(); s.Masters != 1 || s.Dropped != 1 {
		t.Fatalf("stats %+v", s)
	}
	if len(h.log.find("connection replaced")) != 1 {
		t.Error("replacement not logged")
	}
}

func TestConnectThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, Config{})
		for i := range 3 {
			m, _ := h.viewer(testARN, fmt.Sprint("v", i))
			m.Leave()
		}
		if _, _, err := h.joinE(testARN, kvsproto.RoleViewer, "v3"); !errors.Is(err, ErrThrottled) {
			t.Fatalf("4th connect in a second: %v", err)
		}
		// Masters have their own bucket; other channels theirs.
		for range 3 {
			h.master(testARN)
		}
		if _, _, err := h.joinE(testARN, kvsproto.RoleMaster, ""); !errors.Is(err, ErrThrottled) {
			t.Fatalf("4th master connect: %v", err)
		}
		h.viewer(otherARN, "v3")
		time.Sleep(340 * time.Millisecond) // one token back at 3/s
		h.viewer(testARN, "v3")
		if _, _, err := h.joinE(testARN, kvsproto.RoleViewer, "v4"); !errors.Is(err, ErrThrottled) {
			t.Fatalf("connect after one refill: %v", err)
		}
		if len(h.log.find("connection refused")) != 3 {
			t.Error("refusals not logged")
		}

		nq := newTestHub(t, Config{DisableQuotas: true})
		for i := range 50 {
			m, _ := nq.viewer(testARN, fmt.Sprint("v", i%5))
			if i%2 == 0 {
				m.Leave()
			}
		}
	})
}

func TestMessageRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, Config{})
		viewer, vc := h.viewer(testARN, "v")
		_, mc := h.master(testARN)
		for i := range 10 { // burst = 2 x 5/s
			viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", fmt.Sprint("c", i)))
		}
		if n := len(mc.take()); n != 10 {
			t.Fatalf("routed %d offers", n)
		}
		frames(t, vc)
		viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", "c10"))
		st := statusOf(t, vc)
		if st.CorrelationID != "c10" || st.ErrorType != kvsproto.ErrCodeClientLimitExceeded || st.StatusCode != "400" || st.Success || !strings.Contains(st.Description, "SDP_OFFER") {
			t.Fatalf("status %+v", st)
		}
		viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", "")) // no correlation id: silent
		frames(t, vc)
		frames(t, mc)
		// Other actions have their own buckets.
		for range 40 {
			viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))
		}
		viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", "x"))
		if n := len(mc.take()); n != 40 {
			t.Fatalf("routed %d candidates", n)
		}
		statusOf(t, vc)
		time.Sleep(200 * time.Millisecond) // one offer token back
		viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", "c11"))
		frames(t, mc, event(kvsproto.ActionSDPOffer, offerP, "v"))
		frames(t, vc)
		if s := h.Stats(); s.Errors != 3 {
			t.Fatalf("stats %+v", s)
		}
		if rs := h.log.find("client message rejected"); len(rs) != 3 || rs[0].attrs["channel"] != testARN || rs[0].attrs["role"] != "VIEWER" || rs[0].attrs["clientId"] != "v" || rs[0].attrs["reason"] == "" {
			t.Fatalf("logs %+v", rs)
		}
	})
}

func TestInvalidMessages(t *testing.T) {
	h := newTestHub(t, Config{DisableQuotas: true})
	master, mc := h.master(testARN)
	viewer, vc := h.viewer(testARN, "v")
	long := strings.Repeat("A", kvsproto.MaxMessagePayloadLen+4)
	cases := []struct {
		name    string
		from    *Member
		conn    *fakeConn
		frame   string
		corr    string // expected correlationId in the STATUS_RESPONSE; "" = none
		mention string
	}{
		{"master without recipient", master, mc, `{"action":"SDP_OFFER","messagePayload":"` + offerP + `","correlationId":"k1"}`, "k1", "recipientClientId"},
		{"master without recipient, no correlation", master, mc, `{"action":"SDP_OFFER","messagePayload":"` + offerP + `"}`, "", ""},
		{"bad recipient", master, mc, `{"action":"SDP_OFFER","messagePayload":"` + offerP + `","recipientClientId":"a/b","correlationId":"k2"}`, "k2", "recipientClientId"},
		{"reserved recipient", master, mc, `{"action":"SDP_OFFER","messagePayload":"` + offerP + `","recipientClientId":"AWS_x","correlationId":"k3"}`, "k3", "AWS_"},
		{"bad correlation id", viewer, vc, `{"action":"SDP_OFFER","messagePayload":"` + offerP + `","correlationId":"bad id!"}`, "bad id!", "correlationId"},
		{"bad action", viewer, vc, `{"action":"SDP_PRANSWER","messagePayload":"` + offerP + `","correlationId":"k4"}`, "k4", "action"},
		{"lowercase action", viewer, vc, `{"action":"sdp_offer","messagePayload":"` + offerP + `","correlationId":"k5"}`, "k5", "action"},
		{"empty payload", viewer, vc, `{"action":"SDP_OFFER","messagePayload":"","correlationId":"k6"}`, "k6", "messagePayload"},
		{"not base64", viewer, vc, `{"action":"SDP_OFFER","messagePayload":"a b","correlationId":"k7"}`, "k7", "messagePayload"},
		{"payload too long", viewer, vc, `{"action":"SDP_OFFER","messagePayload":"` + long + `","correlationId":"k8"}`, "k8", "10000"},
		{"bad payload, no correlation", viewer, vc, `{"action":"SDP_OFFER","messagePayload":"a b"}`, "", ""},
		{"malformed JSON", viewer, vc, `{"action":"SDP_OFFER","correlationId":"k9"`, "", ""},
		{"wrong type", viewer, vc, `{"action":1,"correlationId":"k10"}`, "", ""},
		{"not an object", master, mc, `["SDP_OFFER"]`, "", ""},
		{"empty", master, mc, ``, "", ""},
	}
	for _, c := range cases {
		before := h.Stats().Errors
		c.from.Handle([]byte(c.frame))
		if c.corr == "" {
			frames(t, c.conn)
		} else {
			st := statusOf(t, c.conn)
			if st.CorrelationID != c.corr || st.ErrorType != kvsproto.ErrCodeInvalidArgument || st.StatusCode != "400" || st.Success || !strings.Contains(st.Description, c.mention) {
				t.Errorf("%s: status %+v", c.name, st)
			}
		}
		if h.Stats().Errors != before+1 {
			t.Errorf("%s: not counted", c.name)
		}
	}
	// Nothing was routed and the sockets stay open.
	frames(t, mc)
	frames(t, vc)
	for _, c := range []*fakeConn{mc, vc} {
		if closed, _, _, _ := c.closeState(); closed {
			t.Fatal("socket closed for a bad message")
		}
	}
	if n := len(h.log.find("client message rejected")); n != len(cases) {
		t.Fatalf("logged %d rejections, want %d", n, len(cases))
	}
	// The sockets still route.
	viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
	frames(t, mc, event(kvsproto.ActionSDPOffer, offerP, "v"))
}

func TestJoinValidation(t *testing.T) {
	h := newTestHub(t, Config{})
	for _, req := range []JoinRequest{
		{ChannelARN: testARN, Role: kvsproto.RoleViewer, ClientID: "v"},
		{Role: kvsproto.RoleViewer, ClientID: "v", Conn: &fakeConn{}},
		{ChannelARN: strings.Repeat("a", kvsproto.MaxARNLen+1), Role: kvsproto.RoleMaster, Conn: &fakeConn{}},
		{ChannelARN: testARN, Role: "viewer", ClientID: "v", Conn: &fakeConn{}},
		{ChannelARN: testARN, Role: kvsproto.RoleViewer, Conn: &fakeConn{}},
		{ChannelARN: testARN, Role: kvsproto.RoleViewer, ClientID: "aws_v", Conn: &fakeConn{}},
		{ChannelARN: testARN, Role: kvsproto.RoleViewer, ClientID: "a b", Conn: &fakeConn{}},
	} {
		if m, err := h.Join(req); !errors.Is(err, kvsproto.ErrInvalid) || m != nil {
			t.Errorf("Join(%+v) = %v, want ErrInvalid", req, err)
		}
	}
	// A master's client id is ignored.
	m, err := h.Join(JoinRequest{ChannelARN: testARN, Role: kvsproto.RoleMaster, ClientID: "x", Conn: &fakeConn{}})
	if err != nil || m.ClientID() != "" || m.Role() != kvsproto.RoleMaster || m.ChannelARN() != testARN {
		t.Fatalf("master: %v %+v", err, m)
	}
	if s := h.Stats(); s.Channels != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSendFailure(t *testing.T) {
	h := newTestHub(t, Config{})
	_, mc := h.master(testARN)
	viewer, _ := h.viewer(testARN, "v")
	mc.mu.Lock()
	mc.failSend = true
	mc.mu.Unlock()
	viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
	if closed, code, _, _ := mc.closeState(); !closed || code != CloseCodeSendFailed {
		t.Fatalf("failed master not closed: %v %d", closed, code)
	}
	viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))
	if s := h.Stats(); s.Masters != 0 || s.Buffered != 2 || s.Routed != 0 {
		t.Fatalf("stats %+v", s)
	}
	_, mc2 := h.master(testARN)
	frames(t, mc2, event(kvsproto.ActionSDPOffer, offerP, "v"), event(kvsproto.ActionICECandidate, iceP, "v"))

	// A Send failure while delivering the buffer keeps the rest buffered.
	h2 := newTestHub(t, Config{})
	v2, _ := h2.viewer(testARN, "v")
	v2.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
	bad := &fakeConn{failSend: true}
	if _, err := h2.Join(JoinRequest{ChannelARN: testARN, Role: kvsproto.RoleMaster, Conn: bad}); err != nil {
		t.Fatal(err)
	}
	if closed, _, _, _ := bad.closeState(); !closed {
		t.Fatal("not closed")
	}
	_, good := h2.master(testARN)
	frames(t, good, event(kvsproto.ActionSDPOffer, offerP, "v"))
}

func TestChannelLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, Config{})
		m, _ := h.master(testARN)
		m.Leave()
		m.Leave() // idempotent
		if s := h.Stats(); s.Channels != 1 || s.Masters != 0 {
			t.Fatalf("stats %+v", s) // kept until its connect bucket refills
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if s := h.Stats(); s.Channels != 0 {
			t.Fatalf("idle channel kept: %+v", s)
		}
		// Buffered messages keep a channel alive.
		v, _ := h.viewer(testARN, "v")
		v.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
		v.Leave()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if s := h.Stats(); s.Channels != 1 {
			t.Fatalf("channel with buffered messages dropped: %+v", s)
		}
	})
	// Without quotas an empty channel goes at once.
	h := newTestHub(t, Config{DisableQuotas: true})
	m, _ := h.master(testARN)
	m.Leave()
	if s := h.Stats(); s.Channels != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCloseChannel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, Config{})
		_, mc := h.master(testARN)
		v, vc := h.viewer(testARN, "v")
		_, oc := h.master(otherARN)
		h.Hub.Inject(Fault{Kind: FaultDrop, Channel: "other"}) // must not match
		v.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
		frames(t, mc, event(kvsproto.ActionSDPOffer, offerP, "v"))
		g, _ := h.viewer(testARN, "gone")
		g.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
		g.Leave() // its offer stays buffered for the master
		h.CloseChannel(testARN)
		for _, c := range []*fakeConn{mc, vc} {
			if closed, code, reason, _ := c.closeState(); !closed || code != CloseCodeChannelDeleted || reason != CloseReasonChannelDeleted {
				t.Fatalf("conn: %v %d %q", closed, code, reason)
			}
		}
		if closed, _, _, _ := oc.closeState(); closed {
			t.Fatal("other channel closed")
		}
		v.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", "")) // late frame: ignored
		v.Leave()
		if _, _, err := h.joinE(testARN, kvsproto.RoleMaster, ""); !errors.Is(err, ErrChannelGone) {
			t.Fatalf("join of a deleted channel: %v", err)
		}
		if s := h.Stats(); s.Channels != 1 || s.Masters != 1 || s.Viewers != 0 {
			t.Fatalf("stats %+v", s)
		}
		h.CloseChannel("arn:never-joined") // no-op
		time.Sleep(6 * time.Second)        // tombstone over
		synctest.Wait()
		_, nc := h.master(testARN)
		frames(t, nc) // the old channel's buffer is gone
	})
}

func TestClose(t *testing.T) {
	h := New(Config{})
	_, mc := (&testHub{Hub: h, t: t}).master(testARN)
	v, vc := (&testHub{Hub: h, t: t}).viewer(otherARN, "v")
	if _, err := h.Inject(Fault{Kind: FaultDelay, Action: kvsproto.ActionSDPOffer, Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	v.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", "")) // a pending delay timer
	if _, err := h.Inject(Fault{Kind: FaultGoAway, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h.Close() // idempotent
	for _, c := range []*fakeConn{mc, vc} {
		if closed, code, reason, abrupt := c.closeState(); !closed || code != CloseCodeShutdown || reason != CloseReasonShutdown || abrupt {
			t.Fatalf("conn: %v %d %q %v", closed, code, reason, abrupt)
		}
	}
	if _, err := h.Join(JoinRequest{ChannelARN: testARN, Role: kvsproto.RoleMaster, Conn: &fakeConn{}}); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Join after Close: %v", err)
	}
	if _, err := h.Inject(Fault{Kind: FaultClose}); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Inject after Close: %v", err)
	}
	v.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
	v.Leave()
	if s := h.Stats(); s.Channels != 0 || s.Masters != 0 || s.Viewers != 0 {
		t.Fatalf("stats %+v", s)
	}
	goleakVerifyNone(t)
}

// TestConcurrent drives many channels from many goroutines at once (run
// with -race).
func TestConcurrent(t *testing.T) {
	h := newTestHub(t, Config{ConnectRate: 1e6, ConnectBurst: 1e6})
	var wg sync.WaitGroup
	for c := range 8 {
		arn := fmt.Sprintf("arn:aws:kinesisvideo:us-west-2:123456789012:channel/c%d/1", c)
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					id := fmt.Sprint("v", (g+i)%6)
					role := kvsproto.RoleViewer
					if i%7 == 0 {
						role, id = kvsproto.RoleMaster, ""
					}
					m, _, err := h.joinE(arn, role, id)
					if err != nil {
						if !errors.Is(err, ErrTooManyViewers) {
							t.Error(err)
						}
						continue
					}
					for range 3 {
						m.Handle(msg(kvsproto.ActionICECandidate, iceP, "v1", "c"))
						m.Handle(msg(kvsproto.ActionSDPOffer, offerP, "v2", ""))
					}
					if i%5 == 0 {
						h.Inject(Fault{Kind: FaultReconnectICE, Channel: fmt.Sprint("c", c)})
						h.Inject(Fault{Kind: FaultDrop, Action: kvsproto.ActionICECandidate})
					}
					if i%3 != 0 {
						m.Leave()
					}
				}
			})
		}
	}
	wg.Go(func() {
		for range 20 {
			h.Stats()
			h.impl.sweep()
		}
	})
	wg.Wait()
	h.CloseChannel("arn:aws:kinesisvideo:us-west-2:123456789012:channel/c0/1")
}

func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, Config{})
		if s := h.Stats(); s != (Stats{}) {
			t.Fatalf("new hub: %+v", s)
		}
		v, _ := h.viewer(testARN, "v")
		h.viewer(testARN, "w")
		v.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))         // buffered
		v.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))         // buffered, overwrites: dropped 1
		v.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))       // buffered
		v.Handle([]byte(`{"action":"SDP_OFFER","messagePayload":""}`)) // error
		time.Sleep(61 * time.Second)                                   // both expire
		synctest.Wait()
		master, _ := h.master(testARN)
		master.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "v", "")) // routed
		h.master(otherARN)
		want := Stats{Channels: 2, Masters: 2, Viewers: 2, Routed: 1, Buffered: 3, Expired: 2, Dropped: 1, Errors: 1}
		if s := h.Stats(); s != want {
			t.Fatalf("stats\ngot:  %+v\nwant: %+v", s, want)
		}
	})
}
