package whep_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/relay"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
	"github.com/kvsrtc/kvsrtc/whep"
)

// opusSilence is a 20 ms Opus packet of digital silence (CELT,
// fullband, mono), what a muted browser track sends.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// paced20 waits for the next 20 ms slot of a paced source.
func paced20(ctx context.Context, next *time.Time) error {
	if next.IsZero() {
		*next = time.Now()
	}
	t := time.NewTimer(time.Until(*next))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	*next = next.Add(20 * time.Millisecond)
	return nil
}

func opusSample(data []byte) media.Sample {
	return media.Sample{Sample: pmedia.Sample{Data: data, Duration: 20 * time.Millisecond, Timestamp: time.Now()}, Keyframe: true}
}

// markedSource sends 20 ms Opus packets (CELT, fullband, mono) whose
// made-up payload starts with a marker, so that a recording tells its
// packets from the tone's.
type markedSource struct {
	marker string
	next   time.Time
	n      uint32
}

func (*markedSource) Codec() rtc.Codec { return rtc.CodecOpus }
func (*markedSource) Close() error     { return nil }

func (s *markedSource) ReadSample(ctx context.Context) (media.Sample, error) {
	if err := paced20(ctx, &s.next); err != nil {
		return media.Sample{}, err
	}
	s.n++
	return opusSample(fmt.Appendf([]byte{0xf8}, "%s %08d", s.marker, s.n)), nil
}

// speaker sends its source's samples once start is closed; once mute is
// closed it sends silence (a muted browser track), and once stop is
// closed it ends (io.EOF; the track sends nothing more).
type speaker struct {
	media.Source
	start, mute, stop chan struct{}
	next              time.Time
}

func newSpeaker(src media.Source) *speaker {
	return &speaker{Source: src, start: make(chan struct{}), mute: make(chan struct{}), stop: make(chan struct{})}
}

func (g *speaker) ReadSample(ctx context.Context) (media.Sample, error) {
	select {
	case <-g.start:
	case <-ctx.Done():
		return media.Sample{}, ctx.Err()
	}
	select {
	case <-g.stop:
		return media.Sample{}, io.EOF
	case <-g.mute:
		if err := paced20(ctx, &g.next); err != nil {
			return media.Sample{}, err
		}
		return opusSample(bytes.Clone(opusSilence)), nil
	default:
	}
	s, err := g.Source.ReadSample(ctx)
	g.next = time.Now().Add(20 * time.Millisecond)
	return s, err
}

func tone(t *testing.T, cfg media.SourceConfig) media.Source {
	t.Helper()
	src, err := media.NewTestSource(rtc.CodecOpus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// tonePackets is the set of the test tone's Opus packets.
func tonePackets(t *testing.T) map[string]bool {
	t.Helper()
	return readPackets(t, tone(t, media.SourceConfig{Once: true, Unpaced: true}))
}

// readPackets reads a source to its end and returns the set of its
// packets.
func readPackets(t *testing.T, src media.Source) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, p := range readAll(t, src) {
		set[string(p)] = true
	}
	return set
}

func readAll(t *testing.T, src media.Source) [][]byte {
	t.Helper()
	defer src.Close()
	var out [][]byte
	for {
		s, err := src.ReadSample(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s.Data)
	}
}

// audioCounter counts the Opus frames a client receives.
type audioCounter struct{ n atomic.Int64 }

func (a *audioCounter) WriteFrame(f media.Frame) error {
	if f.Codec == rtc.CodecOpus {
		a.n.Add(1)
	}
	return nil
}

func peerID(c *whep.Client) string { return path.Base(c.Location()) }

// waitTalker reads statuses until one names talker (empty: nobody talks).
func waitTalker(t *testing.T, ch <-chan relay.Status, within time.Duration, talker string) relay.Status {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case st, ok := <-ch:
			if !ok {
				t.Fatalf("the status stream ended before the talker was %q", talker)
			}
			if st.Talker == talker {
				return st
			}
		case <-timer.C:
			t.Fatalf("no status with talker %q within %v", talker, within)
		}
	}
}

