package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
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
