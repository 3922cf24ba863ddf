package storage_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
)

// TestStorageSessionRecords: what the camera sends through its storage
// session is recorded into the linked stream, one fragment per GOP, with
// no gap when the camera joins again (a new peer connection, as after a
// signaling reconnect: the camera keeps its old one until the new one is
// up, and the session switches at the new one's first keyframe); GetClip returns an MP4 that ffprobe reads with the
// recorded duration.
func TestStorageSessionRecords(t *testing.T) {
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("ffprobe is needed (apt-get install ffmpeg; scripts/test.sh installs it)")
	}
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, TURNDisabled: true, DisableQuotas: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	arn, streamARN := linkStorage(ctx, t, env, "cam")
	cam := dial(ctx, t, env, arn, kvsproto.RoleMaster, "")
	go cam.run(ctx)
	start := time.Now()
	if err := join(ctx, t, env, arn, ""); err != nil {
		t.Fatal(err)
	}
	fragments := func() []kvsproto.Fragment { return listFragments(ctx, t, env, streamARN) }
	waitFor(t, 20*time.Second, "two fragments recorded", func() bool { return len(fragments()) >= 2 })
	// The camera joins again: a new offer and a new peer connection.
	if err := join(ctx, t, env, arn, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the camera's second peer connection", func() bool { return cam.conns.Load() >= 2 })
	n := len(fragments())
	waitFor(t, 20*time.Second, "fragments recorded after the re-join", func() bool { return len(fragments()) >= n+3 })
	// End the session so that the last fragment is written.
	unlinkStorage(ctx, t, env, arn)
	waitFor(t, 10*time.Second, "the session ended", func() bool { return len(env.Storage.Stats().Sessions) == 0 })
	wall := time.Since(start)

	frs := fragments()
	var total time.Duration
	for i, f := range frs {
		d := time.Duration(f.FragmentLengthInMilliseconds) * time.Millisecond
		total += d
		if i == 0 {
			continue
		}
		prev := frs[i-1]
		gap := f.ProducerTimestamp.Sub(prev.ProducerTimestamp.Add(time.Duration(prev.FragmentLengthInMilliseconds) * time.Millisecond))
		if gap > 300*time.Millisecond || gap < -300*time.Millisecond {
			t.Errorf("fragment %s starts %v after the end of %s: a gap in the recording", f.FragmentNumber, gap, prev.FragmentNumber)
		}
	}
	t.Logf("%d fragments, %v recorded in %v wall time", len(frs), total, wall.Round(time.Millisecond))

	first, last := frs[0], frs[len(frs)-1]
	body, err := post(ctx, env, kvsproto.PathGetClip, kvsproto.GetClipInput{StreamARN: streamARN, ClipFragmentSelector: &kvsproto.FragmentSelector{
		FragmentSelectorType: "PRODUCER_TIMESTAMP",
		TimestampRange: &kvsproto.TimestampRange{
			StartTimestamp: &kvsproto.Timestamp{Time: first.ProducerTimestamp.Add(-time.Second)},
			EndTimestamp:   &kvsproto.Timestamp{Time: last.ProducerTimestamp.Add(time.Second)},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(clip, body, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "format=duration:stream=codec_name,width,height",
		"-of", "default=noprint_wrappers=1", clip).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	t.Logf("ffprobe: %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", ", "))
	var dur float64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "duration="); ok {
			dur, _ = strconv.ParseFloat(v, 64)
		}
	}
	if !strings.Contains(string(out), "codec_name=h264") || !strings.Contains(string(out), "width=640") {
		t.Errorf("the clip is not the camera's 640x360 H.264: %s", out)
	}
	if d := time.Duration(dur * float64(time.Second)); d < total-time.Second || d > total+time.Second {
		t.Errorf("the clip lasts %v, the fragments %v", d, total)
	}
}

// TestStorageRecordsAcrossRenewal: kvsrtc's own master (Config.Ingest)
// records through the storage session; a GO_AWAY renews its signaling
// connection, it joins again and its new peer connection replaces the old
// one: the recording has no gap.
func TestStorageRecordsAcrossRenewal(t *testing.T) {
	env, m := ingestEnv(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	streamARN := env.Storage.Stats().Sessions[0].StreamARN
	fragments := func() []kvsproto.Fragment { return listFragments(ctx, t, env, streamARN) }
	waitFor(t, 20*time.Second, "two fragments recorded", func() bool { return len(fragments()) >= 2 })
	if n, err := env.Server.Inject(emulator.Fault{Kind: emulator.FaultGoAway, Channel: "cam", Target: "master", Grace: 200 * time.Millisecond}); err != nil || n != 1 {
		t.Fatalf("GO_AWAY: %d, %v", n, err)
	}
	waitFor(t, 20*time.Second, "the master's second storage peer connected", func() bool {
		st := m.Master.Storage()
		return st.Offers >= 2 && !st.ConnectedAt.IsZero() && st.State == master.ViewerConnected
	})
	n := len(fragments())
	waitFor(t, 20*time.Second, "fragments after the renewal", func() bool { return len(fragments()) >= n+2 })
	frs := fragments()
	for i := 1; i < len(frs); i++ {
		prev, f := frs[i-1], frs[i]
		gap := f.ProducerTimestamp.Sub(prev.ProducerTimestamp.Add(time.Duration(prev.FragmentLengthInMilliseconds) * time.Millisecond))
		if gap > 300*time.Millisecond || gap < -300*time.Millisecond {
			t.Errorf("fragment %s starts %v after the end of %s: a gap across the renewal", f.FragmentNumber, gap, prev.FragmentNumber)
		}
	}
	t.Logf("%d fragments, offers to the master: %d", len(frs), m.Master.Storage().Offers)
}

// listFragments returns the stream's fragments (ListFragments).
func listFragments(ctx context.Context, t *testing.T, env *kvstest.Env, streamARN string) []kvsproto.Fragment {
	t.Helper()
	out, err := post(ctx, env, kvsproto.PathListFragments, kvsproto.ListFragmentsInput{StreamARN: streamARN})
	if err != nil {
		t.Fatal(err)
	}
	var lf kvsproto.ListFragmentsOutput
	if err := json.Unmarshal(out, &lf); err != nil {
		t.Fatal(err)
	}
	return lf.Fragments
}
