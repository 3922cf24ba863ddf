package hub

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func mustInject(t *testing.T, h *testHub, f Fault) int {
	t.Helper()
	n, err := h.Inject(f)
	if err != nil {
		t.Fatalf("Inject(%+v): %v", f, err)
	}
	return n
}

func TestFaultDrop(t *testing.T) {
	h := newTestHub(t, Config{DisableQuotas: true})
	_, mc := h.master(testARN)
	viewer, _ := h.viewer(testARN, "v")
	_, oc := h.master(otherARN)
	ov, _ := h.viewer(otherARN, "v")
	if n := mustInject(t, h, Fault{Kind: FaultDrop, Channel: "demo", Action: kvsproto.ActionICECandidate, Count: 2}); n != 0 {
		t.Fatalf("armed fault affected %d", n)
	}
	if len(h.log.faultLogs(FaultDrop, "fault armed")) != 1 {
		t.Fatal("arming not logged")
	}
	ov.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))      // other channel
	viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))    // other action
	viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", "c")) // dropped, silently
	viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))  // dropped
	viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))  // passes
	frames(t, oc, event(kvsproto.ActionICECandidate, iceP, "v"))
	frames(t, mc, event(kvsproto.ActionSDPOffer, offerP, "v"), event(kvsproto.ActionICECandidate, iceP, "v"))
	if got := len(h.log.faultLogs(FaultDrop, "fault fired")); got != 2 {
		t.Fatalf("%d drop firings logged", got)
	}
	if s := h.Stats(); s.Dropped != 2 || s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}

	// Target selects the sender; the channel may be given by ARN.
	master, _ := h.master(testARN)
	_, vc := h.viewer(testARN, "v")
	mustInject(t, h, Fault{Kind: FaultDrop, Channel: testARN, Target: "master"})
	master.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "v", ""))
	master.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "v", ""))
	frames(t, vc, event(kvsproto.ActionSDPAnswer, answerP, ""))
}

func TestFaultDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, Config{})
		_, mc := h.master(testARN)
		viewer, _ := h.viewer(testARN, "v")
		mustInject(t, h, Fault{Kind: FaultDelay, Action: kvsproto.ActionSDPOffer, Delay: 5 * time.Second, Target: "v"})
		viewer.Handle(msg(kvsproto.ActionSDPOffer, offerP, "", ""))
		viewer.Handle(msg(kvsproto.ActionICECandidate, iceP, "", ""))
		frames(t, mc, event(kvsproto.ActionICECandidate, iceP, "v"))
		time.Sleep(4 * time.Second)
		synctest.Wait()
		frames(t, mc)
		time.Sleep(time.Second)
		synctest.Wait()
		frames(t, mc, event(kvsproto.ActionSDPOffer, offerP, "v"))
		if len(h.log.faultLogs(FaultDelay, "fault fired")) != 1 || len(h.log.faultLogs(FaultDelay, "delayed message released")) != 1 {
			t.Fatal("delay not logged")
		}

		// A delayed message whose recipient left meanwhile is buffered.
		master, _ := h.master(testARN)
		mustInject(t, h, Fault{Kind: FaultDelay, Delay: time.Second})
		master.Handle(msg(kvsproto.ActionSDPAnswer, answerP, "x", ""))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		_, xc := h.viewer(testARN, "x")
		frames(t, xc, event(kvsproto.ActionSDPAnswer, answerP, ""))
	})
}

func TestFaultGoAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, Config{})
		_, mc := h.master(testARN)
		_, vc := h.viewer(testARN, "v")
		w, wc := h.viewer(testARN, "w")
		_, oc := h.master(otherARN)
		if n := mustInject(t, h, Fault{Kind: FaultGoAway, Channel: "demo", Grace: 10 * time.Second}); n != 3 {
			t.Fatalf("goaway affected %d", n)
		}
		for _, c := range []*fakeConn{mc, vc, wc} {
			frames(t, c, `{"messageType":"GO_AWAY"}`)
		}
		frames(t, oc)
		w.Leave() // leaves during the grace period: not closed by the hub
		time.Sleep(10*time.Second - time.Millisecond)
		synctest.Wait()
		if closed, _, _, _ := mc.closeState(); closed {
			t.Fatal("closed before the grace period")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		for _, c := range []*fakeConn{mc, vc} {
			if closed, code, reason, abrupt := c.closeState(); !closed || code != CloseCodeGoAway || reason != CloseReasonGoAway || abrupt {
				t.Fatalf("after grace: %v %d %q %v", closed, code, reason, abrupt)
			}
		}
		if closed, _, _, _ := wc.closeState(); closed {
			t.Fatal("a connection that left was closed")
		}
		if s := h.Stats(); s.Masters != 1 || s.Viewers != 0 {
			t.Fatalf("stats %+v", s)
		}
		if len(h.log.faultLogs(FaultGoAway, "GO_AWAY sent")) != 3 || len(h.log.faultLogs(FaultGoAway, "closed after GO_AWAY")) != 2 {
			t.Fatal("goaway not logged")
		}
		// Default grace: one minute.
		mustInject(t, h, Fault{Kind: FaultGoAway})
		frames(t, oc, `{"messageType":"GO_AWAY"}`)
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if closed, _, _, _ := oc.closeState(); closed {
			t.Fatal("closed before a minute")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if closed, _, _, _ := oc.closeState(); !closed {
			t.Fatal("not closed after a minute")
		}
	})
}

