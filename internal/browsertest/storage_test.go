package browsertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/storage"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// WebRTC ingestion and Multiviewer with the official JS SDK's sample flows
// in Chromium (js/storage-master.js, js/storage-viewer.js) against the
// local service's emulated storage session (kvstest's storage.Engine).

// storageResult is window.result of the storage pages.
type storageResult struct {
	officialResult
	ClientID     string       `json:"clientId"`
	Offers       int          `json:"offers"`
	Opens        int          `json:"opens"`
	Joins        int          `json:"joins"`
	JoinErrors   []string     `json:"joinErrors"`
	OfferFrom    *string      `json:"offerFrom"`
	OfferSDP     string       `json:"offerSDP"`
	AnswerSDP    string       `json:"answerSDP"`
	State        string       `json:"state"`
	States       [][2]any     `json:"states"`
	MaxGapMs     float64      `json:"maxGapMs"`
	Talkback     int          `json:"talkback"`
	Sent         rtpDirection `json:"sent"`
	Received     rtpDirection `json:"received"`
	Defined      bool         `json:"definedWebRTCStorage"`
	StreamARN    string       `json:"streamARN"`
	StatusDetail any          `json:"status"`
}

// eventAt is the time (ms after navigation) of the first event named what,
// or -1.
func (r storageResult) eventAt(what string) float64 {
	for _, e := range r.Events {
		if name, _ := e[0].(string); name == what {
			if ms, ok := e[1].(float64); ok {
				return ms
			}
		}
	}
	return -1
}

// rtpDirection is rtpTotals() of common.js.
type rtpDirection struct {
	Video, Audio struct {
		Bytes, Packets, Frames float64
	}
}

// storageResult refreshes the page's RTP totals and returns window.result.
func (tb *tab) storageResult(t *testing.T) storageResult {
	t.Helper()
	var r storageResult
	tb.eval(t, "window.refresh ? window.refresh() : window.result", &r)
	if r.Error != nil {
		t.Fatalf("the storage page failed: %s; events %v\nconsole:\n%s", *r.Error, r.Events, strings.Join(tb.consoleLines(), "\n"))
	}
	return r
}

// linkStorage creates a stream with retention and links channel to it with
// UpdateMediaStorageConfiguration (ENABLED), as the AWS console and CLI do.
func linkStorage(t *testing.T, channel string) (channelARN, streamARN string) {
	t.Helper()
	ctx := t.Context()
	kv := kinesisvideo.NewFromConfig(shared.env.AWSConfig)
	channelARN = shared.env.ChannelARN(t, channel)
	st, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String(channel + "-rec"), DataRetentionInHours: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{
		ChannelARN:                aws.String(channelARN),
		MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusEnabled, StreamARN: st.StreamARN},
	}); err != nil {
		t.Fatal(err)
	}
	return channelARN, aws.ToString(st.StreamARN)
}

// storagePageURL is officialPageURL with extra query parameters.
func storagePageURL(page, channel string, extra url.Values) string {
	u := officialPageURL(page, channel)
	if len(extra) > 0 {
		u += "&" + extra.Encode()
	}
	return u
}

// sessionStats is the storage engine's view of channel's session.
func sessionStats(channel string) (storage.SessionStats, bool) {
	for _, s := range shared.env.Storage.Stats().Sessions {
		if s.ChannelName == channel {
			return s, true
		}
	}
	return storage.SessionStats{}, false
}

