package sigv4_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/sigv4"
)

// This file is over 500 lines on purpose: presigning and request signing
// with their verifiers, each checked against the ways a client signs (the
// official SDKs' styles) and each way a signature can be wrong; the cases
// read best side by side.

var (
	testCreds = sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	testToken = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLXdlc3QtMiJHMEUCIQDEXAMPLE+session/token=="
	testDate  = time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC)
	testARN   = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/test-channel/1700000000000"
)

func withToken(c sigv4.Credentials, tok string) sigv4.Credentials {
	c.SessionToken = tok
	return c
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func wantErr(t *testing.T, err, sentinel error, code string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("want %v, got %v", sentinel, err)
	}
	var se *sigv4.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not *sigv4.Error", err)
	}
	if se.Code != code {
		t.Fatalf("code %q, want %q (%v)", se.Code, code, err)
	}
	wantStatus := http.StatusForbidden
	if code == "IncompleteSignatureException" {
		wantStatus = http.StatusBadRequest
	}
	if se.HTTPStatus() != wantStatus {
		t.Fatalf("status %d, want %d", se.HTTPStatus(), wantStatus)
	}
}

// ---- presign round trips ----

func TestPresignRoundTrip(t *testing.T) {
	tests := []struct {
		name, endpoint, host string
		params               map[string]string
		token                string
		wantPrefix           string
	}{
		{"viewer", "wss://127.0.0.1:9443", "127.0.0.1:9443", map[string]string{"X-Amz-ChannelARN": testARN, "X-Amz-ClientId": "v1"}, "", "wss://127.0.0.1:9443/?"},
		{"master token", "wss://127.0.0.1:9443", "127.0.0.1:9443", map[string]string{"X-Amz-ChannelARN": testARN}, testToken, "wss://127.0.0.1:9443/?"},
		{"path", "wss://emu.example/viewer/x", "emu.example", map[string]string{"X-Amz-ChannelARN": testARN}, "", "wss://emu.example/viewer/x?"},
		{"escaped path", "wss://emu.example/a%20b/c!d", "emu.example", nil, "", "wss://emu.example/a%20b/c!d?"},
		{"ws scheme", "ws://[::1]:8080", "[::1]:8080", nil, "", "ws://[::1]:8080/?"},
		{"upper scheme", "WSS://h.example:1", "h.example:1", nil, "", "wss://h.example:1/?"},
		{"odd values", "wss://h", "h", map[string]string{"a b": "x y+z/é&=;", "Z": "", "lower": "~._-"}, "t/o+k=en", "wss://h/?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			creds := withToken(testCreds, tc.token)
			u, err := sigv4.PresignURL(tc.endpoint, tc.params, creds, "us-west-2", testDate, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(u, tc.wantPrefix) {
				t.Fatalf("URL %s, want prefix %s", u, tc.wantPrefix)
			}
			if !strings.Contains(u, "&X-Amz-Expires=299&") {
				t.Fatalf("URL %s lacks default expiry", u)
			}
			r := upgradeRequest(t, u, tc.host)
			res, err := staticVerifier(creds, testDate).VerifyPresigned(r)
			if err != nil {
				t.Fatalf("VerifyPresigned(%s): %v", u, err)
			}
			if res.SessionToken != tc.token || res.Region != "us-west-2" || res.AccessKeyID != creds.AccessKeyID {
				t.Fatalf("result %+v", *res)
			}
			q := r.URL.Query()
			for k, v := range tc.params {
				if q.Get(k) != v {
					t.Fatalf("param %q = %q, want %q", k, q.Get(k), v)
				}
			}
		})
	}
}

