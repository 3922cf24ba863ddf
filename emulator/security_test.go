package emulator_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// adminPost posts to the admin API of srv with its admin token.
func adminPost(hc *http.Client, srv *emulator.Server, path, ctype string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, srv.URL()+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	return hc.Do(req)
}

// adminCall sends one admin request; host "" keeps the URL's host.
func adminCall(t *testing.T, hc *http.Client, srv *emulator.Server, method, path, body string, hdr map[string]string, host string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestAdminAPIRequiresToken: the admin API answers only requests with the
// admin token, never sends CORS headers (no web page may read or drive
// it), and refuses a Host that is not the service's (DNS rebinding). The
// attack it stops: a page moves the service clock so that a presigned URL
// that expired hours ago is accepted again.
func TestAdminAPIRequiresToken(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, Hostname: "127.0.0.1"})
	c := newClient(t, srv)
	tok := srv.AdminToken()
	if len(tok) < 16 {
		t.Fatalf("admin token %q is too short", tok)
	}
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	page := map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}

	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/_kvsrtc/clock", `{"skew":"-3h"}`},
		{"GET", "/_kvsrtc/clock", ""},
		{"GET", "/_kvsrtc/stats", ""},
		{"POST", "/_kvsrtc/faults", "expire-turn"},
		{"POST", "/_kvsrtc/turn/expire", ""},
	} {
		st, h, body := adminCall(t, c.http, srv, tc.method, tc.path, tc.body, page, "")
		if st != http.StatusUnauthorized || !strings.Contains(body, emulator.AdminTokenEnv) {
			t.Errorf("%s %s without the token: %d %s", tc.method, tc.path, st, body)
		}
		if h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s %s: Access-Control-Allow-Origin %q", tc.method, tc.path, h.Get("Access-Control-Allow-Origin"))
		}
		st, _, body = adminCall(t, c.http, srv, tc.method, tc.path, tc.body, map[string]string{"Authorization": "Bearer not-the-admin-token"}, "")
		if st != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token: %d %s", tc.method, tc.path, st, body)
		}
	}
	if d := srv.Stats().ClockSkew; d != "0s" {
		t.Fatalf("the clock moved without the token: skew %s", d)
	}
	// A CORS preflight gets no permission either.
	st, h, _ := adminCall(t, c.http, srv, "OPTIONS", "/_kvsrtc/clock", "", map[string]string{
		"Origin": "https://evil.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}, "")
	if h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Headers") != "" || st < 400 {
		t.Errorf("preflight: %d %v", st, h)
	}
	// DNS rebinding: the right token under a foreign host name is refused.
	_, port, _ := net.SplitHostPort(srv.Addr().String())
	st, _, body := adminCall(t, c.http, srv, "GET", "/_kvsrtc/stats", "", bearer, "rebind.evil.example:"+port)
	if st != http.StatusForbidden {
		t.Errorf("foreign Host: %d %s", st, body)
	}
	// The token works as a bearer token and in its own header; healthz
	// stays public (it says nothing) but has no CORS headers either.
	if st, _, body := adminCall(t, c.http, srv, "GET", "/_kvsrtc/stats", "", bearer, ""); st != http.StatusOK {
		t.Errorf("stats with the token: %d %s", st, body)
	}
	if st, _, body := adminCall(t, c.http, srv, "GET", "/_kvsrtc/stats", "", map[string]string{emulator.AdminTokenHeader: tok}, "localhost:"+port); st != http.StatusOK {
		t.Errorf("stats with %s and Host localhost: %d %s", emulator.AdminTokenHeader, st, body)
	}
	if st, h, _ := adminCall(t, c.http, srv, "GET", "/_kvsrtc/healthz", "", nil, ""); st != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("healthz: %d %v", st, h)
	}
	// The rest of the service keeps its CORS headers (browsers use it).
	if st, code, _ := c.post(kvsproto.PathListSignalingChannels, map[string]any{}); st != http.StatusOK {
		t.Fatalf("list: %d %s", st, code)
	}

	// The attack, with the token: a presigned URL signed 3 h ago for 60 s
	// is refused, and accepted only once the clock is moved back.
	arn := c.createChannel("rewind")
	old := time.Now().Add(-3 * time.Hour)
	u, err := sigv4.PresignURL(srv.WSSEndpoint(kvsproto.RoleMaster), map[string]string{"X-Amz-ChannelARN": arn}, c.creds, srv.Region(), old, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ws, _, err := c.dialURL(ctx, u, ""); err == nil {
		_ = ws.CloseNow()
		t.Fatal("an expired presigned URL was accepted")
	}
	if st, _, body := adminCall(t, c.http, srv, "POST", "/_kvsrtc/clock", `{"skew":"-3h"}`, bearer, ""); st != http.StatusOK {
		t.Fatalf("clock with the token: %d %s", st, body)
	}
	ws, _, err := c.dialURL(ctx, u, "")
	if err != nil {
		t.Fatalf("with the clock moved back by the admin: %v", err)
	}
	_ = ws.CloseNow()
}

