package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// linkStorage creates a stream with retention and links channel to it.
func linkStorage(ctx context.Context, t testing.TB, env *kvstest.Env, channel string) (channelARN, streamARN string) {
	t.Helper()
	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	channelARN = env.ChannelARN(t, channel)
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

// unlinkStorage disables the channel's media storage.
func unlinkStorage(ctx context.Context, t testing.TB, env *kvstest.Env, channelARN string) {
	t.Helper()
	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	if _, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{
		ChannelARN:                aws.String(channelARN),
		MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusDisabled},
	}); err != nil {
		t.Fatal(err)
	}
}

// opusTrack is a local Opus track for a viewer's talk-back.
func opusTrack(t *testing.T) *webrtc.TrackLocalStaticSample {
	t.Helper()
	cap, _ := rtc.Capability(rtc.CodecOpus)
	tr, err := webrtc.NewTrackLocalStaticSample(cap, "audio", "test-viewer")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// join calls JoinStorageSession (clientID "") or JoinStorageSessionAsViewer
// on the emulator, signed as the SDKs sign it.
func join(ctx context.Context, t testing.TB, env *kvstest.Env, channelARN, clientID string) error {
	t.Helper()
	path, body := "/joinStorageSession", map[string]string{"channelArn": channelARN}
	if clientID != "" {
		path, body["clientId"] = "/joinStorageSessionAsViewer", clientID
	}
	_, err := post(ctx, env, path, body)
	return err
}

// post sends a SigV4-signed REST-JSON POST to the emulator and returns the
// body of a 200 answer.
func post(ctx context.Context, env *kvstest.Env, path string, body any) ([]byte, error) {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, env.Server.URL()+path, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(raw)
	c := env.Server.Credentials()
	creds := aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", env.Server.Region(), time.Now()); err != nil {
		return nil, err
	}
	resp, err := env.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d %s: %s", path, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), out)
	}
	return out, nil
}

// participant is a test client of a storage session: it connects to
// signaling and answers every offer that comes without senderClientId.
// A master sends the test pattern; a viewer counts the frames it decodes.
type participant struct {
	t        testing.TB
	sig      *signaling.Client
	role     kvsproto.Role
	offers   atomic.Int64
	frames   atomic.Int64
	audioIn  atomic.Int64
	conns    atomic.Int64
	closed   atomic.Int64 // peer connections that failed or closed
	videoOut *webrtc.TrackLocalStaticSample
	voice    *webrtc.TrackLocalStaticSample // a viewer's talk-back, when set
	noAudio  bool                           // register no Opus: the answer rejects the audio section
}