func TestPresignQueryOrder(t *testing.T) {
	u, err := sigv4.PresignURL("wss://h", map[string]string{"b": "1", "a": "2", "X-Amz-ClientId": "c"}, withToken(testCreds, "tok"), "us-west-2", testDate, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, q, _ := strings.Cut(u, "?")
	var keys []string
	for _, kv := range strings.Split(q, "&") {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	if !sort.StringsAreSorted(keys) {
		t.Fatalf("keys not sorted: %v", keys)
	}
	want := "X-Amz-Algorithm X-Amz-ClientId X-Amz-Credential X-Amz-Date X-Amz-Expires X-Amz-Security-Token X-Amz-Signature X-Amz-SignedHeaders a b"
	if strings.Join(keys, " ") != want {
		t.Fatalf("keys %v", keys)
	}
	if !strings.Contains(u, "X-Amz-Expires=60&") {
		t.Fatalf("expiry not 60: %s", u)
	}
}

func TestPresignInputErrors(t *testing.T) {
	good := map[string]string{"X-Amz-ChannelARN": testARN}
	tests := []struct {
		name     string
		endpoint string
		params   map[string]string
		creds    sigv4.Credentials
		region   string
		expires  time.Duration
	}{
		{"no scheme", "127.0.0.1:9443", good, testCreds, "us-west-2", 0},
		{"ftp scheme", "ftp://h", good, testCreds, "us-west-2", 0},
		{"query in endpoint", "wss://h/?a=b", good, testCreds, "us-west-2", 0},
		{"fragment", "wss://h/#x", good, testCreds, "us-west-2", 0},
		{"empty host", "wss:///path", good, testCreds, "us-west-2", 0},
		{"userinfo", "wss://u@h", good, testCreds, "us-west-2", 0},
		{"space in path", "wss://h/a b", good, testCreds, "us-west-2", 0},
		{"bad escape", "wss://h/a%zz", good, testCreds, "us-west-2", 0},
		{"no key", "wss://h", good, sigv4.Credentials{SecretAccessKey: "s"}, "us-west-2", 0},
		{"no secret", "wss://h", good, sigv4.Credentials{AccessKeyID: "a"}, "us-west-2", 0},
		{"no region", "wss://h", good, testCreds, "", 0},
		{"slash region", "wss://h", good, testCreds, "us/west", 0},
		{"reserved param", "wss://h", map[string]string{"X-Amz-Signature": "x"}, testCreds, "us-west-2", 0},
		{"reserved param case", "wss://h", map[string]string{"x-amz-date": "x"}, testCreds, "us-west-2", 0},
		{"empty param name", "wss://h", map[string]string{"": "x"}, testCreds, "us-west-2", 0},
		{"expiry too long", "wss://h", good, testCreds, "us-west-2", 604801 * time.Second},
		{"expiry below 1s", "wss://h", good, testCreds, "us-west-2", time.Millisecond},
		{"negative expiry", "wss://h", good, testCreds, "us-west-2", -time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := sigv4.PresignURL(tc.endpoint, tc.params, tc.creds, tc.region, testDate, tc.expires)
			if !errors.Is(err, sigv4.ErrInvalidInput) || u != "" {
				t.Fatalf("got %q, %v; want ErrInvalidInput", u, err)
			}
		})
	}
}

// ---- presign verification failures and time window ----

func presignedRequest(t *testing.T, creds sigv4.Credentials, expires time.Duration) (string, *http.Request) {
	t.Helper()
	u, err := sigv4.PresignURL("wss://127.0.0.1:9443", map[string]string{"X-Amz-ChannelARN": testARN, "X-Amz-ClientId": "v1"}, creds, "us-west-2", testDate, expires)
	if err != nil {
		t.Fatal(err)
	}
	return u, upgradeRequest(t, u, "127.0.0.1:9443")
}

func TestPresignedTimeWindow(t *testing.T) {
	signed := testDate.Truncate(time.Second)
	tests := []struct {
		name     string
		expires  time.Duration
		maxSkew  time.Duration
		now      time.Time
		sentinel error
		prefix   string
	}{
		{"at date", 60 * time.Second, 0, signed, nil, ""},
		{"at expiry", 60 * time.Second, 0, signed.Add(60 * time.Second), nil, ""},
		{"just expired", 60 * time.Second, 0, signed.Add(60*time.Second + time.Nanosecond), sigv4.ErrExpired, "Signature expired: 20240102T030405Z is now earlier than "},
		{"js expiry 299 at 5 min", sigv4.DefaultPresignExpiry, 0, signed.Add(5 * time.Minute), sigv4.ErrExpired, "Signature expired: "},
		{"skew edge past", 604800 * time.Second, 0, signed.Add(5 * time.Minute), nil, ""},
		{"skew past", 604800 * time.Second, 0, signed.Add(5*time.Minute + time.Nanosecond), sigv4.ErrClockSkew, "Signature expired: 20240102T030405Z is now earlier than 20240102T030405Z (20240102T030905Z - 5 min.)"},
		{"skew edge future", 604800 * time.Second, 0, signed.Add(-5 * time.Minute), nil, ""},
		{"skew future", 604800 * time.Second, 0, signed.Add(-5*time.Minute - time.Second), sigv4.ErrClockSkew, "Signature not yet current: 20240102T030405Z is still later than 20240102T030404Z (20240102T025904Z + 5 min.)"},
		{"custom skew ok", 604800 * time.Second, 30 * time.Second, signed.Add(30 * time.Second), nil, ""},
		{"custom skew", 604800 * time.Second, 30 * time.Second, signed.Add(31 * time.Second), sigv4.ErrClockSkew, "Signature expired: 20240102T030405Z is now earlier than 20240102T030406Z (20240102T030436Z - 30 sec.)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, r := presignedRequest(t, testCreds, tc.expires)
			v := staticVerifier(testCreds, tc.now)
			v.MaxSkew = tc.maxSkew
			res, err := v.VerifyPresigned(r)
			if tc.sentinel == nil {
				if err != nil {
					t.Fatal(err)
				}
				if res.Expires != tc.expires {
					t.Fatalf("expires %v", res.Expires)
				}
				return
			}
			wantErr(t, err, tc.sentinel, "InvalidSignatureException")
			var se *sigv4.Error
			errors.As(err, &se)
			if !strings.HasPrefix(se.Message, tc.prefix) {
				t.Fatalf("message %q, want prefix %q", se.Message, tc.prefix)
			}
		})
	}
}

