package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServeStorageUsage: --storage takes auto, on or off, and goes with the
// built-in player only; both mistakes are found before any AWS
// configuration is read.
func TestServeStorageUsage(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for name, args := range map[string][]string{
		"unknown storage mode":  {"serve", "--channel", "demo", "--auth", "long-enough-token", "--storage", "sometimes"},
		"api-only with storage": {"serve", "--api-only", "--channel", "demo", "--token-key-file", "k", "--storage", "off"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(t.Context(), args, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--storage") {
				t.Fatalf("exit %d, want 2 naming --storage; stderr: %s", code, stderr.String())
			}
		})
	}
	for _, m := range []string{"auto", "on", "off"} {
		if _, err := storageFlag(m).mode(); err != nil {
			t.Errorf("--storage %s: %v", m, err)
		}
	}
}

// TestServeStorageOn: kvsrtc serve --storage on sends every channel to its
// storage session; the local service's "demo" has no storage configuration,
// so a session for it is refused with the storage path's cause and words.
func TestServeStorageOn(t *testing.T) {
	const token = "storage-test-token-0123"
	r := startServe(t, `open (http://127\.0\.0\.1:\d+) and sign in`, "--listen", "127.0.0.1:0", "--channel", "demo", "--auth", token, "--storage", "on")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, r.match[1]+"/api/session", strings.NewReader(`{"channel":"demo"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Cause, Title string } `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	if resp.StatusCode == http.StatusOK || e.Error.Cause != "storage-not-configured" {
		t.Fatalf("--storage on, a channel without storage: HTTP %d: %s", resp.StatusCode, b)
	}
	t.Logf("%d %s", resp.StatusCode, e.Error.Title)
}
