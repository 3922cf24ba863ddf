package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// TestTwoWayCommands: "kvsrtc view --talk tone --data" against "kvsrtc
// master --talkback-dir DIR --data echo": the lines sent come back, and the
// master's recording is Opus of about the talk time (ffprobe).
func TestTwoWayCommands(t *testing.T) {
	kvstest.IsolateEnv(t)
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"demo"}}})
	env.Setenv(t)
	dir := t.TempDir()

	mctx, mcancel := context.WithCancel(context.Background())
	defer mcancel()
	var mout, merr testutil.Buffer
	mdone := make(chan int, 1)
	go func() {
		mdone <- Main(mctx, []string{"master", "--channel", "demo", "--loopback-only", "--talkback-dir", dir, "--data", "echo", "--log-level", "info"}, nil, &mout, &merr)
	}()
	waitOutput(t, &merr, "master ready on channel demo", mdone)

	pr, pw := io.Pipe()
	go func() {
		for i := range 5 {
			_, _ = io.WriteString(pw, "line "+strconv.Itoa(i)+"\n")
			time.Sleep(100 * time.Millisecond)
		}
		// stdin stays open: the view ends with --duration
	}()
	defer pw.Close()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Main(t.Context(), []string{"view", "--channel", "demo", "--loopback-only", "--talk", "tone", "--data", "--duration", "3s", "--json"}, pr, &stdout, &stderr)
	talked := time.Since(start)
	if code != 0 {
		t.Fatalf("view exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	echoed := 0
	var sum struct {
		TalkPackets  int
		MessagesSent int
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var ev struct {
			Event   string
			Text    string
			Summary json.RawMessage
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		switch ev.Event {
		case "message":
			if !strings.HasPrefix(ev.Text, "line ") {
				t.Fatalf("unexpected message %q", ev.Text)
			}
			echoed++
		case "summary":
			if err := json.Unmarshal(ev.Summary, &sum); err != nil {
				t.Fatal(err)
			}
		}
	}
	if echoed != 5 || sum.MessagesSent != 5 || sum.TalkPackets < 100 {
		t.Fatalf("echoed %d, summary %+v\nstdout:\n%s", echoed, sum, stdout.String())
	}
	waitOutput(t, &merr, "viewer stopped talking", mdone)
	mcancel()
	if code := <-mdone; code != 0 {
		t.Fatalf("master exit %d:\n%s", code, merr.String())
	}
	if !strings.Contains(merr.String(), "viewer talking") {
		t.Errorf("the master did not say who is talking:\n%s", merr.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "talkback-*.ogg"))
	if len(files) != 1 {
		t.Fatalf("recordings %v", files)
	}
	probe := ffprobe(t, files[0])
	s0 := probe["streams"].([]any)[0].(map[string]any)
	d, _ := strconv.ParseFloat(probe["format"].(map[string]any)["duration"].(string), 64)
	if s0["codec_name"] != "opus" || d < 2 || d > talked.Seconds()+0.5 {
		t.Fatalf("recording: %v, %.2f s (the view ran %v)", s0["codec_name"], d, talked)
	}
	t.Logf("recorded %.2f s of Opus; %d lines echoed", d, echoed)
}

// TestTwoWayUsageErrors: bad two-way input fails before connecting, with
// the fix.
func TestTwoWayUsageErrors(t *testing.T) {
	kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"demo"}}}).Setenv(t)
	dir := t.TempDir()
	notOgg := filepath.Join(dir, "talk.ogg")
	if err := os.WriteFile(notOgg, []byte("RIFF\x00\x00\x00\x00WAVEfmt "), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"view", "--channel", "demo", "--talk", notOgg}, "libopus"},
		{[]string{"view", "--channel", "demo", "--talk", "../../media/testsrc/pattern.h264"}, "must be Opus"},
		{[]string{"view", "--channel", "demo", "--talk", "-", "--data"}, "both read stdin"},
		{[]string{"master", "--channel", "demo", "--data", "chat"}, "want echo or stdio"},
		{[]string{"master", "--channel", "demo", "--data", "stdio", "--source", "-"}, "both read stdin"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(t.Context(), tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", tc.args, code, tc.want, stderr.String())
		}
	}
}

// TestMasterDataStdioAndTalkbackCmd: "kvsrtc master --data stdio
// --talkback-cmd CMD": a viewer's message is printed with its client id,
// stdin lines reach the viewer (addressed, and to everyone), and its audio
// is piped into the command as Ogg/Opus.
func TestMasterDataStdioAndTalkbackCmd(t *testing.T) {
	kvstest.IsolateEnv(t)
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"demo"}}})
	env.Setenv(t)
	piped := filepath.Join(t.TempDir(), "piped.ogg")

	mctx, mcancel := context.WithCancel(context.Background())
	defer mcancel()
	var mout, merr testutil.Buffer
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	mdone := make(chan int, 1)
	go func() {
		mdone <- Main(mctx, []string{"master", "--channel", "demo", "--loopback-only", "--data", "stdio", "--talkback-cmd", "cat > '" + piped + "'"}, stdinR, &mout, &merr)
	}()
	waitOutput(t, &merr, "master ready on channel demo", mdone)

	tone, err := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := viewer.New(viewer.Config{Channel: "demo", Control: env.Control, LoopbackOnly: true, Talk: tone, Data: true})
	if err != nil {
		t.Fatal(err)
	}
	vctx, vcancel := context.WithCancel(t.Context())
	defer vcancel()
	vdone := make(chan error, 1)
	go func() { vdone <- s.Run(vctx) }()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.SendText(ctx, "doorbell pressed"); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &mout, "\tdoorbell pressed\n", mdone)
	id, _, _ := strings.Cut(mout.String(), "\t")
	for _, line := range []string{id + "\tto you\n", "to everyone\n"} {
		if _, err := io.WriteString(stdinW, line); err != nil {
			t.Fatal(err)
		}
		m, err := s.Receive(ctx)
		if err != nil || string(m.Data) != strings.TrimSpace(line[strings.Index(line, "\t")+1:]) {
			t.Fatalf("the viewer got %q (%v) for the master's line %q", m.Data, err, line)
		}
	}
	for s.Summary().TalkPackets < 100 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	vcancel()
	if err := <-vdone; err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &merr, "viewer stopped talking", mdone)
	mcancel()
	if code := <-mdone; code != 0 {
		t.Fatalf("master exit %d:\n%s", code, merr.String())
	}
	probe := ffprobe(t, piped)
	if s0 := probe["streams"].([]any)[0].(map[string]any); s0["codec_name"] != "opus" {
		t.Fatalf("piped stream: %v", s0)
	}
}

// TestViewTalkFromStdin: "kvsrtc view --talk -" sends Ogg/Opus from stdin.
func TestViewTalkFromStdin(t *testing.T) {
	kvstest.IsolateEnv(t)
	dir := t.TempDir()
	rec, err := master.RecordTalkback(dir)
	if err != nil {
		t.Fatal(err)
	}
	kvstest.New(t, kvstest.Options{
		Emulator: emulator.Config{Channels: []string{"demo"}},
		Master:   &kvstest.MasterOptions{Channel: "demo", Configure: func(c *master.Config) { c.Talkback = rec }},
	}).Setenv(t)
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), []string{"view", "--channel", "demo", "--loopback-only", "--talk", "-", "--duration", "2s", "--json"}, bytes.NewReader(testsrc.OpusOgg()), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var last struct{ Summary struct{ TalkPackets int } }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Summary.TalkPackets < 50 {
		t.Fatalf("summary %s (%v)", lines[len(lines)-1], err)
	}
}
