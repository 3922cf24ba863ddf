package whep_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/relay"
	"github.com/kvsrtc/kvsrtc/viewer"
	"github.com/kvsrtc/kvsrtc/whep"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testChannel = "cam"

// rig is a service with a camera, a relay and a WHEP server for it.
type rig struct {
	env   *kvstest.Env
	cam   *kvstest.Master
	relay *relay.Relay
	srv   *httptest.Server

	master func(*master.Config) // rigOptions.master
}

type rigOptions struct {
	relay func(*relay.Config)
	auth  func(*http.Request, string) error
	audio bool
	// master, if set, changes the camera's configuration last (talk-back,
	// data).
	master func(*master.Config)
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{testChannel, "idle"}}})
	rg := &rig{env: env, master: o.master}
	rg.cam = rg.startCamera(t, o.audio)
	cfg := relay.Config{
		Control: env.Control, HTTPClient: env.HTTPClient, LoopbackOnly: true, Audio: o.audio,
		RestartDelay: 300 * time.Millisecond, Logger: kvstest.Logger(t, "relay"),
		Viewer: func(c *viewer.Config) { c.Retry.TotalBudget = 30 * time.Second },
	}
	if o.relay != nil {
		o.relay(&cfg)
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rg.relay = r
	h, err := whep.NewHandler(whep.Config{Relay: r, Auth: o.auth, Logger: kvstest.Logger(t, "whep")})
	if err != nil {
		t.Fatal(err)
	}
	rg.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		rg.srv.Close()
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		rg.srv.Client().CloseIdleConnections()
	})
	return rg
}

// startCamera starts a test-pattern master allowing ten viewers.
func (rg *rig) startCamera(t testing.TB, audio bool) *kvstest.Master {
	t.Helper()
	return rg.env.StartMaster(t, kvstest.MasterOptions{
		Channel: testChannel, Audio: audio, Logger: kvstest.Logger(t, "master"),
		Configure: func(c *master.Config) {
			c.MaxViewers = 10
			if rg.master != nil {
				rg.master(c)
			}
		},
	})
}

func (rg *rig) endpoint(channel string) string { return rg.srv.URL + "/whep/" + channel }

// dial opens a WHEP client on the rig's channel; the test's cleanup closes it.
func (rg *rig) dial(t testing.TB, ctx context.Context, cfg whep.ClientConfig) *whep.Client {
	t.Helper()
	cfg.LoopbackOnly = true
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = rg.srv.Client()
	}
	c, err := whep.Dial(ctx, rg.endpoint(testChannel), cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// waitFrames waits until c has received at least n video frames.
func waitFrames(t testing.TB, c *whep.Client, n int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for c.Stats().Frames < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d video frames within %v, want %d", c.Location(), c.Stats().Frames, within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually polls cond every 50 ms until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
