package browsertest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// hlsBundle is hls.js's browser build (npm package hls.js, unmodified).
const hlsBundle = "js/node_modules/hls.js/dist/hls.min.js"

// TestHLSJSPlaysArchive: hls.js in Chromium plays a stream recorded into
// the local service's archive (fragments ffmpeg made, appended once a
// second as a camera would record them) through GetHLSStreamingSessionURL,
// first LIVE while it is being recorded, then ON_DEMAND; the page is on
// another origin than the service (CORS).
func TestHLSJSPlaysArchive(t *testing.T) {
	if _, err := os.Stat(hlsBundle); err != nil {
		t.Fatalf("%s is missing; %s", hlsBundle, installHint)
	}
	init, frags := encodeFragments(t, 640, 360, 40)

	name := fmt.Sprintf("hls-%d", time.Now().UnixNano())
	hours := 24
	var created kvsproto.CreateStreamOutput
	signedPost(t, kvsproto.PathCreateStream, kvsproto.CreateStreamInput{StreamName: name, DataRetentionInHours: &hours}, &created)

	// The camera: three fragments at once, then one a second.
	t0 := time.Now().Add(-3 * time.Second).Truncate(time.Millisecond)
	appendFrag := func(i int) error {
		return shared.emu.AppendFragment(created.StreamARN, emulator.ArchiveFragment{
			Init: init, Media: frags[i], Start: t0.Add(time.Duration(i) * time.Second), Duration: time.Second})
	}
	for i := 0; i < 3; i++ {
		if err := appendFrag(i); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	fed := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 3; i < len(frags); i++ {
			select {
			case <-ctx.Done():
				fed <- nil
				return
			case <-tick.C:
			}
			if err := appendFrag(i); err != nil {
				fed <- err
				return
			}
		}
		fed <- nil
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-fed; err != nil {
			t.Errorf("AppendFragment: %v", err)
		}
	})

	mux := http.NewServeMux()
	mux.HandleFunc("/hls.min.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, hlsBundle)
	})
	for _, f := range []string{"hls-player.html", "hls-player.js"} {
		mux.HandleFunc("/"+f, func(w http.ResponseWriter, r *http.Request) {
			if filepath.Ext(f) == ".js" {
				w.Header().Set("Content-Type", "text/javascript")
			}
			http.ServeFile(w, r, filepath.Join("js", f))
		})
	}
	pages := httptest.NewServer(mux)
	t.Cleanup(pages.Close)

	// Playing: past 1 s, and a second further than where playback began.
	const playing = `(() => { const v = document.getElementById('video');
		return v.currentTime > 1 && v.currentTime - window.firstPlayingTime > 1 &&
			v.videoWidth === 640 && v.videoHeight === 360; })()`
	const describe = `({state: window.state, errors: window.hlsErrors, currentTime: document.getElementById('video').currentTime,
		firstPlayingTime: window.firstPlayingTime,
		width: document.getElementById('video').videoWidth, height: document.getElementById('video').videoHeight})`
	play := func(t *testing.T, body map[string]any) {
		t.Helper()
		body["StreamName"] = name
		var out kvsproto.GetHLSStreamingSessionURLOutput
		signedPost(t, kvsproto.PathGetHLSStreamingSessionURL, body, &out)
		tb := newTab(t, 90*time.Second)
		tb.navigate(t, pages.URL+"/hls-player.html?"+url.Values{"src": {out.HLSStreamingSessionURL}}.Encode())
		tb.await(t, 45*time.Second, playing, describe)
	}
	t.Run("LIVE", func(t *testing.T) {
		play(t, map[string]any{"PlaybackMode": "LIVE"})
	})
	t.Run("ON_DEMAND", func(t *testing.T) {
		play(t, map[string]any{"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": map[string]any{
			"FragmentSelectorType": "PRODUCER_TIMESTAMP",
			"TimestampRange": map[string]any{
				"StartTimestamp": float64(t0.UnixMilli()) / 1000,
				"EndTimestamp":   float64(time.Now().UnixMilli()) / 1000}}})
	})
}

// signedPost calls the local service's REST API, signed, and decodes the
// 200 answer into out.
func signedPost(t *testing.T, path string, in, out any) {
	t.Helper()
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, shared.emu.URL()+path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := sigv4.SignRequest(req, raw, shared.emu.Credentials(), shared.emu.Region(), time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := shared.env.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d %s: %s", path, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("POST %s: %v: %s", path, err, b)
		}
	}
}

// encodeFragments makes seconds of H.264 test pattern as fragmented MP4
// with ffmpeg (a keyframe and a fragment per second) and splits it into
// the init segment (ftyp+moov) and the fragments (moof+mdat).
func encodeFragments(t *testing.T, width, height, seconds int) (init []byte, frags [][]byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "media.mp4")
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=25", width, height),
		"-t", fmt.Sprint(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "baseline", "-g", "25", "-keyint_min", "25",
		"-sc_threshold", "0", "-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off+8 <= len(b); {
		size := int(binary.BigEndian.Uint32(b[off:]))
		if size < 8 || off+size > len(b) {
			t.Fatalf("bad MP4 box at %d", off)
		}
		box, typ := b[off:off+size], string(b[off+4:off+8])
		switch {
		case typ == "moof":
			frags = append(frags, append([]byte(nil), box...))
		case len(frags) == 0:
			init = append(init, box...)
		case typ == "mdat":
			frags[len(frags)-1] = append(frags[len(frags)-1], box...)
		}
		off += size
	}
	if len(frags) != seconds {
		t.Fatalf("ffmpeg made %d fragments, want %d", len(frags), seconds)
	}
	return init, frags
}
