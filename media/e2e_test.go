package media

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// firstFrame is a Sink remembering the first frame it saw.
type firstFrame struct {
	mu    sync.Mutex
	seen  bool
	first Frame
	n     int
}

func (f *firstFrame) WriteFrame(fr Frame) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.seen {
		f.seen, f.first = true, fr
	}
	f.n++
	return nil
}

// peerPair is a master (answerer, sends) and a viewer (offerer, receives)
// connected over loopback, the way KVS viewers and masters negotiate.
type peerPair struct {
	master, viewer *webrtc.PeerConnection
}

func newAPI(t *testing.T, video rtc.Codec) *webrtc.API {
	t.Helper()
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, Audio: true, VideoCodecs: []string{video.String()}})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func candidates(pc *webrtc.PeerConnection) <-chan webrtc.ICECandidateInit {
	ch := make(chan webrtc.ICECandidateInit, 64)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		select {
		case ch <- c.ToJSON():
		default:
		}
	})
	return ch
}

func connectedSignal(pc *webrtc.PeerConnection) <-chan struct{} {
	ch := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(ch) })
		}
	})
	return ch
}

// connect negotiates: the viewer offers recvonly video+audio, the master
// answers with its tracks, ICE candidates trickle both ways.
func connect(ctx context.Context, t *testing.T, video rtc.Codec, masterTracks []webrtc.TrackLocal) (*peerPair, []*webrtc.RTPSender, <-chan remoteTrack) {
	t.Helper()
	viewer, err := newAPI(t, video).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	master, err := newAPI(t, video).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		viewer.Close()
		t.Fatal(err)
	}
	p := &peerPair{master: master, viewer: viewer}
	t.Cleanup(func() {
		p.viewer.Close()
		p.master.Close()
	})
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := viewer.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	tracks := make(chan remoteTrack, 2)
	viewer.OnTrack(func(tr *webrtc.TrackRemote, rr *webrtc.RTPReceiver) {
		select {
		case tracks <- remoteTrack{tr, rr}:
		default:
		}
	})
	vc, mc := candidates(viewer), candidates(master)
	vConn, mConn := connectedSignal(viewer), connectedSignal(master)

	offer, err := viewer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := viewer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if err := master.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	var senders []*webrtc.RTPSender
	for _, tr := range masterTracks {
		s, err := master.AddTrack(tr)
		if err != nil {
			t.Fatal(err)
		}
		senders = append(senders, s)
	}
	answer, err := master.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := master.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	if err := viewer.SetRemoteDescription(answer); err != nil {
		t.Fatal(err)
	}
	for vConn != nil || mConn != nil {
		select {
		case c := <-vc:
			if err := master.AddICECandidate(c); err != nil {
				t.Fatal(err)
			}
		case c := <-mc:
			if err := viewer.AddICECandidate(c); err != nil {
				t.Fatal(err)
			}
		case <-vConn:
			vConn = nil
		case <-mConn:
			mConn = nil
		case <-ctx.Done():
			t.Fatal("peers did not connect")
		}
	}
	return p, senders, tracks
}