func TestVerifyPresignedErrors(t *testing.T) {
	good, _ := presignedRequest(t, testCreds, 0)
	edit := func(f func(q url.Values)) string {
		u, _ := url.Parse(good)
		q := u.Query()
		f(q)
		u.RawQuery = q.Encode()
		return u.String()
	}
	tests := []struct {
		name     string
		url      string
		host     string
		lookup   sigv4.Credentials
		sentinel error
		code     string
	}{
		{"no query", "wss://127.0.0.1:9443/", "", testCreds, sigv4.ErrMissingAuth, "MissingAuthenticationTokenException"},
		{"only channel", "wss://127.0.0.1:9443/?X-Amz-ChannelARN=x", "", testCreds, sigv4.ErrMissingAuth, "MissingAuthenticationTokenException"},
		{"no date", edit(func(q url.Values) { q.Del("X-Amz-Date") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"no signature", edit(func(q url.Values) { q.Del("X-Amz-Signature") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"bad algorithm", edit(func(q url.Values) { q.Set("X-Amz-Algorithm", "AWS4-HMAC-SHA1") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"duplicate date", edit(func(q url.Values) { q.Add("X-Amz-Date", q.Get("X-Amz-Date")) }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"short credential", edit(func(q url.Values) { q.Set("X-Amz-Credential", "AKIDEXAMPLE/20240102/us-west-2/kinesisvideo") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"bad terminator", edit(func(q url.Values) {
			q.Set("X-Amz-Credential", "AKIDEXAMPLE/20240102/us-west-2/kinesisvideo/aws5_request")
		}), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"scope date differs", edit(func(q url.Values) {
			q.Set("X-Amz-Credential", "AKIDEXAMPLE/20240103/us-west-2/kinesisvideo/aws4_request")
		}), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"bad date", edit(func(q url.Values) { q.Set("X-Amz-Date", "2024-01-02T03:04:05Z") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"expires 0", edit(func(q url.Values) { q.Set("X-Amz-Expires", "0") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"expires too long", edit(func(q url.Values) { q.Set("X-Amz-Expires", "604801") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"expires not a number", edit(func(q url.Values) { q.Set("X-Amz-Expires", "+299") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"host not signed", edit(func(q url.Values) { q.Set("X-Amz-SignedHeaders", "origin") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"short signature", edit(func(q url.Values) { q.Set("X-Amz-Signature", "abc") }), "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"bad escape", good + "&x=%zz", "", testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"wrong service", edit(func(q url.Values) { q.Set("X-Amz-Credential", "AKIDEXAMPLE/20240102/us-west-2/kinesis/aws4_request") }), "", testCreds, sigv4.ErrWrongService, "InvalidSignatureException"},
		{"unknown key", edit(func(q url.Values) {
			q.Set("X-Amz-Credential", "AKIDOTHER/20240102/us-west-2/kinesisvideo/aws4_request")
		}), "", testCreds, sigv4.ErrUnknownAccessKey, "UnrecognizedClientException"},
		{"token required", good, "", withToken(testCreds, "tok"), sigv4.ErrBadToken, "UnrecognizedClientException"},
		{"extra param", good + "&X-Amz-Extra=1", "", testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
		{"other region", edit(func(q url.Values) {
			q.Set("X-Amz-Credential", "AKIDEXAMPLE/20240102/us-east-1/kinesisvideo/aws4_request")
		}), "", testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
		{"default port dropped", good, "127.0.0.1", testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
		{"other path", strings.Replace(good, "9443/?", "9443/x?", 1), "", testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
		{"more signed headers than sent", edit(func(q url.Values) { q.Set("X-Amz-SignedHeaders", "host;x-custom") }), "", testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host
			if host == "" {
				host = "127.0.0.1:9443"
			}
			_, err := staticVerifier(tc.lookup, testDate).VerifyPresigned(upgradeRequest(t, tc.url, host))
			wantErr(t, err, tc.sentinel, tc.code)
		})
	}
}

func TestPresignedSessionToken(t *testing.T) {
	_, r := presignedRequest(t, withToken(testCreds, testToken), 0)
	// Static credentials without a token accept any token.
	if res, err := staticVerifier(testCreds, testDate).VerifyPresigned(r); err != nil || res.SessionToken != testToken {
		t.Fatalf("got %v, %v", res, err)
	}
	if _, err := staticVerifier(withToken(testCreds, testToken), testDate).VerifyPresigned(r); err != nil {
		t.Fatal(err)
	}
	_, err := staticVerifier(withToken(testCreds, testToken+"x"), testDate).VerifyPresigned(r)
	wantErr(t, err, sigv4.ErrBadToken, "UnrecognizedClientException")
	// The token is signed: swapping it breaks the signature.
	u, _ := presignedRequest(t, withToken(testCreds, testToken), 0)
	q := r.URL.Query()
	q.Set("X-Amz-Security-Token", "other")
	u = strings.SplitN(u, "?", 2)[0] + "?" + q.Encode()
	_, err = staticVerifier(testCreds, testDate).VerifyPresigned(upgradeRequest(t, u, "127.0.0.1:9443"))
	wantErr(t, err, sigv4.ErrSignatureMismatch, "InvalidSignatureException")
}

// ---- header-signed requests ----

// signLike is an independent, test-only SigV4 header signer that can mimic
// the AWS CLI, the C SDK and others: it signs exactly the headers named
// (taking their values from r), optionally with an unsigned token header.
func signLike(t *testing.T, r *http.Request, body []byte, creds sigv4.Credentials, now time.Time, signed []string, payload string) {
	t.Helper()
	amz := now.UTC().Format("20060102T150405Z")
	scope := amz[:8] + "/us-west-2/kinesisvideo/aws4_request"
	if r.Header.Get("Date") == "" {
		r.Header.Set("X-Amz-Date", amz)
	}
	if creds.SessionToken != "" {
		r.Header.Set("X-Amz-Security-Token", creds.SessionToken)
	}
	if payload == "" {
		payload = sha256Hex(body)
	}
	sort.Strings(signed)
	var ch strings.Builder
	for _, h := range signed {
		var vals []string
		if h == "host" {
			vals = []string{r.Host}
		} else {
			vals = r.Header.Values(h)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		ch.WriteString(h + ":" + strings.Join(vals, ",") + "\n")
	}
	// Canonical path: non-S3 double encoding of the escaped path.
	var path strings.Builder
	for _, c := range []byte(r.URL.EscapedPath()) {
		if c == '/' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			path.WriteByte(c)
		} else {
			fmt.Fprintf(&path, "%%%02X", c)
		}
	}
	q := r.URL.Query()
	var qs []string
	for k, vs := range q {
		for _, v := range vs {
			qs = append(qs, strings.ReplaceAll(url.QueryEscape(k), "+", "%20")+"="+strings.ReplaceAll(url.QueryEscape(v), "+", "%20"))
		}
	}
	sort.Strings(qs)
	cr := strings.Join([]string{r.Method, path.String(), strings.Join(qs, "&"), ch.String(), strings.Join(signed, ";"), payload}, "\n")
	crh := sha256.Sum256([]byte(cr))
	sts := "AWS4-HMAC-SHA256\n" + amz + "\n" + scope + "\n" + hex.EncodeToString(crh[:])
	mac := func(k []byte, s string) []byte { m := hmac.New(sha256.New, k); m.Write([]byte(s)); return m.Sum(nil) }
	k := mac([]byte("AWS4"+creds.SecretAccessKey), amz[:8])
	for _, s := range []string{"us-west-2", "kinesisvideo", "aws4_request"} {
		k = mac(k, s)
	}
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+creds.AccessKeyID+"/"+scope+", SignedHeaders="+strings.Join(signed, ";")+", Signature="+hex.EncodeToString(mac(k, sts)))
}

func newPost(t *testing.T, target string, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080"+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}

func TestVerifyRequestClientStyles(t *testing.T) {
	body := []byte(`{"ChannelName":"test-channel"}`)
	tests := []struct {
		name    string
		target  string
		creds   sigv4.Credentials
		signed  []string
		prepare func(r *http.Request)
		payload string
	}{
		{"botocore", "/describeSignalingChannel", testCreds, []string{"content-type", "host", "x-amz-date"}, nil, ""},
		{"botocore token", "/describeSignalingChannel", withToken(testCreds, testToken), []string{"content-type", "host", "x-amz-date", "x-amz-security-token"}, nil, ""},
		{"c sdk unsigned token", "/describeSignalingChannel", withToken(testCreds, testToken), []string{"host", "user-agent", "x-amz-date"},
			func(r *http.Request) {
				r.Header.Set("User-Agent", "AWS-SDK-KVS-CPP-CLIENT/3.4.1 GCC/12  Linux/6.1 x86_64")
			}, ""},
		{"content-length signed", "/describeSignalingChannel", testCreds, []string{"content-length", "host", "x-amz-date"},
			func(r *http.Request) { r.Header.Set("Content-Length", fmt.Sprint(r.ContentLength)) }, ""},
		{"multi-valued header", "/describeSignalingChannel", testCreds, []string{"host", "x-amz-date", "x-custom"},
			func(r *http.Request) { r.Header.Add("X-Custom", "  a   b "); r.Header.Add("X-Custom", "c\t d") }, ""},
		{"date header", "/describeSignalingChannel", testCreds, []string{"date", "host"},
			func(r *http.Request) { r.Header.Set("Date", testDate.Format(http.TimeFormat)) }, ""},
		{"content sha signed", "/describeSignalingChannel", testCreds, []string{"host", "x-amz-content-sha256", "x-amz-date"},
			func(r *http.Request) {
				r.Header.Set("X-Amz-Content-Sha256", sha256Hex([]byte(`{"ChannelName":"test-channel"}`)))
			}, ""},
		{"unsigned payload", "/describeSignalingChannel", testCreds, []string{"host", "x-amz-content-sha256", "x-amz-date"},
			func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD") }, "UNSIGNED-PAYLOAD"},
		{"query and escaped path", "/v1/a%20b/c?z=1&a=%2F+x&a=0&flag", testCreds, []string{"host", "x-amz-date"}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newPost(t, tc.target, body)
			if tc.prepare != nil {
				tc.prepare(r)
			}
			signLike(t, r, body, tc.creds, testDate, tc.signed, tc.payload)
			v := staticVerifier(tc.creds, testDate)
			v.AllowUnsignedPayload = tc.payload == sigv4.UnsignedPayload
			res, cr, _, err := sigv4.VerifyRequestDebug(v, r, body)
			if err != nil {
				t.Fatalf("VerifyRequest: %v\ncanonical %q", err, cr)
			}
			if res.SessionToken != tc.creds.SessionToken || res.Region != "us-west-2" || !res.Date.Equal(testDate.Truncate(time.Second)) {
				t.Fatalf("result %+v", *res)
			}
			// Any change to a signed header value breaks it.
			for _, h := range tc.signed {
				if h == "host" || h == "x-amz-date" || h == "date" || h == "x-amz-content-sha256" || h == "content-length" {
					continue
				}
				r2 := r.Clone(r.Context())
				r2.Header.Set(h, r.Header.Get(h)+"!")
				if _, err := staticVerifier(tc.creds, testDate).VerifyRequest(r2, body); !errors.Is(err, sigv4.ErrSignatureMismatch) && !errors.Is(err, sigv4.ErrBadToken) {
					t.Fatalf("changed %s: got %v", h, err)
				}
			}
		})
	}
}

func TestSignRequestOverHTTP(t *testing.T) {
	for _, tok := range []string{"", testToken} {
		creds := withToken(testCreds, tok)
		now := time.Now()
		v := &sigv4.Verifier{Lookup: func(id string) (sigv4.Credentials, bool) { return creds, id == creds.AccessKeyID }}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			res, err := v.VerifyRequest(r, body)
			var se *sigv4.Error
			if errors.As(err, &se) {
				w.Header().Set("x-amzn-ErrorType", se.Code)
				http.Error(w, se.Message, se.HTTPStatus())
				return
			}
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprint(w, res.AccessKeyID, " ", res.SessionToken)
		}))
		for _, target := range []string{"/describeSignalingChannel", "/v1/get-ice-server-config?x=a%2Bb&y", "/a%2Fb/%7Ec"} {
			body := []byte(`{"ChannelARN":"` + testARN + `"}`)
			req, err := http.NewRequest(http.MethodPost, srv.URL+target, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if err := sigv4.SignRequest(req, body, creds, "us-west-2", now); err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(got) != creds.AccessKeyID+" "+tok {
				t.Fatalf("%s: %d %s", target, resp.StatusCode, got)
			}
			// Wrong body on the wire.
			req2, _ := http.NewRequest(http.MethodPost, srv.URL+target, bytes.NewReader(append(body, ' ')))
			req2.Header = req.Header.Clone()
			resp, err = srv.Client().Do(req2)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 403 || resp.Header.Get("x-amzn-ErrorType") != "InvalidSignatureException" {
				t.Fatalf("tampered body: %d %s", resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"))
			}
		}
		srv.Close()
	}
}

func TestSignRequestHeaders(t *testing.T) {
	body := []byte(`{}`)
	r := newPost(t, "/describeSignalingChannel", body)
	r.Header.Set("Authorization", "old")
	r.Header.Set("X-Amz-Security-Token", "old")
	if err := sigv4.SignRequest(r, body, testCreds, "us-west-2", testDate); err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("X-Amz-Date") != "20240102T030405Z" || r.Header.Get("X-Amz-Content-Sha256") != sha256Hex(body) ||
		r.Header.Get("X-Amz-Security-Token") != "" || len(r.Header.Values("Authorization")) != 1 {
		t.Fatalf("headers %v", r.Header)
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-west-2/kinesisvideo/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=") {
		t.Fatalf("authorization %s", r.Header.Get("Authorization"))
	}
	for _, bad := range []*http.Request{nil, {}, {URL: &url.URL{Path: "/"}}} {
		if err := sigv4.SignRequest(bad, nil, testCreds, "us-west-2", testDate); !errors.Is(err, sigv4.ErrInvalidInput) {
			t.Fatalf("SignRequest(%v) = %v", bad, err)
		}
	}
	if err := sigv4.SignRequest(newPost(t, "/", nil), nil, sigv4.Credentials{}, "us-west-2", testDate); !errors.Is(err, sigv4.ErrInvalidInput) {
		t.Fatalf("empty creds: %v", err)
	}
}

func TestVerifyRequestErrors(t *testing.T) {
	body := []byte(`{"ChannelName":"c"}`)
	signed := func(creds sigv4.Credentials) *http.Request {
		r := newPost(t, "/describeSignalingChannel", body)
		if err := sigv4.SignRequest(r, body, creds, "us-west-2", testDate); err != nil {
			t.Fatal(err)
		}
		return r
	}
	setAuth := func(v string) *http.Request {
		r := signed(testCreds)
		r.Header.Set("Authorization", v)
		return r
	}
	tests := []struct {
		name     string
		r        *http.Request
		body     []byte
		lookup   sigv4.Credentials
		sentinel error
		code     string
	}{
		{"no authorization", newPost(t, "/x", body), body, testCreds, sigv4.ErrMissingAuth, "MissingAuthenticationTokenException"},
		{"empty authorization", setAuth(" "), body, testCreds, sigv4.ErrMissingAuth, "MissingAuthenticationTokenException"},
		{"sigv2", setAuth("AWS AKIDEXAMPLE:abc"), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"sigv4a", setAuth("AWS4-ECDSA-P256-SHA256 Credential=a/b"), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"no signature", setAuth("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-west-2/kinesisvideo/aws4_request, SignedHeaders=host"), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"unknown component", setAuth("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-west-2/kinesisvideo/aws4_request, SignedHeaders=host, Signature=" + strings.Repeat("a", 64) + ", Foo=bar"), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"host unsigned", setAuth("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-west-2/kinesisvideo/aws4_request, SignedHeaders=x-amz-date, Signature=" + strings.Repeat("a", 64)), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"wrong service", setAuth("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-west-2/sts/aws4_request, SignedHeaders=host, Signature=" + strings.Repeat("a", 64)), body, testCreds, sigv4.ErrWrongService, "InvalidSignatureException"},
		{"scope date", setAuth("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-west-2/kinesisvideo/aws4_request, SignedHeaders=host, Signature=" + strings.Repeat("a", 64)), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"unknown key", signed(sigv4.Credentials{AccessKeyID: "AKIDOTHER", SecretAccessKey: "x"}), body, testCreds, sigv4.ErrUnknownAccessKey, "UnrecognizedClientException"},
		{"wrong secret", signed(sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "x"}), body, testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
		{"body differs from hash", signed(testCreds), []byte(`{}`), testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
		{"token missing", signed(testCreds), body, withToken(testCreds, "tok"), sigv4.ErrBadToken, "UnrecognizedClientException"},
		{"token differs", signed(withToken(testCreds, "other")), body, withToken(testCreds, "tok"), sigv4.ErrBadToken, "UnrecognizedClientException"},
		{"no date", func() *http.Request { r := signed(testCreds); r.Header.Del("X-Amz-Date"); return r }(), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"bad date", func() *http.Request { r := signed(testCreds); r.Header.Set("X-Amz-Date", "yesterday"); return r }(), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"two dates", func() *http.Request { r := signed(testCreds); r.Header.Add("X-Amz-Date", "20240102T030405Z"); return r }(), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"two authorizations", func() *http.Request { r := signed(testCreds); r.Header.Add("Authorization", "x"); return r }(), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"streaming", func() *http.Request {
			r := signed(testCreds)
			r.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
			return r
		}(), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"query added", func() *http.Request { r := signed(testCreds); r.URL.RawQuery = "a=b"; return r }(), body, testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
		{"bad query escape", func() *http.Request { r := signed(testCreds); r.URL.RawQuery = "a=%z"; return r }(), body, testCreds, sigv4.ErrMalformed, "IncompleteSignatureException"},
		{"method changed", func() *http.Request { r := signed(testCreds); r.Method = http.MethodPut; return r }(), body, testCreds, sigv4.ErrSignatureMismatch, "InvalidSignatureException"},
		{"skewed", func() *http.Request {
			r := newPost(t, "/x", body)
			_ = sigv4.SignRequest(r, body, testCreds, "us-west-2", testDate.Add(-6*time.Minute))
			return r
		}(), body, testCreds, sigv4.ErrClockSkew, "InvalidSignatureException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := staticVerifier(tc.lookup, testDate).VerifyRequest(tc.r, tc.body)
			wantErr(t, err, tc.sentinel, tc.code)
		})
	}
}

func TestVerifyRequestSkewMessage(t *testing.T) {
	body := []byte(`{}`)
	r := newPost(t, "/x", body)
	if err := sigv4.SignRequest(r, body, testCreds, "us-west-2", testDate.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err := staticVerifier(testCreds, testDate).VerifyRequest(r, body)
	var se *sigv4.Error
	if !errors.As(err, &se) || !errors.Is(err, sigv4.ErrClockSkew) {
		t.Fatalf("got %v", err)
	}
	// The KVS C SDK detects clock skew by this substring in a 403 body.
	const want = "Signature not yet current: 20240102T031405Z is still later than 20240102T030905Z (20240102T030405Z + 5 min.)"
	if se.Message != want || se.HTTPStatus() != 403 {
		t.Fatalf("message %q status %d", se.Message, se.HTTPStatus())
	}
}

func TestVerifyRequestTokenRules(t *testing.T) {
	body := []byte(`{}`)
	r := newPost(t, "/x", body)
	if err := sigv4.SignRequest(r, body, withToken(testCreds, "tok"), "us-west-2", testDate); err != nil {
		t.Fatal(err)
	}
	// Lookup without token: any token accepted and reported.
	res, err := staticVerifier(testCreds, testDate).VerifyRequest(r, body)
	if err != nil || res.SessionToken != "tok" {
		t.Fatalf("got %v, %v", res, err)
	}
	// Token header sent but unsigned (C SDK): must still match.
	r2 := newPost(t, "/x", body)
	signLike(t, r2, body, withToken(testCreds, "tok"), testDate, []string{"host", "x-amz-date"}, "")
	if _, err := staticVerifier(withToken(testCreds, "tok"), testDate).VerifyRequest(r2, body); err != nil {
		t.Fatal(err)
	}
	r2.Header.Set("X-Amz-Security-Token", "tok2")
	_, err = staticVerifier(withToken(testCreds, "tok"), testDate).VerifyRequest(r2, body)
	wantErr(t, err, sigv4.ErrBadToken, "UnrecognizedClientException")
}

func TestVerifierMisuse(t *testing.T) {
	var nilV *sigv4.Verifier
	for _, v := range []*sigv4.Verifier{nilV, {}} {
		if _, err := v.VerifyPresigned(&http.Request{URL: &url.URL{}}); err == nil {
			t.Fatal("VerifyPresigned without Lookup succeeded")
		}
		if _, err := v.VerifyRequest(&http.Request{URL: &url.URL{}}, nil); err == nil {
			t.Fatal("VerifyRequest without Lookup succeeded")
		}
	}
	v := staticVerifier(testCreds, testDate)
	for _, r := range []*http.Request{nil, {}} {
		_, err := v.VerifyPresigned(r)
		wantErr(t, err, sigv4.ErrMalformed, "IncompleteSignatureException")
		_, err = v.VerifyRequest(r, nil)
		wantErr(t, err, sigv4.ErrMalformed, "IncompleteSignatureException")
	}
	// A hand-built request with no header map and no host.
	_, err := v.VerifyRequest(&http.Request{URL: &url.URL{Path: "/"}}, nil)
	wantErr(t, err, sigv4.ErrMissingAuth, "MissingAuthenticationTokenException")
}

func TestErrorType(t *testing.T) {
	e := &sigv4.Error{Code: "IncompleteSignatureException", Message: "m", Err: sigv4.ErrMalformed}
	if e.HTTPStatus() != 400 || !errors.Is(e, sigv4.ErrMalformed) || errors.Is(e, sigv4.ErrExpired) {
		t.Fatal("IncompleteSignatureException")
	}
	if e.Error() == "" || !strings.Contains(e.Error(), "IncompleteSignatureException") {
		t.Fatalf("Error() = %q", e.Error())
	}
	wrapped := fmt.Errorf("ws upgrade: %w", &sigv4.Error{Code: "InvalidSignatureException", Err: sigv4.ErrClockSkew})
	var se *sigv4.Error
	if !errors.As(wrapped, &se) || se.HTTPStatus() != 403 || !errors.Is(wrapped, sigv4.ErrClockSkew) {
		t.Fatal("wrapped error")
	}
}

// ---- credentials redaction ----

func TestCredentialsRedaction(t *testing.T) {
	creds := withToken(testCreds, testToken)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("signing", "creds", creds, "ptr", &creds)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("signing", "creds", creds)
	out := buf.String()
	for _, s := range []string{
		out, creds.String(), creds.GoString(),
		fmt.Sprintf("%v|%+v|%#v|%s|%v", creds, creds, creds, creds, &creds),
		fmt.Sprint(creds.LogValue()),
	} {
		if strings.Contains(s, creds.SecretAccessKey) || strings.Contains(s, "wJalrXUtnFEMI") || strings.Contains(s, "IQoJb3JpZ2lu") {
			t.Fatalf("secret leaked: %s", s)
		}
		if !strings.Contains(s, "AKIDEXAMPLE") {
			t.Fatalf("access key id missing: %s", s)
		}
	}
	if !strings.Contains(out, "creds.secret_access_key=REDACTED") || !strings.Contains(out, "creds.session_token=REDACTED") {
		t.Fatalf("text handler output: %s", out)
	}
	if s := testCreds.String(); strings.Contains(s, "SessionToken") {
		t.Fatalf("empty token printed: %s", s)
	}
}

// ---- benchmarks ----

func BenchmarkPresignURL(b *testing.B) {
	params := map[string]string{"X-Amz-ChannelARN": testARN, "X-Amz-ClientId": "viewer-1"}
	creds := withToken(testCreds, testToken)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sigv4.PresignURL("wss://127.0.0.1:9443", params, creds, "us-west-2", testDate, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPresigned(b *testing.B) {
	creds := withToken(testCreds, testToken)
	u, err := sigv4.PresignURL("wss://127.0.0.1:9443", map[string]string{"X-Amz-ChannelARN": testARN, "X-Amz-ClientId": "viewer-1"}, creds, "us-west-2", testDate, 0)
	if err != nil {
		b.Fatal(err)
	}
	r := upgradeRequest(b, u, "127.0.0.1:9443")
	v := staticVerifier(creds, testDate)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyPresigned(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRequest(b *testing.B) {
	body := []byte(`{"ChannelName":"test-channel"}`)
	r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080/describeSignalingChannel", bytes.NewReader(body))
	if err := sigv4.SignRequest(r, body, testCreds, "us-west-2", testDate); err != nil {
		b.Fatal(err)
	}
	v := staticVerifier(testCreds, testDate)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyRequest(r, body); err != nil {
			b.Fatal(err)
		}
	}
}
