package cli

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// TestCABundleParsedOnce checks that the WebSocket client trusts the pool
// the AWS SDK built from AWS_CA_BUNDLE (no second parse at start-up) and
// that it reaches a TLS kvsrtc local with it.
func TestCABundleParsedOnce(t *testing.T) {
	kvstest.IsolateEnv(t) // a machine's AWS_CA_BUNDLE would hide the emulator's certificate
	kenv := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{TLS: true, TURNDisabled: true}})
	kenv.Setenv(t) // the AWS SDK reads the process environment
	srv := kenv.Server
	env := &Env{Getenv: os.Getenv}
	var a awsFlags
	ctl, hc, err := a.control(t.Context(), env, control.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sdk := ctl.Kinesisvideo().Options().HTTPClient.(*awshttp.BuildableClient).GetTransport().TLSClientConfig.RootCAs
	if got := rtc.RootCAs(hc); got == nil || got != sdk {
		t.Fatalf("WebSocket client roots %p, want the SDK's pool %p", got, sdk)
	}
	resp, err := hc.Get(srv.URL() + "/_kvsrtc/healthz")
	if err != nil {
		t.Fatalf("TLS request with the AWS_CA_BUNDLE pool: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
}

func TestCABundleErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): "AWS_CA_BUNDLE: open ",
		notPEM:                            "holds no PEM certificate",
	} {
		_, err := checkCABundle(&Env{Getenv: func(k string) string {
			if k == "AWS_CA_BUNDLE" {
				return path
			}
			return ""
		}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("AWS_CA_BUNDLE=%s: %v, want %q", path, err, want)
		}
	}
	if p, err := checkCABundle(&Env{Getenv: func(string) string { return "" }}); p != "" || err != nil {
		t.Errorf("unset: %q, %v", p, err)
	}
}
