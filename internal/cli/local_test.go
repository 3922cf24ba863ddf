package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// runLocalBG runs "kvsrtc local args..." until the test ends and returns the
// exported environment once it is printed.
func runLocalBG(t *testing.T, args ...string) (env map[string]string, stdout string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errb := &testutil.Buffer{}, &testutil.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- runLocal(ctx, &Env{Stdout: out, Stderr: errb, Getenv: func(string) string { return "" }}, args)
	}()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("kvsrtc local did not stop within 20 s of cancellation")
		}
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s := out.String()
		if strings.Contains(s, "# e.g.:") {
			env = map[string]string{}
			for _, line := range strings.Split(s, "\n") {
				if kv, ok := strings.CutPrefix(line, "export "); ok {
					k, v, _ := strings.Cut(kv, "=")
					env[k] = strings.Trim(v, "'")
				}
			}
			return env, s, stop
		}
		select {
		case err := <-done:
			t.Fatalf("kvsrtc local exited early: %v\nstderr: %s", err, errb.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no start-up output; stdout %q stderr %q", out.String(), errb.String())
	return nil, "", nil
}

func listChannels(t *testing.T, env map[string]string, hc *http.Client) kvsproto.ListSignalingChannelsOutput {
	t.Helper()
	body := []byte(`{}`)
	req, err := http.NewRequest(http.MethodPost, env["AWS_ENDPOINT_URL_KINESIS_VIDEO"]+kvsproto.PathListSignalingChannels, bytes.NewReader(body))
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
	var out kvsproto.ListSignalingChannelsOutput
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("list: HTTP %d", resp.StatusCode)
	}
	return out
}

func TestLocalPrintsEnvAndServes(t *testing.T) {
	env, stdout, stop := runLocalBG(t, "--listen", "127.0.0.1:0", "--channel", "one", "--channel", "two",
		"--fault", "drop,action=SDP_ANSWER,channel=one", "--log-format", "json")
	first := strings.SplitN(stdout, "\n", 2)[0]
	if !strings.Contains(first, "listening on http://127.0.0.1:") {
		t.Fatalf("first line %q", first)
	}
	for _, k := range []string{"AWS_ENDPOINT_URL_KINESIS_VIDEO", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if env[k] == "" {
			t.Errorf("%s not exported:\n%s", k, stdout)
		}
	}
	if env["AWS_ACCESS_KEY_ID"] != emulator.DefaultCredentials.AccessKeyID || env["AWS_REGION"] != "us-west-2" {
		t.Fatalf("env %v", env)
	}
	if strings.Contains(env["AWS_ENDPOINT_URL_KINESIS_VIDEO"], ":0") {
		t.Fatalf("port 0 printed: %s", env["AWS_ENDPOINT_URL_KINESIS_VIDEO"])
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	got := listChannels(t, env, &http.Client{Transport: tr})
	if len(got.ChannelInfoList) != 2 {
		t.Fatalf("channels %+v", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestLocalTLSAndDataDir(t *testing.T) {
	dir := t.TempDir()
	env, stdout, stop := runLocalBG(t, "--listen", "127.0.0.1:0", "--tls", "--data-dir", dir, "--channel", "kept", "--region", "eu-central-1")
	if !strings.HasPrefix(env["AWS_ENDPOINT_URL_KINESIS_VIDEO"], "https://") || env["AWS_REGION"] != "eu-central-1" {
		t.Fatalf("env %v", env)
	}
	if !strings.Contains(stdout, "--ignore-certificate-errors-spki-list=") {
		t.Fatalf("no Chromium hint:\n%s", stdout)
	}
	pem, err := os.ReadFile(env["AWS_CA_BUNDLE"])
	if err != nil {
		t.Fatalf("AWS_CA_BUNDLE: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("AWS_CA_BUNDLE holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	got := listChannels(t, env, &http.Client{Transport: tr})
	if len(got.ChannelInfoList) != 1 || !strings.Contains(got.ChannelInfoList[0].ChannelARN, ":eu-central-1:") {
		t.Fatalf("channels %+v", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Restart with the same data dir: same channel, same certificate.
	env2, _, stop2 := runLocalBG(t, "--listen", "127.0.0.1:0", "--tls", "--data-dir", dir, "--region", "eu-central-1")
	tr2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr2.CloseIdleConnections()
	again := listChannels(t, env2, &http.Client{Transport: tr2})
	if len(again.ChannelInfoList) != 1 || again.ChannelInfoList[0].ChannelARN != got.ChannelInfoList[0].ChannelARN {
		t.Fatalf("after restart %+v", again)
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

func TestLocalBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "nope"},
		{"--fault", "explode"},
		{"--channel", "bad name"},
		{"--log-level", "loud"},
		{"--access-key-id", ""},
		{"--max-duration", "1m", "--goaway-grace", "2m"},
		{"--storage-max-viewers", "0"},
		{"--storage-session-limit", "10ms"},
		{"stray"},
	} {
		var out, errb testutil.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := runLocal(ctx, &Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}, args)
		cancel()
		if err == nil {
			t.Errorf("%v: no error", args)
			continue
		}
		if !errors.Is(err, ErrUsage) && !errors.Is(err, emulator.ErrInvalidConfig) {
			t.Errorf("%v: %v is neither a usage nor a config error", args, err)
		}
	}
}

// TestLocalRelativeDataDirPrintsAbsolutePaths checks that the printed
// AWS_CA_BUNDLE and certificate paths work from any directory.
func TestLocalRelativeDataDirPrintsAbsolutePaths(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	env, stdout, stop := runLocalBG(t, "--listen", "127.0.0.1:0", "--tls", "--data-dir", "rel/dir")
	want := filepath.Join(base, "rel", "dir", "cert.pem")
	if got := env["AWS_CA_BUNDLE"]; got != want {
		t.Fatalf("AWS_CA_BUNDLE=%s, want %s", got, want)
	}
	if !strings.Contains(stdout, "(or trust "+want+")") {
		t.Fatalf("certificate path not absolute:\n%s", stdout)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestLocalSecondOnSameDataDirRefused checks that a second kvsrtc local on a
// data dir in use exits naming the first one's pid and address.
func TestLocalSecondOnSameDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	env, _, stop := runLocalBG(t, "--listen", "127.0.0.1:0", "--data-dir", dir)
	var out, errb testutil.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := runLocal(ctx, &Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }},
		[]string{"--listen", "127.0.0.1:0", "--data-dir", dir})
	if !errors.Is(err, emulator.ErrDataDirInUse) {
		t.Fatalf("second kvsrtc local: %v, want ErrDataDirInUse", err)
	}
	for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), env["AWS_ENDPOINT_URL_KINESIS_VIDEO"]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not name %q", err, want)
		}
	}
	if strings.Contains(out.String(), "export ") {
		t.Errorf("the refused service printed its environment:\n%s", out.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