func dial(ctx context.Context, t testing.TB, env *kvstest.Env, channelARN string, role kvsproto.Role, clientID string) *participant {
	t.Helper()
	ep, err := env.Control.Endpoints(ctx, channelARN, role)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signaling.Dial(ctx, signaling.Config{
		Endpoint: ep.WSS, ChannelARN: channelARN, Role: role, ClientID: clientID, Region: env.Control.Region(),
		Credentials: env.Control.SigV4Credentials, HTTPClient: env.HTTPClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &participant{t: t, sig: sig, role: role}
	t.Cleanup(func() { _ = sig.Close() })
	return p
}

// run answers offers until ctx ends; in a goroutine.
func (p *participant) run(ctx context.Context) {
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, Audio: !p.noAudio, VideoCodecs: []string{"H264"}})
	if err != nil {
		p.t.Error(err)
		return
	}
	if p.role == kvsproto.RoleMaster {
		cap, _ := rtc.Capability(rtc.CodecH264)
		p.videoOut, _ = webrtc.NewTrackLocalStaticSample(cap, "video", "test-camera")
		if !p.feed(ctx, rtc.CodecH264, p.videoOut) {
			return
		}
	}
	if p.voice != nil && !p.feed(ctx, rtc.CodecOpus, p.voice) {
		return
	}
	var peer, prev *rtc.Peer // prev: the peer a new offer replaces, closed once the new one connects
	defer func() {
		for _, pr := range []*rtc.Peer{peer, prev} {
			if pr != nil {
				_ = pr.Close()
			}
		}
	}()
	// The test pattern has a keyframe every second and does not answer
	// PLIs (a real camera does): the replaced peer goes on for a GOP
	// after the new one connects, as a camera keeps the old connection
	// until the new one carries video.
	var retire <-chan time.Time
	var cands <-chan *webrtc.ICECandidate
	var tracks <-chan rtc.Track
	var states <-chan webrtc.PeerConnectionState
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.sig.Done():
			return
		case <-retire:
			if prev != nil {
				_ = prev.Close()
				prev = nil
			}
		case st := <-states:
			switch st {
			case webrtc.PeerConnectionStateConnected:
				p.conns.Add(1)
				if prev != nil {
					retire = time.After(1500 * time.Millisecond)
				}
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
				p.closed.Add(1)
			}
		case c := <-cands:
			init := c.ToJSON()
			_ = p.sig.SendICECandidate(ctx, kvsproto.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}, "", "")
		case tr := <-tracks:
			p.onTrack(ctx, peer, tr)
		case ev := <-p.sig.Events():
			switch {
			case ev.Type == kvsproto.MessageSDPOffer && ev.SenderClientID == "":
				p.offers.Add(1)
				if prev != nil {
					_ = prev.Close()
				}
				prev = peer
				if peer, err = rtc.NewPeer(api, webrtc.Configuration{}); err != nil {
					p.t.Error(err)
					return
				}
				cands, tracks, states = peer.Candidates(), peer.Tracks(), peer.States()
				if err := peer.SetOffer(ev.SDP.SDP); err != nil {
					p.t.Errorf("%s: the storage session's offer: %v", p.role, err)
					return
				}
				for _, tr := range []*webrtc.TrackLocalStaticSample{p.videoOut, p.voice} {
					if tr == nil {
						continue
					}
					if _, err := peer.PC.AddTrack(tr); err != nil {
						p.t.Error(err)
						return
					}
				}
				ans, err := peer.Answer(0)
				if err != nil {
					p.t.Error(err)
					return
				}
				if err := p.sig.SendAnswer(ctx, kvsproto.SessionDescription{Type: "answer", SDP: ans}, "", ""); err != nil {
					p.t.Error(err)
				}
			case ev.Type == kvsproto.MessageICECandidate && peer != nil && ev.Candidate != nil:
				c := ev.Candidate
				_ = peer.AddCandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
			}
		}
	}
}

// feed writes the embedded test media of codec to tr until ctx ends.
func (p *participant) feed(ctx context.Context, codec rtc.Codec, tr *webrtc.TrackLocalStaticSample) bool {
	src, err := media.NewTestSource(codec, media.SourceConfig{})
	if err != nil {
		p.t.Error(err)
		return false
	}
	go func() {
		defer src.Close()
		for ctx.Err() == nil {
			s, err := src.ReadSample(ctx)
			if err != nil {
				return
			}
			_ = tr.WriteSample(s.Sample)
		}
	}()
	return true
}

type countSink struct{ n *atomic.Int64 }

func (c countSink) WriteFrame(media.Frame) error { c.n.Add(1); return nil }

func (p *participant) onTrack(ctx context.Context, peer *rtc.Peer, tr rtc.Track) {
	n := &p.frames
	if tr.Remote.Kind() == webrtc.RTPCodecTypeAudio {
		n = &p.audioIn
	}
	rc, err := media.NewReceiver(tr.Remote, media.ReceiverConfig{Sinks: []media.Sink{countSink{n}}})
	if err != nil {
		p.t.Error(err)
		return
	}
	peer.ReadRTCP(tr.Receiver)
	peer.Go(func(ctx context.Context) { _ = rc.Run(ctx) })
}

// waitFor polls cond for at most d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
