package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// connects is how many times each pairing connects; every one must stream.
const connects = 10

// paths are the ICE paths tested: host candidates, and TURN relay only on
// the viewer's side (as "kvsrtc view --relay").
var paths = []struct {
	name  string
	relay bool
}{{"host", false}, {"relay", true}}

// series collects the times to first frame of one pairing.
type series struct {
	ok, total int
	ttff      []time.Duration // on the viewer's own clock, from its start
	proc      []time.Duration // Node viewers: from the process start
	detail    []string        // what else was seen (codec, size), deduplicated
}

func (s *series) add(ttff time.Duration, detail string) {
	s.ok++
	s.ttff = append(s.ttff, ttff)
	if !slices.Contains(s.detail, detail) {
		s.detail = append(s.detail, detail)
	}
}

// stats is "p50 X ms (min Y, max Z)" of ds.
func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("p50 %s ms (min %s, max %s)", ms(med), ms(s[0]), ms(s[len(s)-1]))
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// nodeViewerOnce runs the SDK's viewer flow in Node once against channel
// and checks that it decodes at least 10 frames of 640x360.
func nodeViewerOnce(t *testing.T, channel string, relay bool, s *series) {
	t.Helper()
	s.total++
	var extra []string
	if relay {
		extra = append(extra, "KVS_FORCE_RELAY=1")
	}
	p := startNode(t, "viewer", channel, append(extra, "KVS_FRAMES=10", "KVS_TIMEOUT_MS=40000")...)
	ans, err := p.next(45*time.Second, "answer")
	if err != nil {
		t.Errorf("node viewer %d: %v", s.total, err)
		return
	}
	ff, err := p.next(45*time.Second, "first-frame")
	if err != nil {
		t.Errorf("node viewer %d: %v", s.total, err)
		return
	}
	done, err := p.next(30*time.Second, "done")
	if err != nil {
		t.Errorf("node viewer %d: %v", s.total, err)
		return
	}
	if ff.Width != 640 || ff.Height != 360 || done.Frames < 10 {
		t.Errorf("node viewer %d: first frame %dx%d, %d frames (%d decoded), want 640x360 and at least 10\n%s", s.total, ff.Width, ff.Height, done.Frames, done.Decoded, p.log())
		return
	}
	if wantLocal := map[bool]string{false: "host ", true: "relay "}[relay]; !strings.HasPrefix(done.Pair, wantLocal) {
		t.Errorf("node viewer %d: selected candidate pair %q, want a local %scandidate\n%s", s.total, done.Pair, wantLocal, p.log())
		return
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("node viewer %d did not exit within 10 s of its last frame\n%s", s.total, p.log())
		return
	}
	if p.err != nil {
		t.Errorf("node viewer %d exited with %v\n%s", s.total, p.err, p.log())
		return
	}
	s.add(msDur(ff.SinceStart), fmt.Sprintf("%s %dx%d", ans.Codec, ff.Width, ff.Height))
	s.proc = append(s.proc, msDur(ff.Ms))
	t.Logf("node viewer %d: answer after %.0f ms, first frame after %.0f ms (%.0f ms from process start, %v from spawn); %d frames, %d decoded; pair %s; candidates %s",
		s.total, ans.SinceStart, ff.SinceStart, ff.Ms, ff.at.Sub(p.started).Round(time.Millisecond), done.Frames, done.Decoded, done.Pair, done.Candidates)
}

// kvsrtcViewerOnce runs kvsrtc's viewer once against channel and checks
// that it streams decodable video (a complete keyframe, then more frames).
// The viewer stops at minFrames frames or streamWait after its first frame
// (runViewer): the Node master encodes VP8 in software and, on a loaded
// 2-core CI machine, has sent as few as 2 frames in a second.
// minFrames is how many frames a viewer must get.
const minFrames = 10

