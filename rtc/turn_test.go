package rtc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// localICE starts kvsrtc local with TLS and returns it with the ICE servers
// of a channel, as a viewer would get them.
func localICE(t *testing.T) (*emulator.Server, []webrtc.ICEServer) {
	t.Helper()
	srv, err := emulator.Start(context.Background(), emulator.Config{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CertPool(), MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	post := func(path string, in, out any) {
		t.Helper()
		body, _ := json.Marshal(in)
		req, err := http.NewRequest(http.MethodPost, srv.URL()+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := sigv4.SignRequest(req, body, srv.Credentials(), srv.Region(), time.Now()); err != nil {
			t.Fatal(err)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", path, res.Status)
		}
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	var ch kvsproto.CreateSignalingChannelOutput
	post(kvsproto.PathCreateSignalingChannel, kvsproto.CreateSignalingChannelInput{ChannelName: "turns"}, &ch)
	var ice kvsproto.GetIceServerConfigOutput
	post(kvsproto.PathGetIceServerConfig, kvsproto.GetIceServerConfigInput{ChannelARN: ch.ChannelARN}, &ice)
	var out []webrtc.ICEServer
	for _, s := range ice.IceServerList {
		out = append(out, webrtc.ICEServer{URLs: s.Uris, Username: s.Username, Credential: s.Password})
	}
	return srv, out
}

// onlyURLs keeps the URLs that have every one of the substrings.
func onlyURLs(servers []webrtc.ICEServer, subs ...string) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range servers {
		var urls []string
		for _, u := range s.URLs {
			keep := true
			for _, sub := range subs {
				keep = keep && strings.Contains(u, sub)
			}
			if keep {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			s.URLs = urls
			out = append(out, s)
		}
	}
	return out
}

func TestICEServersDropsDTLSAndRecordsTLS(t *testing.T) {
	in := []webrtc.ICEServer{
		{URLs: []string{"turn:a.example:443?transport=udp", "turns:a.example:443?transport=udp", "turns:a.example:443?transport=tcp"}, Username: "u", Credential: "p"},
		{URLs: []string{"turns:b.example:5349?transport=udp"}, Username: "u", Credential: "p"},
		{URLs: []string{"stun:stun.example:3478"}},
	}
	got := rtc.ICEServers(in)
	if len(got) != 2 || strings.Join(got[0].URLs, " ") != "turn:a.example:443?transport=udp turns:a.example:443?transport=tcp" ||
		got[1].URLs[0] != "stun:stun.example:3478" || got[0].Username != "u" {
		t.Fatalf("ICEServers = %+v", got)
	}
	if len(in[0].URLs) != 3 {
		t.Fatal("ICEServers changed its input")
	}
}

// TestTURNSUntrustedCertificate: without the service's CA the TLS TURN
// connection fails with ErrTURNCertificate, and the error and the log name
// AWS_CA_BUNDLE.
func TestTURNSUntrustedCertificate(t *testing.T) {
	_, servers := localICE(t)
	tlsURL := onlyURLs(rtc.ICEServers(servers), "turns:", "transport=tcp")[0].URLs[0]
	addr := strings.TrimPrefix(strings.SplitN(tlsURL, "?", 2)[0], "turns:")
	var logs bytes.Buffer
	c, err := rtc.DialTURN(nil, slog.New(slog.NewTextHandler(&logs, nil)), addr)
	if err == nil {
		_ = c.Close()
		t.Fatal("TLS to a TURN server with an untrusted certificate succeeded")
	}
	if !errors.Is(err, rtc.ErrTURNCertificate) || !strings.Contains(err.Error(), "AWS_CA_BUNDLE") {
		t.Fatalf("error %v: want ErrTURNCertificate naming AWS_CA_BUNDLE", err)
	}
	if !strings.Contains(logs.String(), "AWS_CA_BUNDLE") || !strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("log does not name AWS_CA_BUNDLE at ERROR:\n%s", logs.String())
	}
}

// TestRelayOnlyOverTURNS connects two peers with relay-only ICE through
// kvsrtc local's turns: (TLS over TCP) URI alone, trusting its certificate
// through Config.TURNRootCAs, and checks that the selected pair is a relay
// reached over TLS.
func TestRelayOnlyOverTURNS(t *testing.T) {
	srv, servers := localICE(t)
	servers = onlyURLs(rtc.ICEServers(servers), "turns:", "transport=tcp")
	if len(servers) != 1 {
		t.Fatalf("no turns: TCP URI in %+v", servers)
	}
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, TURNRootCAs: srv.CertPool(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := webrtc.Configuration{ICEServers: servers, ICETransportPolicy: webrtc.ICETransportPolicyRelay}
	offerer, err := api.NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer offerer.Close()
	answerer, err := api.NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer answerer.Close()

	got := make(chan string, 1)
	answerer.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case got <- string(m.Data):
			default:
			}
		})
	})
	dc, err := offerer.CreateDataChannel("d", nil)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })

	// Non-trickle exchange: each side's description carries its candidates.
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	og := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, og, "offerer gathering")
	if !strings.Contains(offerer.LocalDescription().SDP, "typ relay") {
		t.Fatalf("no relay candidate in the offer:\n%s", offerer.LocalDescription().SDP)
	}
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	ag := webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ag, "answerer gathering")
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatal("data channel did not open over the TLS relay")
	}
	if err := dc.SendText("over turns"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "over turns" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no message over the TLS relay")
	}
	pair, err := offerer.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected pair %v, %v", pair, err)
	}
	if pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("selected local candidate %s, want relay", pair.Local)
	}
	var proto string
	for _, s := range offerer.GetStats() {
		if c, ok := s.(webrtc.ICECandidateStats); ok && c.Type == webrtc.StatsTypeLocalCandidate &&
			c.IP == pair.Local.Address && int(c.Port) == int(pair.Local.Port) {
			proto = c.RelayProtocol
		}
	}
	t.Logf("selected pair: local %s (relay protocol %q), remote %s", pair.Local, proto, pair.Remote)
	if proto != "tls" {
		t.Fatalf("relay protocol %q, want tls", proto)
	}
}

func waitFor(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not finish", what)
	}
}
