package netdiag_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/internal/netdiag"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
)

// Unresolvable host names in these tests have a 64-character label: Go's
// resolver refuses such a name as "no such host" before sending any query,
// so the tests send no DNS traffic off the machine.

var errSentinel = errors.New("test: unreachable")

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
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

// tlsServer serves HTTPS on 127.0.0.1 with a certificate for 127.0.0.1
// that no system root trusts; it returns the server and a pool trusting it.
func tlsServer(t *testing.T) (*httptest.Server, *testutil.Cert) {
	t.Helper()
	c, err := testutil.WriteCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{}")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &c
}

func get(t *testing.T, client *http.Client, u string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err == nil {
		_ = resp.Body.Close()
		t.Fatalf("GET %s: answered %s", u, resp.Status)
	}
	return err
}

func TestClassifyRealFailures(t *testing.T) {
	tlsSrv, cert := tlsServer(t)
	port := strings.TrimPrefix(tlsSrv.URL, "https://127.0.0.1:")
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.Pool, MinVersion: tls.VersionTLS12}}}
	plainSrv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plainSrv.Close)
	refused := refusedAddr(t)
	proxied := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: refused})}}

	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		want   netdiag.Failure
		advice string // a word the advice must contain
	}{
		{"refused", http.DefaultClient, "http://" + refused + "/", netdiag.FailureRefused, "kvsrtc local"},
		{"dns", http.DefaultClient, "http://kvsrtc-test-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.invalid:8080/", netdiag.FailureDNS, "does not resolve"},
		{"tls unknown CA", http.DefaultClient, tlsSrv.URL + "/", netdiag.FailureTLSUnknownCA, "AWS_CA_BUNDLE"},
		{"tls name mismatch", trusting, "https://localhost:" + port + "/", netdiag.FailureTLSName, "--hostname"},
		{"https to an http port", http.DefaultClient, strings.Replace(plainSrv.URL, "http://", "https://", 1) + "/", netdiag.FailureTLS, "scheme"},
		{"timeout", &http.Client{Timeout: 500 * time.Millisecond}, "http://" + silentListener(t) + "/", netdiag.FailureTimeout, "did not answer in time"},
		{"proxy", proxied, "http://kvs.invalid/x", netdiag.FailureProxy, "NO_PROXY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := get(t, tc.client, tc.url)
			e := netdiag.Wrap(err, errSentinel, "test: ", netdiag.ServiceControl, "Op", "")
			if e == nil {
				t.Fatalf("not classified as unreachable: %v", err)
			}
			if e.Failure != tc.want {
				t.Fatalf("failure %q, want %q (%v)", e.Failure, tc.want, err)
			}
			if !errors.Is(e, errSentinel) || !errors.Is(e, err) {
				t.Fatal("does not unwrap to the sentinel and the cause")
			}
			u, _ := url.Parse(tc.url)
			if e.Endpoint != u.Scheme+"://"+u.Host || !strings.Contains(e.Error(), e.Endpoint) {
				t.Fatalf("endpoint %q, error %q", e.Endpoint, e.Error())
			}
			if a := e.Advice(); !strings.Contains(a, tc.advice) {
				t.Fatalf("advice lacks %q: %s", tc.advice, a)
			}
			if tc.want == netdiag.FailureProxy && e.Proxy != refused {
				t.Fatalf("proxy %q, want %s", e.Proxy, refused)
			}
			t.Logf("%s\n  advice: %s", e, e.Advice())
		})
	}
}

func TestClassifyIgnoresAnswersAndCancellation(t *testing.T) {
	for _, err := range []error{
		nil,
		errors.New("HTTP 403"),
		context.Canceled,
		&url.Error{Op: "Get", URL: "http://x", Err: context.Canceled},
	} {
		if f, ok := netdiag.Classify(err); ok {
			t.Errorf("%v classified as %q", err, f)
		}
	}
}

func TestEndpointDropsQuery(t *testing.T) {
	if got := netdiag.Endpoint("wss://user:pw@h.example:443/path?X-Amz-Signature=secret"); got != "wss://h.example:443" {
		t.Fatalf("got %q", got)
	}
}
