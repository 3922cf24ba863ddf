package emulator_test

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/emulator/loadtest"
)

// TestLoadSmall runs the load generator against an in-process service:
// 40 channels of 1 master + 10 viewers (440 connections) with the default
// quotas on, at a rate well inside them.
func TestLoadSmall(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, Logger: quietLogger()})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := loadtest.Run(ctx, loadtest.Config{
		Endpoint: srv.URL(), AdminToken: srv.AdminToken(), Channels: 40, ViewersPerChannel: 10, Rate: 800, Duration: 2 * time.Second,
		ConnectConcurrency: 16, ConnectsPerChannel: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res)
	if res.Connections != 440 || res.ConnectErrors != 0 {
		t.Fatalf("connections: %+v", res)
	}
	if res.Received == 0 || res.Lost > res.Sent/100 {
		t.Fatalf("messages: %d sent, %d received, %d lost", res.Sent, res.Received, res.Lost)
	}
	if res.ServerConnected == nil || res.ServerConnected.Connections != 440 {
		t.Fatalf("server stats %+v", res.ServerConnected)
	}
	// The channels were deleted and every connection is gone.
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().Connections != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := srv.Stats(); st.Connections != 0 || st.Channels != 0 {
		t.Fatalf("after the run: %+v", st)
	}
}

// BenchmarkSignaling is the 10,000-connection benchmark of
// docs/BENCHMARKS.md: the service runs in a child process (quotas off, so
// that connects are not paced at 3/s per channel), the load generator in
// this one. Run it with
//
//	go test -run '^$' -bench BenchmarkSignaling -benchtime 1x ./emulator/
//
// KVSRTC_BENCH_CHANNELS (910), KVSRTC_BENCH_VIEWERS (10), KVSRTC_BENCH_RATE
// (viewer messages/s, 10000; masters echo each, so about 20,000 are routed) and KVSRTC_BENCH_SECONDS
// (20) change the load.
func BenchmarkSignaling(b *testing.B) {
	channels := envInt("KVSRTC_BENCH_CHANNELS", 910)
	viewers := envInt("KVSRTC_BENCH_VIEWERS", 10)
	rate := envInt("KVSRTC_BENCH_RATE", 10000)
	secs := envInt("KVSRTC_BENCH_SECONDS", 20)
	// Fewer collections in the load generator (not in the service), so that
	// its own GC pauses distort the latencies less.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	for i := 0; i < b.N; i++ {
		const adminToken = "benchmark-admin-token-0123"
		env := []string{emulator.AdminTokenEnv + "=" + adminToken}
		if p := os.Getenv("KVSRTC_BENCH_CPUPROFILE"); p != "" {
			env = append(env, "KVSRTC_HELPER_CPUPROFILE="+p)
		}
		h := startHelper(b, "", true, env...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		res, err := loadtest.Run(ctx, loadtest.Config{
			Endpoint: h.URL, AdminToken: adminToken, Channels: channels, ViewersPerChannel: viewers,
			Rate: float64(rate), Duration: time.Duration(secs) * time.Second, ConnectConcurrency: 128,
		})
		cancel()
		h.Stop()
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "\n%s\n", res)
		b.ReportMetric(res.ConnectRate, "conns/s")
		b.ReportMetric(res.Throughput, "msgs/s")
		b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(res.BytesPerConn/1024, "KiB/conn")
		if res.ServerConnected != nil {
			b.ReportMetric(float64(res.ServerConnected.RSSBytes)/(1<<20), "MiB-RSS")
		}
		if res.ConnectErrors > 0 {
			b.Errorf("%d connects failed", res.ConnectErrors)
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
