package viewer_test

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

// firstFrame runs one session until its first frame and returns the time
// to it; a session that needed more than one attempt fails the benchmark.
func firstFrame(b *testing.B, cfg viewer.Config) time.Duration {
	var first time.Duration
	cfg.Duration = time.Millisecond
	cfg.OnEvent = func(ev viewer.Event) {
		if ev.TimeToFirstFrame > 0 {
			first = ev.TimeToFirstFrame
		}
	}
	s, err := viewer.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Run(b.Context()); err != nil {
		b.Fatal(err)
	}
	if s.Summary().Attempts != 1 {
		b.Fatalf("needless retry: %+v", s.Summary())
	}
	return first
}

// BenchmarkTimeToFirstFrame connects a viewer b.N times to a master on the
// emulator (loopback) and reports the time from Run's start to the first
// complete keyframe: p50 and p99 in ms.
//
//	go test -run '^$' -bench TimeToFirstFrame -benchtime 100x ./viewer
func BenchmarkTimeToFirstFrame(b *testing.B) {
	e := newEnv(b, emulator.Config{DisableQuotas: true})
	startMaster(b, e, "cam")
	var ttff []time.Duration
	b.ResetTimer()
	for b.Loop() {
		ttff = append(ttff, firstFrame(b, viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy()}))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(ttff, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(ttff, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkLostAnswerRecovery measures the time to video when the master's
// first answer is lost, with the default policy (the blog post's logic
// needs 15 s + 4 s).
//
//	go test -run '^$' -bench LostAnswer -benchtime 5x ./viewer
func BenchmarkLostAnswerRecovery(b *testing.B) {
	e := newEnv(b, emulator.Config{DisableQuotas: true})
	startMaster(b, e, "cam")
	var ttff []time.Duration
	for b.Loop() {
		if _, err := e.Server.Inject(emulator.Fault{Kind: emulator.FaultDrop, Channel: "cam", Action: kvsproto.ActionSDPAnswer, Count: 1}); err != nil {
			b.Fatal(err)
		}
		var first time.Duration
		s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true,
			OnEvent: func(ev viewer.Event) {
				if ev.TimeToFirstFrame > 0 {
					first = ev.TimeToFirstFrame
				}
			}, Duration: time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run(b.Context()); err != nil {
			b.Fatal(err)
		}
		if s.Summary().Attempts != 2 {
			b.Fatalf("want 2 attempts: %+v", s.Summary())
		}
		ttff = append(ttff, first)
	}
	b.ReportMetric(float64(percentile(ttff, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(slices.Max(ttff).Microseconds())/1000, "max-ms")
}

// BenchmarkConcurrentViewers streams N viewers from one master for 5 s and
// reports memory and CPU per viewer session and the frames each received
// (the test pattern sends 30 fps).
//
//	go test -run '^$' -bench ConcurrentViewers -benchtime 1x ./viewer
func BenchmarkConcurrentViewers(b *testing.B) {
	for _, n := range []int{1, 10, 50, 100} {
		b.Run(itoa(n), func(b *testing.B) {
			for b.Loop() {
				benchViewers(b, n, 5*time.Second)
			}
		})
	}
}

func itoa(n int) string { return fmt.Sprintf("%03d", n) }

func benchViewers(b *testing.B, n int, dur time.Duration) {
	// One master per 10 viewers (the KVS channel limit).
	e := newEnv(b, emulator.Config{DisableQuotas: true})
	channels := make([]string, (n+9)/10)
	for i := range channels {
		channels[i] = fmt.Sprintf("cam%d", i)
		if _, err := e.Server.CreateChannel(b.Context(), channels[i], 0); err != nil {
			b.Fatal(err)
		}
		startMaster(b, e, channels[i])
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cpu0 := cpuTime()
	type res struct {
		sum viewer.Summary
		err error
	}
	out := make(chan res, n)
	for i := range n {
		s, err := viewer.New(viewer.Config{Channel: channels[i/10], Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(), Duration: dur})
		if err != nil {
			b.Fatal(err)
		}
		go func() { err := s.Run(b.Context()); out <- res{s.Summary(), err} }()
	}
	var frames int64
	minFrames := int64(1 << 62)
	for range n {
		r := <-out
		if r.err != nil {
			b.Fatal(r.err)
		}
		frames += r.sum.Frames
		minFrames = min(minFrames, r.sum.Frames)
	}
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(frames)/float64(n)/dur.Seconds(), "fps/viewer")
	b.ReportMetric(float64(minFrames)/dur.Seconds(), "min-fps")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n)/dur.Seconds()/1024, "KiB-alloc/s/viewer")
	b.ReportMetric(cpu.Seconds()/dur.Seconds()/float64(n)*100, "cpu%/viewer")
}

// BenchmarkRelayVsDirect connects alternately over the direct (host) path
// and relay-only (TURN, ICE transport policy "relay") to the same master,
// b.N times each, and reports both medians and their ratio. Where a camera
// is behind a NAT that only TURN crosses, the relay path is paid on every
// connect; goal: relay p50 <= 1.5x direct.
//
//	go test -run '^$' -bench RelayVsDirect -benchtime 20x ./viewer
func BenchmarkRelayVsDirect(b *testing.B) {
	e := newEnv(b, emulator.Config{DisableQuotas: true})
	startMaster(b, e, "cam")
	var direct, relay []time.Duration
	for b.Loop() {
		direct = append(direct, firstFrame(b, viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy()}))
		relay = append(relay, firstFrame(b, viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(), ForceRelay: true}))
	}
	d, r := percentile(direct, 0.5), percentile(relay, 0.5)
	b.ReportMetric(float64(d.Microseconds())/1000, "direct-p50-ms")
	b.ReportMetric(float64(r.Microseconds())/1000, "relay-p50-ms")
	if d > 0 {
		b.ReportMetric(float64(r)/float64(d), "relay/direct")
	}
}