// TestAdminTokenConfig: every start makes a new random token unless
// Config.AdminToken sets one; a short one is refused.
func TestAdminTokenConfig(t *testing.T) {
	a := start(t, emulator.Config{TURNDisabled: true})
	b := start(t, emulator.Config{TURNDisabled: true})
	if a.AdminToken() == b.AdminToken() {
		t.Fatal("two servers share an admin token")
	}
	const mine = "my-own-admin-token-0123"
	cs := start(t, emulator.Config{TURNDisabled: true, AdminToken: mine})
	if cs.AdminToken() != mine {
		t.Fatalf("AdminToken() = %q", cs.AdminToken())
	}
	for _, bad := range []string{"short", "has a space in it, long enough", strings.Repeat("x", 300)} {
		if _, err := emulator.Start(context.Background(), emulator.Config{TURNDisabled: true, AdminToken: bad}); !errors.Is(err, emulator.ErrInvalidConfig) || !strings.Contains(err.Error(), "AdminToken") {
			t.Errorf("AdminToken %q: %v", bad, err)
		}
	}
}

// TestUnsignedPayloadRefused: KVS signs request bodies; a control-plane
// call whose X-Amz-Content-Sha256 is UNSIGNED-PAYLOAD (so that anyone on
// the path could swap the body) is refused.
func TestUnsignedPayloadRefused(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, Channels: []string{"unsigned"}})
	c := newClient(t, srv)
	body := []byte(`{"ChannelName":"unsigned"}`)
	req, err := http.NewRequest(http.MethodPost, srv.URL()+kvsproto.PathDescribeSignalingChannel, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	cr := srv.Credentials()
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: cr.AccessKeyID, SecretAccessKey: cr.SecretAccessKey},
		req, "UNSIGNED-PAYLOAD", "kinesisvideo", srv.Region(), time.Now()); err != nil {
		t.Fatal(err)
	}
	st, code, out := c.do(req)
	if st != http.StatusBadRequest || code != sigv4.CodeIncompleteSignature || !strings.Contains(string(out), "UNSIGNED-PAYLOAD") {
		t.Fatalf("UNSIGNED-PAYLOAD: %d %s %s", st, code, out)
	}
	// The same call with the body's hash goes through.
	var d kvsproto.DescribeSignalingChannelOutput
	c.mustPost(kvsproto.PathDescribeSignalingChannel, body, &d)
}

