package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// caClient is an HTTP client that trusts the certificate in file.
func caClient(t *testing.T, file string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", file)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// postWith posts a signed REST call to the service described by env.
func postWith(t *testing.T, hc *http.Client, env map[string]string, path string, in, out any) {
	t.Helper()
	body, _ := json.Marshal(in)
	req, err := http.NewRequest(http.MethodPost, env["AWS_ENDPOINT_URL_KINESIS_VIDEO"]+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	creds := sigv4.Credentials{AccessKeyID: env["AWS_ACCESS_KEY_ID"], SecretAccessKey: env["AWS_SECRET_ACCESS_KEY"]}
	if err := sigv4.SignRequest(req, body, creds, env["AWS_REGION"], time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(out) != nil {
		t.Fatalf("%s: HTTP %d", path, resp.StatusCode)
	}
}

// TestLocalOffLoopbackNeedsCredentials: --listen on every interface with
// the published documentation key pair is refused (it used to start
// silently), naming the flags that fix it; nothing is printed.
func TestLocalOffLoopbackNeedsCredentials(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:0"},
		{"--listen", ":0"},
		{"--listen", "0.0.0.0:0", "--access-key-id", "AKIDMINE"}, // the secret is still the published one
	} {
		var out, errb testutil.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := runLocal(ctx, &Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}, args)
		cancel()
		if !errors.Is(err, ErrUsage) {
			t.Fatalf("%v: error %v, want a usage error", args, err)
		}
		for _, want := range []string{"--access-key-id", "--secret-access-key", "--insecure"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: message %q does not name %s", args, err, want)
			}
		}
		if strings.Contains(out.String(), "export ") {
			t.Errorf("%v: the refused service printed its environment:\n%s", args, out.String())
		}
	}
}

// TestLocalOffLoopbackInsecureWarns: --insecure starts it anyway, with a
// warning.
func TestLocalOffLoopbackInsecureWarns(t *testing.T) {
	var out, errb testutil.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runLocal(ctx, &Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }},
			[]string{"--listen", "0.0.0.0:0", "--insecure", "--no-turn"})
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "export ") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("--insecure: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "export ") || !strings.Contains(errb.String(), "--insecure") {
		t.Fatalf("no start or no warning:\nstdout %s\nstderr %s", out.String(), errb.String())
	}
}

// TestLocalOffLoopbackAdvertisesHostname: with its own key pair on every
// interface, the service binds TURN there too and hands out TURN URIs that
// name --hostname (they used to name 127.0.0.1 whatever the listen address).
func TestLocalOffLoopbackAdvertisesHostname(t *testing.T) {
	env, _, stop := runLocalBG(t, "--listen", "0.0.0.0:0", "--hostname", "localhost", "--tls",
		"--access-key-id", "AKIDLOCALTEST", "--secret-access-key", "local-listen-test-secret", "--channel", "cam")
	if env["AWS_ACCESS_KEY_ID"] != "AKIDLOCALTEST" || !strings.Contains(env["AWS_ENDPOINT_URL_KINESIS_VIDEO"], "://localhost:") {
		t.Fatalf("env %v", env)
	}
	// The endpoint names localhost; reach it over loopback.
	env["AWS_ENDPOINT_URL_KINESIS_VIDEO"] = strings.Replace(env["AWS_ENDPOINT_URL_KINESIS_VIDEO"], "://localhost:", "://127.0.0.1:", 1)
	tlsEnv := env
	hc := caClient(t, tlsEnv["AWS_CA_BUNDLE"])
	var ch kvsproto.DescribeSignalingChannelOutput
	postWith(t, hc, tlsEnv, kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelName": "cam"}, &ch)
	var ice kvsproto.GetIceServerConfigOutput
	postWith(t, hc, tlsEnv, kvsproto.PathGetIceServerConfig, kvsproto.GetIceServerConfigInput{ChannelARN: ch.ChannelInfo.ChannelARN}, &ice)
	if len(ice.IceServerList) != 1 || len(ice.IceServerList[0].Uris) != 3 {
		t.Fatalf("ice %+v", ice)
	}
	for _, u := range ice.IceServerList[0].Uris {
		if !strings.Contains(u, ":localhost:") || strings.Contains(u, "transport=tcp") && strings.HasPrefix(u, "turn:") {
			t.Errorf("URI %s: want the hostname, and no plain-TCP turn:", u)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
