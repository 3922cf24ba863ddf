package viewer_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// stampedSource is the test tone, remembering when each packet was handed
// to the viewer (the Broadcaster writes it to the track at once): the
// "mouth" of the mouth-to-ear latency.
type stampedSource struct {
	media.Source
	mu   sync.Mutex
	sent map[string][]time.Time // payload -> when it was sent (it loops)
}

func (s *stampedSource) ReadSample(ctx context.Context) (media.Sample, error) {
	smp, err := s.Source.ReadSample(ctx)
	if err == nil {
		s.mu.Lock()
		s.sent[string(smp.Data)] = append(s.sent[string(smp.Data)], time.Now())
		s.mu.Unlock()
	}
	return smp, err
}

// latency is how long ago the latest send of payload before now was.
func (s *stampedSource) latency(payload []byte, now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.sent[string(payload)]
	for i := len(ts) - 1; i >= 0; i-- {
		if !ts[i].After(now) {
			return now.Sub(ts[i]), true
		}
	}
	return 0, false
}

// earSink is the master's recording with the "ear": the arrival time of
// each packet, before it is written to the Ogg file.
type earSink struct {
	master.TalkbackSink
	src *stampedSource
	mu  *sync.Mutex
	lat *[]time.Duration
}

func (e earSink) WriteRTP(p *rtp.Packet) error {
	if d, ok := e.src.latency(p.Payload, time.Now()); ok {
		e.mu.Lock()
		*e.lat = append(*e.lat, d)
		e.mu.Unlock()
	}
	return e.TalkbackSink.WriteRTP(p)
}

// BenchmarkTwoWay reports, on loopback against an in-process master with
// talk-back recording and data echo: the mouth-to-ear latency of
// talk-back (tone packet handed to the viewer's track -> written to the
// master's recording), the data channel round trip (send -> echo
// received), and the time to first frame with and without talk-back and a
// data channel (alternating, in the same run). b.N is the number of
// connects of each kind.
//
//	go test -run '^$' -bench TwoWay -benchtime 20x ./viewer
func BenchmarkTwoWay(b *testing.B) {
	e := newEnv(b, emulator.Config{DisableQuotas: true})
	tone, err := media.NewTestSource("opus", media.SourceConfig{})
	if err != nil {
		b.Fatal(err)
	}
	src := &stampedSource{Source: tone, sent: map[string][]time.Time{}}
	rec, err := master.RecordTalkback(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var ear []time.Duration
	var measure atomic.Bool // only the first session talks with src
	measure.Store(true)
	e.StartMaster(b, kvstest.MasterOptions{Channel: "cam", Logger: testLogger(b), Configure: func(c *master.Config) {
		c.EchoData = true
		c.Talkback = func(id string) (master.TalkbackSink, error) {
			s, err := rec(id)
			if err != nil {
				return nil, err
			}
			if !measure.Load() {
				return s, nil
			}
			return earSink{TalkbackSink: s, src: src, mu: &mu, lat: &ear}, nil
		}
	}})

	// Talk-back latency and data channel round trips, on one session.
	s, err := viewer.New(viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(), Talk: src, Data: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var rtt []time.Duration
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	for i := range 500 {
		start := time.Now()
		if err := echo(rctx, s, fmt.Sprintf("ping %d", i)); err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, time.Since(start))
	}
	rcancel()
	time.Sleep(3 * time.Second) // 150 talk-back packets
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	measure.Store(false)

	// Time to first frame, plain and two-way, alternating.
	var plain, twoWay []time.Duration
	b.ResetTimer()
	for b.Loop() {
		plain = append(plain, firstFrame(b, viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy()}))
		t, err := media.NewTestSource("opus", media.SourceConfig{})
		if err != nil {
			b.Fatal(err)
		}
		twoWay = append(twoWay, firstFrame(b, viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(), Talk: t, Data: true}))
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	if len(ear) < 100 {
		b.Fatalf("only %d talk-back packets matched at the master", len(ear))
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(ear, 0.5)), "talk-p50-ms")
	b.ReportMetric(ms(percentile(ear, 0.99)), "talk-p99-ms")
	b.ReportMetric(ms(percentile(rtt, 0.5)), "data-rtt-p50-ms")
	b.ReportMetric(ms(percentile(rtt, 0.99)), "data-rtt-p99-ms")
	b.ReportMetric(ms(percentile(plain, 0.5)), "ttff-plain-p50-ms")
	b.ReportMetric(ms(percentile(twoWay, 0.5)), "ttff-twoway-p50-ms")
	b.Logf("talk-back: %d packets, p50 %.2f ms, p99 %.2f ms; data RTT: %d, p50 %.2f ms, p99 %.2f ms; TTFF p50 plain %.1f ms, two-way %.1f ms (%d each)",
		len(ear), ms(percentile(ear, 0.5)), ms(percentile(ear, 0.99)), len(rtt), ms(percentile(rtt, 0.5)), ms(percentile(rtt, 0.99)),
		ms(percentile(plain, 0.5)), ms(percentile(twoWay, 0.5)), len(plain))
}