// stsRequest is a GetCallerIdentity call signed by hand over the given
// headers (so that a test can leave host out).
func stsRequest(t *testing.T, srv *emulator.Server, signed []string, token string) *http.Request {
	t.Helper()
	body := "Action=GetCallerIdentity&Version=2011-06-15"
	req, err := http.NewRequest(http.MethodPost, srv.URL()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("X-Amz-Date", amzDate)
	if token != "" {
		req.Header.Set("X-Amz-Security-Token", token)
	}
	var ch strings.Builder
	for _, h := range signed {
		v := req.Header.Get(h)
		if h == "host" {
			v = req.URL.Host
		}
		ch.WriteString(h + ":" + v + "\n")
	}
	sum := sha256.Sum256([]byte(body))
	cr := strings.Join([]string{"POST", "/", "", ch.String(), strings.Join(signed, ";"), hex.EncodeToString(sum[:])}, "\n")
	crSum := sha256.Sum256([]byte(cr))
	scope := day + "/" + srv.Region() + "/sts/aws4_request"
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crSum[:])
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	cred := srv.Credentials()
	key := []byte("AWS4" + cred.SecretAccessKey)
	for _, p := range []string{day, srv.Region(), "sts", "aws4_request"} {
		key = mac(key, p)
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+cred.AccessKeyID+"/"+scope+
		", SignedHeaders="+strings.Join(signed, ";")+", Signature="+hex.EncodeToString(mac(key, sts)))
	return req
}

// TestSTSRequiresSignedHost: an STS call must sign host (else it can be
// replayed against another endpoint), and carry the exact session token.
func TestSTSRequiresSignedHost(t *testing.T) {
	const token = "session-token-for-the-sts-test"
	srv := start(t, emulator.Config{TURNDisabled: true, Credentials: []sigv4.Credentials{{AccessKeyID: "AKIDSTSTEST", SecretAccessKey: "sts-test-secret", SessionToken: token}}})
	c := newClient(t, srv)
	if st, _, out := c.do(stsRequest(t, srv, []string{"content-type", "host", "x-amz-date", "x-amz-security-token"}, token)); st != http.StatusOK || !strings.Contains(string(out), "AKIDSTSTEST") {
		t.Fatalf("signed with host: %d %s", st, out)
	}
	if st, _, out := c.do(stsRequest(t, srv, []string{"content-type", "x-amz-date", "x-amz-security-token"}, token)); st != http.StatusBadRequest || !strings.Contains(string(out), "Host") {
		t.Fatalf("signed without host: %d %s", st, out)
	}
	if st, _, out := c.do(stsRequest(t, srv, []string{"content-type", "host", "x-amz-date", "x-amz-security-token"}, token+"x")); st != http.StatusForbidden {
		t.Fatalf("wrong session token: %d %s", st, out)
	}
}

// TestTLSCertificateIsNotACA: --tls serves a self-signed leaf, not a CA
// whose key could sign certificates for any site; a CA certificate kept in
// the data directory by an older version is replaced.
func TestTLSCertificateIsNotACA(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, emulator.Config{TURNDisabled: true, TLS: true, DataDir: dir})
	check := func(pemBytes []byte) *x509.Certificate {
		t.Helper()
		blk, _ := pem.Decode(pemBytes)
		if blk == nil {
			t.Fatal("no PEM certificate")
		}
		crt, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if crt.IsCA || crt.KeyUsage&x509.KeyUsageCertSign != 0 {
			t.Fatalf("the certificate is a CA (IsCA %v, key usage %b)", crt.IsCA, crt.KeyUsage)
		}
		return crt
	}
	check(srv.CACertPEM())
	// Clients still accept it as their only trusted certificate.
	c := newClient(t, srv)
	if st, code, _ := c.post(kvsproto.PathListSignalingChannels, map[string]any{}); st != http.StatusOK {
		t.Fatalf("list over TLS: %d %s", st, code)
	}
	if srv.CACertFile() == "" {
		t.Fatal("no AWS_CA_BUNDLE file")
	}

	// An older version's CA certificate, still valid and for the right
	// host, is replaced by a leaf.
	old := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "old kvsrtc CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(300 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	srv2 := start(t, emulator.Config{TURNDisabled: true, TLS: true, DataDir: old})
	check(srv2.CACertPEM())
	onDisk, err := os.ReadFile(filepath.Join(old, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	check(onDisk)
}
