package master_test

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMasterFanout streams the H.264 test pattern (640x360, 30 fps)
// from one master to N in-process viewers over loopback; each iteration is
// one second of streaming. Besides time it reports the media bytes sent per
// viewer per second, the process CPU (master, viewers and emulator
// together, as a percentage of one core) and the heap allocations per
// second. Run with e.g. -bench MasterFanout -benchtime 5x.
func BenchmarkMasterFanout(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("viewers=%d", n), func(b *testing.B) {
			env := newEnv(b)
			rm := startMaster(b, env, false)
			vs := make([]*testViewer, n)
			for i := range vs {
				vs[i] = startViewer(b, env, fmt.Sprintf("viewer-%d", i), viewerOpts{})
			}
			for _, v := range vs {
				v.waitKeyframe(b, connectTimeout)
			}
			time.Sleep(500 * time.Millisecond) // settle
			sent := func() (total uint64) {
				for _, vi := range rm.m.Viewers() {
					total += vi.BytesSent
				}
				return total
			}
			runtime.GC()
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0, bytes0, start := cpuTime(), sent(), time.Now()
			b.ResetTimer()
			for b.Loop() {
				time.Sleep(time.Second)
			}
			b.StopTimer()
			elapsed := time.Since(start).Seconds()
			runtime.ReadMemStats(&ms1)
			cpu := (cpuTime() - cpu0).Seconds()
			b.ReportMetric(float64(sent()-bytes0)/elapsed/float64(n), "B/s/viewer")
			b.ReportMetric(cpu/elapsed*100, "%cpu")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/elapsed, "allocs/s")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/elapsed/1024, "KiB-alloc/s")
			frames := 0
			for _, v := range vs {
				frames += v.video.count()
			}
			if frames == 0 {
				b.Fatal("no frames received")
			}
			if err := rm.stop(b); err != nil {
				b.Fatal(err)
			}
		})
	}
}