// waitSession polls the channel's session until cond holds or fails after d.
func waitSession(t *testing.T, d time.Duration, channel, what string, cond func(storage.SessionStats) bool) storage.SessionStats {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s, ok := sessionStats(channel)
		if ok && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage session of %s after %v: %s; stats %+v (found %v)", channel, d, what, s, ok)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startStorageMaster opens the official ingestion master page on channel
// and waits until its storage peer connection is connected.
func startStorageMaster(t *testing.T, channel string) (*tab, storageResult) {
	t.Helper()
	tb := newTab(t, 3*time.Minute)
	tb.navigate(t, storagePageURL("storage-master", channel, nil))
	tb.await(t, 30*time.Second, "window.result.error !== null || window.result.state === 'connected'", "window.result")
	r := tb.storageResult(t)
	if r.Offers != 1 || r.OfferFrom != nil {
		t.Fatalf("the official master got %d offers (from %v), want 1 without senderClientId", r.Offers, r.OfferFrom)
	}
	if !strings.Contains(sectionOf(r.OfferSDP, "video"), "a=recvonly") || !strings.Contains(sectionOf(r.OfferSDP, "audio"), "a=sendrecv") {
		t.Fatalf("the storage session's offer to the master is not video recvonly + audio sendrecv:\n%s", r.OfferSDP)
	}
	return tb, r
}

// sectionOf is the m= section of kind in sdp ("" if none).
func sectionOf(sdp, kind string) string {
	for _, sec := range strings.Split(sdp, "\nm=")[1:] {
		if strings.HasPrefix(sec, kind+" ") {
			return sec
		}
	}
	return ""
}

// TestStorageOfficialMasterMultiviewer: the official master flow in
// ingestion mode (JoinStorageSession) and three official viewers in
// Multiviewer mode (JoinStorageSessionAsViewer) on one channel linked to a
// stream: the storage session offers to each of them (no senderClientId),
// every viewer decodes the camera's 640x480 video through it, one viewer's
// microphone reaches the master as talk-back, and the engine counts one
// session with the camera connected and three viewers.
func TestStorageOfficialMasterMultiviewer(t *testing.T) {
	ch := newChannel(t)
	_, streamARN := linkStorage(t, ch)
	master, mr := startStorageMaster(t, ch)
	t.Logf("official master: joins %d, connected at %v (events %v)", mr.Joins, mr.States, mr.Events)
	if mr.Defined {
		t.Log("note: the bundled aws-sdk has no AWS.KinesisVideoWebRTCStorage; the page defined it from the API model (common.js)")
	}

	const viewers = 3
	tabs := make([]*tab, viewers)
	for i := range tabs {
		tabs[i] = newTab(t, 2*time.Minute)
	}
	for i, tb := range tabs {
		extra := url.Values{}
		if i == 0 {
			extra.Set("audio", "1") // talk-back
		}
		tb.navigate(t, storagePageURL("storage-viewer", ch, extra))
	}
	for i, tb := range tabs {
		tb.await(t, 30*time.Second, "window.result.error !== null || (window.result.firstFrameMs !== null && window.result.frames >= 10)", "window.result")
		r := tb.storageResult(t)
		if !chromiumCameraSize(r.Width, r.Height) {
			t.Fatalf("viewer %d shows %dx%d, want Chromium's camera (640x480, or scaled down 4:3)", i, r.Width, r.Height)
		}
		if r.Offers != 1 || r.State != "connected" {
			t.Fatalf("viewer %d: %d offers, state %s", i, r.Offers, r.State)
		}
		if !strings.Contains(sectionOf(r.OfferSDP, "video"), "a=sendonly") || !strings.Contains(sectionOf(r.OfferSDP, "audio"), "a=sendrecv") {
			t.Fatalf("the storage session's offer to viewer %d is not video sendonly + audio sendrecv:\n%s", i, r.OfferSDP)
		}
		t.Logf("viewer %d (%s): first frame %.0f ms after navigation, %.0f ms after its first JoinStorageSessionAsViewer; %d frames %dx%d, joins %d, inbound video %.0f bytes",
			i, r.ClientID, *r.FirstFrameMs, *r.FirstFrameMs-r.eventAt("join"), r.Frames, r.Width, r.Height, r.Joins, r.Received.Video.Bytes)
	}
	st := waitSession(t, 10*time.Second, ch, "camera connected, 3 viewers connected, talk-back", func(s storage.SessionStats) bool {
		return s.MasterConnected && s.Viewers == viewers && s.Connected == viewers && s.TalkPackets > 0
	})
	n := 0
	for _, s := range shared.env.Storage.Stats().Sessions {
		if s.ChannelName == ch {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the engine has %d storage sessions for %s, want 1", n, ch)
	}
	master.await(t, 10*time.Second, "window.result.talkback > 0", "window.result")
	mr = master.storageResult(t)
	if mr.Sent.Video.Bytes == 0 || mr.Offers != 1 {
		t.Fatalf("official master: sent %+v, offers %d", mr.Sent, mr.Offers)
	}
	t.Logf("official master: sent video %.0f bytes / %.0f frames, audio %.0f bytes; received talk-back audio %.0f bytes",
		mr.Sent.Video.Bytes, mr.Sent.Video.Frames, mr.Sent.Audio.Bytes, mr.Received.Audio.Bytes)
	t.Logf("storage session: camera video %d frames / %d bytes, audio %d bytes, %d fragments recorded (%d bytes, %d errors), %d talk-back packets",
		st.FramesIn, st.BytesIn, st.AudioIn, st.Fragments, st.RecordedBytes, st.RecordErrors, st.TalkPackets)
	checkRecording(t, streamARN)
}

// chromiumCameraSize reports whether a decoded size is the official master
// page's fake camera: 640x480, or smaller at the same 4:3 when Chromium's
// encoder scales down on a loaded machine (its resolution adaptation).
func chromiumCameraSize(w, h int) bool {
	return w > 0 && w <= 640 && w*3 == h*4
}

// checkRecording ends nothing: it reads what the storage session recorded
// of the camera so far (ListFragments, GetClip) and checks with ffprobe
// that the clip is H.264 and lasts what its fragments add up to. The
// camera here is Chromium's encoder, whose stream kvsrtc's own tests
// cannot stand in for.
func checkRecording(t *testing.T, streamARN string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var frs []kvsproto.Fragment
	deadline := time.Now().Add(15 * time.Second)
	for len(frs) < 2 && time.Now().Before(deadline) {
		out, err := archivePost(ctx, kvsproto.PathListFragments, kvsproto.ListFragmentsInput{StreamARN: streamARN})
		if err != nil {
			t.Fatal(err)
		}
		var lf kvsproto.ListFragmentsOutput
		if err := json.Unmarshal(out, &lf); err != nil {
			t.Fatal(err)
		}
		frs = lf.Fragments
		time.Sleep(200 * time.Millisecond)
	}
	if len(frs) < 2 {
		t.Fatalf("%d fragments recorded of the official master; want 2 or more", len(frs))
	}
	var total time.Duration
	for _, f := range frs {
		total += time.Duration(f.FragmentLengthInMilliseconds) * time.Millisecond
	}
	body, err := archivePost(ctx, kvsproto.PathGetClip, kvsproto.GetClipInput{StreamARN: streamARN, ClipFragmentSelector: &kvsproto.FragmentSelector{
		FragmentSelectorType: "PRODUCER_TIMESTAMP",
		TimestampRange: &kvsproto.TimestampRange{
			StartTimestamp: &kvsproto.Timestamp{Time: frs[0].ProducerTimestamp.Add(-time.Second)},
			EndTimestamp:   &kvsproto.Timestamp{Time: frs[len(frs)-1].ProducerTimestamp.Add(time.Second)},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(clip, body, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,width,height",
		"-of", "default=noprint_wrappers=1", clip).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	var dur float64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "duration="); ok {
			dur, _ = strconv.ParseFloat(v, 64)
		}
	}
	got := time.Duration(dur * float64(time.Second))
	if !strings.Contains(string(out), "codec_name=h264") || got < total-time.Second || got > total+time.Second {
		t.Errorf("the clip of the official master's recording: %q; want H.264 lasting about %v", out, total)
	}
	t.Logf("recording of the official master: %d fragments, %v; GetClip: %s", len(frs), total, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", ", "))
}

// archivePost sends a SigV4-signed archived-media call to the emulator
// (the data endpoint is the emulator itself) and returns the 200 body.
func archivePost(ctx context.Context, path string, in any) ([]byte, error) {
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, shared.env.Server.URL()+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	creds, err := shared.env.AWSConfig.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, err
	}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", shared.env.AWSConfig.Region, time.Now()); err != nil {
		return nil, err
	}
	resp, err := shared.env.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d %s: %s", path, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), msg)
	}
	return msg, nil
}

// goPeer is a storage session participant in Go (the storage package's
// test participant pattern): a Multiviewer viewer (signaling as VIEWER,
// JoinStorageSessionAsViewer) that counts the frames it decodes, or a
// camera (camera set: signaling as MASTER, JoinStorageSession) that sends
// the H.264 test pattern. Either answers the storage session's offers.
type goPeer struct {
	clientID   string
	camera     *webrtc.TrackLocalStaticSample
	sig        *signaling.Client
	joined     time.Time
	offers     atomic.Int64
	frames     atomic.Int64
	connected  atomic.Bool
	firstFrame atomic.Int64 // nanoseconds after joined
	width      atomic.Int64
	height     atomic.Int64
}

// WriteFrame counts the viewer's video frames (a media.Sink).
func (v *goPeer) WriteFrame(f media.Frame) error {
	if v.frames.Add(1) == 1 {
		v.firstFrame.Store(int64(time.Since(v.joined)))
	}
	if f.Width > 0 {
		v.width.Store(int64(f.Width))
		v.height.Store(int64(f.Height))
	}
	return nil
}

// dialGoPeer connects a participant to signaling: a viewer, or the
// camera when clientID is "".
func dialGoPeer(t *testing.T, channelARN, clientID string) *goPeer {
	t.Helper()
	ctx := t.Context()
	role := kvsproto.RoleViewer
	if clientID == "" {
		role = kvsproto.RoleMaster
	}
	ep, err := shared.ctl.Endpoints(ctx, channelARN, role)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signaling.Dial(ctx, signaling.Config{
		Endpoint: ep.WSS, ChannelARN: channelARN, Role: role, ClientID: clientID, Region: shared.ctl.Region(),
		Credentials: shared.ctl.SigV4Credentials, HTTPClient: shared.env.HTTPClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sig.Close() })
	return &goPeer{clientID: clientID, sig: sig}
}

// run answers the storage session's offers until ctx ends.
func (v *goPeer) run(ctx context.Context, t *testing.T) {
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, Audio: true, VideoCodecs: []string{"H264"}})
	if err != nil {
		t.Error(err)
		return
	}
	var peer *rtc.Peer
	defer func() {
		if peer != nil {
			_ = peer.Close()
		}
	}()
	var cands <-chan *webrtc.ICECandidate
	var tracks <-chan rtc.Track
	var states <-chan webrtc.PeerConnectionState
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.sig.Done():
			return
		case st := <-states:
			v.connected.Store(st == webrtc.PeerConnectionStateConnected)
		case c := <-cands:
			init := c.ToJSON()
			_ = v.sig.SendICECandidate(ctx, kvsproto.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}, "", "")
		case tr := <-tracks:
			if tr.Remote.Kind() != webrtc.RTPCodecTypeVideo {
				continue
			}
			rc, err := media.NewReceiver(tr.Remote, media.ReceiverConfig{Sinks: []media.Sink{v}})
			if err != nil {
				t.Error(err)
				return
			}
			peer.ReadRTCP(tr.Receiver)
			peer.Go(func(ctx context.Context) { _ = rc.Run(ctx) })
		case ev := <-v.sig.Events():
			switch {
			case ev.Type == kvsproto.MessageSDPOffer && ev.SenderClientID == "":
				v.offers.Add(1)
				if peer != nil {
					_ = peer.Close()
				}
				if peer, err = rtc.NewPeer(api, webrtc.Configuration{}); err != nil {
					t.Error(err)
					return
				}
				cands, tracks, states = peer.Candidates(), peer.Tracks(), peer.States()
				if err := peer.SetOffer(ev.SDP.SDP); err != nil {
					t.Errorf("viewer %s: the storage session's offer: %v", v.clientID, err)
					return
				}
				if v.camera != nil {
					if _, err := peer.PC.AddTrack(v.camera); err != nil {
						t.Error(err)
						return
					}
				}
				ans, err := peer.Answer(0)
				if err != nil {
					t.Error(err)
					return
				}
				if err := v.sig.SendAnswer(ctx, kvsproto.SessionDescription{Type: "answer", SDP: ans}, "", ""); err != nil {
					t.Error(err)
				}
			case ev.Type == kvsproto.MessageICECandidate && peer != nil && ev.Candidate != nil:
				c := ev.Candidate
				_ = peer.AddCandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
			}
		}
	}
}

