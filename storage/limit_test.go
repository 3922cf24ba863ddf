package storage_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/storage"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// TestStorageSessionLimit: the service ends a participant's storage
// session after its time limit (one hour; 3 s here). kvsrtc's master joins
// again and goes on recording; kvsrtc's viewer recovers and plays on.
func TestStorageSessionLimit(t *testing.T) {
	const limit = 3 * time.Second
	engine, err := storage.New(storage.Config{RTC: rtc.Config{LoopbackOnly: true}, SessionLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() }) // after the emulator's own cleanup
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true,
		StorageMedia: engine}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	linkStorage(ctx, t, env, "cam")
	m := env.StartMaster(t, kvstest.MasterOptions{Channel: "cam", Configure: func(c *master.Config) { c.Ingest = true }})
	waitFor(t, 20*time.Second, "the master's storage link connected", func() bool { return !m.Master.Storage().ConnectedAt.IsZero() })

	const watch = 3*limit + 2*time.Second
	var mu sync.Mutex
	var back []string // what the viewer says when video is back after a recovery
	v, err := viewer.New(viewer.Config{Channel: "cam", Control: env.Control, LoopbackOnly: true, Storage: true,
		Duration: watch, OnEvent: func(ev viewer.Event) {
			if ev.State == viewer.StateStreaming && strings.Contains(ev.Detail, "after reconnecting") {
				mu.Lock()
				back = append(back, ev.Detail)
				mu.Unlock()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := v.Run(ctx); err != nil {
		t.Fatalf("the viewer, across the storage session's limit: %v (%+v)", err, v.Summary())
	}
	// Duration is the session's streaming time, across its recoveries.
	if d := time.Since(start); d > watch+10*time.Second {
		t.Errorf("the viewer ran %v for a Duration of %v", d, watch)
	}
	mu.Lock()
	t.Logf("video back after each recovery: %v", back)
	mu.Unlock()
	sum, st := v.Summary(), m.Master.Storage()
	t.Logf("over %v with a %v limit: viewer %d attempts, %d recoveries, %d frames; master %d offers, %d failures, state %s",
		time.Since(start).Round(time.Millisecond), limit, sum.Attempts, sum.Recoveries, sum.Frames, st.Offers, st.Failures, st.State)
	if sum.Attempts+sum.Recoveries < 3 {
		t.Errorf("the viewer joined %d times (attempts %d, recoveries %d) over %v: the session's limit did not end its links", sum.Attempts+sum.Recoveries, sum.Attempts, sum.Recoveries, watch)
	}
	// About 30 fps; at least half of it across the limits.
	if min := int64(watch.Seconds() * 15); sum.Frames < min {
		t.Errorf("the viewer decoded %d frames over %v, want %d or more", sum.Frames, watch, min)
	}
	if st.Offers < 3 || errors.Is(st.LastError, master.ErrStorageGaveUp) {
		t.Errorf("the master: %d offers (want 3 or more: it joins again after each limit), status %+v", st.Offers, st)
	}
	stats := engine.Stats()
	if len(stats.Sessions) != 1 || stats.Sessions[0].Fragments < 3 {
		t.Errorf("the recording: %+v", stats.Sessions)
	}
}
