package storage_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// ingestEnv starts the emulator with a storage-linked channel "cam" and a
// kvsrtc master on it that ingests (kvsrtc master --ingest) and serves
// direct viewers too.
func ingestEnv(tb testing.TB, maxViewers int) (*kvstest.Env, *kvstest.Master) {
	tb.Helper()
	env := kvstest.New(tb, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true,
		MaxViewers: maxViewers + 2, StorageMaxViewers: maxViewers}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	linkStorage(ctx, tb, env, "cam")
	m := env.StartMaster(tb, kvstest.MasterOptions{Channel: "cam", Configure: func(c *master.Config) {
		c.Ingest = true
		c.MaxViewers = maxViewers
	}})
	waitFor(tb, 20*time.Second, "the master's storage link connected", func() bool {
		return !m.Master.Storage().ConnectedAt.IsZero()
	})
	return env, m
}

// ttff runs one viewer session (direct, or through the storage session)
// until its first frame and returns the time to it.
func ttff(tb testing.TB, env *kvstest.Env, storage bool) time.Duration {
	var first time.Duration
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: env.Control, LoopbackOnly: true, Storage: storage,
		Duration: time.Millisecond, OnEvent: func(ev viewer.Event) {
			if ev.TimeToFirstFrame > 0 {
				first = ev.TimeToFirstFrame
			}
		}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if first == 0 {
		tb.Fatalf("no first frame (storage %v): %+v", storage, s.Summary())
	}
	return first
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkStorageVsDirectFirstFrame: the same kvsrtc master (ingesting,
// and serving direct viewers) and the same viewer library, connecting
// directly (an offer to the master) and through the storage session
// (JoinStorageSessionAsViewer, the session's offer), alternating; it
// reports the median time to first frame of each and their ratio.
//
//	go test -run '^$' -bench StorageVsDirectFirstFrame -benchtime 20x ./storage
func BenchmarkStorageVsDirectFirstFrame(b *testing.B) {
	// A viewer's storage slot is held for a minute after it leaves: room
	// for every connect of the run.
	env, _ := ingestEnv(b, 200)
	var direct, stored []time.Duration
	for b.Loop() {
		direct = append(direct, ttff(b, env, false))
		stored = append(stored, ttff(b, env, true))
	}
	d, s := median(direct), median(stored)
	b.ReportMetric(float64(d.Microseconds())/1000, "direct-p50-ms")
	b.ReportMetric(float64(s.Microseconds())/1000, "storage-p50-ms")
	b.ReportMetric(float64(s)/float64(d), "storage/direct")
}

// BenchmarkStorageUplink: what the camera uploads with n viewers watching
// directly (one stream each; a KVS channel admits 10) and with n viewers
// watching through the storage session (one stream in all), in Mbit/s of
// media payload over 4 s, from the master's own counters.
//
//	go test -run '^$' -bench StorageUplink -benchtime 1x ./storage
func BenchmarkStorageUplink(b *testing.B) {
	for _, c := range []struct {
		name    string
		n       int
		storage bool
	}{{"direct-10", 10, false}, {"storage-20", 20, true}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				b.ReportMetric(uplink(b, c.n, c.storage), "camera-Mbit/s")
			}
		})
	}
}

func uplink(b *testing.B, n int, storage bool) float64 {
	env, m := ingestEnv(b, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	firsts := make(chan time.Duration, n)
	for range n {
		s, err := viewer.New(viewer.Config{Channel: "cam", Control: env.Control, LoopbackOnly: true, Storage: storage,
			OnEvent: func(ev viewer.Event) {
				if ev.TimeToFirstFrame > 0 {
					firsts <- ev.TimeToFirstFrame
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = s.Run(ctx) }()
	}
	for range n {
		select {
		case <-firsts:
		case <-time.After(60 * time.Second):
			b.Fatal("not every viewer got a first frame")
		}
	}
	sent := func() uint64 {
		total := m.Master.Storage().BytesSent
		for _, v := range m.Master.Viewers() {
			total += v.BytesSent
		}
		return total
	}
	b0, t0 := sent(), time.Now()
	time.Sleep(4 * time.Second)
	rate := float64(sent()-b0) * 8 / time.Since(t0).Seconds() / 1e6
	b.Logf("%s: %d viewers, camera uplink %.2f Mbit/s (%d direct peers)", map[bool]string{true: "storage", false: "direct"}[storage], n, rate, len(m.Master.Viewers()))
	return rate
}
