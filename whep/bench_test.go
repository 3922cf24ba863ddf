package whep_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/viewer"
	"github.com/kvsrtc/kvsrtc/whep"
)

// benchWindow is how long each measurement watches the peers.
const benchWindow = 10 * time.Second

// cpuTime returns the process's user + system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkRelayPeers: N WHEP peers (pion, in this process) of one camera
// (the test pattern, 30 fps, ~450 kbit/s) through one relay. Reported:
// the slowest peer's frame rate over a 10 s window, the process's CPU per
// peer (relay, camera, service and the receiving peers: an upper bound
// for the relay's share) and heap per peer. Run with -benchtime=1x:
//
//	go test -run '^$' -bench BenchmarkRelayPeers -benchtime=1x ./whep/
func BenchmarkRelayPeers(b *testing.B) {
	for _, n := range []int{10, 25, 50, 100} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			benchPeers(b, n)
		})
	}
}

func benchPeers(b *testing.B, n int) {
	rg := newRig(b, rigOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// One peer first, so the upstream runs before the baseline.
	first := rg.dial(b, ctx, whep.ClientConfig{})
	waitFrames(b, first, 30, 30*time.Second)
	heap0 := heapInuse()
	clients := []*whep.Client{first}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for range n - 1 {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c := rg.dial(b, ctx, whep.ClientConfig{})
			mu.Lock()
			clients = append(clients, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, c := range clients {
		waitFrames(b, c, 30, 60*time.Second)
	}
	time.Sleep(time.Second) // settle
	b.ResetTimer()
	frames0 := make([]int64, len(clients))
	lost0 := make([]int64, len(clients))
	for i, c := range clients {
		s := c.Stats()
		frames0[i], lost0[i] = s.Frames, s.DroppedPackets
	}
	cpu0, t0 := cpuTime(b), time.Now()
	in0, out0 := rg.relay.Stats().BytesIn, rg.relay.Stats().BytesOut
	time.Sleep(benchWindow)
	cpu, el := cpuTime(b)-cpu0, time.Since(t0)
	st := rg.relay.Stats()
	minFPS := 1e9
	var lost int64
	fps := make([]float64, len(clients))
	for i, c := range clients {
		s := c.Stats()
		fps[i] = float64(s.Frames-frames0[i]) / el.Seconds()
		minFPS = min(minFPS, fps[i])
		lost += s.DroppedPackets - lost0[i]
	}
	b.StopTimer()
	heap := heapInuse()
	b.ReportMetric(minFPS, "min-fps")
	b.ReportMetric(100*cpu.Seconds()/el.Seconds(), "cpu%")
	b.ReportMetric(100*cpu.Seconds()/el.Seconds()/float64(n), "cpu%/peer")
	b.ReportMetric(float64(int64(heap)-int64(heap0))/float64(n-1)/1024, "heapKiB/peer")
	b.ReportMetric(float64(st.BytesIn-in0)*8/el.Seconds()/1000, "in-kbit/s")
	b.ReportMetric(float64(st.BytesOut-out0)*8/el.Seconds()/1000, "out-kbit/s")
	b.ReportMetric(float64(st.Dropped), "drops")
	b.ReportMetric(float64(lost), "lost-packets")
	if minFPS < 29 {
		b.Logf("peers=%d: the slowest peer got %.1f fps (< 29); all: %.1f", n, minFPS, fps)
	}
}

// BenchmarkMasterBytesRelayVsDirect: what the camera sends for 10 viewers
// watching directly (its KVS limit) and for 10 peers through the relay,
// over a 10 s window.
//
//	go test -run '^$' -bench BenchmarkMasterBytes -benchtime=1x ./whep/
func BenchmarkMasterBytesRelayVsDirect(b *testing.B) {
	const n = 10
	rg := newRig(b, rigOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sent := func() uint64 {
		var s uint64
		for _, v := range rg.cam.Master.Viewers() {
			s += v.BytesSent
		}
		return s
	}
	measure := func() float64 {
		s0, t0 := sent(), time.Now()
		time.Sleep(benchWindow)
		return float64(sent()-s0) * 8 / time.Since(t0).Seconds() / 1000
	}

	// Direct: n viewer sessions on the camera.
	vctx, vcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	streaming := make(chan struct{}, n)
	for range n {
		s, err := viewer.New(viewer.Config{
			Channel: testChannel, Control: rg.env.Control, HTTPClient: rg.env.HTTPClient, LoopbackOnly: true,
			OnEvent: func(e viewer.Event) {
				if e.State == viewer.StateStreaming {
					streaming <- struct{}{}
				}
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { _ = s.Run(vctx) })
	}
	for range n {
		select {
		case <-streaming:
		case <-time.After(60 * time.Second):
			b.Fatal("direct viewers did not all stream")
		}
	}
	time.Sleep(time.Second)
	b.ResetTimer()
	direct := measure()
	vcancel()
	wg.Wait()
	eventually(b, 40*time.Second, "the direct viewers leave", func() bool { return connectedViewers(rg) == 0 })

	// Relay: n WHEP peers, one upstream viewer.
	for range n {
		c := rg.dial(b, ctx, whep.ClientConfig{})
		waitFrames(b, c, 30, 60*time.Second)
	}
	time.Sleep(time.Second)
	viaRelay := measure()
	b.StopTimer()
	b.ReportMetric(direct, "direct-kbit/s")
	b.ReportMetric(viaRelay, "relay-kbit/s")
	b.ReportMetric(direct/viaRelay, "ratio")
}

func connectedViewers(rg *rig) int {
	n := 0
	for _, v := range rg.cam.Master.Viewers() {
		if v.State == master.ViewerConnected {
			n++
		}
	}
	return n
}
