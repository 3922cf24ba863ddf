package player_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/player"
)

// TestMount: a Config.Mount handler is served behind the token, refuses
// other sites, and cannot take the player's own paths.
func TestMount(t *testing.T) {
	hit := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hit++; w.WriteHeader(http.StatusTeapot) })
	f := newFixture(t, player.Config{Mount: map[string]http.Handler{"/whep/": h}}, emulator.Config{TURNDisabled: true})
	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string]string
		want   int
	}{
		{"no token", "POST", nil, http.StatusUnauthorized},
		{"wrong token", "POST", map[string]string{"Authorization": "Bearer wrong-token-wrong-token"}, http.StatusUnauthorized},
		{"token", "POST", f.bearer(), http.StatusTeapot},
		{"other site", "POST", map[string]string{"Authorization": "Bearer " + testToken, "Origin": "https://evil.example"}, http.StatusForbidden},
		{"other site, GET", "GET", map[string]string{"Authorization": "Bearer " + testToken, "Origin": "https://evil.example"}, http.StatusTeapot},
	} {
		if resp, _ := f.request(t, tc.method, "/whep/cam", nil, tc.hdr); resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if hit != 2 {
		t.Errorf("the mounted handler ran %d times, want 2", hit)
	}
	for _, prefix := range []string{"/api/", "whep", "/whep", "/", "/a {x}/"} {
		_, err := player.New(player.Config{Control: f.ctl, Channels: []string{"cam"}, Auth: testToken, Mount: map[string]http.Handler{prefix: h}})
		if !errors.Is(err, player.ErrInvalidConfig) {
			t.Errorf("Mount %q: %v, want ErrInvalidConfig", prefix, err)
		}
	}
}

// TestModeConfig: relay and auto modes need the WHEP endpoint among the
// mounted handlers; an unknown mode is refused.
func TestModeConfig(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	f := newFixture(t, player.Config{}, emulator.Config{TURNDisabled: true})
	for _, tc := range []struct {
		name string
		mode player.Mode
		whep string
		ok   bool
	}{
		{"default", "", "", true},
		{"direct", player.ModeDirect, "", true},
		{"relay", player.ModeRelay, "/whep/", true},
		{"auto", player.ModeAuto, "/whep/", true},
		{"relay without WHEP", player.ModeRelay, "", false},
		{"auto with a path not mounted", player.ModeAuto, "/other/", false},
		{"unknown", "mesh", "/whep/", false},
	} {
		_, err := player.New(player.Config{Control: f.ctl, Channels: []string{"cam"}, Auth: testToken,
			Mount: map[string]http.Handler{"/whep/": h}, Mode: tc.mode, WHEP: tc.whep})
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, player.ErrInvalidConfig) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
