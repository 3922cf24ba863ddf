package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
)

func TestServeUsage(t *testing.T) {
	// Usage errors are found before any AWS configuration is read.
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for name, args := range map[string][]string{
		"no channel":       {"serve", "--auth", "long-enough-token"},
		"short auth":       {"serve", "--channel", "demo", "--auth", "short"},
		"auth and no-auth": {"serve", "--channel", "demo", "--auth", "long-enough-token", "--no-auth"},
		"half of tls":      {"serve", "--channel", "demo", "--tls-cert", "cert.pem"},
		"bad channel":      {"serve", "--channel", "bad name", "--auth", "long-enough-token"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(t.Context(), args, nil, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
		})
	}
}

// TestServe runs kvsrtc serve against a local service: it prints where to
// open it (with a generated token), serves the player behind the token,
// mints sessions for its channel only, and stops cleanly.
func TestServe(t *testing.T) {
	srv, err := emulator.Start(t.Context(), emulator.Config{Channels: []string{"demo"}, TURNDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	masterTestEnv(t, srv)
	t.Setenv(authEnv, "")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := &masterTestBuffer{}, &masterTestBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--channel", "demo", "--log-level", "debug"}, nil, stdout, stderr)
	}()

	re := regexp.MustCompile(`open (http://127\.0\.0\.1:\d+)/\?token=([A-Za-z0-9_-]+) `)
	var m []string
	deadline := time.Now().Add(15 * time.Second)
	for m = re.FindStringSubmatch(stdout.String()); m == nil; m = re.FindStringSubmatch(stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	base, token := m[1], m[2]
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, body, bearer string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/healthz", "", ""); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := do("GET", "/", "", ""); code != http.StatusSeeOther {
		t.Fatalf("/ without the token: %d", code)
	}
	if code, _ := do("POST", "/api/session", `{"channel":"demo"}`, "not-the-token"); code != http.StatusUnauthorized {
		t.Fatalf("session with a wrong token: %d", code)
	}
	code, body := do("POST", "/api/session", `{"channel":"demo"}`, token)
	var sess struct {
		ClientID     string `json:"clientId"`
		SignalingURL string `json:"signalingUrl"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &sess) != nil || sess.ClientID == "" || !strings.HasPrefix(sess.SignalingURL, "ws://") {
		t.Fatalf("session: %d %s", code, body)
	}
	if strings.Contains(body, srv.Credentials().SecretAccessKey) {
		t.Fatal("the session contains the secret key")
	}
	if code, _ := do("POST", "/api/session", `{"channel":"other"}`, token); code != http.StatusForbidden {
		t.Fatalf("session for another channel: %d", code)
	}
	if code, body := do("GET", "/metrics", "", token); code != http.StatusOK || !strings.Contains(body, `kvsrtc_player_sessions_total{channel="demo"} 1`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kvsrtc serve did not stop")
	}
	if strings.Contains(stderr.String(), srv.Credentials().SecretAccessKey) {
		t.Fatal("the log contains the secret key")
	}
}

func TestServeToken(t *testing.T) {
	env := &Env{Getenv: func(k string) string {
		if k == authEnv {
			return "from-the-environment"
		}
		return ""
	}}
	f := serveFlags{}
	if tok, gen, err := f.token(env); err != nil || gen || tok != "from-the-environment" {
		t.Fatalf("env token: %q %v %v", tok, gen, err)
	}
	f = serveFlags{auth: "from-the-flag-1"}
	if tok, gen, err := f.token(env); err != nil || gen || tok != "from-the-flag-1" {
		t.Fatalf("flag token: %q %v %v", tok, gen, err)
	}
	f = serveFlags{noAuth: true}
	if tok, gen, err := f.token(env); err != nil || gen || tok != "" {
		t.Fatalf("no auth: %q %v %v", tok, gen, err)
	}
	f = serveFlags{}
	env.Getenv = func(string) string { return "" }
	tok, gen, err := f.token(env)
	if err != nil || !gen || len(tok) < 20 {
		t.Fatalf("generated: %q %v %v", tok, gen, err)
	}
	if _, _, err := (&serveFlags{auth: "short"}).token(env); !errors.Is(err, ErrUsage) {
		t.Fatalf("short token: %v", err)
	}
}