type probe struct {
	Streams []struct {
		CodecType string `json:"codec_type"`
		CodecName string `json:"codec_name"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

func ffprobe(t *testing.T, path string) probe {
	t.Helper()
	bin := requireFFmpeg(t, "ffprobe")
	out, err := exec.Command(bin, "-v", "error", "-show_streams", "-show_format", "-of", "json", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ffprobe %s: %v\n%s", path, err, ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	return p
}

// decodes checks that ffmpeg decodes the whole file without an error.
func decodes(t *testing.T, path string, args ...string) {
	t.Helper()
	bin := requireFFmpeg(t, "ffmpeg")
	cmd := exec.Command(bin, append(append([]string{"-v", "error"}, args...), "-i", path, "-f", "null", "-")...)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("ffmpeg could not decode %s cleanly: %v\n%s", path, err, out)
	}
}

func checkProbe(t *testing.T, path, videoCodec string, audio bool, minDur float64) {
	t.Helper()
	p := ffprobe(t, path)
	var sawVideo, sawAudio bool
	for _, s := range p.Streams {
		switch s.CodecType {
		case "video":
			sawVideo = true
			if s.CodecName != videoCodec || s.Width != testsrc.Width || s.Height != testsrc.Height {
				t.Errorf("%s: video stream %s %dx%d, want %s %dx%d", path, s.CodecName, s.Width, s.Height, videoCodec, testsrc.Width, testsrc.Height)
			}
		case "audio":
			sawAudio = true
			if s.CodecName != "opus" {
				t.Errorf("%s: audio codec %s", path, s.CodecName)
			}
		}
	}
	if !sawVideo || sawAudio != audio {
		t.Errorf("%s: streams %+v (want video, audio=%v)", path, p.Streams, audio)
	}
	if minDur > 0 {
		d, err := strconv.ParseFloat(p.Format.Duration, 64)
		if err != nil || d < minDur {
			t.Errorf("%s: duration %q, want >= %v", path, p.Format.Duration, minDur)
		}
	}
}

// remoteTrack is a track the viewer got, with its receiver (for RTCP).
type remoteTrack struct {
	track    *webrtc.TrackRemote
	receiver *webrtc.RTPReceiver
}

// firstSample passes samples on to a track and remembers the wall-clock
// due time (Sample.Timestamp) of the first one it was given.
type firstSample struct {
	w     SampleWriter
	mu    sync.Mutex
	first time.Time
}

func (f *firstSample) WriteSample(s pmedia.Sample) error {
	f.mu.Lock()
	if f.first.IsZero() {
		f.first = s.Timestamp
	}
	f.mu.Unlock()
	return f.w.WriteSample(s)
}

func (f *firstSample) get() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

// logCapture is a slog handler keeping the messages logged.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }
func (l *logCapture) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// TestEndToEnd sends the test pattern and tone from a master through pion
// over loopback to a viewer that records them, for both codecs. The viewer
// joins mid-GOP, so the recording starts with the cached GOP; the H.264
// viewer passes RTCP sender reports to its receivers, the VP8 one does
// not, so the audio is aligned once by sender reports and once by arrival.
func TestEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		video     rtc.Codec
		file, raw string
		probeName string
		sr        bool
	}{
		{rtc.CodecH264, "out.mkv", "out.h264", "h264", true},
		{rtc.CodecVP8, "out.webm", "out.ivf", "vp8", false},
	} {
		t.Run(tc.video.String(), func(t *testing.T) {
			endToEnd(t, tc.video, tc.file, tc.raw, tc.probeName, tc.sr)
		})
	}
}

func endToEnd(t *testing.T, video rtc.Codec, file, rawName, probeName string, senderReports bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()

	// Master: one broadcaster per kind, started before any viewer so that
	// the viewer joins in the middle of a GOP.
	var bcast []*Broadcaster
	var trackLocals []webrtc.TrackLocal
	var localTracks []*webrtc.TrackLocalStaticSample
	for _, codec := range []rtc.Codec{video, rtc.CodecOpus} {
		src, err := NewTestSource(codec, SourceConfig{})
		if err != nil {
			t.Fatal(err)
		}
		bcast = append(bcast, NewBroadcaster(src, BroadcasterConfig{}))
		capability, err := rtc.Capability(codec)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := webrtc.NewTrackLocalStaticSample(capability, codec.String(), "kvsrtc")
		if err != nil {
			t.Fatal(err)
		}
		trackLocals = append(trackLocals, tr)
		localTracks = append(localTracks, tr)
	}
	bctx, stopBroadcast := context.WithCancel(ctx)
	var bwg sync.WaitGroup
	for _, b := range bcast {
		bwg.Go(func() {
			if err := b.Run(bctx); !errors.Is(err, context.Canceled) {
				t.Errorf("broadcaster: %v", err)
			}
		})
	}
	defer func() { stopBroadcast(); bwg.Wait() }()
	time.Sleep(400 * time.Millisecond) // be mid-GOP when the viewer joins

	pair, senders, remoteTracks := connect(ctx, t, video, trackLocals)

	// Subscribe once connected; forward PLIs to the subscription.
	var subs []*Subscription
	var rtcpWG sync.WaitGroup
	firstSent := make([]*firstSample, len(bcast))
	for i, b := range bcast {
		firstSent[i] = &firstSample{w: localTracks[i]}
		sub := b.Subscribe(firstSent[i])
		subs = append(subs, sub)
		sender := senders[i]
		rtcpWG.Go(func() {
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.PictureLossIndication); ok {
						sub.RequestKeyframe()
					}
				}
			}
		})
	}
	subscribed := time.Now()

	// Viewer: record both tracks into one file, video also raw.
	recLog := &logCapture{}
	rec, err := CreateMatroskaFile(filepath.Join(dir, file), MatroskaConfig{Video: video, Audio: true, Logger: slog.New(recLog)})
	if err != nil {
		t.Fatal(err)
	}
	rawFile, err := os.Create(filepath.Join(dir, rawName))
	if err != nil {
		t.Fatal(err)
	}
	defer rawFile.Close()
	raw, err := NewRawWriter(rawFile, video)
	if err != nil {
		t.Fatal(err)
	}

	var rwg sync.WaitGroup
	var receivers []*Receiver
	var firsts []*firstFrame
	for range 2 {
		var rt remoteTrack
		select {
		case rt = <-remoteTracks:
		case <-ctx.Done():
			t.Fatal("no remote track")
		}
		tr := rt.track
		ff := &firstFrame{}
		sinks := []Sink{ff, rec}
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			sinks = append(sinks, raw)
		}
		r, err := NewReceiver(tr, ReceiverConfig{Sinks: sinks, RequestKeyframe: func() {
			_ = pair.viewer.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
		}})
		if err != nil {
			t.Fatal(err)
		}
		receivers = append(receivers, r)
		firsts = append(firsts, ff)
		// Read RTCP so the interceptors run; pass it on if asked to.
		rwg.Go(func() {
			for {
				pkts, _, err := rt.receiver.ReadRTCP()
				if err != nil {
					return
				}
				if senderReports {
					r.HandleRTCP(pkts)
				}
			}
		})
		rwg.Go(func() {
			if err := r.Run(ctx); err != nil {
				t.Errorf("receiver %s: %v", r.Codec(), err)
			}
		})
	}

	var videoRx *Receiver
	var videoFirst *firstFrame
	for i, r := range receivers {
		if r.Codec() == video {
			videoRx, videoFirst = r, firsts[i]
		}
	}
	if videoRx == nil {
		t.Fatalf("no %s receiver", video)
	}
	select {
	case <-videoRx.FirstKeyframe():
	case <-ctx.Done():
		t.Fatal("no keyframe")
	}
	if wait := time.Since(subscribed); wait > 2*time.Second {
		t.Errorf("first keyframe %v after subscribing", wait)
	}
	time.Sleep(SyncHold + time.Second)
	st := videoRx.Stats()

	// Tear down: the viewer closes, its tracks end, Run returns nil.
	if err := pair.viewer.Close(); err != nil {
		t.Errorf("viewer close: %v", err)
	}
	rwg.Wait()
	for _, s := range subs {
		s.Unsubscribe()
	}
	if err := pair.master.Close(); err != nil {
		t.Errorf("master close: %v", err)
	}
	rtcpWG.Wait()
	if err := rec.Close(); err != nil {
		t.Fatalf("recording close: %v", err)
	}

	videoFirst.mu.Lock()
	first, n := videoFirst.first, videoFirst.n
	videoFirst.mu.Unlock()
	if !first.Keyframe || first.Width != testsrc.Width || first.Height != testsrc.Height {
		t.Errorf("first video frame: keyframe %v size %dx%d", first.Keyframe, first.Width, first.Height)
	}
	if st.Frames > int64(n) || st.Keyframes < 1 || st.Width != testsrc.Width || st.FirstKeyframe.IsZero() || st.Bytes == 0 {
		t.Errorf("video stats %+v", st)
	}
	if st.FPS < 10 || st.FPS > 60 || st.Bitrate <= 0 {
		t.Errorf("video rate %.1f fps %.0f bit/s", st.FPS, st.Bitrate)
	}
	t.Logf("video: %d frames, %.1f fps, %.0f kbit/s, %d dropped packets", st.Frames, st.FPS, st.Bitrate/1000, st.DroppedPackets)

	// The recording keeps the source's timing from the first frame on,
	// including the cached GOP the viewer got at once when it joined.
	checkSpacing(t, filepath.Join(dir, file), "v", 0.025, 0.042, 30)
	vpts := framePTS(t, filepath.Join(dir, file), "v")
	apts := checkSpacing(t, filepath.Join(dir, file), "a", 0.015, 0.025, 50)
	// A/V sync: the first recorded audio packet was due (wall clock at the
	// master) this long after the first recorded video frame, the GOP's
	// keyframe, which was older than the audio when the viewer joined.
	wantAV := firstSent[1].get().Sub(firstSent[0].get()).Seconds()
	gotAV := apts[0] - vpts[0]
	t.Logf("audio starts %.3f s after the video in the recording; the master sent it %.3f s later", gotAV, wantAV)
	if math.Abs(gotAV-wantAV) > 0.08 {
		t.Errorf("audio starts %.3f s after the video, want %.3f s (± 80 ms)", gotAV, wantAV)
	}
	if how := "aligned by RTCP sender reports"; senderReports != recLog.has(how) {
		t.Errorf("recording %q: %v, want %v (log: %q)", how, !senderReports, senderReports, recLog.msgs)
	}
	if video == rtc.CodecVP8 {
		checkSpacing(t, filepath.Join(dir, rawName), "v", 0.025, 0.042, 30)
	}
	checkProbe(t, filepath.Join(dir, file), probeName, true, 1.0)
	decodes(t, filepath.Join(dir, file))
	checkProbe(t, filepath.Join(dir, rawName), probeName, false, 0)
	decodes(t, filepath.Join(dir, rawName))
}
