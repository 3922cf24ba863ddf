package browsertest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/player"
)

// TestBrowserBenchmarkTwoWay: what push-to-talk and the data channel cost
// the player's first frame. The same Chromium and master load the page
// without them (player.Config.NoTalk: a receive-only audio section, no
// data channel, the offer of the page before two-way) and with both
// (the default push-to-talk plus Config.Data), alternating, each in a fresh
// browser context. Neither asks for the microphone. It runs only with
// KVSRTC_BROWSER_BENCH=1 (KVSRTC_BROWSER_BENCH_LOADS loads each, default
// 20):
//
//	KVSRTC_BROWSER_BENCH=1 go test -run TestBrowserBenchmarkTwoWay -v ./internal/browsertest
func TestBrowserBenchmarkTwoWay(t *testing.T) {
	if os.Getenv("KVSRTC_BROWSER_BENCH") == "" {
		t.Skip("set KVSRTC_BROWSER_BENCH=1 to run the browser benchmark")
	}
	loads := 20
	if v, err := strconv.Atoi(os.Getenv("KVSRTC_BROWSER_BENCH_LOADS")); err == nil && v > 0 {
		loads = v
	}
	ch := newChannel(t)
	startMaster(t, ch)
	plain := startPlayer(t, player.Config{Channels: []string{ch}, SessionBurst: 1000, NoTalk: true})
	two := startPlayer(t, player.Config{Channels: []string{ch}, SessionBurst: 1000, Data: true})
	load := func(p *playerServer) float64 {
		tb := newTab(t, 30*time.Second)
		defer tb.close()
		tb.navigate(t, p.signIn("/login?next=/healthz"))
		tb.navigate(t, p.url+"/?channel="+ch)
		tb.await(t, 20*time.Second, playing, describePlayers)
		ms := tb.players(t)[0].TTFFMs
		var asked string
		tb.eval(t, describeTw+".talk.trackState", &asked)
		if asked != "" {
			t.Fatalf("the page asked for the microphone without a press (track %q)", asked)
		}
		tb.eval(t, "window.kvsrtc.players.forEach(p => p.stop()), true", nil)
		return ms
	}
	load(plain)
	load(two)
	var a, b []float64
	for i := range loads {
		time.Sleep(400 * time.Millisecond) // the service allows 3 viewer connects/s per channel
		if i%2 == 0 {
			a = append(a, load(plain))
			b = append(b, load(two))
		} else {
			b = append(b, load(two))
			a = append(a, load(plain))
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "| page | loads | median | p90 | mean | min | max |\n|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&out, "| kvsrtc player, no two-way (NoTalk) | %d | %s |\n", len(a), summarize(a))
	fmt.Fprintf(&out, "| kvsrtc player, push-to-talk + data channel | %d | %s |\n", len(b), summarize(b))
	t.Logf("time from navigation to the first frame (ms):\n%s", out.String())
	t.Logf("no two-way: %v", round(a))
	t.Logf("two-way:    %v", round(b))
	// Generous: the two offers differ by an audio direction and a data
	// section; a real cost would show as a large, steady difference.
	if ma, mb := median(a), median(b); mb > ma*1.5+100 {
		t.Errorf("two-way median %.0f ms against %.0f ms without", mb, ma)
	}
}
