package master_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/storage"
)

// linkStorage links channel "demo" to a new stream (WebRTC ingestion) and
// returns the stream's ARN.
func linkStorage(t *testing.T, env *testEnv) string {
	t.Helper()
	ctx := context.Background()
	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	st, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("demo-rec"), DataRetentionInHours: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{
		ChannelARN:                aws.String(env.arn),
		MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusEnabled, StreamARN: st.StreamARN},
	}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(st.StreamARN)
}

// sessionStats returns the storage engine's view of channel "demo".
func sessionStats(env *testEnv) storage.SessionStats {
	for _, s := range env.Storage.Stats().Sessions {
		if s.ChannelARN == env.arn {
			return s
		}
	}
	return storage.SessionStats{}
}

// TestIngest: the master joins the storage session, answers its offer and
// streams to it; a GO_AWAY makes it re-join and the new offer replaces
// the storage peer while the camera's media keeps arriving; a direct
// viewer is served meanwhile.
func TestIngest(t *testing.T) {
	env := newEnv(t)
	linkStorage(t, env)
	rm := startMaster(t, env, true, func(c *master.Config) { c.Ingest = true })

	rm.events.wait(t, 10*time.Second, "storage joined", func(ev master.Event) bool { return ev.Kind == master.EventStorageJoined })
	rm.events.wait(t, connectTimeout, "storage connected", func(ev master.Event) bool { return ev.Kind == master.EventStorageConnected })
	waitFor(t, 10*time.Second, "the storage session receives the camera's video and audio", func() bool {
		s := sessionStats(env)
		return s.MasterConnected && s.FramesIn > 10 && s.AudioIn > 0
	})
	st := rm.m.Storage()
	if !st.Enabled || !st.Joined || st.Joins < 1 || st.Offers != 1 || st.State != master.ViewerConnected || st.ConnectedAt.IsZero() || st.Samples == 0 {
		t.Fatalf("Storage() = %+v", st)
	}

	// A direct viewer is served too.
	v := startViewer(t, env, "direct-1", viewerOpts{})
	checkKeyframe(t, v)

	// GO_AWAY: a new connection, a new join, a new offer that replaces
	// the storage peer.
	n, err := env.Server.Inject(emulator.Fault{Kind: emulator.FaultGoAway, Channel: "demo", Target: "master", Grace: 200 * time.Millisecond})
	if err != nil || n != 1 {
		t.Fatalf("Inject GO_AWAY: %d, %v", n, err)
	}
	ev := rm.events.wait(t, 10*time.Second, "storage replaced", func(ev master.Event) bool {
		return ev.Kind == master.EventStorageLost && errors.Is(ev.Err, master.ErrReplaced)
	})
	if ev.ClientID == "" {
		t.Error("storage event without ClientID")
	}
	waitFor(t, connectTimeout, "the new storage peer connects", func() bool {
		st := rm.m.Storage()
		return st.Offers == 2 && st.State == master.ViewerConnected
	})
	before := sessionStats(env).FramesIn
	waitFor(t, 10*time.Second, "video keeps reaching the storage session", func() bool { return sessionStats(env).FramesIn > before+10 })
	if vs := rm.m.Viewers(); len(vs) != 1 || vs[0].ClientID != "direct-1" {
		t.Errorf("viewers = %+v; want only direct-1 (the storage peer is not a viewer)", vs)
	}
	if err := rm.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rm.events.wait(t, time.Second, "storage closed at shutdown", func(ev master.Event) bool {
		return ev.Kind == master.EventStorageLost && errors.Is(ev.Err, master.ErrShutdown)
	})
}

// TestIngestSessionEnds: the storage session ends under the master (media
// storage disabled): the link is lost, the master joins again and reports
// the service's precise error, and keeps serving direct viewers.
func TestIngestSessionEnds(t *testing.T) {
	env := newEnv(t)
	linkStorage(t, env)
	rm := startMaster(t, env, false, func(c *master.Config) { c.Ingest = true })
	rm.events.wait(t, connectTimeout, "storage connected", func(ev master.Event) bool { return ev.Kind == master.EventStorageConnected })

	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	if _, err := kv.UpdateMediaStorageConfiguration(context.Background(), &kinesisvideo.UpdateMediaStorageConfigurationInput{
		ChannelARN:                aws.String(env.arn),
		MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusDisabled},
	}); err != nil {
		t.Fatal(err)
	}
	lost := rm.events.wait(t, 20*time.Second, "storage lost", func(ev master.Event) bool { return ev.Kind == master.EventStorageLost })
	if !errors.Is(lost.Err, master.ErrPeerClosed) && !errors.Is(lost.Err, master.ErrPeerFailed) && !errors.Is(lost.Err, master.ErrDisconnected) {
		t.Errorf("storage lost with %v", lost.Err)
	}
	failed := rm.events.wait(t, 20*time.Second, "storage failed", func(ev master.Event) bool { return ev.Kind == master.EventStorageFailed })
	if !errors.Is(failed.Err, control.ErrStorageNotConfigured) {
		t.Errorf("storage failed with %v; want ErrStorageNotConfigured", failed.Err)
	}
	if st := rm.m.Storage(); st.State != "" || st.Joined || st.Failures != 1 || !errors.Is(st.LastError, control.ErrStorageNotConfigured) {
		t.Errorf("Storage() = %+v", st)
	}
	v := startViewer(t, env, "direct-1", viewerOpts{})
	checkKeyframe(t, v)
}

// TestIngestNotConfigured: --ingest on a channel without media storage
// fails Run at once, with the control plane's precise error.
func TestIngestNotConfigured(t *testing.T) {
	env := newEnv(t)
	video, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := master.New(master.Config{Channel: "demo", Control: env.Control, Video: video, LoopbackOnly: true, Ingest: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = m.Run(ctx)
	if !errors.Is(err, control.ErrStorageNotConfigured) {
		t.Fatalf("Run = %v; want ErrStorageNotConfigured", err)
	}
}

// TestIngestNeedsH264: the storage session takes H.264 only.
func TestIngestNeedsH264(t *testing.T) {
	env := newEnv(t)
	video, err := media.NewTestSource(rtc.CodecVP8, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer video.Close()
	_, err = master.New(master.Config{Channel: "demo", Control: env.Control, Video: video, Ingest: true})
	if !errors.Is(err, master.ErrInvalidConfig) {
		t.Fatalf("New = %v; want ErrInvalidConfig", err)
	}
}
