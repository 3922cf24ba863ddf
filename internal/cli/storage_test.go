package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
)

// storageLocal runs an emulator (with its storage session engine) with
// channels "cam" (linked to a stream when linked) and "plain", and points
// the AWS environment variables at it.
func storageLocal(t *testing.T, linked bool) *kvstest.Env {
	t.Helper()
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam", "plain"}}})
	env.Setenv(t)
	if linked {
		ctx := context.Background()
		kv := kinesisvideo.NewFromConfig(env.AWSConfig)
		st, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-rec"), DataRetentionInHours: aws.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{
			ChannelARN:                aws.String(env.ChannelARN(t, "cam")),
			MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusEnabled, StreamARN: st.StreamARN},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// storageTestBuffer is a bytes.Buffer a running command writes to while
// the test reads it.
type storageTestBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *storageTestBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *storageTestBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStorageFlags: --ingest and --storage combinations that cannot work
// are usage errors (exit 2) that say why, before anything connects.
func TestStorageFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"view", "--channel", "cam", "--storage", "--data"}, "no data channel"},
		{[]string{"view", "--channel", "cam", "--storage", "--codec", "VP8"}, "sends H.264"},
		{[]string{"view", "--channel", "cam", "--storage", "--record", filepath.Join(t.TempDir(), "x.webm")}, "use a .mkv file"},
		{[]string{"master", "--channel", "cam", "--ingest", "--source", "testsrc-vp8"}, "takes H.264"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(t.Context(), tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	// The help text lists both flags.
	for _, cmd := range []string{"master", "view"} {
		var stdout, stderr bytes.Buffer
		Main(t.Context(), []string{cmd, "-h"}, nil, &stdout, &stderr)
		flag := map[string]string{"master": "-ingest", "view": "-storage"}[cmd]
		if out := stdout.String() + stderr.String(); !strings.Contains(out, flag) || !strings.Contains(out, "storage session") {
			t.Errorf("%s -h does not describe %s:\n%s", cmd, flag, out)
		}
	}
}

// TestStorageNotConfiguredCLI: both commands on a channel without media
// storage fail at once and say how to link it.
func TestStorageNotConfiguredCLI(t *testing.T) {
	storageLocal(t, false)
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), []string{"master", "--channel", "plain", "--ingest", "--loopback-only"}, strings.NewReader(""), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "update-media-storage-configuration") {
		t.Errorf("master --ingest: exit %d, stderr:\n%s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	code = Main(t.Context(), []string{"view", "--channel", "plain", "--storage", "--loopback-only"}, nil, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "storage-not-configured") || !strings.Contains(stderr.String(), "update-media-storage-configuration") {
		t.Errorf("view --storage: exit %d, stderr:\n%s", code, stderr.String())
	}
	t.Logf("view --storage on a channel without storage:\n%s", stderr.String())
}

// TestIngestAndStorageViewCLI: kvsrtc master --ingest and kvsrtc view
// --storage end to end through the emulated storage session; the
// recording holds the camera's H.264.
func TestIngestAndStorageViewCLI(t *testing.T) {
	storageLocal(t, true)
	mctx, stopMaster := context.WithCancel(t.Context())
	mdone := make(chan int, 1)
	var mout, merr storageTestBuffer
	go func() {
		mdone <- Main(mctx, []string{"master", "--channel", "cam", "--ingest", "--loopback-only", "--log-level", "info"}, strings.NewReader(""), &mout, &merr)
	}()
	defer func() {
		stopMaster()
		if code := <-mdone; code != 0 {
			t.Errorf("master exit %d:\n%s", code, merr.String())
		}
	}()

	path := filepath.Join(t.TempDir(), "storage.mkv")
	var stdout, stderr bytes.Buffer
	vctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// The master may not have joined yet: the first attempts then get an
	// offer without media; the retry policy covers it.
	code := Main(vctx, []string{"view", "--channel", "cam", "--storage", "--loopback-only", "--record", path, "--duration", "1500ms", "--json"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("view exit %d\nstdout:\n%s\nstderr:\n%s\nmaster:\n%s", code, stdout.String(), stderr.String(), merr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var last struct {
		Event   string
		Summary struct {
			Result string
			Frames int
		}
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Event != "summary" || last.Summary.Result != "streamed" || last.Summary.Frames < 20 {
		t.Fatalf("summary line %q (%v)", lines[len(lines)-1], err)
	}
	probe := ffprobe(t, path)
	s0 := probe["streams"].([]any)[0].(map[string]any)
	if s0["codec_name"] != "h264" || s0["width"].(float64) != 640 || s0["height"].(float64) != 360 {
		t.Fatalf("ffprobe stream %v", s0)
	}
	if !strings.Contains(merr.String(), "storage session connected") {
		t.Errorf("the master's log does not say the storage session connected:\n%s", merr.String())
	}
}
