package storage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/storage"
)

// TestStorageSessionForwards: the camera joins its storage session and
// sends once; three viewers join theirs and each decodes the camera's
// video; a viewer that joined before the camera gets video when it comes;
// a re-join of the camera (a new offer) keeps the viewers playing.
func TestStorageSessionForwards(t *testing.T) {
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	arn, _ := linkStorage(ctx, t, env, "cam")

	// A viewer first: it is offered at once and waits for the camera.
	early := dial(ctx, t, env, arn, kvsproto.RoleViewer, "early")
	go early.run(ctx)
	if err := join(ctx, t, env, arn, "early"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the early viewer connected", func() bool { return early.conns.Load() == 1 })

	cam := dial(ctx, t, env, arn, kvsproto.RoleMaster, "")
	go cam.run(ctx)
	if err := join(ctx, t, env, arn, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the early viewer decodes the camera's video", func() bool { return early.frames.Load() >= 10 })

	viewers := []*participant{early}
	for i := range 2 {
		id := fmt.Sprintf("late-%d", i)
		v := dial(ctx, t, env, arn, kvsproto.RoleViewer, id)
		go v.run(ctx)
		if err := join(ctx, t, env, arn, id); err != nil {
			t.Fatal(err)
		}
		viewers = append(viewers, v)
	}
	for i, v := range viewers {
		waitFor(t, 15*time.Second, fmt.Sprintf("viewer %d decodes video", i), func() bool { return v.frames.Load() >= 10 })
	}
	st := env.Storage.Stats()
	if len(st.Sessions) != 1 || !st.Sessions[0].MasterConnected || st.Sessions[0].Connected != 3 {
		t.Fatalf("stats %+v: want one session, the camera and 3 viewers connected", st)
	}

	// The camera joins again (as after a signaling reconnect): a new
	// offer, and every viewer goes on.
	if err := join(ctx, t, env, arn, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a second offer to the camera", func() bool { return cam.offers.Load() == 2 })
	base := make([]int64, len(viewers))
	for i, v := range viewers {
		base[i] = v.frames.Load()
	}
	for i, v := range viewers {
		waitFor(t, 15*time.Second, fmt.Sprintf("viewer %d decodes video after the camera re-joined", i), func() bool { return v.frames.Load() >= base[i]+20 })
	}
}

// TestStorageSessionTalkBack: a viewer's voice reaches the camera through
// the storage session, one talker at a time: a second talking viewer
// waits while the first holds the floor.
func TestStorageSessionTalkBack(t *testing.T) {
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	arn, _ := linkStorage(ctx, t, env, "cam")
	cam := dial(ctx, t, env, arn, kvsproto.RoleMaster, "")
	go cam.run(ctx)
	if err := join(ctx, t, env, arn, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the camera connected", func() bool { return cam.conns.Load() == 1 })
	for i := range 2 {
		id := fmt.Sprintf("talker-%d", i)
		v := dial(ctx, t, env, arn, kvsproto.RoleViewer, id)
		v.voice = opusTrack(t)
		go v.run(ctx)
		if err := join(ctx, t, env, arn, id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 15*time.Second, "the camera hears a viewer", func() bool { return cam.audioIn.Load() >= 50 })
	// Two viewers talk at once; the camera hears one stream of packets
	// (20 ms each), not two: at most ~50 per second plus slack.
	a0, t0 := cam.audioIn.Load(), time.Now()
	time.Sleep(2 * time.Second)
	rate := float64(cam.audioIn.Load()-a0) / time.Since(t0).Seconds()
	if rate > 70 {
		t.Errorf("the camera gets %.0f voice packets/s from two talkers: more than one talker at a time", rate)
	}
	st := env.Storage.Stats()
	if len(st.Sessions) != 1 || st.Sessions[0].TalkPackets == 0 {
		t.Errorf("stats %+v: want talk-back packets counted", st)
	}
}

// TestStorageSessionEnds: disabling the channel's media storage ends its
// storage session: the camera's and the viewers' peer connections close.
func TestStorageSessionEnds(t *testing.T) {
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	arn, _ := linkStorage(ctx, t, env, "cam")
	cam := dial(ctx, t, env, arn, kvsproto.RoleMaster, "")
	go cam.run(ctx)
	v := dial(ctx, t, env, arn, kvsproto.RoleViewer, "v1")
	go v.run(ctx)
	if err := join(ctx, t, env, arn, ""); err != nil {
		t.Fatal(err)
	}
	if err := join(ctx, t, env, arn, "v1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the viewer decodes video", func() bool { return v.frames.Load() >= 5 })
	unlinkStorage(ctx, t, env, arn)
	waitFor(t, 20*time.Second, "both peer connections closed after storage was disabled", func() bool {
		return cam.closed.Load() >= 1 && v.closed.Load() >= 1
	})
	if st := env.Storage.Stats(); len(st.Sessions) != 0 {
		t.Errorf("stats %+v: want no session", st)
	}
	if err := join(ctx, t, env, arn, ""); err == nil || !strings.Contains(err.Error(), "InvalidArgumentException") {
		t.Errorf("join after storage was disabled: %v, want InvalidArgumentException", err)
	}
}

// TestStorageViewerAlone: a viewer without a camera in the session is let
// go after Config.ViewerAlone (3 minutes at AWS; shortened here).
func TestStorageViewerAlone(t *testing.T) {
	engine, err := storage.New(storage.Config{RTC: rtc.Config{LoopbackOnly: true}, ViewerAlone: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true, StorageMedia: engine}})
	t.Cleanup(func() { _ = engine.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	arn, _ := linkStorage(ctx, t, env, "cam")
	v := dial(ctx, t, env, arn, kvsproto.RoleViewer, "alone")
	go v.run(ctx)
	if err := join(ctx, t, env, arn, "alone"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the viewer connected", func() bool { return v.conns.Load() == 1 })
	start := time.Now()
	waitFor(t, 15*time.Second, "the lone viewer let go", func() bool { return v.closed.Load() >= 1 })
	if d := time.Since(start); d < time.Second {
		t.Errorf("let go after %v, before the 2 s limit", d)
	}
}

// TestStorageTwentyViewers: 20 viewers in one storage session (the
// emulator's limit raised from the service's 3; each viewer also holds a
// signaling connection, so the channel's limit of 10 is raised too) while
// the camera uploads
// one stream: every viewer decodes video, and the camera has one peer
// connection, whose video rate is that of one stream.
func TestStorageTwentyViewers(t *testing.T) {
	const n = 20
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true, StorageMaxViewers: n, MaxViewers: n}})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	arn, _ := linkStorage(ctx, t, env, "cam")
	cam := dial(ctx, t, env, arn, kvsproto.RoleMaster, "")
	go cam.run(ctx)
	if err := join(ctx, t, env, arn, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the camera connected", func() bool { return cam.conns.Load() == 1 })
	waitFor(t, 10*time.Second, "the camera's video flows", func() bool { return env.Storage.Stats().Sessions[0].FramesIn >= 30 })
	// One stream's rate, before any viewer.
	rate := func() float64 {
		b0, t0 := env.Storage.Stats().Sessions[0].BytesIn, time.Now()
		time.Sleep(3 * time.Second)
		return float64(env.Storage.Stats().Sessions[0].BytesIn-b0) * 8 / time.Since(t0).Seconds() / 1e6
	}
	alone := rate()
	start := time.Now()
	viewers := make([]*participant, n)
	for i := range viewers {
		id := fmt.Sprintf("v%02d", i)
		viewers[i] = dial(ctx, t, env, arn, kvsproto.RoleViewer, id)
		go viewers[i].run(ctx)
		if err := join(ctx, t, env, arn, id); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range viewers {
		waitFor(t, 60*time.Second, fmt.Sprintf("viewer %d decodes video", i), func() bool { return v.frames.Load() >= 10 })
	}
	t.Logf("%d viewers decoding after %v", n, time.Since(start).Round(time.Millisecond))
	with := rate()
	t.Logf("camera uplink (video payload): %.2f Mbit/s alone, %.2f Mbit/s with %d viewers", alone, with, n)
	if cam.conns.Load() != 1 || cam.offers.Load() != 1 {
		t.Errorf("the camera has %d connections after %d offers, want 1 and 1", cam.conns.Load(), cam.offers.Load())
	}
	if with > 2*alone+0.5 {
		t.Errorf("the camera's uplink grew from %.2f to %.2f Mbit/s with %d viewers: more than one stream", alone, with, n)
	}
	if st := env.Storage.Stats().Sessions[0]; st.Connected != n {
		t.Errorf("stats %+v: want %d viewers connected", st, n)
	}
}

// TestStorageAnswerWithoutAudio: a participant whose answer rejects the
// audio section (a client without Opus) still gets video, and a camera
// without Opus still feeds the session.
func TestStorageAnswerWithoutAudio(t *testing.T) {
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	arn, _ := linkStorage(ctx, t, env, "cam")
	cam := dial(ctx, t, env, arn, kvsproto.RoleMaster, "")
	cam.noAudio = true
	go cam.run(ctx)
	v := dial(ctx, t, env, arn, kvsproto.RoleViewer, "v1")
	v.noAudio = true
	go v.run(ctx)
	if err := join(ctx, t, env, arn, ""); err != nil {
		t.Fatal(err)
	}
	if err := join(ctx, t, env, arn, "v1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the viewer without Opus decodes the camera without Opus", func() bool { return v.frames.Load() >= 10 })
}
