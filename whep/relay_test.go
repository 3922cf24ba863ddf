package whep_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/relay"
	"github.com/kvsrtc/kvsrtc/viewer"
	"github.com/kvsrtc/kvsrtc/whep"
)

// TestManyPeersOneUpstream: 25 WHEP peers of a camera that admits 10
// viewers all get video, through one upstream viewer.
func TestManyPeersOneUpstream(t *testing.T) {
	const peers = 25
	rg := newRig(t, rigOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	clients := make([]*whep.Client, peers)
	var wg sync.WaitGroup
	errs := make(chan error, peers)
	sem := make(chan struct{}, 5) // five offers at a time
	for i := range peers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := whep.Dial(ctx, rg.endpoint(testChannel), whep.ClientConfig{LoopbackOnly: true, HTTPClient: rg.srv.Client()})
			if err != nil {
				errs <- err
				return
			}
			clients[i] = c
		})
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				_ = c.Close(context.Background())
			}
		}
	})
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range clients {
		waitFrames(t, c, 60, 60*time.Second) // two seconds of video each
	}
	st := rg.relay.Stats()
	if st.UpstreamsOpen != 1 || st.Peers != peers {
		t.Fatalf("relay: %d upstreams, %d peers; want 1 and %d", st.UpstreamsOpen, st.Peers, peers)
	}
	viewers := rg.cam.Master.Viewers()
	if len(viewers) != 1 {
		t.Fatalf("the camera has %d viewers, want exactly 1 (the relay)", len(viewers))
	}
	sent := viewers[0].BytesSent
	in, out := st.BytesIn, st.BytesOut
	t.Logf("camera sent %d B to its one viewer; relay in %d B, out %d B to %d peers (%.1fx); drops %d",
		sent, in, out, peers, float64(out)/float64(max(in, 1)), st.Dropped)
	// The camera sends what one viewer gets: the relay receives it (all but
	// what is in flight), and sends it on to every peer.
	if in > sent || float64(in) < 0.8*float64(sent) {
		t.Errorf("relay received %d B, camera sent %d B: want about the same", in, sent)
	}
	if float64(out) < 0.5*float64(peers)*float64(in) {
		t.Errorf("relay sent %d B to %d peers, received %d B: want about %d times as much", out, peers, in, peers)
	}
	for _, ch := range st.Channels {
		for _, p := range ch.Peers {
			if p.RTT <= 0 || p.RTT > 10*time.Second { // loopback, but a busy machine delays the checks
				t.Errorf("peer %s: RTT %v, want a measured loopback RTT", p.ID, p.RTT)
			}
		}
	}
}

