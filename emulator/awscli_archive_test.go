package emulator_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
)

// TestAWSCLIArchive plays a recorded stream back with the real AWS CLI
// (aws-cli 1.45 / botocore 1.43): get-data-endpoint, then
// kinesis-video-archived-media get-clip (an MP4 that ffprobe reads with
// the recorded duration; the CLI sends the timestamps as epoch seconds),
// get-hls-streaming-session-url and list-fragments, and get-clip's
// ResourceNotFoundException.
func TestAWSCLIArchive(t *testing.T) {
	t.Parallel()
	e := newArchiveEnv(t, emulator.Config{}, "cli-archive", 24)
	m := makeMedia(t, 320, 240, 6)
	base := e.now().Add(-time.Minute).Truncate(time.Second)
	e.appendAll(t, e.arn, m, base)
	aws := newAWSCLI(t, e.srv)

	var ep struct{ DataEndpoint string }
	aws.mustJSON(&ep, "kinesisvideo", "get-data-endpoint", "--stream-name", e.name, "--api-name", "GET_CLIP", "--endpoint-url", e.srv.URL())
	if ep.DataEndpoint != e.srv.URL() {
		t.Fatalf("get-data-endpoint: %q", ep.DataEndpoint)
	}
	am := func(args ...string) []string {
		return append(append([]string{"kinesis-video-archived-media"}, args...), "--endpoint-url", ep.DataEndpoint)
	}
	sel := func(from, to time.Time) string {
		return "FragmentSelectorType=PRODUCER_TIMESTAMP,TimestampRange={StartTimestamp=" + strconv.FormatInt(from.Unix(), 10) +
			",EndTimestamp=" + strconv.FormatInt(to.Unix(), 10) + "}"
	}
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	var out struct{ ContentType string }
	aws.mustJSON(&out, am("get-clip", "--stream-name", e.name, "--clip-fragment-selector", sel(base, base.Add(time.Minute)), clip)...)
	if out.ContentType != "video/mp4" {
		t.Fatalf("get-clip ContentType %q", out.ContentType)
	}
	if fi, err := os.Stat(clip); err != nil || fi.Size() == 0 {
		t.Fatalf("get-clip wrote no file: %v", err)
	}
	if d := ffprobeDuration(t, clip); d < 5.9 || d > 6.1 {
		t.Fatalf("ffprobe: the clip of 6 fragments lasts %.3f s", d)
	}

	var hls struct{ HLSStreamingSessionURL string }
	aws.mustJSON(&hls, am("get-hls-streaming-session-url", "--stream-name", e.name, "--playback-mode", "ON_DEMAND",
		"--hls-fragment-selector", sel(base, base.Add(time.Minute)))...)
	if !strings.Contains(hls.HLSStreamingSessionURL, "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=") {
		t.Fatalf("get-hls-streaming-session-url: %q", hls.HLSStreamingSessionURL)
	}
	if d := ffprobeDuration(t, hls.HLSStreamingSessionURL); d < 5.9 || d > 6.1 {
		t.Fatalf("ffprobe of the HLS session: %.3f s", d)
	}

	var list struct {
		Fragments []struct {
			FragmentNumber    string
			ProducerTimestamp any
		}
	}
	aws.mustJSON(&list, am("list-fragments", "--stream-name", e.name, "--fragment-selector",
		"FragmentSelectorType=PRODUCER_TIMESTAMP,TimestampRange={StartTimestamp="+strconv.FormatInt(base.Unix(), 10)+
			",EndTimestamp="+strconv.FormatInt(base.Add(time.Minute).Unix(), 10)+"}")...)
	if len(list.Fragments) != 6 || list.Fragments[0].FragmentNumber != "1" {
		t.Fatalf("list-fragments: %+v", list)
	}

	_, stderr, code := aws.run(am("get-clip", "--stream-name", e.name, "--clip-fragment-selector", sel(base.Add(-time.Hour), base.Add(-time.Minute)), clip)...)
	if code == 0 || !strings.Contains(stderr, "ResourceNotFoundException") || !strings.Contains(stderr, "No fragments found") {
		t.Fatalf("get-clip with no fragments: exit %d: %s", code, stderr)
	}
}
