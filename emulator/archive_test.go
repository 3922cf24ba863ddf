package emulator_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	kvtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// testMedia is a fragmented MP4 made by ffmpeg, split into its init
// segment and its one-second fragments (one per keyframe).
type testMedia struct {
	init  []byte
	frags [][]byte
}

var (
	mediaMu    sync.Mutex
	mediaCache = map[string]*testMedia{}
)

// makeMedia encodes seconds of a test pattern as fragmented MP4 (H.264,
// one keyframe and one fragment per second) with ffmpeg, and splits it.
func makeMedia(t testing.TB, width, height, seconds int) *testMedia {
	t.Helper()
	key := fmt.Sprintf("%dx%d-%d", width, height, seconds)
	mediaMu.Lock()
	defer mediaMu.Unlock()
	if m := mediaCache[key]; m != nil {
		return m
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatalf("ffmpeg is needed to make test fragments: %v", err)
	}
	out := filepath.Join(t.TempDir(), "media.mp4")
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=25", width, height),
		"-t", strconv.Itoa(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
		"-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	m := splitFMP4(t, raw)
	if len(m.frags) != seconds {
		t.Fatalf("ffmpeg made %d fragments, want %d", len(m.frags), seconds)
	}
	mediaCache[key] = m
	return m
}

// splitFMP4 walks the top-level boxes: everything before the first moof
// is the init segment, and each moof starts a fragment.
func splitFMP4(t testing.TB, b []byte) *testMedia {
	t.Helper()
	m := &testMedia{}
	var cur []byte
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			t.Fatalf("truncated box at %d", off)
		}
		size := int(binary.BigEndian.Uint32(b[off:]))
		typ := string(b[off+4 : off+8])
		if size < 8 || off+size > len(b) {
			t.Fatalf("bad box %q size %d at %d", typ, size, off)
		}
		box := b[off : off+size]
		switch {
		case typ == "moof":
			if cur != nil {
				m.frags = append(m.frags, cur)
			}
			cur = append([]byte(nil), box...)
		case cur == nil:
			if typ == "ftyp" || typ == "moov" {
				m.init = append(m.init, box...)
			}
		default:
			if typ != "mfra" {
				cur = append(cur, box...)
			}
		}
		off += size
	}
	if cur != nil {
		m.frags = append(m.frags, cur)
	}
	return m
}

// archiveEnv is a service with a stream to record into, and a clock the
// test can move (the service and the signer share it).
type archiveEnv struct {
	srv    *emulator.Server
	c      *client
	arn    string
	name   string
	offset *atomic.Int64
}

func (e *archiveEnv) now() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }

func newArchiveEnv(t *testing.T, cfg emulator.Config, stream string, retentionHours int) *archiveEnv {
	t.Helper()
	e := &archiveEnv{offset: &atomic.Int64{}, name: stream}
	cfg.TURNDisabled = true
	cfg.Now = e.now
	e.srv = start(t, cfg)
	e.c = newClient(t, e.srv)
	e.c.now = e.now
	e.arn = e.createStream(t, stream, retentionHours)
	return e
}

func (e *archiveEnv) createStream(t *testing.T, name string, hours int) string {
	t.Helper()
	var out kvsproto.CreateStreamOutput
	e.c.mustPost(kvsproto.PathCreateStream, kvsproto.CreateStreamInput{StreamName: name, DataRetentionInHours: &hours, MediaType: "video/h264"}, &out)
	return out.StreamARN
}

// appendAll records m's fragments with producer timestamps from base, one
// second apart.
func (e *archiveEnv) appendAll(t *testing.T, arn string, m *testMedia, base time.Time) {
	t.Helper()
	for i, f := range m.frags {
		err := e.srv.AppendFragment(arn, emulator.ArchiveFragment{Init: m.init, Media: f, Start: base.Add(time.Duration(i) * time.Second), Duration: time.Second})
		if err != nil {
			t.Fatalf("AppendFragment %d: %v", i, err)
		}
	}
}

