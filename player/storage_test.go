package player_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// storageFixture is a fixture whose emulator runs the storage sessions'
// media (kvstest), with "cam" linked to a stream (WebRTC ingestion) and
// "other" not.
type storageFixture struct {
	*fixture
	env       *kvstest.Env
	camARN    string
	streamARN string
}

func newStorageFixture(t *testing.T, pcfg player.Config, ecfg emulator.Config) *storageFixture {
	t.Helper()
	ecfg.Channels = []string{"cam", "other"}
	if pcfg.Channels == nil {
		pcfg.Channels = []string{"cam", "other"}
	}
	f, env := newFixtureEnv(t, pcfg, ecfg)
	sf := &storageFixture{fixture: f, env: env}
	sf.camARN = env.ChannelARN(t, "cam")
	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	st, err := kv.CreateStream(t.Context(), &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-rec"), DataRetentionInHours: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	sf.streamARN = aws.ToString(st.StreamARN)
	sf.setStorage(t, true)
	return sf
}

// setStorage links "cam" to its stream (on) or turns its media storage off.
func (sf *storageFixture) setStorage(t *testing.T, on bool) {
	t.Helper()
	msc := &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusDisabled}
	if on {
		msc = &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusEnabled, StreamARN: aws.String(sf.streamARN)}
	}
	kv := kinesisvideo.NewFromConfig(sf.env.AWSConfig)
	if _, err := kv.UpdateMediaStorageConfiguration(t.Context(), &kinesisvideo.UpdateMediaStorageConfigurationInput{
		ChannelARN: aws.String(sf.camARN), MediaStorageConfiguration: msc,
	}); err != nil {
		t.Fatal(err)
	}
}

// dialViewer opens the viewer signaling connection of a session's client
// id, as the page opens the presigned URL.
func (sf *storageFixture) dialViewer(t *testing.T, s player.Session) *signaling.Client {
	t.Helper()
	ep, err := sf.ctl.Endpoints(t.Context(), s.ChannelARN, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signaling.Dial(t.Context(), signaling.Config{
		Endpoint: ep.WSS, ChannelARN: s.ChannelARN, Role: kvsproto.RoleViewer, ClientID: s.ClientID,
		Region: sf.ctl.Region(), Credentials: sf.ctl.SigV4Credentials, HTTPClient: sf.env.HTTPClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sig.Close() })
	return sig
}

// join asks POST /api/storage-join.
func (sf *storageFixture) join(t *testing.T, channel, clientID string) (*http.Response, []byte) {
	t.Helper()
	return sf.request(t, "POST", "/api/storage-join", map[string]any{"channel": channel, "clientId": clientID, "retry": 0}, sf.bearer())
}

// waitOffer waits for the storage session's SDP offer (no senderClientId).
func waitOffer(t *testing.T, sig *signaling.Client) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev := <-sig.Events():
			if ev.Type == kvsproto.MessageSDPOffer {
				if ev.SenderClientID != "" {
					t.Fatalf("an offer from %q, not from the storage session", ev.SenderClientID)
				}
				return ev.SDP.SDP
			}
		case <-sig.Done():
			t.Fatal("the viewer's signaling connection closed before the storage session's offer")
		case <-timeout:
			t.Fatal("no offer from the storage session within 15 s")
		}
	}
}