// joinStorage calls JoinStorageSessionAsViewer (JoinStorageSession when
// clientID is "") on the channel's WEBRTC endpoint, a REST-JSON POST signed
// with SigV4 (signing name kinesisvideo) as the AWS SDKs send it.
func joinStorage(ctx context.Context, channelARN, clientID string) error {
	role, path, in := types.ChannelRoleViewer, "/joinStorageSessionAsViewer", map[string]string{"channelArn": channelARN, "clientId": clientID}
	if clientID == "" {
		role, path, in = types.ChannelRoleMaster, "/joinStorageSession", map[string]string{"channelArn": channelARN}
	}
	kv := kinesisvideo.NewFromConfig(shared.env.AWSConfig)
	out, err := kv.GetSignalingChannelEndpoint(ctx, &kinesisvideo.GetSignalingChannelEndpointInput{
		ChannelARN: aws.String(channelARN),
		SingleMasterChannelEndpointConfiguration: &types.SingleMasterChannelEndpointConfiguration{
			Protocols: []types.ChannelProtocol{types.ChannelProtocolWebrtc}, Role: role,
		},
	})
	if err != nil {
		return err
	}
	if len(out.ResourceEndpointList) != 1 || out.ResourceEndpointList[0].Protocol != types.ChannelProtocolWebrtc {
		return fmt.Errorf("GetSignalingChannelEndpoint WEBRTC: %+v", out.ResourceEndpointList)
	}
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, aws.ToString(out.ResourceEndpointList[0].ResourceEndpoint)+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	creds, err := shared.env.AWSConfig.Credentials.Retrieve(ctx)
	if err != nil {
		return err
	}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", shared.env.AWSConfig.Region, time.Now()); err != nil {
		return err
	}
	resp, err := shared.env.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d %s: %s", path, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), msg)
	}
	return nil
}