func ts(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func clipBody(name string, selector string, start, end time.Time) map[string]any {
	return map[string]any{"StreamName": name, "ClipFragmentSelector": map[string]any{
		"FragmentSelectorType": selector,
		"TimestampRange":       map[string]any{"StartTimestamp": ts(start), "EndTimestamp": ts(end)}}}
}

// ffprobeDuration returns the duration ffprobe reads from a file or URL.
func ffprobeDuration(t *testing.T, input string) float64 {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", input).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", input, err, out)
	}
	d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe %s: duration %q", input, out)
	}
	return d
}

func wantCode(t *testing.T, what string, status int, code string, body []byte, wantStatus int, wantCode string, words ...string) {
	t.Helper()
	if status != wantStatus || code != wantCode {
		t.Fatalf("%s: HTTP %d %s (%s), want %d %s", what, status, code, body, wantStatus, wantCode)
	}
	var msg struct{ Message string }
	if err := json.Unmarshal(body, &msg); err != nil || msg.Message == "" {
		t.Fatalf("%s: error body %q has no Message", what, body)
	}
	for _, w := range words {
		if !strings.Contains(msg.Message, w) {
			t.Fatalf("%s: message %q does not mention %q", what, msg.Message, w)
		}
	}
}

// TestArchiveGetClip records ffmpeg's fragments and gets them back as a
// clip that ffprobe reads with the right duration, by producer and by
// server timestamps; and GetClip's errors.
func TestArchiveGetClip(t *testing.T) {
	t.Parallel()
	e := newArchiveEnv(t, emulator.Config{}, "clip-cam", 24)
	m := makeMedia(t, 320, 240, 6)
	base := e.now().Add(-time.Minute).Truncate(time.Millisecond)
	before := e.now()
	e.appendAll(t, e.arn, m, base)
	after := e.now()

	var ep kvsproto.GetDataEndpointOutput
	e.c.mustPost(kvsproto.PathGetDataEndpoint, kvsproto.GetDataEndpointInput{StreamName: e.name, APIName: "GET_CLIP"}, &ep)
	if ep.DataEndpoint != e.srv.URL() {
		t.Fatalf("DataEndpoint %q, want %q", ep.DataEndpoint, e.srv.URL())
	}

	// Producer timestamps: fragments 1..4 (start inclusive, end inclusive
	// and compared to the fragment's start).
	st, code, body := e.c.post(kvsproto.PathGetClip, clipBody(e.name, "PRODUCER_TIMESTAMP", base.Add(time.Second), base.Add(4*time.Second)))
	if st != http.StatusOK {
		t.Fatalf("GetClip: HTTP %d %s: %s", st, code, body)
	}
	want := append(append([]byte(nil), m.init...), bytes.Join(m.frags[1:5], nil)...)
	// Same boxes, the decode times rebased to start at 0.
	if len(body) != len(want) || !bytes.HasPrefix(body, m.init) {
		t.Fatalf("GetClip: %d bytes, want init + fragments 1..4 (%d bytes)", len(body), len(want))
	}
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(clip, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if d := ffprobeDuration(t, clip); d < 3.9 || d > 4.1 {
		t.Fatalf("ffprobe: clip of 4 fragments lasts %.3f s", d)
	}

	// Server timestamps: every fragment.
	st, code, body = e.c.post(kvsproto.PathGetClip, map[string]any{"StreamARN": e.arn, "ClipFragmentSelector": map[string]any{
		"FragmentSelectorType": "SERVER_TIMESTAMP",
		"TimestampRange":       map[string]any{"StartTimestamp": ts(before.Add(-time.Millisecond)), "EndTimestamp": ts(after.Add(time.Millisecond))}}})
	if st != http.StatusOK || len(body) != len(m.init)+len(bytes.Join(m.frags, nil)) {
		t.Fatalf("GetClip by server timestamps: HTTP %d %s, %d bytes", st, code, len(body))
	}

	// Errors.
	cases := []struct {
		what   string
		body   any
		status int
		code   string
		words  []string
	}{
		{"no fragments", clipBody(e.name, "PRODUCER_TIMESTAMP", base.Add(-time.Hour), base.Add(-time.Minute)), 404, "ResourceNotFoundException", []string{"No fragments"}},
		{"end before start", clipBody(e.name, "PRODUCER_TIMESTAMP", base.Add(time.Minute), base), 400, "InvalidArgumentException", []string{"later than"}},
		{"over 24 h", clipBody(e.name, "PRODUCER_TIMESTAMP", base.Add(-25*time.Hour), base), 400, "InvalidArgumentException", []string{"24 hours"}},
		{"bad selector", clipBody(e.name, "WALL_CLOCK", base, base.Add(time.Second)), 400, "InvalidArgumentException", []string{"PRODUCER_TIMESTAMP"}},
		{"no selector", map[string]any{"StreamName": e.name}, 400, "InvalidArgumentException", []string{"clipFragmentSelector"}},
		{"no stream", map[string]any{"ClipFragmentSelector": clipBody("", "PRODUCER_TIMESTAMP", base, base.Add(time.Second))["ClipFragmentSelector"]}, 400, "InvalidArgumentException", []string{"StreamName or StreamARN"}},
		{"unknown stream", clipBody("nope", "PRODUCER_TIMESTAMP", base, base.Add(time.Second)), 404, "ResourceNotFoundException", []string{"nope"}},
		{"timestamp string", `{"StreamName":"clip-cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":"yesterday","EndTimestamp":1}}}`, 400, "SerializationException", nil},
	}
	for _, tc := range cases {
		st, code, body := e.c.post(kvsproto.PathGetClip, tc.body)
		wantCode(t, tc.what, st, code, body, tc.status, tc.code, tc.words...)
	}
	st, code, body = e.c.post(kvsproto.PathGetDataEndpoint, kvsproto.GetDataEndpointInput{StreamName: e.name, APIName: "GET_SOMETHING"})
	wantCode(t, "GetDataEndpoint bad APIName", st, code, body, 400, "InvalidArgumentException", "GET_CLIP")
	st, code, body = e.c.post(kvsproto.PathGetDataEndpoint, kvsproto.GetDataEndpointInput{StreamName: "nope", APIName: "GET_CLIP"})
	wantCode(t, "GetDataEndpoint unknown stream", st, code, body, 404, "ResourceNotFoundException")

	// A stream without retention keeps nothing.
	zero := e.createStream(t, "clip-zero", 0)
	if err := e.srv.AppendFragment(zero, emulator.ArchiveFragment{Init: m.init, Media: m.frags[0], Start: base, Duration: time.Second}); !errors.Is(err, emulator.ErrNoDataRetention) {
		t.Fatalf("AppendFragment to a stream without retention: %v", err)
	}
	st, code, body = e.c.post(kvsproto.PathGetClip, clipBody("clip-zero", "PRODUCER_TIMESTAMP", base, base.Add(time.Second)))
	wantCode(t, "GetClip without retention", st, code, body, 400, "NoDataRetentionException")
}

// TestArchiveAppendErrors: AppendFragment's errors are errors.Is-able;
// DeleteStream drops the archive.
func TestArchiveAppendErrors(t *testing.T) {
	t.Parallel()
	e := newArchiveEnv(t, emulator.Config{}, "append-cam", 1)
	m := makeMedia(t, 320, 240, 6)
	now := e.now()
	good := emulator.ArchiveFragment{Init: m.init, Media: m.frags[0], Start: now, Duration: time.Second}
	bad := []emulator.ArchiveFragment{
		{Init: nil, Media: m.frags[0], Start: now, Duration: time.Second},
		{Init: m.frags[0], Media: m.frags[0], Start: now, Duration: time.Second},
		{Init: m.init, Media: m.init, Start: now, Duration: time.Second},
		{Init: m.init, Media: m.frags[0][:20], Start: now, Duration: time.Second},
		{Init: m.init, Media: m.frags[0], Duration: time.Second},
		{Init: m.init, Media: m.frags[0], Start: now},
	}
	for i, f := range bad {
		if err := e.srv.AppendFragment(e.arn, f); !errors.Is(err, emulator.ErrBadFragment) {
			t.Errorf("bad fragment %d: %v, want ErrBadFragment", i, err)
		}
	}
	if err := e.srv.AppendFragment(strings.Replace(e.arn, "append-cam", "other", 1), good); !errors.Is(err, emulator.ErrStreamNotFound) {
		t.Fatalf("unknown stream: %v", err)
	}
	if err := e.srv.AppendFragment(e.arn, good); err != nil {
		t.Fatal(err)
	}
	var list kvsproto.ListFragmentsOutput
	e.c.mustPost(kvsproto.PathListFragments, kvsproto.ListFragmentsInput{StreamARN: e.arn}, &list)
	if len(list.Fragments) != 1 || list.Fragments[0].FragmentSizeInBytes != int64(len(m.frags[0])) || list.Fragments[0].FragmentLengthInMilliseconds != 1000 {
		t.Fatalf("ListFragments: %+v", list)
	}
	e.c.mustPost(kvsproto.PathDeleteStream, kvsproto.DeleteStreamInput{StreamARN: e.arn}, nil)
	if err := e.srv.AppendFragment(e.arn, good); !errors.Is(err, emulator.ErrStreamNotFound) {
		t.Fatalf("deleted stream: %v", err)
	}
}

// TestArchiveRetention: fragments older than DataRetentionInHours go.
func TestArchiveRetention(t *testing.T) {
	t.Parallel()
	e := newArchiveEnv(t, emulator.Config{}, "ret-cam", 1)
	m := makeMedia(t, 320, 240, 6)
	base := e.now().Truncate(time.Millisecond)
	e.appendAll(t, e.arn, m, base)
	body := clipBody(e.name, "PRODUCER_TIMESTAMP", base, base.Add(time.Minute))
	if st, code, raw := e.c.post(kvsproto.PathGetClip, body); st != http.StatusOK {
		t.Fatalf("GetClip: %d %s %s", st, code, raw)
	}
	e.offset.Store(int64(61 * time.Minute))
	st, code, raw := e.c.post(kvsproto.PathGetClip, body)
	wantCode(t, "after the retention", st, code, raw, 404, "ResourceNotFoundException")
}

// TestArchivePersists: with a DataDir the archive survives a restart and
// DeleteStream removes its files.
func TestArchivePersists(t *testing.T) {
	// Not parallel: a child process forked (ffmpeg, ffprobe) by a parallel
	// test holds a copy of the data dir's lock until it execs.
	dir := t.TempDir()
	m := makeMedia(t, 320, 240, 6)
	e := newArchiveEnv(t, emulator.Config{DataDir: dir}, "disk-cam", 24)
	base := e.now().Add(-time.Minute).Truncate(time.Millisecond)
	e.appendAll(t, e.arn, m, base)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// The media of a stream that no longer exists is removed at start.
	stale := filepath.Join(dir, "archive", "gone.1700000000000")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	srv2 := start(t, emulator.Config{DataDir: dir, TURNDisabled: true})
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stale archive directory is still there: %v", err)
	}
	c2 := newClient(t, srv2)
	st, code, body := c2.post(kvsproto.PathGetClip, clipBody("disk-cam", "PRODUCER_TIMESTAMP", base, base.Add(time.Minute)))
	if st != http.StatusOK || len(body) != len(m.init)+len(bytes.Join(m.frags, nil)) {
		t.Fatalf("GetClip after restart: HTTP %d %s, %d bytes, want %d (init %d)", st, code, len(body), len(m.init)+len(bytes.Join(m.frags, nil)), len(m.init))
	}
	// Numbering continues after a restart.
	if err := srv2.AppendFragment(e.arn, emulator.ArchiveFragment{Init: m.init, Media: m.frags[0], Start: base.Add(10 * time.Second), Duration: time.Second}); err != nil {
		t.Fatal(err)
	}
	var list kvsproto.ListFragmentsOutput
	c2.mustPost(kvsproto.PathListFragments, kvsproto.ListFragmentsInput{StreamName: "disk-cam", MaxResults: ptr(int64(4))}, &list)
	if len(list.Fragments) != 4 || list.NextToken == "" || list.Fragments[0].FragmentNumber != "1" {
		t.Fatalf("ListFragments page 1: %+v", list)
	}
	tok := list.NextToken
	list = kvsproto.ListFragmentsOutput{}
	c2.mustPost(kvsproto.PathListFragments, kvsproto.ListFragmentsInput{StreamName: "disk-cam", NextToken: tok}, &list)
	if len(list.Fragments) != 3 || list.NextToken != "" || list.Fragments[2].FragmentNumber != "7" {
		t.Fatalf("ListFragments page 2: %+v", list)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "archive"))
	if len(entries) != 1 {
		t.Fatalf("archive dir has %d entries", len(entries))
	}
	c2.mustPost(kvsproto.PathDeleteStream, kvsproto.DeleteStreamInput{StreamARN: e.arn}, nil)
	entries, _ = os.ReadDir(filepath.Join(dir, "archive"))
	if len(entries) != 0 {
		t.Fatalf("DeleteStream left %d archive directories", len(entries))
	}
}

