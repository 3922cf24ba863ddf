package rtc_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/rtc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseCodec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want rtc.Codec
	}{
		{"H264", rtc.CodecH264},
		{"h264", rtc.CodecH264},
		{"video/H264", rtc.CodecH264},
		{"avc", rtc.CodecH264},
		{"VP8", rtc.CodecVP8},
		{"video/vp8", rtc.CodecVP8},
		{" opus ", rtc.CodecOpus},
		{"audio/opus", rtc.CodecOpus},
	} {
		got, err := rtc.ParseCodec(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseCodec(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if got.String() != string(tc.want) {
			t.Errorf("String() = %q", got.String())
		}
		if got.MimeType() == "" || got.Kind() == 0 {
			t.Errorf("%q: empty mime type or kind", got)
		}
		if c, err := rtc.Capability(got); err != nil || c.MimeType != got.MimeType() {
			t.Errorf("Capability(%q) = %+v, %v", got, c, err)
		}
	}
	for _, bad := range []string{"", "vp9", "video/AV1", "h265"} {
		if _, err := rtc.ParseCodec(bad); !errors.Is(err, rtc.ErrUnknownCodec) {
			t.Errorf("ParseCodec(%q) error = %v, want ErrUnknownCodec", bad, err)
		}
	}
	if _, err := rtc.Capability("vp9"); !errors.Is(err, rtc.ErrUnknownCodec) {
		t.Errorf("Capability(vp9) error = %v", err)
	}
	if rtc.Codec("x").MimeType() != "" || rtc.Codec("x").Kind() != 0 {
		t.Error("unknown codec has a mime type or kind")
	}
}

func TestNewAPIInvalidConfig(t *testing.T) {
	for name, cfg := range map[string]rtc.Config{
		"unknown codec":  {VideoCodecs: []string{"VP9"}},
		"audio as video": {VideoCodecs: []string{"opus"}},
		"min only":       {ICEPortMin: 5000},
		"max only":       {ICEPortMax: 5000},
		"min above max":  {ICEPortMin: 6000, ICEPortMax: 5000},
	} {
		if _, err := rtc.NewAPI(cfg); !errors.Is(err, rtc.ErrInvalidConfig) {
			t.Errorf("%s: NewAPI error = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// offerCodecs returns the mime types of the video codecs in an offer.
func offerCodecs(t *testing.T, cfg rtc.Config) string {
	t.Helper()
	api, err := rtc.NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	if cfg.Audio {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

func TestCodecOrderAndProfiles(t *testing.T) {
	sdp := offerCodecs(t, rtc.Config{LoopbackOnly: true, Audio: true})
	h, v := strings.Index(sdp, "H264/90000"), strings.Index(sdp, "VP8/90000")
	if h < 0 || v < 0 || h > v {
		t.Errorf("default offer should list H264 before VP8:\n%s", sdp)
	}
	for _, want := range []string{"profile-level-id=42e01f", "profile-level-id=42001f", "profile-level-id=4d001f",
		"profile-level-id=640c1f", "packetization-mode=1", "opus/48000/2", "nack pli", "ccm fir", "transport-cc"} {
		if !strings.Contains(sdp, want) {
			t.Errorf("offer lacks %q:\n%s", want, sdp)
		}
	}
	if strings.Contains(sdp, "packetization-mode=0") {
		t.Error("offer has packetization-mode=0")
	}

	sdp = offerCodecs(t, rtc.Config{LoopbackOnly: true, VideoCodecs: []string{"vp8", "h264", "VP8"}})
	h, v = strings.Index(sdp, "H264/90000"), strings.Index(sdp, "VP8/90000")
	if h < 0 || v < 0 || v > h {
		t.Errorf("VP8-first offer lists H264 first:\n%s", sdp)
	}
	if strings.Contains(sdp, "opus") {
		t.Error("offer has opus without Audio")
	}
	sdp = offerCodecs(t, rtc.Config{LoopbackOnly: true, VideoCodecs: []string{"VP8"}})
	if strings.Contains(sdp, "H264") {
		t.Error("VP8-only offer has H264")
	}
}

func TestLoggerFactory(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pl := rtc.NewLoggerFactory(l).NewLogger("ice")
	pl.Tracef("trace %d", 1)
	pl.Debug("debug")
	pl.Infof("info %d", 2)
	pl.Warn("warn")
	pl.Errorf("error %s", "x")
	out := buf.String()
	// pion's levels are one step quieter: its warnings are kvsrtc's info.
	for _, want := range []string{"level=INFO msg=warn component=ice", "level=ERROR msg=\"error x\" component=ice"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "trace") || strings.Contains(out, "debug") || strings.Contains(out, "info 2") {
		t.Errorf("disabled levels were logged:\n%s", out)
	}
	// nil logger discards without panicking.
	rtc.NewLoggerFactory(nil).NewLogger("x").Errorf("dropped %d", 1)
}

// candidateSink forwards pion's OnICECandidate callbacks into a channel
// without ever blocking pion.
func candidateSink(pc *webrtc.PeerConnection) <-chan *webrtc.ICECandidate {
	ch := make(chan *webrtc.ICECandidate, 64)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		select {
		case ch <- c:
		default:
		}
	})
	return ch
}

func TestLoopbackPeersExchangeMedia(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, Logger: logger, VideoCodecs: []string{"VP8"}})
	if err != nil {
		t.Fatal(err)
	}
	offerer, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer offerer.Close()
	answerer, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer answerer.Close()

	capability, err := rtc.Capability(rtc.CodecVP8)
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticSample(capability, "video", "kvsrtc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := offerer.AddTrack(track); err != nil {
		t.Fatal(err)
	}

	remoteTracks := make(chan *webrtc.TrackRemote, 1)
	answerer.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case remoteTracks <- tr:
		default:
		}
	})
	connected := make(chan struct{})
	var once sync.Once
	answerer.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})

	candA, candB := candidateSink(offerer), candidateSink(answerer)

	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if err := answerer.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	if err := offerer.SetRemoteDescription(answer); err != nil {
		t.Fatal(err)
	}

	var gathered []string
	checkCandidate := func(c *webrtc.ICECandidate, to *webrtc.PeerConnection) {
		gathered = append(gathered, c.Address)
		if c.Address != "127.0.0.1" || c.Protocol != webrtc.ICEProtocolUDP || c.Typ != webrtc.ICECandidateTypeHost {
			t.Errorf("non-loopback candidate gathered: %s", c)
		}
		if err := to.AddICECandidate(c.ToJSON()); err != nil {
			t.Errorf("AddICECandidate: %v", err)
		}
	}

	// Trickle ICE and send frames until a sample arrives.
	var remote *webrtc.TrackRemote
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	frame := vp8Keyframe()
	for remote == nil {
		select {
		case c := <-candA:
			if c != nil {
				checkCandidate(c, answerer)
			}
		case c := <-candB:
			if c != nil {
				checkCandidate(c, offerer)
			}
		case <-ticker.C:
			select {
			case <-connected:
				if err := track.WriteSample(media.Sample{Data: frame, Duration: 33 * time.Millisecond}); err != nil {
					t.Fatalf("WriteSample: %v", err)
				}
			default:
			}
		case remote = <-remoteTracks:
		case <-ctx.Done():
			t.Fatalf("no track before timeout; candidates %v", gathered)
		}
	}
	if len(gathered) == 0 {
		t.Error("no candidates gathered")
	}
	if got := remote.Codec().MimeType; got != webrtc.MimeTypeVP8 {
		t.Errorf("remote codec %q", got)
	}
	if err := remote.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	pkt, _, err := remote.ReadRTP()
	if err != nil {
		t.Fatalf("ReadRTP: %v", err)
	}
	if len(pkt.Payload) == 0 {
		t.Error("empty RTP payload")
	}

	if err := offerer.Close(); err != nil {
		t.Errorf("offerer.Close: %v", err)
	}
	if err := answerer.Close(); err != nil {
		t.Errorf("answerer.Close: %v", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "component=") {
		t.Error("pion logs did not reach the slog logger")
	}
}

// vp8Keyframe is a minimal syntactically valid VP8 keyframe header (16x16);
// enough for RTP to flow, never decoded.
func vp8Keyframe() []byte {
	b := make([]byte, 64)
	copy(b, []byte{0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 16, 0, 16, 0})
	return b
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
