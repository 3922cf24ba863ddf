package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two-way interop with the official KVS WebRTC JS SDK's sample flows in
// Chromium: talk-back audio and the data channel, both directions.

// audioStat is one inbound audio stream of the two-way master page.
type audioStat struct {
	Viewer               string  `json:"viewer"`
	BytesReceived        float64 `json:"bytesReceived"`
	PacketsReceived      float64 `json:"packetsReceived"`
	TotalSamplesReceived float64 `json:"totalSamplesReceived"`
}

// TestKvsrtcViewTalksToOfficialMaster: "kvsrtc view --talk tone --data"
// against the official JS SDK master flow with its two-way options (camera,
// microphone, data channel): the page's RTCPeerConnection receives and
// decodes the tone (inbound audio bytes and samples), gets every line sent
// over the data channel, and its replies reach kvsrtc view.
func TestKvsrtcViewTalksToOfficialMaster(t *testing.T) {
	bin, err := kvsrtcBinary()
	if err != nil {
		t.Fatal(err)
	}
	ch := newChannel(t)
	tb := newTab(t, 90*time.Second)
	tb.navigate(t, officialPageURL("twoway-master", ch))
	tb.waitJS(t, 30*time.Second, "window.result.error !== null || window.result.events.some(e => e[0] === 'ws-open')", "window.result")
	tb.officialResult(t)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "view", "--channel", ch, "--loopback-only", "--talk", "tone", "--data", "--duration", "6s", "--json", "--budget", "30s")
	cmd.Env = kvsrtcEnv(t)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const lines = 5
	for i := range lines {
		fmt.Fprintf(stdin, "line %d\n", i) // sent once the data channel is open
	}

	// While kvsrtc view runs: the page decodes its audio.
	var stats []audioStat
	deadline := time.Now().Add(30 * time.Second)
	for {
		var raw json.RawMessage
		tb.eval(t, "window.result.audio()", &raw)
		stats = nil
		_ = json.Unmarshal(raw, &stats)
		if len(stats) > 0 && stats[0].BytesReceived > 8000 && stats[0].TotalSamplesReceived > 48000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the official master did not receive kvsrtc view's audio: %s\nstderr:\n%s", raw, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var got []string
	tb.eval(t, "window.result.messages", &got)
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kvsrtc view: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if len(got) < lines {
		tb.eval(t, "window.result.messages", &got) // the last ones may have come meanwhile
	}
	for i := range lines {
		if !strings.Contains(strings.Join(got, "\n"), "line "+strconv.Itoa(i)) {
			t.Fatalf("the official master got %q, missing line %d", got, i)
		}
	}
	replies := 0
	var sum struct {
		Result      string `json:"result"`
		TalkPackets int    `json:"talkPackets"`
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var ev struct {
			Event    string          `json:"event"`
			Text     string          `json:"text"`
			Declined string          `json:"declined"`
			Summary  json.RawMessage `json:"summary"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if ev.Declined != "" {
			t.Fatalf("declined: %s", ev.Declined)
		}
		switch ev.Event {
		case "message":
			if strings.HasPrefix(ev.Text, "echo:line ") {
				replies++
			}
		case "summary":
			_ = json.Unmarshal(ev.Summary, &sum)
		}
	}
	if replies != lines || sum.Result != "streamed" || sum.TalkPackets < 100 {
		t.Fatalf("kvsrtc view got %d replies of %d; summary %+v\nstdout:\n%s", replies, lines, sum, stdout.String())
	}
	t.Logf("official master: inbound audio %.0f bytes, %.0f samples decoded; %d messages each way", stats[0].BytesReceived, stats[0].TotalSamplesReceived, lines)
}

// TestOfficialViewerTalksToKvsrtcMaster: the official JS SDK viewer flow
// with "send audio" (Chromium's fake microphone) and "open data channel"
// against "kvsrtc master --talkback-dir DIR --data echo": the master
// records the viewer's audio (ffprobe: Opus, a duration close to the talk
// time) and echoes every message.
func TestOfficialViewerTalksToKvsrtcMaster(t *testing.T) {
	ch := newChannel(t)
	dir := t.TempDir()
	out := runKvsrtc(t, "master", "--channel", ch, "--loopback-only", "--talkback-dir", dir, "--data", "echo")
	deadline := time.Now().Add(15 * time.Second)
	for shared.emu.Stats().Masters == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("kvsrtc master did not connect within 15 s\n%s", out())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb := newTab(t, 90*time.Second)
	tb.navigate(t, officialPageURL("twoway-viewer", ch))
	tb.await(t, 30*time.Second, "window.result.error !== null || (window.result.replies.length >= 10 && window.result.frames >= 10 && performance.now() - window.result.connectedAt > 3000)", "window.result")
	tb.officialResult(t)
	var replies []string
	tb.eval(t, "window.result.replies", &replies)
	for i, r := range replies {
		if r != "msg "+strconv.Itoa(i) {
			t.Fatalf("replies %q: want msg 0 .. msg 9 in order", replies)
		}
	}
	var talkMs float64
	tb.eval(t, "(window.hangUp(), window.result.talkMs)", &talkMs)

	var file string
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(out(), "viewer stopped talking") || file == "" {
		if time.Now().After(deadline) {
			t.Fatalf("the master did not finish a recording within 20 s of the hang-up\n%s", out())
		}
		time.Sleep(100 * time.Millisecond)
		files, _ := filepath.Glob(filepath.Join(dir, "talkback-*.ogg"))
		if len(files) == 1 {
			file = files[0]
		}
	}
	codec, dur := probeAudio(t, file)
	talk := time.Duration(talkMs * float64(time.Millisecond))
	if codec != "opus" || dur < talk-time.Second || dur > talk+time.Second {
		t.Fatalf("recording %s: %s of %v; the viewer talked %v\n%s", filepath.Base(file), codec, dur, talk, out())
	}
	t.Logf("kvsrtc master recorded %v of Opus (talk time %v); %d messages echoed", dur.Round(time.Millisecond), talk.Round(time.Millisecond), len(replies))
}

// probeAudio returns the codec and duration ffprobe reads from a file.
func probeAudio(t *testing.T, path string) (string, time.Duration) {
	t.Helper()
	bin, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("ffprobe not found: run scripts/test.sh, which installs Debian's ffmpeg")
	}
	cmd := exec.Command(bin, "-v", "error", "-show_streams", "-show_format", "-of", "json", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, stderr.String())
	}
	var v struct {
		Streams []struct {
			CodecName string `json:"codec_name"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.NewDecoder(io.LimitReader(bytes.NewReader(raw), 1<<20)).Decode(&v); err != nil || len(v.Streams) == 0 {
		t.Fatalf("ffprobe %s: %s (%v)", path, raw, err)
	}
	d, _ := strconv.ParseFloat(v.Format.Duration, 64)
	return v.Streams[0].CodecName, time.Duration(d * float64(time.Second))
}