func TestFaultReconnectICEAndClose(t *testing.T) {
	h := newTestHub(t, Config{})
	_, mc := h.master(testARN)
	_, vc := h.viewer(testARN, "v")
	_, wc := h.viewer(testARN, "w")
	if n := mustInject(t, h, Fault{Kind: FaultReconnectICE, Target: "viewer"}); n != 2 {
		t.Fatalf("reconnect-ice affected %d", n)
	}
	frames(t, vc, `{"messageType":"RECONNECT_ICE_SERVER"}`)
	frames(t, wc, `{"messageType":"RECONNECT_ICE_SERVER"}`)
	frames(t, mc)
	if n := mustInject(t, h, Fault{Kind: FaultClose, Target: "w"}); n != 1 {
		t.Fatalf("close affected %d", n)
	}
	if closed, _, _, abrupt := wc.closeState(); !closed || !abrupt {
		t.Fatalf("close fault: %v %v", closed, abrupt)
	}
	if closed, _, _, _ := vc.closeState(); closed {
		t.Fatal("wrong target closed")
	}
	if n := mustInject(t, h, Fault{Kind: FaultClose, Target: "master", Channel: "nope"}); n != 0 {
		t.Fatalf("close on another channel affected %d", n)
	}
	if n := mustInject(t, h, Fault{Kind: FaultClose, Target: "master"}); n != 1 {
		t.Fatalf("close master affected %d", n)
	}
	if s := h.Stats(); s.Masters != 0 || s.Viewers != 1 {
		t.Fatalf("stats %+v", s)
	}
	if len(h.log.faultLogs(FaultReconnectICE, "fault fired")) != 2 || len(h.log.faultLogs(FaultClose, "fault fired")) != 2 ||
		len(h.log.faultLogs(FaultClose, "matched no connection")) != 1 {
		t.Fatal("faults not logged")
	}
}

func TestFaultRefuse(t *testing.T) {
	h := newTestHub(t, Config{ConnectRate: 1000, ConnectBurst: 1000})
	mustInject(t, h, Fault{Kind: FaultRefuseThrottle, Count: 2, Channel: "demo"})
	if _, _, err := h.joinE(otherARN, kvsproto.RoleViewer, "v"); err != nil {
		t.Fatalf("other channel: %v", err)
	}
	for range 2 {
		if _, _, err := h.joinE(testARN, kvsproto.RoleMaster, ""); !errors.Is(err, ErrThrottled) {
			t.Fatalf("throttle fault: %v", err)
		}
	}
	h.master(testARN)

	mustInject(t, h, Fault{Kind: FaultRefuseFull})
	h.master(testARN) // full applies to viewers only
	if _, _, err := h.joinE(testARN, kvsproto.RoleViewer, "v"); !errors.Is(err, ErrTooManyViewers) {
		t.Fatalf("full fault: %v", err)
	}
	h.viewer(testARN, "v")
	mustInject(t, h, Fault{Kind: FaultRefuseFull, Target: "x"})
	h.viewer(testARN, "w")
	if _, _, err := h.joinE(testARN, kvsproto.RoleViewer, "x"); !errors.Is(err, ErrTooManyViewers) {
		t.Fatalf("full fault for x: %v", err)
	}
	if len(h.log.faultLogs(FaultRefuseThrottle, "fault fired")) != 2 || len(h.log.faultLogs(FaultRefuseFull, "fault fired")) != 2 ||
		len(h.log.faultLogs(FaultRefuseFull, "fault armed")) != 2 {
		t.Fatal("faults not logged")
	}
}

func TestFaultInvalid(t *testing.T) {
	h := newTestHub(t, Config{})
	for _, f := range []Fault{
		{},
		{Kind: "explode"},
		{Kind: FaultDrop, Action: "SDP_PRANSWER"},
		{Kind: FaultDrop, Count: -1},
		{Kind: FaultDelay, Action: kvsproto.ActionSDPOffer},
		{Kind: FaultDelay, Delay: -time.Second},
		{Kind: FaultGoAway, Grace: -time.Second},
	} {
		if _, err := h.Inject(f); !errors.Is(err, ErrInvalidFault) {
			t.Errorf("Inject(%+v) = %v, want ErrInvalidFault", f, err)
		}
	}
	if _, err := h.Inject(Fault{Kind: FaultDrop, Action: "nope"}); !errors.Is(err, kvsproto.ErrInvalid) {
		t.Errorf("bad action error does not match kvsproto.ErrInvalid: %v", err)
	}
}