func ptr[T any](v T) *T { return &v }

// hlsGet fetches an HLS resource (unsigned).
func hlsGet(t *testing.T, u string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func resolveRef(base, ref string) string {
	return base[:strings.LastIndex(base, "/")+1] + ref
}

// playlistURIs returns the segment and map URIs of a media playlist.
func playlistURIs(pl string) (maps, segs []string) {
	for _, line := range strings.Split(pl, "\n") {
		if u, ok := strings.CutPrefix(line, `#EXT-X-MAP:URI="`); ok {
			maps = append(maps, strings.TrimSuffix(u, `"`))
		} else if line != "" && !strings.HasPrefix(line, "#") {
			segs = append(segs, line)
		}
	}
	return maps, segs
}

// TestArchiveHLS: ON_DEMAND and LIVE sessions serve playlists, init and
// fragments that match what was recorded; ffprobe reads the ON_DEMAND
// session; an init change is a discontinuity with a new map; sessions
// expire; MPEG_TS is refused.
func TestArchiveHLS(t *testing.T) {
	t.Parallel()
	e := newArchiveEnv(t, emulator.Config{}, "hls-cam", 24)
	m := makeMedia(t, 320, 240, 6)
	m2 := makeMedia(t, 640, 360, 2)
	base := e.now().Add(-20 * time.Second).Truncate(time.Millisecond)
	e.appendAll(t, e.arn, m, base)

	hlsURL := func(body map[string]any) string {
		t.Helper()
		body["StreamName"] = e.name
		var out kvsproto.GetHLSStreamingSessionURLOutput
		e.c.mustPost(kvsproto.PathGetHLSStreamingSessionURL, body, &out)
		if !strings.HasPrefix(out.HLSStreamingSessionURL, e.srv.URL()+"/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=") {
			t.Fatalf("HLSStreamingSessionURL %q", out.HLSStreamingSessionURL)
		}
		return out.HLSStreamingSessionURL
	}
	onDemand := hlsURL(map[string]any{"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": map[string]any{
		"FragmentSelectorType": "PRODUCER_TIMESTAMP",
		"TimestampRange":       map[string]any{"StartTimestamp": ts(base), "EndTimestamp": ts(base.Add(time.Minute))}}})
	st, h, master := hlsGet(t, onDemand)
	if st != 200 || h.Get("Content-Type") != "application/vnd.apple.mpegurl" || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("master playlist: HTTP %d %v", st, h)
	}
	_, media := playlistURIs(string(master))
	if len(media) != 1 || !strings.HasPrefix(media[0], "getHLSMediaPlaylist.m3u8?") {
		t.Fatalf("master playlist:\n%s", master)
	}
	mediaURL := resolveRef(onDemand, media[0])
	_, _, pl := hlsGet(t, mediaURL)
	maps, segs := playlistURIs(string(pl))
	if !strings.Contains(string(pl), "#EXT-X-ENDLIST") || !strings.Contains(string(pl), "#EXT-X-TARGETDURATION:1") || len(segs) != 6 || len(maps) != 1 {
		t.Fatalf("ON_DEMAND media playlist:\n%s", pl)
	}
	_, _, init := hlsGet(t, resolveRef(mediaURL, maps[0]))
	if !bytes.Equal(init, m.init) {
		t.Fatal("init fragment differs from the recorded init")
	}
	for i, s := range segs {
		st, h, b := hlsGet(t, resolveRef(mediaURL, s))
		if st != 200 || h.Get("Content-Type") != "video/mp4" || !bytes.Equal(b, m.frags[i]) {
			t.Fatalf("fragment %d: HTTP %d, %d bytes", i, st, len(b))
		}
	}
	if d := ffprobeDuration(t, onDemand); d < 5.9 || d > 6.1 {
		t.Fatalf("ffprobe of the ON_DEMAND session: %.3f s, want 6", d)
	}

	// LIVE: a sliding window of the newest fragments.
	live := hlsURL(map[string]any{"PlaybackMode": "LIVE", "MaxMediaPlaylistFragmentResults": 3,
		"HLSFragmentSelector": map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP"}})
	_, _, master = hlsGet(t, live)
	_, media = playlistURIs(string(master))
	liveMedia := resolveRef(live, media[0])
	_, _, pl = hlsGet(t, liveMedia)
	_, segs = playlistURIs(string(pl))
	if strings.Contains(string(pl), "ENDLIST") || !strings.Contains(string(pl), "#EXT-X-MEDIA-SEQUENCE:4\n") || len(segs) != 3 {
		t.Fatalf("LIVE media playlist:\n%s", pl)
	}
	// The camera restarts at another resolution: new init.
	e.appendAll(t, e.arn, m2, base.Add(6*time.Second))
	_, _, pl = hlsGet(t, liveMedia)
	maps, segs = playlistURIs(string(pl))
	if !strings.Contains(string(pl), "#EXT-X-MEDIA-SEQUENCE:6\n") || len(segs) != 3 || len(maps) != 2 ||
		strings.Count(string(pl), "#EXT-X-DISCONTINUITY\n") != 1 {
		t.Fatalf("LIVE media playlist after an init change:\n%s", pl)
	}
	_, _, init = hlsGet(t, resolveRef(liveMedia, maps[1]))
	if !bytes.Equal(init, m2.init) {
		t.Fatal("the second map is not the new init")
	}
	// GetClip stops at the init change.
	st, code, body := e.c.post(kvsproto.PathGetClip, clipBody(e.name, "PRODUCER_TIMESTAMP", base, base.Add(time.Minute)))
	if st != 200 || len(body) != len(m.init)+len(bytes.Join(m.frags, nil)) {
		t.Fatalf("GetClip across an init change: HTTP %d %s, %d bytes", st, code, len(body))
	}

	// LIVE_REPLAY from the start: every fragment, ENDLIST once the end has
	// passed; ALWAYS marks every fragment; timestamps shown on request.
	mediaOf := func(body map[string]any) string {
		t.Helper()
		u := hlsURL(body)
		_, _, master := hlsGet(t, u)
		_, media := playlistURIs(string(master))
		_, _, pl := hlsGet(t, resolveRef(u, media[0]))
		return string(pl)
	}
	replay := func(end *time.Time, extra map[string]any) map[string]any {
		r := map[string]any{"StartTimestamp": ts(base)}
		if end != nil {
			r["EndTimestamp"] = ts(*end)
		}
		b := map[string]any{"PlaybackMode": "LIVE_REPLAY", "HLSFragmentSelector": map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": r}}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	pl2 := mediaOf(replay(nil, nil))
	if _, segs := playlistURIs(pl2); len(segs) != 8 || strings.Contains(pl2, "ENDLIST") || strings.Count(pl2, "#EXT-X-DISCONTINUITY\n") != 1 {
		t.Fatalf("LIVE_REPLAY without an end:\n%s", pl2)
	}
	end := base.Add(10 * time.Second)
	pl2 = mediaOf(replay(&end, map[string]any{"DiscontinuityMode": "ALWAYS", "DisplayFragmentTimestamp": "ALWAYS"}))
	if !strings.Contains(pl2, "ENDLIST") || strings.Count(pl2, "#EXT-X-DISCONTINUITY\n") != 7 ||
		strings.Count(pl2, "#EXT-X-PROGRAM-DATE-TIME:") != 8 || !strings.Contains(pl2, "#EXT-X-PROGRAM-DATE-TIME:"+base.UTC().Format("2006-01-02T15:04:05.000Z")) {
		t.Fatalf("LIVE_REPLAY with a past end, ALWAYS:\n%s", pl2)
	}

	// Errors.
	for _, tc := range []struct {
		what   string
		body   map[string]any
		status int
		code   string
		words  []string
	}{
		{"MPEG_TS", map[string]any{"ContainerFormat": "MPEG_TS"}, 400, "InvalidArgumentException", []string{"FRAGMENTED_MP4"}},
		{"Expires", map[string]any{"Expires": 100}, 400, "InvalidArgumentException", []string{"300"}},
		{"ON_DEMAND without range", map[string]any{"PlaybackMode": "ON_DEMAND"}, 400, "InvalidArgumentException", []string{"TimestampRange"}},
		{"LIVE with range", map[string]any{"HLSFragmentSelector": map[string]any{"TimestampRange": map[string]any{"StartTimestamp": ts(base)}}}, 400, "InvalidArgumentException", []string{"LIVE"}},
		{"bad mode", map[string]any{"PlaybackMode": "REWIND"}, 400, "InvalidArgumentException", []string{"ON_DEMAND"}},
		{"ON_DEMAND nothing", map[string]any{"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": map[string]any{
			"FragmentSelectorType": "PRODUCER_TIMESTAMP",
			"TimestampRange":       map[string]any{"StartTimestamp": ts(base.Add(-time.Hour)), "EndTimestamp": ts(base.Add(-time.Minute))}}}, 404, "ResourceNotFoundException", nil},
	} {
		tc.body["StreamName"] = e.name
		st, code, body := e.c.post(kvsproto.PathGetHLSStreamingSessionURL, tc.body)
		wantCode(t, tc.what, st, code, body, tc.status, tc.code, tc.words...)
	}
	st, _, _ = hlsGet(t, e.srv.URL()+kvsproto.PathHLSMasterPlaylist+"?SessionToken=forged")
	if st != http.StatusUnauthorized {
		t.Fatalf("forged token: HTTP %d", st)
	}
	// LIVE needs a fragment of the last 30 s; sessions expire (300 s).
	e.offset.Store(int64(301 * time.Second))
	st, _, _ = hlsGet(t, liveMedia)
	if st != http.StatusUnauthorized {
		t.Fatalf("expired session: HTTP %d", st)
	}
	st, code, body = e.c.post(kvsproto.PathGetHLSStreamingSessionURL, map[string]any{"StreamName": e.name})
	wantCode(t, "LIVE without recent fragments", st, code, body, 404, "ResourceNotFoundException", "30 seconds")
}

// TestGetDataEndpointSDK: aws-sdk-go-v2's kinesisvideo client gets this
// service's URL for every APIName, and its typed errors.
func TestGetDataEndpointSDK(t *testing.T) {
	t.Parallel()
	e := newArchiveEnv(t, emulator.Config{}, "sdk-data", 1)
	kv := sdkClient(t, e.srv)
	for _, api := range kvtypes.APIName("").Values() {
		out, err := kv.GetDataEndpoint(t.Context(), &kinesisvideo.GetDataEndpointInput{StreamARN: &e.arn, APIName: api})
		if err != nil || out.DataEndpoint == nil || *out.DataEndpoint != e.srv.URL() {
			t.Fatalf("GetDataEndpoint %s: %v %+v", api, err, out)
		}
	}
	name := "missing"
	_, err := kv.GetDataEndpoint(t.Context(), &kinesisvideo.GetDataEndpointInput{StreamName: &name, APIName: kvtypes.APINameGetClip})
	var nf *kvtypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("GetDataEndpoint of a missing stream: %v", err)
	}
}