// TestStorageGoViewersWatchOfficialMaster: the official ingestion master
// page, two Go test participants (signaling + pion, answering the storage
// session's offers) and one kvsrtc viewer.Session with Config.Storage:
// each decodes the camera's 640x480 H.264.
func TestStorageGoViewersWatchOfficialMaster(t *testing.T) {
	ch := newChannel(t)
	arn, _ := linkStorage(t, ch)
	master, _ := startStorageMaster(t, ch)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	vs := make([]*goPeer, 2) // + one kvsrtc viewer: the session takes 3
	for i := range vs {
		v := dialGoPeer(t, arn, fmt.Sprintf("go-viewer-%d", i))
		vs[i] = v
		wg.Go(func() { v.run(ctx, t) })
		v.joined = time.Now()
		if err := joinStorage(ctx, arn, v.clientID); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, v := range vs {
		for v.frames.Load() < 30 || v.width.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("viewer %s: %d frames, %dx%d, %d offers, connected %v", v.clientID, v.frames.Load(), v.width.Load(), v.height.Load(), v.offers.Load(), v.connected.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !chromiumCameraSize(int(v.width.Load()), int(v.height.Load())) || v.offers.Load() != 1 {
			t.Fatalf("viewer %s: %dx%d, %d offers", v.clientID, v.width.Load(), v.height.Load(), v.offers.Load())
		}
		t.Logf("Go viewer %s: first frame %v after JoinStorageSessionAsViewer, %d frames %dx%d",
			v.clientID, time.Duration(v.firstFrame.Load()).Round(time.Millisecond), v.frames.Load(), v.width.Load(), v.height.Load())
	}
	// kvsrtc's own viewer library in Multiviewer mode (viewer.Config.Storage).
	ttff := make(chan time.Duration, 1)
	sess, err := viewer.New(viewer.Config{Channel: arn, Control: shared.ctl, HTTPClient: shared.env.HTTPClient, LoopbackOnly: true, Storage: true,
		Logger: testLogger("viewer"), OnEvent: func(ev viewer.Event) {
			if ev.State == viewer.StateStreaming {
				select {
				case ttff <- ev.TimeToFirstFrame:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = sess.Run(ctx) })
	select {
	case d := <-ttff:
		deadline := time.Now().Add(10 * time.Second)
		for sess.Summary().Frames < 30 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		sum := sess.Summary()
		if sum.Frames < 30 || !chromiumCameraSize(sum.Width, sum.Height) {
			t.Fatalf("kvsrtc viewer (Storage): %d frames %dx%d", sum.Frames, sum.Width, sum.Height)
		}
		t.Logf("kvsrtc viewer (Storage): time to first frame %v, %d frames %dx%d", d.Round(time.Millisecond), sum.Frames, sum.Width, sum.Height)
	case <-time.After(30 * time.Second):
		t.Fatalf("kvsrtc viewer (Storage): no frame within 30 s: %+v", sess.Summary())
	}
	st := waitSession(t, 10*time.Second, ch, "camera connected, 3 viewers connected", func(s storage.SessionStats) bool {
		return s.MasterConnected && s.Viewers == 3 && s.Connected == 3
	})
	mr := master.storageResult(t)
	t.Logf("official master: sent video %.0f bytes / %.0f frames; session: %d frames in, %d fragments recorded", mr.Sent.Video.Bytes, mr.Sent.Video.Frames, st.FramesIn, st.Fragments)
}

// TestStorageOfficialMasterRejoin: the official master renews its signaling
// connection (close, open; the example does not join again then) and its
// storage link stays; then it closes and opens signaling and joins again
// (as the example does after a lost storage connection): the storage
// session sends a new offer, the master replaces its storage peer
// connection, and the two official viewers go on playing without a new
// offer of their own.
func TestStorageOfficialMasterRejoin(t *testing.T) {
	ch := newChannel(t)
	linkStorage(t, ch)
	master, _ := startStorageMaster(t, ch)
	tabs := []*tab{newTab(t, 2*time.Minute), newTab(t, 2*time.Minute)}
	for _, tb := range tabs {
		tb.navigate(t, storagePageURL("storage-viewer", ch, nil))
	}
	for _, tb := range tabs {
		tb.await(t, 30*time.Second, "window.result.error !== null || window.result.frames >= 30", "window.result")
	}
	before := make([]int, len(tabs))
	for i, tb := range tabs {
		tb.eval(t, "window.resetGap()", nil)
		before[i] = tb.storageResult(t).Frames
	}
	// Signaling renewal alone: no join, no offer, the storage link stays.
	master.eval(t, "window.reconnectSignaling()", nil)
	master.await(t, 15*time.Second, "window.result.error !== null || window.result.opens === 2", "window.result")
	time.Sleep(time.Second)
	if r := master.storageResult(t); r.Offers != 1 || r.Joins != 1 || r.State != "connected" {
		t.Fatalf("official master after a signaling renewal: %d offers, %d joins, state %s", r.Offers, r.Joins, r.State)
	}
	waitSession(t, 5*time.Second, ch, "camera still connected after the signaling renewal", func(s storage.SessionStats) bool { return s.MasterConnected })

	start := time.Now()
	master.eval(t, "window.renew()", nil)
	master.await(t, 30*time.Second, "window.result.error !== null || (window.result.offers === 2 && window.result.state === 'connected')", "window.result")
	reconnect := time.Since(start)
	mr := master.storageResult(t)
	if mr.Opens != 3 {
		t.Fatalf("official master: signaling opened %d times, want 3 (events %v)", mr.Opens, mr.Events)
	}
	st := waitSession(t, 10*time.Second, ch, "camera connected again", func(s storage.SessionStats) bool {
		return s.MasterConnected && s.Connected == len(tabs)
	})
	for i, tb := range tabs {
		tb.await(t, 20*time.Second, fmt.Sprintf("window.result.frames >= %d", before[i]+60), "window.result")
		r := tb.storageResult(t)
		if r.Offers != 1 || r.State != "connected" {
			t.Fatalf("viewer %d after the master's re-join: %d offers, state %s", i, r.Offers, r.State)
		}
		t.Logf("viewer %d: %d frames before the renewal and re-join, %d after; longest pause between frames across them %.0f ms", i, before[i], r.Frames, r.MaxGapMs)
	}
	t.Logf("official master: re-join to connected %v (joins %d, states %v); session: %d frames in, %d fragments", reconnect.Round(time.Millisecond), mr.Joins, mr.States, st.FramesIn, st.Fragments)
}

// TestStorageOfficialViewerWatchesGoCamera: kvsrtc's master with
// Config.Ingest (JoinStorageSession, the 640x360 H.264 test pattern) and
// two official Multiviewer viewer pages: each decodes the pattern through
// the storage session.
func TestStorageOfficialViewerWatchesGoCamera(t *testing.T) {
	ch := newChannel(t)
	linkStorage(t, ch)
	shared.env.StartMaster(t, kvstest.MasterOptions{Channel: ch, Logger: testLogger("master"), Configure: func(c *master.Config) { c.Ingest = true }})
	waitSession(t, 15*time.Second, ch, "the Go camera connected", func(s storage.SessionStats) bool { return s.MasterConnected })

	tabs := []*tab{newTab(t, 2*time.Minute), newTab(t, 2*time.Minute)}
	for _, tb := range tabs {
		tb.navigate(t, storagePageURL("storage-viewer", ch, nil))
	}
	for i, tb := range tabs {
		tb.await(t, 30*time.Second, "window.result.error !== null || (window.result.firstFrameMs !== null && window.result.frames >= 10)", "window.result")
		r := tb.storageResult(t)
		if r.Width != 640 || r.Height != 360 || r.Offers != 1 {
			t.Fatalf("official viewer %d: %dx%d, %d offers", i, r.Width, r.Height, r.Offers)
		}
		t.Logf("official viewer %d: first frame %.0f ms after navigation, %.0f ms after its first JoinStorageSessionAsViewer; %d frames %dx%d",
			i, *r.FirstFrameMs, *r.FirstFrameMs-r.eventAt("join"), r.Frames, r.Width, r.Height)
	}
	st := waitSession(t, 10*time.Second, ch, "2 viewers connected", func(s storage.SessionStats) bool { return s.Connected == 2 })
	t.Logf("session: camera (kvsrtc master, Ingest) %d frames / %d bytes in, %d fragments recorded", st.FramesIn, st.BytesIn, st.Fragments)
}
