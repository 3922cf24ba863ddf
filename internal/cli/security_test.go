package cli

import (
	"net/http"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
)

// TestLocalPrintsAdminToken: kvsrtc local prints the admin API's token
// with the other environment lines (so a pasted environment can drive
// /_kvsrtc/), takes a chosen one with --admin-token, and the admin API
// refuses requests without it.
func TestLocalPrintsAdminToken(t *testing.T) {
	admin := func(url, tok string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url+"/_kvsrtc/stats", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	env, stdout, _ := runLocalBG(t, "--listen", "127.0.0.1:0")
	tok := env[emulator.AdminTokenEnv]
	if len(tok) < 16 {
		t.Fatalf("no %s in:\n%s", emulator.AdminTokenEnv, stdout)
	}
	url := env["AWS_ENDPOINT_URL_KINESIS_VIDEO"]
	if st := admin(url, ""); st != http.StatusUnauthorized {
		t.Errorf("admin API without the token: %d", st)
	}
	if st := admin(url, tok); st != http.StatusOK {
		t.Errorf("admin API with the printed token: %d", st)
	}

	const mine = "chosen-admin-token-42"
	env, _, _ = runLocalBG(t, "--listen", "127.0.0.1:0", "--admin-token", mine)
	if env[emulator.AdminTokenEnv] != mine {
		t.Fatalf("--admin-token: printed %q", env[emulator.AdminTokenEnv])
	}
	if st := admin(env["AWS_ENDPOINT_URL_KINESIS_VIDEO"], mine); st != http.StatusOK {
		t.Errorf("admin API with --admin-token: %d", st)
	}
}

// TestDemoHintsUseTheAdminToken: the demo's "try this" lines export the
// admin token and send it, so the fault-injection example works as pasted.
func TestDemoHintsUseTheAdminToken(t *testing.T) {
	srv := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{TURNDisabled: true}}).Server
	var b strings.Builder
	printNext(&b, srv)
	out := b.String()
	if !strings.Contains(out, emulator.AdminTokenEnv+"="+srv.AdminToken()) || !strings.Contains(out, `-H "Authorization: Bearer $`+emulator.AdminTokenEnv+`"`) {
		t.Fatalf("demo hints:\n%s", out)
	}
}

func TestLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:80": true, "127.0.0.2:1": true,
		"0.0.0.0:8080": false, ":8080": false, "192.0.2.1:8080": false, "[::]:8080": false, "nonsense": false,
	} {
		if got := loopbackListen(addr); got != want {
			t.Errorf("loopbackListen(%q) = %v", addr, got)
		}
	}
}