func statuses(t *testing.T, ctx context.Context, c *whep.Client) <-chan relay.Status {
	t.Helper()
	ch, err := c.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func channelStats(t *testing.T, r *relay.Relay) relay.ChannelStats {
	t.Helper()
	st := r.Stats()
	if len(st.Channels) != 1 {
		t.Fatalf("relay stats: %d channels, want 1", len(st.Channels))
	}
	return st.Channels[0]
}

// TestRelayTalkOneSpeaker: two peers send talk-back through the relay; the
// camera records one viewer (the relay), whose audio is the first peer's
// while it talks; when it mutes (its track sends silence), the second
// peer, talking all along and dropped meanwhile, takes the floor after
// FloorIdle; silence never takes the floor. Status.Talker follows. The
// camera's own audio reaches both peers on the same send-receive audio
// sections.
func TestRelayTalkOneSpeaker(t *testing.T) {
	// 1.5 s, not the default 1 s: a loaded test machine (the race
	// detector, other jobs) pauses a paced source for a second at times.
	const floorIdle = 1500 * time.Millisecond
	dir := t.TempDir()
	rec, err := master.RecordTalkback(dir)
	if err != nil {
		t.Fatal(err)
	}
	rg := newRig(t, rigOptions{
		audio:  true,
		relay:  func(c *relay.Config) { c.Talk, c.FloorIdle = true, floorIdle },
		master: func(c *master.Config) { c.Talkback = rec },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	sp1, sp2 := newSpeaker(tone(t, media.SourceConfig{})), newSpeaker(&markedSource{marker: "peer 2"})
	var heard1, heard2 audioCounter
	c1 := rg.dial(t, ctx, whep.ClientConfig{Audio: true, Talk: sp1, Sinks: []media.Sink{&heard1}})
	c2 := rg.dial(t, ctx, whep.ClientConfig{Audio: true, Talk: sp2, Sinks: []media.Sink{&heard2}})
	id1, id2 := peerID(c1), peerID(c2)
	st2 := statuses(t, ctx, c2)
	waitFrames(t, c1, 30, 30*time.Second)
	waitFrames(t, c2, 30, 30*time.Second)

	close(sp1.start)
	st := waitTalker(t, st2, 10*time.Second, id1)
	t.Logf("peer 1 has the floor: %+v", st)
	close(sp2.start) // peer 2 talks too, and is not heard
	time.Sleep(2 * time.Second)
	if got, _ := rg.relay.Status(testChannel); got.Talker != id1 {
		t.Fatalf("talker %q while peer 1 talks, want %q", got.Talker, id1)
	}
	if cs := channelStats(t, rg.relay); cs.TalkDropped < 50 || cs.TalkPackets < 50 {
		t.Fatalf("after 2 s of two speakers: %d packets forwarded, %d dropped; want peer 1's forwarded and peer 2's dropped", cs.TalkPackets, cs.TalkDropped)
	}

	close(sp1.mute)
	muted := time.Now()
	waitTalker(t, st2, 10*time.Second, id2)
	handover := time.Since(muted)
	t.Logf("peer 2 has the floor %v after peer 1 muted", handover.Round(time.Millisecond))
	if handover < floorIdle*8/10 || handover > 4*floorIdle {
		t.Errorf("handover %v after peer 1 muted; want about %v", handover, floorIdle)
	}
	time.Sleep(1500 * time.Millisecond)
	close(sp2.stop)
	waitTalker(t, st2, 10*time.Second, "")
	time.Sleep(floorIdle) // peer 1's silence does not take the floor
	if got, _ := rg.relay.Status(testChannel); got.Talker != "" {
		t.Fatalf("talker %q while peer 1 sends silence and peer 2 nothing; want nobody", got.Talker)
	}

	if heard1.n.Load() < 50 || heard2.n.Load() < 50 {
		t.Errorf("the camera's audio reached the peers: %d and %d packets, want both", heard1.n.Load(), heard2.n.Load())
	}
	if n := len(rg.cam.Master.Viewers()); n != 1 {
		t.Errorf("the camera has %d viewers, want 1 (the relay)", n)
	}
	if err := rg.cam.Stop(); err != nil { // finishes the recording
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "talkback-*.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || !strings.Contains(filepath.Base(files[0]), "kvsrtc-relay-") {
		t.Fatalf("recordings %v; want one, of the relay's viewer", files)
	}
	src, err := media.OpenFile(files[0], media.SourceConfig{Once: true, Unpaced: true})
	if err != nil {
		t.Fatal(err)
	}
	toneSet := tonePackets(t)
	// The recording: peer 1's tone, its silence until the floor is free,
	// then peer 2's packets; never mixed.
	counts := [3]int{}
	phase := 0
	for i, p := range readAll(t, src) {
		var ph int
		switch {
		case toneSet[string(p)]:
			ph = 0
		case bytes.Equal(p, opusSilence):
			ph = 1
		case bytes.Contains(p, []byte("peer 2")):
			ph = 2
		default:
			t.Fatalf("recorded packet %d (%d bytes) is no peer's", i, len(p))
		}
		if ph < phase {
			t.Fatalf("recorded packet %d is from phase %d (tone, silence, peer 2) after phase %d", i, ph, phase)
		}
		phase = ph
		counts[ph]++
	}
	t.Logf("recorded %d packets of peer 1's tone, %d of its silence, then %d of peer 2", counts[0], counts[1], counts[2])
	if counts[0] < 75 || counts[2] < 50 {
		t.Fatalf("recorded %d packets of peer 1's tone (about 2 s) and %d of peer 2 (about 1.5 s)", counts[0], counts[2])
	}
}

// onMessages records the relay's OnMessage calls.
type onMessages struct {
	mu   sync.Mutex
	msgs []string // peer|text|data
}

func (o *onMessages) hook(channel, peer string, data []byte, text bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	kind := "binary"
	if text {
		kind = "text"
	}
	o.msgs = append(o.msgs, channel+"|"+peer+"|"+kind+"|"+string(data))
}

func (o *onMessages) has(s string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.msgs {
		if m == s {
			return true
		}
	}
	return false
}

// receiveWant reads c's messages until want arrives (skipping others).
func receiveWant(t *testing.T, ctx context.Context, c *whep.Client, want whep.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			t.Fatalf("%s: waiting for %q (text %v): %v", peerID(c), want.Data, want.Text, err)
		}
		if bytes.Equal(m.Data, want.Data) && m.Text == want.Text {
			return
		}
		if len(m.Data) > relay.MaxMessageSize {
			t.Fatalf("%s received a message of %d bytes, over the limit", peerID(c), len(m.Data))
		}
	}
}

// ready makes sure c's data channel is open at both ends: its own message
// comes back.
func ready(t *testing.T, ctx context.Context, c *whep.Client) {
	t.Helper()
	msg := "ready " + peerID(c)
	if err := c.SendText(ctx, msg); err != nil {
		t.Fatal(err)
	}
	receiveWant(t, ctx, c, whep.Message{Data: []byte(msg), Text: true})
}

// TestRelayData: a peer's text and binary messages reach the camera
// unchanged and the camera's echo reaches every peer; the relay names the
// sender (OnMessage) and drops a message over 64 KiB.
func TestRelayData(t *testing.T) {
	var hook onMessages
	rg := newRig(t, rigOptions{
		relay:  func(c *relay.Config) { c.Data, c.OnMessage = true, hook.hook },
		master: func(c *master.Config) { c.EchoData = true },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c1 := rg.dial(t, ctx, whep.ClientConfig{Data: true})
	c2 := rg.dial(t, ctx, whep.ClientConfig{Data: true})
	ready(t, ctx, c1)
	ready(t, ctx, c2)

	bin := []byte{0, 1, 2, 0xfe, 0xff}
	if err := c1.SendText(ctx, "hello camera"); err != nil {
		t.Fatal(err)
	}
	if err := c1.Send(ctx, bin); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*whep.Client{c1, c2} {
		receiveWant(t, ctx, c, whep.Message{Data: []byte("hello camera"), Text: true})
		receiveWant(t, ctx, c, whep.Message{Data: bin})
	}
	id1 := peerID(c1)
	for _, want := range []string{testChannel + "|" + id1 + "|text|hello camera", testChannel + "|" + id1 + "|binary|" + string(bin)} {
		if !hook.has(want) {
			t.Errorf("OnMessage did not see %q: %q", want, hook.msgs)
		}
	}

	// Over the limit: the client refuses it, and so does the relay when a
	// peer sends it anyway.
	big := bytes.Repeat([]byte{'x'}, relay.MaxMessageSize+1)
	if err := c1.Send(ctx, big); !errors.Is(err, whep.ErrMessageTooLarge) {
		t.Fatalf("Send of %d bytes: %v, want ErrMessageTooLarge", len(big), err)
	}
	if err := c1.DataChannel().Send(big); err != nil {
		t.Fatal(err)
	}
	if err := c1.SendText(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	receiveWant(t, ctx, c2, whep.Message{Data: []byte("after"), Text: true}) // and not the big one first
	// The echo of "after" can overtake the count of its sending.
	eventually(t, 5*time.Second, "the message counters", func() bool {
		cs := channelStats(t, rg.relay)
		return cs.MessagesOut == 5 && cs.MessagesIn == 5
	})
	cs := channelStats(t, rg.relay)
	t.Logf("messages: in %d, out %d, to peers %d, dropped %d", cs.MessagesIn, cs.MessagesOut, cs.MessagesToPeers, cs.MessagesDropped)
	if cs.MessagesOut != 5 || cs.MessagesIn != 5 || cs.MessagesToPeers < 9 || cs.MessagesDropped != 1 {
		t.Errorf("stats %+v; want 5 messages each way, 9+ deliveries, 1 dropped", cs)
	}
	var prom strings.Builder
	if err := rg.relay.Stats().WritePrometheus(&prom); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prom.String(), `kvsrtc_relay_channel_data_messages_total{channel="cam",direction="out"} 5`) {
		t.Errorf("metrics:\n%s", prom.String())
	}
}

// TestRelayTwoWayDeclined: a camera that takes neither talk-back nor data
// declines both; every peer's status says so, and video goes on.
func TestRelayTwoWayDeclined(t *testing.T) {
	rg := newRig(t, rigOptions{relay: func(c *relay.Config) { c.Talk, c.Data = true, true }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := rg.dial(t, ctx, whep.ClientConfig{Talk: tone(t, media.SourceConfig{}), Data: true})
	ch := statuses(t, ctx, c)
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	var st relay.Status
	for !st.TalkDeclined || !st.DataDeclined || st.State != relay.StateStreaming {
		select {
		case s, ok := <-ch:
			if !ok {
				t.Fatal("the status stream ended")
			}
			st = s
		case <-timer.C:
			t.Fatalf("no streaming status saying that talk-back and data were declined; last %+v", st)
		}
	}
	t.Logf("status: %s", st.Detail)
	if !strings.Contains(st.Detail, "declined talk-back") || !strings.Contains(st.Detail, "audio is dropped") || st.Talker != "" {
		t.Errorf("status detail %q does not say that talk-back was declined", st.Detail)
	}
	waitFrames(t, c, 60, 30*time.Second)
	if err := c.SendText(ctx, "anyone?"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the relay drops talk-back and messages", func() bool {
		cs := channelStats(t, rg.relay)
		return cs.TalkPackets == 0 && cs.TalkDropped > 25 && cs.MessagesDropped == 1 && cs.MessagesOut == 0
	})
}

// TestRelayTwoWaySurvivesReconnect: the camera goes away long enough for
// the upstream session to give up; with the next session (and the next
// camera) talk-back and data flow again with nothing from the peer.
func TestRelayTwoWaySurvivesReconnect(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	started := make([]atomic.Int64, 2)
	camera := atomic.Int64{}
	rg := newRig(t, rigOptions{
		relay: func(c *relay.Config) {
			c.Talk, c.Data = true, true
			c.Viewer = func(v *viewer.Config) { v.Retry.AnswerTimeout, v.Retry.MaxAttempts = time.Second, 2 }
		},
		master: func(c *master.Config) {
			n := camera.Load()
			rec, err := master.RecordTalkback(dirs[n])
			if err != nil {
				t.Error(err)
				return
			}
			c.Talkback, c.EchoData = rec, true
			c.OnEvent = func(e master.Event) {
				if e.Kind == master.EventTalkStarted {
					started[n].Add(1)
				}
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := rg.dial(t, ctx, whep.ClientConfig{Talk: tone(t, media.SourceConfig{}), Data: true})
	ready(t, ctx, c)
	eventually(t, 20*time.Second, "the first camera hears the peer", func() bool { return started[0].Load() > 0 })

	if err := rg.cam.Stop(); err != nil {
		t.Logf("camera stop: %v", err)
	}
	eventually(t, 30*time.Second, "the upstream session gives up", func() bool {
		st, _ := rg.relay.Status(testChannel)
		return st.State == relay.StateOffline
	})
	frames := c.Stats().Frames
	camera.Store(1)
	rg.cam = rg.startCamera(t, false)
	waitFrames(t, c, frames+30, 60*time.Second)
	eventually(t, 20*time.Second, "the second camera hears the peer", func() bool { return started[1].Load() > 0 })
	receiveAfter := "again"
	if err := c.SendText(ctx, receiveAfter); err != nil {
		t.Fatal(err)
	}
	receiveWant(t, ctx, c, whep.Message{Data: []byte(receiveAfter), Text: true})
	if cs := channelStats(t, rg.relay); cs.Sessions < 2 {
		t.Errorf("%d upstream sessions, want a new one after the camera returned", cs.Sessions)
	}
}