func kvsrtcViewerOnce(t *testing.T, who, channel string, relay bool, s *series) {
	t.Helper()
	s.total++
	sum, err := runViewer(t, channel, relay)
	if err != nil || sum.Result != "streamed" || sum.Keyframes < 1 || sum.Frames < minFrames {
		t.Errorf("kvsrtc viewer %d of %s: %v; summary %+v", s.total, who, err, sum)
		return
	}
	s.add(sum.TimeToFirstFrame, fmt.Sprintf("%s %dx%d", sum.Codec, sum.Width, sum.Height))
	t.Logf("kvsrtc viewer %d of %s: first frame after %v, %d frames (%d keyframes), %s %dx%d, %d attempt(s)",
		s.total, who, sum.TimeToFirstFrame.Round(time.Millisecond), sum.Frames, sum.Keyframes, sum.Codec, sum.Width, sum.Height, sum.Attempts)
}

// TestNodeSDKViewerPlaysKvsrtcMaster: the official JS SDK as VIEWER in Node
// plays a kvsrtc master sending the VP8 test pattern, 10 times out of 10,
// alternating with kvsrtc's own viewer on the same master.
func TestNodeSDKViewerPlaysKvsrtcMaster(t *testing.T) {
	requireSetup(t)
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			ch := newChannel(t, "")
			startMaster(t, ch)
			var js, own series
			for range connects {
				nodeViewerOnce(t, ch, path.relay, &js)
				kvsrtcViewerOnce(t, "the kvsrtc master", ch, path.relay, &own)
			}
			t.Logf("summary: JS SDK 2.9.0 viewer (Node %s, @roamhq/wrtc 0.10.0) <- kvsrtc master, VP8, %s: %d/%d streamed, first frame %s on its own clock, %s from process start [%s]",
				shared.version, path.name, js.ok, js.total, stats(js.ttff), stats(js.proc), strings.Join(js.detail, "; "))
			t.Logf("summary: kvsrtc viewer <- kvsrtc master, VP8, %s (same run, same master): %d/%d streamed, first frame %s [%s]",
				path.name, own.ok, own.total, stats(own.ttff), strings.Join(own.detail, "; "))
			if js.ok != js.total || own.ok != own.total {
				t.Fatalf("JS SDK viewer streamed %d/%d, kvsrtc viewer %d/%d: every connect must stream", js.ok, js.total, own.ok, own.total)
			}
		})
	}
}

// TestKvsrtcViewerPlaysNodeSDKMaster: kvsrtc's viewer (default settings:
// it offers H.264 and VP8) plays the official JS SDK as MASTER in Node,
// which sends a generated moving pattern through @roamhq/wrtc's
// RTCVideoSource, alternating with the same viewer on a kvsrtc master.
func TestKvsrtcViewerPlaysNodeSDKMaster(t *testing.T) {
	requireSetup(t)
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			chNode := newChannel(t, "-node")
			chOwn := newChannel(t, "-kvsrtc")
			p := startNode(t, "master", chNode)
			p.wait(t, 30*time.Second, "ready")
			startMaster(t, chOwn)
			var js, own series
			for range connects {
				kvsrtcViewerOnce(t, "the JS SDK master", chNode, path.relay, &js)
				kvsrtcViewerOnce(t, "the kvsrtc master", chOwn, path.relay, &own)
			}
			t.Logf("summary: kvsrtc viewer <- JS SDK 2.9.0 master (Node %s, @roamhq/wrtc 0.10.0, RTCVideoSource I420 640x360), %s: %d/%d streamed, first frame %s [%s]",
				shared.version, path.name, js.ok, js.total, stats(js.ttff), strings.Join(js.detail, "; "))
			t.Logf("summary: kvsrtc viewer <- kvsrtc master, VP8, %s (same run): %d/%d streamed, first frame %s [%s]",
				path.name, own.ok, own.total, stats(own.ttff), strings.Join(own.detail, "; "))
			if js.ok != js.total || own.ok != own.total {
				t.Fatalf("kvsrtc viewer streamed %d/%d from the JS SDK master, %d/%d from the kvsrtc master: every connect must stream\n%s", js.ok, js.total, own.ok, own.total, p.log())
			}
		})
	}
}