// TestStorageSessionAndJoin: in auto mode a channel with a media storage
// configuration gets storage sessions (the viewer URL, client id and ICE
// servers of a direct one), another channel direct ones; the join makes
// the storage session offer to the page's connection; the metrics count it.
func TestStorageSessionAndJoin(t *testing.T) {
	sf := newStorageFixture(t, player.Config{}, emulator.Config{})
	s, resp, body := sf.session(t, "cam", "")
	if resp.StatusCode != http.StatusOK || s.Mode != player.ModeStorage {
		t.Fatalf("session for the linked channel: HTTP %d, mode %q: %s", resp.StatusCode, s.Mode, body)
	}
	if s.ClientID == "" || !strings.HasPrefix(s.SignalingURL, "ws") || len(s.ICEServers) == 0 || s.WHEP != "" {
		t.Fatalf("a storage session needs a client id, a presigned URL and ICE servers: %+v", s)
	}
	if d, _, _ := sf.session(t, "other", ""); d.Mode != "" || d.ClientID == "" {
		t.Fatalf("the unlinked channel's session is not direct: %+v", d)
	}

	sig := sf.dialViewer(t, s)
	if resp, body := sf.join(t, "cam", s.ClientID); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("storage-join: HTTP %d: %s", resp.StatusCode, body)
	}
	offer := waitOffer(t, sig)
	if !strings.Contains(offer, "m=video") || !strings.Contains(offer, "a=sendonly") {
		t.Fatalf("the storage session's offer to a viewer has no send-only video:\n%s", offer)
	}
	st := sf.env.Storage.Stats()
	found := false
	for _, se := range st.Sessions {
		found = found || se.ChannelName == "cam"
	}
	if !found {
		t.Fatalf("the storage engine has no session of cam: %+v", st)
	}

	// A renewal (a page's new socket, or a reconnect keeping its place in
	// the storage session) is a storage session with the same client id.
	if r, resp, body := sf.session(t, "cam", s.ClientID); resp.StatusCode != http.StatusOK || r.Mode != player.ModeStorage || r.ClientID != s.ClientID {
		t.Fatalf("renewal: HTTP %d %+v: %s", resp.StatusCode, r, body)
	}
	_, m := sf.request(t, "GET", "/metrics", nil, sf.bearer())
	if !strings.Contains(string(m), `kvsrtc_player_storage_sessions_total{channel="cam"} 1`) {
		t.Fatalf("metrics do not count the storage session:\n%s", m)
	}
}

