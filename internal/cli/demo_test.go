package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvstest"
)

// TestDemoTalkBackAndData: the demo's camera records what a viewer says in
// --talkback-dir (printed) and echoes data channel lines; the demo says
// where the page's push-to-talk and data console are. A "kvsrtc view
// --talk tone --data" run against it, with the environment the demo
// prints, gets its line back and leaves a recording.
func TestDemoTalkBackAndData(t *testing.T) {
	kvstest.IsolateEnv(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--listen", "127.0.0.1:0", "--talkback-dir", dir}, nil, &out, &errb)
	}()
	waitOutput(t, &out, "Press Ctrl-C to stop.", done)
	for _, want := range []string{"records what viewers say (push-to-talk) in " + dir, "echoes data channel messages", `hold "Hold to talk"`, `"Data" opens the data channel console`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	// The printed environment points "kvsrtc view" at the demo.
	for _, line := range strings.Split(out.String(), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "export ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, strings.Trim(v, "'"))
		}
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = io.WriteString(pw, "hello demo\n") }()
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), []string{"view", "--channel", demoChannel, "--loopback-only", "--talk", "tone", "--data", "--duration", "3s", "--json"}, pr, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("view exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	echoed := false
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var ev struct {
			Event, Text, Declined string
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if ev.Declined != "" {
			t.Errorf("the demo's camera declined: %s", ev.Declined)
		}
		echoed = echoed || (ev.Event == "message" && ev.Text == "hello demo")
	}
	cancel()
	if c := <-done; c != 0 {
		t.Errorf("demo exit %d:\n%s\n%s", c, out.String(), errb.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "talkback-*.ogg"))
	var size int64
	if len(files) == 1 {
		if st, err := os.Stat(files[0]); err == nil {
			size = st.Size()
		}
	}
	if !echoed || size < 4096 {
		t.Fatalf("echoed %v; recordings %v (%d bytes)\nview:\n%s", echoed, files, size, stdout.String())
	}
}

// TestDemoRelayMode: kvsrtc demo --mode relay serves its page through the
// relay: the session API hands out relay sessions and the WHEP endpoint
// plays the camera.
func TestDemoRelayMode(t *testing.T) {
	kvstest.IsolateEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--listen", "127.0.0.1:0", "--mode", "relay"}, nil, &out, &errb)
	}()
	waitOutput(t, &out, "Press Ctrl-C to stop.", done)
	m := regexp.MustCompile(`(http://127\.0\.0\.1:\d+)/\S*\n.*sign in with the token (\S+)\)`).FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), "mode relay: this server is each camera's one viewer") {
		t.Fatalf("demo output:\n%s", out.String())
	}
	playsThroughRelay(t, m[1], demoChannel, m[2])
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("demo exit %d:\n%s\n%s", code, out.String(), errb.String())
	}
}
