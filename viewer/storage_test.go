package viewer_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/pion/rtp"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// linkStorage links a channel to a new stream and returns the stream's ARN.
func linkStorage(t *testing.T, e *kvstest.Env, channel string) string {
	t.Helper()
	ctx := context.Background()
	kv := kinesisvideo.NewFromConfig(e.AWSConfig)
	st, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String(channel + "-rec"), DataRetentionInHours: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{
		ChannelARN:                aws.String(e.ChannelARN(t, channel)),
		MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusEnabled, StreamARN: st.StreamARN},
	}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(st.StreamARN)
}

// startIngestMaster runs a master with WebRTC ingestion on channel.
func startIngestMaster(t *testing.T, e *kvstest.Env, channel string, audio bool) {
	t.Helper()
	e.StartMaster(t, kvstest.MasterOptions{Channel: channel, Audio: audio, Logger: testLogger(t),
		Configure: func(c *master.Config) { c.Ingest = true }})
	waitCamera(t, e)
}

// waitCamera waits until the storage session receives the camera's video
// (the master joins it in the background once it is ready), so that a
// viewer's first attempt does not race a busy machine's camera link.
func waitCamera(t *testing.T, e *kvstest.Env) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, st := range e.Storage.Stats().Sessions {
			if st.MasterConnected && st.FramesIn > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the storage session gets no video from the camera after 20 s: %+v", e.Storage.Stats())
		}
	}
}

// storageView runs a Multiviewer session on "cam" for d and returns it
// with Run's result.
func storageView(t *testing.T, e *kvstest.Env, d time.Duration, mut ...func(*viewer.Config)) (*viewer.Session, *frameCheck, error) {
	t.Helper()
	fc := &frameCheck{}
	cfg := viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(), Storage: true,
		Duration: d, Sinks: []media.Sink{fc}, Logger: testLogger(t)}
	for _, m := range mut {
		m(&cfg)
	}
	s, err := viewer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return s, fc, s.Run(ctx)
}

// TestStorageViewerStreams: master --ingest + view --storage, end to end
// through the emulated storage session: decodable H.264 keyframes, the
// camera's audio, and the storage session counts the viewer.
func TestStorageViewerStreams(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	linkStorage(t, e, "cam")
	startIngestMaster(t, e, "cam", true)
	var rec recorder
	s, fc, err := storageView(t, e, 1500*time.Millisecond, func(c *viewer.Config) { c.Audio = true; c.OnEvent = rec.on })
	if err != nil {
		t.Fatalf("Run: %v; events %v", err, rec.states())
	}
	sum := s.Summary()
	if sum.Result != "streamed" || sum.Frames < 10 || sum.Width != 640 || sum.Height != 360 || sum.Codec != "H264" || sum.AudioFrames == 0 {
		t.Fatalf("summary %+v", sum)
	}
	if fc.first == nil || !fc.first.Keyframe || !media.H264IsKeyframe(fc.first.Data) {
		t.Fatalf("first frame is not a decodable keyframe: %+v", fc.first)
	}
	sessions := e.Server.StorageSessions()
	if len(sessions) != 1 || len(sessions[0].Viewers) != 1 || sessions[0].MasterJoins < 1 {
		t.Fatalf("storage sessions %+v", sessions)
	}
	t.Logf("time to first frame %v through the storage session, %d frames", sum.TimeToFirstFrame, sum.Frames)
}

