package player_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/player"
)

// TestPermissionsPolicy: every response allows the microphone (push-to-
// talk) for the player's own origin only, and nothing else of the kind.
func TestPermissionsPolicy(t *testing.T) {
	f := newFixture(t, player.Config{}, emulator.Config{TURNDisabled: true})
	for _, path := range []string{"/?channel=cam", "/grid", "/login", "/api/channels", "/healthz"} {
		resp, _ := f.request(t, "GET", path, nil, f.bearer())
		pp := resp.Header.Get("Permissions-Policy")
		if !strings.Contains(pp, "microphone=(self)") || !strings.Contains(pp, "camera=()") || strings.Contains(pp, "*") {
			t.Errorf("GET %s: Permissions-Policy %q, want microphone=(self) and no camera", path, pp)
		}
	}
}

// TestPageTwoWayConfig: the built-in pages have push-to-talk unless
// Config.NoTalk, and a data channel with Config.Data; the page and the
// <kvs-viewer> module carry the two-way code.
func TestPageTwoWayConfig(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        player.Config
		talk, data bool
	}{
		{"default", player.Config{}, true, false},
		{"data", player.Config{Data: true}, true, true},
		{"no talk", player.Config{NoTalk: true}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg, emulator.Config{TURNDisabled: true})
			resp, b := f.request(t, "GET", "/?channel=cam", nil, f.bearer())
			page := string(b)
			if resp.StatusCode != http.StatusOK || strings.Contains(page, `"talk":true`) != tc.talk || strings.Contains(page, `"data":true`) != tc.data ||
				!strings.Contains(page, "class TwoWay") {
				t.Errorf("page: %d, talk %v data %v, two-way code %v", resp.StatusCode, strings.Contains(page, `"talk":true`), strings.Contains(page, `"data":true`), strings.Contains(page, "class TwoWay"))
			}
			_, mod := f.request(t, "GET", "/api/kvs-viewer.js", nil, f.bearer())
			if !strings.Contains(string(mod), "class TwoWay") || !strings.Contains(string(mod), "startTalking()") {
				t.Error("kvs-viewer.js lacks the two-way code")
			}
		})
	}
}
