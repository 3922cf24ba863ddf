package whep_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/relay"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/whep"
)

// offerSDP returns an offer receiving kinds, made by pion.
func offerSDP(t *testing.T, kinds ...webrtc.RTPCodecType) string {
	t.Helper()
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, Audio: true})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// request makes a request and returns the status and body.
func request(t *testing.T, c *http.Client, method, url, ctype, body string, hdr http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

var errNoToken = errors.New("missing or wrong bearer token: send Authorization: Bearer <token>")

func tokenAuth(r *http.Request, channel string) error {
	if r.Header.Get("Authorization") != "Bearer secret" {
		return errNoToken
	}
	if channel == "forbidden" {
		return whep.ErrForbidden
	}
	return nil
}

// TestWHEPProtocol: offer/answer, trickle, ICE restart and DELETE with a
// pion client, and the status and body of every kind of bad request.
func TestWHEPProtocol(t *testing.T) {
	rg := newRig(t, rigOptions{auth: tokenAuth, audio: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	auth := http.Header{"Authorization": {"Bearer secret"}}
	hc := rg.srv.Client()

	// A real session: audio and video, then an ICE restart on its own
	// connection that leaves the upstream alone.
	c := rg.dial(t, ctx, whep.ClientConfig{Header: auth, Audio: true})
	waitFrames(t, c, 30, 30*time.Second)
	if !strings.Contains(c.Location(), "/whep/cam/") {
		t.Errorf("Location %s, want under /whep/cam/", c.Location())
	}
	sessions := rg.relay.Stats().Channels[0].Sessions
	if err := c.RestartICE(ctx); err != nil {
		t.Fatalf("ICE restart: %v", err)
	}
	n := c.Stats().Frames
	waitFrames(t, c, n+30, 30*time.Second)
	st := rg.relay.Stats()
	if got := st.Channels[0].Sessions; got != sessions {
		t.Errorf("upstream sessions %d after a peer's ICE restart, want %d (untouched)", got, sessions)
	}
	if p := st.Channels[0].Peers; len(p) != 1 || p[0].ICERestarts != 1 {
		t.Errorf("peers %+v: want one with one ICE restart", p)
	}
	if b := st.Channels[0].BytesIn; b == 0 {
		t.Error("no bytes in")
	}
	var prom strings.Builder
	if err := st.WritePrometheus(&prom); err != nil || !strings.Contains(prom.String(), `kvsrtc_relay_peers{channel="cam"} 1`) {
		t.Errorf("metrics (err %v):\n%s", err, prom.String())
	}

	// Raw requests.
	ep := rg.endpoint(testChannel)
	offer := offerSDP(t, webrtc.RTPCodecTypeVideo)
	code, hdr, answer := request(t, hc, http.MethodPost, ep, whep.ContentTypeSDP, offer, auth)
	if code != http.StatusCreated || hdr.Get("Content-Type") != whep.ContentTypeSDP || !strings.HasPrefix(answer, "v=0") ||
		!strings.Contains(answer, "a=candidate:") || hdr.Get("Location") == "" || !strings.Contains(hdr.Get("Link"), whep.EventsRel) {
		t.Fatalf("POST: %d %v\n%s", code, hdr, answer)
	}
	res := rg.srv.URL + hdr.Get("Location")
	ufrag := rtc.SDPAttribute(offer, "ice-ufrag")
	trickle := "a=ice-ufrag:" + ufrag + "\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n"
	if code, _, body := request(t, hc, http.MethodPatch, res, whep.ContentTypeSDPFrag, trickle, auth); code != http.StatusNoContent {
		t.Errorf("PATCH trickle: %d %s", code, body)
	}

	audioOnly := offerSDP(t, webrtc.RTPCodecTypeAudio)
	for _, tc := range []struct {
		name, method, url, ctype, body string
		hdr                            http.Header
		want                           int
		says                           string
	}{
		{"not SDP", http.MethodPost, ep, whep.ContentTypeSDP, "hello", auth, 400, "not an SDP offer"},
		{"empty offer", http.MethodPost, ep, whep.ContentTypeSDP, "", auth, 400, "empty"},
		{"no video section", http.MethodPost, ep, whep.ContentTypeSDP, audioOnly, auth, 400, "no video section"},
		{"wrong content type", http.MethodPost, ep, "text/plain", offer, auth, 415, "application/sdp"},
		{"unknown channel", http.MethodPost, rg.endpoint("nosuchchannel"), whep.ContentTypeSDP, offer, auth, 404, "unknown channel"},
		{"invalid channel name", http.MethodPost, rg.endpoint("bad%20name"), whep.ContentTypeSDP, offer, auth, 404, "unknown channel"},
		{"no auth", http.MethodPost, ep, whep.ContentTypeSDP, offer, nil, 401, "bearer token"},
		{"wrong auth", http.MethodPost, ep, whep.ContentTypeSDP, offer, http.Header{"Authorization": {"Bearer nope"}}, 401, "bearer token"},
		{"forbidden", http.MethodPost, rg.endpoint("forbidden"), whep.ContentTypeSDP, offer, auth, 403, "forbidden"},
		{"GET endpoint", http.MethodGet, ep, "", "", auth, 405, "POST an SDP offer"},
		{"PATCH unknown resource", http.MethodPatch, ep + "/0123456789abcdef01234567", whep.ContentTypeSDPFrag, trickle, auth, 404, "POST a new offer"},
		{"DELETE unknown resource", http.MethodDelete, ep + "/0123456789abcdef01234567", "", "", auth, 404, "POST a new offer"},
		{"PATCH other channel", http.MethodPatch, rg.endpoint("idle") + "/" + lastPart(res), whep.ContentTypeSDPFrag, trickle, auth, 404, "no WHEP session"},
		{"PATCH no auth", http.MethodPatch, res, whep.ContentTypeSDPFrag, trickle, nil, 401, "bearer token"},
		{"PATCH wrong type", http.MethodPatch, res, whep.ContentTypeSDP, trickle, auth, 415, whep.ContentTypeSDPFrag},
		{"PATCH not a fragment", http.MethodPatch, res, whep.ContentTypeSDPFrag, "hello", auth, 400, "not an SDP attribute"},
		{"PATCH empty fragment", http.MethodPatch, res, whep.ContentTypeSDPFrag, "", auth, 400, "no a=ice-ufrag"},
		{"PATCH other session", http.MethodPatch, res, whep.ContentTypeSDPFrag, "a=ice-ufrag:someoneelse\r\n", auth, 422, "not this session"},
		{"too big", http.MethodPost, ep, whep.ContentTypeSDP, strings.Repeat("a", 70<<10), auth, 413, "over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := request(t, hc, tc.method, tc.url, tc.ctype, tc.body, tc.hdr)
			if code != tc.want || !strings.Contains(body, tc.says) || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
				t.Errorf("%s %s: %d %q (%s), want %d saying %q", tc.method, tc.url, code, body, hdr.Get("Content-Type"), tc.want, tc.says)
			}
		})
	}

	if code, _, body := request(t, hc, http.MethodDelete, res, "", "", auth); code != http.StatusOK {
		t.Errorf("DELETE: %d %s", code, body)
	}
	if code, _, _ := request(t, hc, http.MethodDelete, res, "", "", auth); code != http.StatusNotFound {
		t.Errorf("DELETE again: %d, want 404", code)
	}
	if code, _, _ := request(t, hc, http.MethodPatch, res, whep.ContentTypeSDPFrag, trickle, auth); code != http.StatusNotFound {
		t.Errorf("PATCH after DELETE: %d, want 404", code)
	}
	if err := c.Close(ctx); err != nil {
		t.Errorf("client close: %v", err)
	}
	eventually(t, 10*time.Second, "no peers left", func() bool { return rg.relay.Stats().Peers == 0 })
}

func lastPart(u string) string { return u[strings.LastIndexByte(u, '/')+1:] }

// TestUnavailable: a channel whose camera never answers gets 503 with the
// cause after JoinTimeout, with Retry-After.
func TestUnavailable(t *testing.T) {
	rg := newRig(t, rigOptions{relay: func(c *relay.Config) { c.JoinTimeout = 2 * time.Second }})
	code, hdr, body := request(t, rg.srv.Client(), http.MethodPost, rg.endpoint("idle"), whep.ContentTypeSDP, offerSDP(t, webrtc.RTPCodecTypeVideo), nil)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "no video within") {
		t.Errorf("POST to a channel without a camera: %d %v %q", code, hdr, body)
	}
}
