package storage_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/storage"
)

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStorageRecording measures what recording costs the storage
// session: a camera and 3 viewers stream for 4 s through one session,
// with recording off and on in alternation (each op runs both, so a noisy
// machine hits both alike); it reports the process's CPU time per second
// of streaming for each, their ratio, and the fragments written.
//
//	go test -run '^$' -bench StorageRecording -benchtime 5x ./storage
func BenchmarkStorageRecording(b *testing.B) {
	var cpu [2]time.Duration
	var secs [2]float64
	var frags uint64
	for b.Loop() {
		for i, rec := range []bool{false, true} {
			c, s, f := streamThroughSession(b, rec, 3, 4*time.Second)
			cpu[i] += c
			secs[i] += s.Seconds()
			frags += f
		}
	}
	off, on := float64(cpu[0].Milliseconds())/secs[0], float64(cpu[1].Milliseconds())/secs[1]
	b.ReportMetric(off, "off-cpu-ms/s")
	b.ReportMetric(on, "on-cpu-ms/s")
	b.ReportMetric(on/off, "on/off")
	b.ReportMetric(float64(frags)/float64(b.N), "fragments/op")
}

// streamThroughSession streams a camera to n viewers through a storage
// session for d and returns the CPU time spent meanwhile.
func streamThroughSession(b *testing.B, record bool, n int, d time.Duration) (time.Duration, time.Duration, uint64) {
	engine, err := storage.New(storage.Config{RTC: rtc.Config{LoopbackOnly: true}, DisableRecording: !record})
	if err != nil {
		b.Fatal(err)
	}
	defer engine.Close()
	env := kvstest.New(b, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true, StorageMedia: engine}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	arn, _ := linkStorage(ctx, b, env, "cam")
	cam := dial(ctx, b, env, arn, kvsproto.RoleMaster, "")
	go cam.run(ctx)
	if err := join(ctx, b, env, arn, ""); err != nil {
		b.Fatal(err)
	}
	viewers := make([]*participant, n)
	for i := range viewers {
		id := fmt.Sprintf("v%d", i)
		viewers[i] = dial(ctx, b, env, arn, kvsproto.RoleViewer, id)
		go viewers[i].run(ctx)
		if err := join(ctx, b, env, arn, id); err != nil {
			b.Fatal(err)
		}
	}
	for _, v := range viewers {
		waitFor(b, 20*time.Second, "a viewer decodes video", func() bool { return v.frames.Load() >= 5 })
	}
	c0, t0 := cpuTime(), time.Now()
	time.Sleep(d)
	cpu, wall := cpuTime()-c0, time.Since(t0)
	st := engine.Stats().Sessions[0]
	cancel()
	return cpu, wall, st.Fragments
}