// TestStorageViewerGoAway: a GO_AWAY to the viewer renews its signaling;
// the storage link's media goes on.
func TestStorageViewerGoAway(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	linkStorage(t, e, "cam")
	startIngestMaster(t, e, "cam", false)
	var rec recorder
	fc := &frameCheck{}
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(), Storage: true,
		Sinks: []media.Sink{fc}, OnEvent: rec.on, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitState := func(st viewer.State) {
		t.Helper()
		for s.State() != st {
			select {
			case err := <-done:
				t.Fatalf("Run ended: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitState(viewer.StateStreaming)
	if _, err := e.Server.Inject(emulator.Fault{Kind: emulator.FaultGoAway, Channel: "cam", Target: "viewer", Grace: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	before := s.Summary().Frames
	time.Sleep(time.Second)
	if after := s.Summary().Frames; after < before+10 {
		t.Fatalf("frames %d -> %d after the GO_AWAY", before, after)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sum := s.Summary(); sum.Attempts != 1 {
		t.Errorf("attempts %d; want 1 (the renewal does not end the storage link)", sum.Attempts)
	}
}

// TestStorageViewerFailures: what retrying cannot fix fails at once with
// its own cause.
func TestStorageViewerFailures(t *testing.T) {
	check := func(t *testing.T, err error, want viewer.Cause, sentinel error) {
		t.Helper()
		var se *viewer.SessionError
		if !errors.As(err, &se) || se.Cause != want || !errors.Is(err, sentinel) {
			t.Fatalf("Run = %v; want a SessionError with cause %s", err, want)
		}
		if se.Attempts != 1 {
			t.Errorf("%d attempts; want 1 (no retry for %s)", se.Attempts, want)
		}
		if want.Advice() == "" {
			t.Errorf("cause %s has no advice", want)
		}
	}
	t.Run("not configured", func(t *testing.T) {
		e := newEnv(t, emulator.Config{})
		startMaster(t, e, "cam")
		_, _, err := storageView(t, e, time.Second)
		check(t, err, viewer.CauseStorageNotConfigured, control.ErrStorageNotConfigured)
	})
	t.Run("stream deleted", func(t *testing.T) {
		e := newEnv(t, emulator.Config{})
		stream := linkStorage(t, e, "cam")
		kv := kinesisvideo.NewFromConfig(e.AWSConfig)
		if _, err := kv.DeleteStream(t.Context(), &kinesisvideo.DeleteStreamInput{StreamARN: aws.String(stream)}); err != nil {
			t.Fatal(err)
		}
		_, _, err := storageView(t, e, time.Second)
		check(t, err, viewer.CauseStreamMissing, control.ErrStreamNotFound)
	})
	t.Run("viewer limit", func(t *testing.T) {
		e := newEnv(t, emulator.Config{StorageMaxViewers: 1})
		linkStorage(t, e, "cam")
		startIngestMaster(t, e, "cam", false)
		ctx, cancel := context.WithCancel(t.Context())
		first, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(), Storage: true})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- first.Run(ctx) }()
		for deadline := time.Now().Add(20 * time.Second); first.State() != viewer.StateStreaming; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the first storage viewer is %s after 20 s", first.State())
			}
		}
		_, _, err = storageView(t, e, time.Second)
		check(t, err, viewer.CauseStorageFull, control.ErrStorageViewerLimit)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// talkSink counts the talk-back packets the master plays.
type talkSink struct {
	mu      sync.Mutex
	packets int
	ids     []string
}

func (k *talkSink) open(id string) (master.TalkbackSink, error) {
	k.mu.Lock()
	k.ids = append(k.ids, id)
	k.mu.Unlock()
	return k, nil
}

func (k *talkSink) WriteRTP(*rtp.Packet) error {
	k.mu.Lock()
	k.packets++
	k.mu.Unlock()
	return nil
}

func (k *talkSink) Close() error { return nil }

func (k *talkSink) count() (int, []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.packets, append([]string(nil), k.ids...)
}

// TestStorageTalkback: a storage viewer's talk-back reaches the master's
// talk-back sink through the storage session.
func TestStorageTalkback(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	linkStorage(t, e, "cam")
	sink := &talkSink{}
	e.StartMaster(t, kvstest.MasterOptions{Channel: "cam", Audio: true, Logger: testLogger(t),
		Configure: func(c *master.Config) { c.Ingest = true; c.Talkback = sink.open }})
	waitCamera(t, e)
	s, _, err := storageView(t, e, 2*time.Second, func(c *viewer.Config) { c.Audio = true; c.Talk = toneSource(t) })
	if err != nil {
		t.Fatal(err)
	}
	if sum := s.Summary(); sum.TalkPackets == 0 || sum.Frames < 10 {
		t.Fatalf("summary %+v", sum)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, ids := sink.count()
		if n > 10 {
			if len(ids) == 0 || ids[0] != "(storage-session)" {
				t.Errorf("talk-back sink opened for %v; want the storage session", ids)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the master's talk-back sink got %d packets (opened for %v)", n, ids)
		}
	}
}

// TestStorageNoOffer: an emulator that runs no storage session media
// (emulator.Config.StorageMedia nil: joins are accepted, no offer is ever
// sent) makes each attempt time out waiting for the offer, a retryable
// cause of its own.
func TestStorageNoOffer(t *testing.T) {
	kvstest.IsolateEnv(t)
	srv, err := emulator.Start(context.Background(), emulator.Config{Channels: []string{"cam"}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := srv.Credentials()
	creds := credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	ctl, err := control.New(context.Background(), control.Config{Region: srv.Region(), EndpointURL: srv.URL(), Credentials: creds, STUNURL: control.STUNNone})
	if err != nil {
		t.Fatal(err)
	}
	linkStorage(t, &kvstest.Env{Server: srv, Control: ctl, AWSConfig: aws.Config{Region: srv.Region(), Credentials: creds, BaseEndpoint: aws.String(srv.URL())}}, "cam")
	p := fastPolicy()
	p.AnswerTimeout = 400 * time.Millisecond
	p.MaxAttempts = 2
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, Retry: p, Storage: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(t.Context())
	var se *viewer.SessionError
	if !errors.As(err, &se) || se.Cause != viewer.CauseNoStorageOffer || !errors.Is(err, viewer.ErrNoStorageOffer) || se.Attempts != 2 {
		t.Fatalf("Run = %v; want no-storage-offer after 2 attempts", err)
	}
	// The second attempt joins with the first one's client id (it ended):
	// the session keeps that id's slot, a fresh id would take another.
	if ss := srv.StorageSessions(); len(ss) != 1 || len(ss[0].Viewers) != 1 || ss[0].Viewers[0].Joins != 2 {
		t.Errorf("storage sessions %+v; want one client id joined twice (one per attempt)", ss)
	}

	// With an answer timeout over 6 s, the attempt joins again while it
	// waits (as the JS SDK does), with the same client id.
	p.AnswerTimeout = 7500 * time.Millisecond
	p.MaxAttempts = 1
	s, err = viewer.New(viewer.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, Retry: p, Storage: true, ClientID: "patient", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); !errors.Is(err, viewer.ErrNoStorageOffer) {
		t.Fatalf("Run = %v; want ErrNoStorageOffer", err)
	}
	joins := 0
	for _, v := range srv.StorageSessions()[0].Viewers {
		if v.ClientID == "patient" {
			joins = v.Joins
		}
	}
	if joins != 2 {
		t.Errorf("client patient joined %d times in 7.5 s; want 2 (every 6-7 s)", joins)
	}
}

// TestStorageConfig: Storage needs H.264 among the video codecs.
func TestStorageConfig(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	_, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, Storage: true, VideoCodecs: []string{"VP8"}})
	if !errors.Is(err, viewer.ErrInvalidConfig) {
		t.Fatalf("New = %v; want ErrInvalidConfig", err)
	}
}