// TestStorageJoinRefusals: the join's refusals, each with its cause,
// status and words: a client id this server did not mint, a page whose
// socket is not open, the viewer limit ("maximum of N viewers"), a stream
// that was deleted, and a channel whose storage was turned off (the next
// session is direct).
func TestStorageJoinRefusals(t *testing.T) {
	sf := newStorageFixture(t, player.Config{}, emulator.Config{StorageMaxViewers: 1})

	resp, body := sf.join(t, "cam", "kvsrtc-web-not-minted-here")
	if resp.StatusCode != http.StatusBadRequest || apiError(t, body).Cause != player.CauseBadRequest {
		t.Fatalf("a foreign client id: HTTP %d: %s", resp.StatusCode, body)
	}
	if resp, body := sf.join(t, "not-served", "x"); resp.StatusCode != http.StatusForbidden || apiError(t, body).Cause != player.CauseNotServed {
		t.Fatalf("an unserved channel: HTTP %d: %s", resp.StatusCode, body)
	}

	// No socket open for the client id yet: the page joins again later.
	s1, _, _ := sf.session(t, "cam", "")
	resp, body = sf.join(t, "cam", s1.ClientID)
	if d := apiError(t, body); resp.StatusCode != http.StatusConflict || d.Cause != cause.SignalingLost || !d.Retryable {
		t.Fatalf("a join before the socket: HTTP %d: %+v", resp.StatusCode, d)
	}

	sig1 := sf.dialViewer(t, s1)
	if resp, body := sf.join(t, "cam", s1.ClientID); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the first viewer's join: HTTP %d: %s", resp.StatusCode, body)
	}
	waitOffer(t, sig1)

	// The viewer limit (1 here): a clear refusal the page shows at once.
	s2, _, _ := sf.session(t, "cam", "")
	sf.dialViewer(t, s2)
	resp, body = sf.join(t, "cam", s2.ClientID)
	d := apiError(t, body)
	if resp.StatusCode != http.StatusServiceUnavailable || d.Cause != cause.StorageFull || d.Retryable || !strings.Contains(d.Message, "maximum of 1 viewers") {
		t.Fatalf("over the viewer limit: HTTP %d: %+v", resp.StatusCode, d)
	}
	t.Logf("viewer limit: %s / %s / %s", d.Title, d.Message, d.Advice)

	// The stream is deleted.
	kv := kinesisvideo.NewFromConfig(sf.env.AWSConfig)
	if _, err := kv.DeleteStream(t.Context(), &kinesisvideo.DeleteStreamInput{StreamARN: aws.String(sf.streamARN)}); err != nil {
		t.Fatal(err)
	}
	resp, body = sf.join(t, "cam", s2.ClientID)
	if d := apiError(t, body); resp.StatusCode != http.StatusNotFound || d.Cause != cause.StreamMissing || d.Retryable {
		t.Fatalf("a deleted stream: HTTP %d: %+v", resp.StatusCode, d)
	}

	// Storage turned off: the join says so and the next session is direct.
	sf.setStorage(t, false)
	s3, _, _ := sf.session(t, "cam", "")
	if s3.Mode == player.ModeStorage {
		sf.dialViewer(t, s3)
		resp, body = sf.join(t, "cam", s3.ClientID)
		if d := apiError(t, body); resp.StatusCode != http.StatusConflict || d.Cause != cause.StorageNotConfigured || !d.Retryable {
			t.Fatalf("storage turned off: HTTP %d: %+v", resp.StatusCode, d)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s4, resp, body := sf.session(t, "cam", "")
		if resp.StatusCode == http.StatusOK && s4.Mode == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session after storage was turned off is not direct: HTTP %d %+v: %s", resp.StatusCode, s4, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, m := sf.request(t, "GET", "/metrics", nil, sf.bearer())
	for _, want := range []string{
		`kvsrtc_player_storage_join_failures_total{cause="storage-full"} 1`,
		`kvsrtc_player_storage_join_failures_total{cause="stream-missing"} 1`,
		`kvsrtc_player_storage_join_failures_total{cause="signaling-lost"} 1`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

// TestStorageModes: off watches a linked channel directly; on sends every
// channel to its storage session, and one without a storage configuration
// is refused with storage-not-configured; a bad mode is a config error.
func TestStorageModes(t *testing.T) {
	off := newStorageFixture(t, player.Config{Storage: player.StorageOff}, emulator.Config{})
	if s, resp, body := off.session(t, "cam", ""); resp.StatusCode != http.StatusOK || s.Mode != "" {
		t.Fatalf("storage off: HTTP %d %+v: %s", resp.StatusCode, s, body)
	}
	if resp, body := off.join(t, "cam", "x"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("storage off, join of an unknown id: HTTP %d: %s", resp.StatusCode, body)
	}

	on := newStorageFixture(t, player.Config{Storage: player.StorageOn}, emulator.Config{})
	if s, resp, body := on.session(t, "cam", ""); resp.StatusCode != http.StatusOK || s.Mode != player.ModeStorage {
		t.Fatalf("storage on, linked channel: HTTP %d %+v: %s", resp.StatusCode, s, body)
	}
	_, resp, body := on.session(t, "other", "")
	if d := apiError(t, body); resp.StatusCode == http.StatusOK || d.Cause != cause.StorageNotConfigured || !strings.Contains(d.Message, `"other"`) {
		t.Fatalf("storage on, unlinked channel: HTTP %d: %+v", resp.StatusCode, d)
	}

	_, err := player.New(player.Config{Control: on.ctl, Channels: []string{"cam"}, NoAuth: true, Storage: "sometimes"})
	if !errors.Is(err, player.ErrInvalidConfig) || !strings.Contains(err.Error(), "Storage") {
		t.Fatalf("a bad storage mode: %v", err)
	}
}

// TestStorageDiagnosis: a page that got no offer from the storage session
// gets the storage path's words.
func TestStorageDiagnosis(t *testing.T) {
	sf := newStorageFixture(t, player.Config{}, emulator.Config{})
	resp, body := sf.request(t, "POST", "/api/diagnose", map[string]any{
		"channel": "cam", "cause": string(cause.NoStorageOffer), "stage": "storage-offer", "attempts": 2, "elapsedMs": 61000,
	}, sf.bearer())
	var d player.Diagnosis
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("diagnose: HTTP %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Cause != cause.NoStorageOffer || !strings.Contains(d.Title, "storage session") || !strings.Contains(d.Message, "2 attempts") {
		t.Fatalf("no offer diagnosis: %+v", d)
	}
}
