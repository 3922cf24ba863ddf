package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/internal/testutil"
)

// officialResult is window.result of the official-flow pages (common.js).
type officialResult struct {
	Events       [][2]any          `json:"events"`
	Error        *string           `json:"error"`
	FirstFrameMs *float64          `json:"firstFrameMs"`
	Frames       int               `json:"frames"`
	Width        int               `json:"width"`
	Height       int               `json:"height"`
	Viewers      map[string]string `json:"viewers"`
}

func (tb *tab) officialResult(t *testing.T) officialResult {
	t.Helper()
	var r officialResult
	tb.eval(t, "window.result", &r)
	if r.Error != nil {
		t.Fatalf("the official page failed: %s; events %v\nconsole:\n%s", *r.Error, r.Events, strings.Join(tb.consoleLines(), "\n"))
	}
	return r
}

// TestOfficialViewerPlaysKvsrtcMaster: the official JS SDK viewer flow
// (AWS SDK v2 for DescribeSignalingChannel, GetSignalingChannelEndpoint and
// GetIceServerConfig, then KVSWebRTC.SignalingClient as VIEWER), unmodified,
// plays the video of "kvsrtc master" through the local service with TLS.
func TestOfficialViewerPlaysKvsrtcMaster(t *testing.T) {
	ch := newChannel(t)
	runKvsrtc(t, "master", "--channel", ch, "--loopback-only")
	deadline := time.Now().Add(15 * time.Second)
	for shared.emu.Stats().Masters == 0 {
		if time.Now().After(deadline) {
			t.Fatal("kvsrtc master did not connect within 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb := newTab(t, 60*time.Second)
	tb.navigate(t, officialPageURL("official-viewer", ch))
	tb.waitJS(t, 30*time.Second, "window.result.error !== null || (window.result.firstFrameMs !== null && window.result.frames >= 10)", "window.result")
	r := tb.officialResult(t)
	if r.Width != 640 || r.Height != 360 {
		t.Fatalf("the official viewer shows %dx%d, want 640x360", r.Width, r.Height)
	}
	t.Logf("official viewer: first frame %.0f ms after navigation; events %v", *r.FirstFrameMs, r.Events)
}

// kvsrtcEnv is the environment of a kvsrtc process: the local service only.
func kvsrtcEnv(t *testing.T) []string {
	home := t.TempDir()
	return append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	}, shared.emu.Env()...)
}

// runKvsrtc starts the kvsrtc binary with args until the test ends (then it
// gets SIGINT and is waited for), and returns its output so far.
func runKvsrtc(t *testing.T, args ...string) (output func() string) {
	t.Helper()
	bin, err := kvsrtcBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = kvsrtcEnv(t)
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("kvsrtc %s: %v\n%s", args[0], err, out.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("kvsrtc %s did not stop on SIGINT\n%s", args[0], out.String())
		}
	})
	return out.String
}

// TestKvsrtcViewPlaysOfficialMaster: "kvsrtc view" plays the video of the
// official JS SDK master flow (SignalingClient as MASTER with Chromium's
// fake camera) through the local service with TLS.
func TestKvsrtcViewPlaysOfficialMaster(t *testing.T) {
	bin, err := kvsrtcBinary()
	if err != nil {
		t.Fatal(err)
	}
	ch := newChannel(t)
	tb := newTab(t, 90*time.Second)
	tb.navigate(t, officialPageURL("official-master", ch))
	tb.waitJS(t, 30*time.Second, "window.result.error !== null || window.result.events.some(e => e[0] === 'ws-open')", "window.result")
	tb.officialResult(t)

	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "view", "--channel", ch, "--loopback-only", "--duration", "3s", "--json", "--budget", "30s")
	cmd.Env = kvsrtcEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err != nil {
		t.Fatalf("kvsrtc view: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var sum struct {
		Result string `json:"result"`
		Frames int    `json:"frames"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
		Codec  string `json:"codec"`
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var line struct {
			Event   string          `json:"event"`
			Summary json.RawMessage `json:"summary"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Event == "summary" {
			if err := json.Unmarshal(line.Summary, &sum); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sum.Result != "streamed" || sum.Frames < 30 || sum.Width != 640 || sum.Height != 480 {
		t.Fatalf("kvsrtc view summary %+v\nstderr:\n%s", sum, stderr.String())
	}
	r := tb.officialResult(t)
	t.Logf("kvsrtc view: %d frames of %s %dx%d from the official master (viewers %v)", sum.Frames, sum.Codec, sum.Width, sum.Height, r.Viewers)
}
