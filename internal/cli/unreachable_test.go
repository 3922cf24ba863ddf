package cli

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvstest"
)

// Unresolvable host names in these tests have a 64-character label: Go's
// resolver refuses such a name as "no such host" before sending any query,
// so the tests send no DNS traffic off the machine.

// awsEnvFor points the AWS environment at endpoint with dummy credentials
// and nothing from this machine's AWS files.
func awsEnvFor(t *testing.T, endpoint string) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDKVSRTCTEST", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "",
		"AWS_REGION": "us-west-2", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_STS": "",
		"AWS_ENDPOINT_URL_KINESIS_VIDEO": endpoint, "AWS_CA_BUNDLE": "", "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
	} {
		t.Setenv(k, v)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// silentServer accepts connections and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		for {
			c, err := l.Accept()
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })
	return l.Addr().String()
}

// untrustedTLS serves HTTPS on 127.0.0.1 with a self-signed certificate for
// 127.0.0.1; it returns the port and the certificate's file.
func untrustedTLS(t *testing.T) (port, certFile string) {
	t.Helper()
	c, err := testutil.WriteCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	return port, c.CertFile
}

// TestViewServiceUnreachable: every way of not reaching the service ends
// `kvsrtc view` with cause service-unreachable, the endpoint, what failed
// and the fix (it used to be "signaling-lost ... no action needed", or a
// hang for a service that never answers).
func TestViewServiceUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) (endpoint string)
		args  []string
		want  []string // in stderr
	}{
		{
			name:  "connection refused",
			setup: func(t *testing.T) string { return "http://" + closedPort(t) },
			want:  []string{"dial: connection refused", "kvsrtc local", "AWS_ENDPOINT_URL_KINESIS_VIDEO"},
		},
		{
			name: "DNS failure",
			setup: func(*testing.T) string {
				return "http://kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid:8080"
			},
			want: []string{"DNS: lookup failed", "kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid does not resolve"},
		},
		{
			name: "TLS unknown CA",
			setup: func(t *testing.T) string {
				port, _ := untrustedTLS(t)
				return "https://127.0.0.1:" + port
			},
			want: []string{"TLS: certificate signed by an unknown authority", "AWS_CA_BUNDLE"},
		},
		{
			name: "TLS name mismatch",
			setup: func(t *testing.T) string {
				port, cert := untrustedTLS(t)
				t.Setenv("AWS_CA_BUNDLE", cert) // trusted, but issued for 127.0.0.1
				return "https://localhost:" + port
			},
			want: []string{"TLS: certificate not valid for this host name", "localhost", "--hostname"},
		},
		{
			name:  "timeout",
			setup: func(t *testing.T) string { return "http://" + silentServer(t) },
			args:  []string{"--max-attempts", "1"},
			want:  []string{"timeout: no answer in time", "did not answer in time"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			awsEnvFor(t, "")
			endpoint := tc.setup(t)
			t.Setenv("AWS_ENDPOINT_URL_KINESIS_VIDEO", endpoint)
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := Main(t.Context(), append([]string{"view", "--channel", "cam", "--loopback-only"}, tc.args...), nil, &stdout, &stderr)
			took := time.Since(start)
			out := stderr.String()
			last := lastLine(out)
			if code != 1 {
				t.Fatalf("exit %d after %v\nstdout:\n%s\nstderr:\n%s", code, took, stdout.String(), out)
			}
			for _, w := range append([]string{"[cause: service-unreachable]", "KVS control plane " + endpoint + " unreachable"}, tc.want...) {
				if !strings.Contains(last, w) {
					t.Errorf("the last line lacks %q:\n%s", w, last)
				}
			}
			if strings.Contains(out, "signaling-lost") || strings.Contains(out, "no action needed") {
				t.Errorf("still blamed on the signaling connection:\n%s", out)
			}
			if took > 45*time.Second {
				t.Errorf("took %v", took)
			}
			t.Logf("%v: %s", took.Round(time.Millisecond), last)
		})
	}
}

// TestViewSignalingEndpointUnreachable: the control plane answers, but
// the endpoints it hands out do not resolve.
func TestViewSignalingEndpointUnreachable(t *testing.T) {
	srv := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{Channels: []string{"cam"}, Hostname: "kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid"}}).Server
	awsEnvFor(t, "http://"+srv.Addr().String())
	c := srv.Credentials()
	t.Setenv("AWS_ACCESS_KEY_ID", c.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", c.SecretAccessKey)
	t.Setenv("AWS_REGION", srv.Region())
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), []string{"view", "--channel", "cam", "--loopback-only", "--max-attempts", "2"}, nil, &stdout, &stderr)
	last := lastLine(stderr.String())
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	for _, w := range []string{"[cause: service-unreachable]", "KVS signaling endpoint", "kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid", "DNS: lookup failed", "--hostname"} {
		if !strings.Contains(last, w) {
			t.Errorf("the last line lacks %q:\n%s", w, last)
		}
	}
	t.Log(last)
}

// TestDoctorServiceUnreachable: the doctor names the unreachable service
// (not STS, not a configuration problem) with the same words as the viewer.
func TestDoctorServiceUnreachable(t *testing.T) {
	endpoint := "http://" + closedPort(t)
	awsEnvFor(t, endpoint)
	code, rep, stderr := runDoctorCLI(t, "--channel", "cam")
	if code != 1 || rep.Verdict.Cause != "service-unreachable" || rep.Verdict.Check != "credentials" {
		t.Fatalf("exit %d, %+v\n%s", code, rep.Verdict, stderr)
	}
	if !strings.Contains(rep.Verdict.Advice, "nothing accepts connections on "+strings.TrimPrefix(endpoint, "http://")) ||
		!strings.Contains(rep.Verdict.Advice, "kvsrtc local") {
		t.Fatalf("advice: %s", rep.Verdict.Advice)
	}
	var stdout, errb bytes.Buffer
	Main(t.Context(), []string{"doctor", "--channel", "cam", "--loopback-only"}, nil, &stdout, &errb)
	for _, w := range []string{"VERDICT: service-unreachable", "KVS control plane " + endpoint + " unreachable (dial: connection refused)", "WHAT TO DO: nothing accepts connections"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("the report lacks %q:\n%s", w, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "could not reach STS") {
		t.Errorf("blames STS:\n%s", stdout.String())
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
