package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// TestNodeSDKViewerTalksToKvsrtcMaster: the official JS SDK viewer flow in
// Node (@roamhq/wrtc) with "send audio" (a tone from RTCAudioSource) and
// "open data channel", against a kvsrtc master that records talk-back and
// echoes data: the recording is Opus of about the talk time, and every
// message comes back, in order.
func TestNodeSDKViewerTalksToKvsrtcMaster(t *testing.T) {
	requireSetup(t)
	ch := newChannel(t, "")
	dir := t.TempDir()
	rec, err := master.RecordTalkback(dir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []master.Event
	m := shared.env.StartMaster(t, kvstest.MasterOptions{Channel: ch, Video: rtc.CodecVP8, Logger: testLogger("master"), Configure: func(c *master.Config) {
		c.Talkback = rec
		c.EchoData = true
		c.OnEvent = func(ev master.Event) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
	}})
	p := startNode(t, "twoway-viewer", ch, "KVS_TALK_MS=3000")
	done := p.wait(t, 45*time.Second, "done")
	want := make([]string, 10)
	for i := range want {
		want[i] = fmt.Sprintf("msg %d", i)
	}
	if fmt.Sprint(done.Replies) != fmt.Sprint(want) {
		t.Fatalf("echoes %q, want %q\n%s", done.Replies, want, p.log())
	}
	if err := m.Stop(); err != nil { // every recording is finalised when Run returns
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "talkback-*.ogg"))
	if len(files) != 1 {
		t.Fatalf("recordings %v\n%s", files, p.log())
	}
	d := oggDuration(t, files[0])
	talk := msDur(done.TalkMs)
	if d < talk-time.Second || d > talk+time.Second {
		t.Fatalf("recorded %v of Opus; the Node viewer talked %v (%0.f bytes sent)", d, talk, done.AudioBytesSent)
	}
	mu.Lock()
	defer mu.Unlock()
	talking := 0
	for _, ev := range events {
		if ev.Kind == master.EventTalkStarted {
			talking++
		}
	}
	if talking != 1 {
		t.Fatalf("talk-started events: %d", talking)
	}
	t.Logf("summary: JS SDK 2.9.0 viewer (Node %s, @roamhq/wrtc 0.10.0) -> kvsrtc master: talk-back recorded %v of Opus for %v of talk; 10/10 data channel messages echoed",
		shared.version, d.Round(time.Millisecond), talk.Round(time.Millisecond))
}

// oggDuration is the audio duration of an Ogg/Opus file.
func oggDuration(t *testing.T, path string) time.Duration {
	t.Helper()
	src, err := media.OpenFile(path, media.SourceConfig{Once: true, Unpaced: true})
	if err != nil {
		t.Fatalf("the recording %s: %v", path, err)
	}
	defer src.Close()
	var d time.Duration
	for {
		s, err := src.ReadSample(context.Background())
		if errors.Is(err, io.EOF) {
			return d
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		d += s.Duration
	}
}