// TestCameraOfflineAndBack: peers hear that the camera went away, and
// play again when it returns, without a new offer.
func TestCameraOfflineAndBack(t *testing.T) {
	// The upstream viewer gives up after two quick attempts, so the channel
	// goes offline and the relay's own restart brings it back.
	rg := newRig(t, rigOptions{relay: func(c *relay.Config) {
		c.Viewer = func(v *viewer.Config) {
			v.Retry.AnswerTimeout, v.Retry.MaxAttempts = time.Second, 2
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const peers = 3
	clients := make([]*whep.Client, peers)
	statuses := make([]<-chan relay.Status, peers)
	for i := range clients {
		clients[i] = rg.dial(t, ctx, whep.ClientConfig{})
		ch, err := clients[i].Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		statuses[i] = ch
	}
	for _, c := range clients {
		waitFrames(t, c, 30, 30*time.Second)
	}
	for i, ch := range statuses {
		waitStatus(t, ch, 10*time.Second, "peer "+clients[i].Location(), relay.StateStreaming)
	}

	stopped := time.Now()
	if err := rg.cam.Stop(); err != nil {
		t.Logf("camera stop: %v", err)
	}
	for _, state := range []relay.State{relay.StateReconnecting, relay.StateOffline} {
		for i, ch := range statuses {
			st := waitStatus(t, ch, 30*time.Second, "peer "+clients[i].Location(), state)
			t.Logf("peer %d: %s (%s) %v after the camera stopped: %s", i, st.State, st.Cause, time.Since(stopped).Round(time.Millisecond), st.Detail)
			if st.Cause == "" || st.Advice == "" {
				t.Errorf("status %+v has no cause or advice", st)
			}
		}
	}
	before := make([]int64, peers)
	for i, c := range clients {
		before[i] = c.Stats().Frames
	}

	restarted := time.Now()
	rg.cam = rg.startCamera(t, false)
	for i, c := range clients {
		waitFrames(t, c, before[i]+30, 90*time.Second)
	}
	for i, ch := range statuses {
		waitStatus(t, ch, 10*time.Second, "peer "+clients[i].Location(), relay.StateStreaming)
	}
	t.Logf("video again %v after the camera restarted", time.Since(restarted).Round(time.Millisecond))
	// The camera also answers the offers the service buffered for it while
	// it was away (their viewers are gone and never connect); one viewer
	// streams.
	connected := 0
	for _, v := range rg.cam.Master.Viewers() {
		if v.State == master.ViewerConnected {
			connected++
		}
	}
	if connected != 1 {
		t.Errorf("the camera streams to %d viewers, want 1 (%+v)", connected, rg.cam.Master.Viewers())
	}
}

// waitStatus reads statuses until one in states arrives.
func waitStatus(t *testing.T, ch <-chan relay.Status, within time.Duration, who string, states ...relay.State) relay.Status {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case st, ok := <-ch:
			if !ok {
				t.Fatalf("%s: the status stream ended before %v", who, states)
			}
			for _, s := range states {
				if st.State == s {
					return st
				}
			}
		case <-timer.C:
			t.Fatalf("%s: no status %v within %v", who, states, within)
		}
	}
}

// TestWarmJoinStartsOnCachedGOP: on a warm channel a new peer's first frame
// comes from the cached GOP as soon as it connects, not at the camera's
// next keyframe (the test pattern has one every second).
func TestWarmJoinStartsOnCachedGOP(t *testing.T) {
	rg := newRig(t, rigOptions{relay: func(c *relay.Config) { c.Warm = []string{testChannel} }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	eventually(t, 30*time.Second, "the warm channel streams", func() bool {
		st, ok := rg.relay.Status(testChannel)
		return ok && st.State == relay.StateStreaming
	})
	const joins = 5
	const gop = time.Second
	var worst time.Duration
	for i := range joins {
		// Join at different points of the GOP.
		time.Sleep(time.Duration(137*(i+1)) * time.Millisecond)
		c := rg.dial(t, ctx, whep.ClientConfig{})
		select {
		case <-c.FirstFrame():
		case <-time.After(20 * time.Second):
			t.Fatalf("join %d: no first frame", i)
		}
		wait := c.FirstFrameAt().Sub(c.ConnectedAt())
		t.Logf("join %d: first frame %v after connecting", i, wait.Round(time.Microsecond))
		worst = max(worst, wait)
		if err := c.Close(ctx); err != nil {
			t.Error(err)
		}
	}
	// Waiting for the next keyframe would take 0.5 s on average, and all
	// five joins under 0.3 s would happen by chance once in 400 runs.
	if worst > 3*gop/10 {
		t.Errorf("worst first frame %v after connecting; want well under the %v GOP (cached GOP)", worst, gop)
	}
}

// TestUpstreamLingersThenCloses: the upstream stays Linger after the last
// peer leaves, then closes (the camera loses its viewer); the next peer
// opens a new one.
func TestUpstreamLingersThenCloses(t *testing.T) {
	const linger = time.Second
	rg := newRig(t, rigOptions{relay: func(c *relay.Config) { c.Linger = linger }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := rg.dial(t, ctx, whep.ClientConfig{})
	waitFrames(t, c, 10, 30*time.Second)
	left := time.Now()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the upstream closes", func() bool { return rg.relay.Stats().UpstreamsOpen == 0 })
	if d := time.Since(left); d < linger {
		t.Errorf("the upstream closed %v after the last peer left, before Linger (%v)", d, linger)
	}
	eventually(t, 15*time.Second, "the camera has no viewer", func() bool { return len(rg.cam.Master.Viewers()) == 0 })

	c2 := rg.dial(t, ctx, whep.ClientConfig{})
	waitFrames(t, c2, 10, 30*time.Second)
	if st := rg.relay.Stats(); st.UpstreamsOpened != 2 {
		t.Errorf("upstreams opened %d, want 2", st.UpstreamsOpened)
	}
}
