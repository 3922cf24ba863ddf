package player_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/player"
)

func TestMain(m *testing.M) {
	// The tests talk to their own emulator only; the machine's AWS settings
	// (a CA bundle, a profile) must not leak in.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	goleak.VerifyTestMain(m)
}

const testToken = "correct-horse-battery"

// fixture is an emulator, a control client for it and a player server
// behind an httptest server.
type fixture struct {
	emu   *emulator.Server
	ctl   *control.Client
	srv   *player.Server
	ts    *httptest.Server
	logs  *testutil.Buffer
	tr    *http.Transport
	token string
}

func newFixture(t *testing.T, pcfg player.Config, ecfg emulator.Config) *fixture {
	t.Helper()
	f, _ := newFixtureEnv(t, pcfg, ecfg)
	return f
}

// newFixtureEnv is newFixture that also returns the kvstest environment
// (its AWS config, its storage sessions).
func newFixtureEnv(t *testing.T, pcfg player.Config, ecfg emulator.Config) (*fixture, *kvstest.Env) {
	t.Helper()
	if ecfg.Channels == nil {
		ecfg.Channels = []string{"cam", "other"}
	}
	env := kvstest.New(t, kvstest.Options{Emulator: ecfg})
	emu := env.Server
	f := &fixture{emu: emu, ctl: env.Control, logs: &testutil.Buffer{}}
	pcfg.Control = f.ctl
	if pcfg.Channels == nil {
		pcfg.Channels = []string{"cam"}
	}
	if pcfg.Auth == "" && !pcfg.NoAuth {
		pcfg.Auth = testToken
	}
	f.token = pcfg.Auth
	var lw io.Writer = f.logs
	if os.Getenv("KVSRTC_TEST_LOG") != "" {
		lw = io.MultiWriter(f.logs, os.Stderr)
	}
	pcfg.Logger = slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	f.srv, err = player.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(f.srv)
	t.Cleanup(f.ts.Close)
	f.tr = http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(f.tr.CloseIdleConnections)
	t.Cleanup(func() {
		if strings.Contains(f.logs.String(), emu.Credentials().SecretAccessKey) {
			t.Errorf("the server log contains the secret access key")
		}
	})
	return f, env
}

// request sends a request to the player; hdr values "" are not sent. It
// does not follow redirects.
func (f *fixture) request(t *testing.T, method, path string, body any, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	c := &http.Client{Transport: f.tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func (f *fixture) bearer() map[string]string {
	return map[string]string{"Authorization": "Bearer " + f.token}
}

// session mints a session for channel.
func (f *fixture) session(t *testing.T, channel, renew string) (player.Session, *http.Response, []byte) {
	t.Helper()
	body := map[string]string{"channel": channel}
	if renew != "" {
		body["renew"] = renew
	}
	resp, b := f.request(t, "POST", "/api/session", body, f.bearer())
	var s player.Session
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("session body %s: %v", b, err)
		}
	}
	return s, resp, b
}

// apiError decodes an API refusal.
func apiError(t *testing.T, b []byte) player.Diagnosis {
	t.Helper()
	var e player.APIError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %s: %v", b, err)
	}
	return e.Error
}
