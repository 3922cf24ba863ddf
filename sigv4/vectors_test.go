package sigv4_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/sigv4"
)

const vectorDir = "../testdata/vectors"

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatalf("read vector file: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parse time %q: %v", s, err)
	}
	return tm
}

// readRequest parses raw HTTP/1.1 bytes the way a server does.
func readRequest(t testing.TB, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("http.ReadRequest: %v\n%s", err, raw)
	}
	return r
}

// upgradeRequest is the GET a server receives for a WSS URL with the given Host header.
func upgradeRequest(t testing.TB, wssURL, host string) *http.Request {
	t.Helper()
	u, err := url.Parse(wssURL)
	if err != nil {
		t.Fatalf("parse %q: %v", wssURL, err)
	}
	return readRequest(t, "GET "+u.RequestURI()+" HTTP/1.1\r\nHost: "+host+
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
}

func staticVerifier(creds sigv4.Credentials, now time.Time) *sigv4.Verifier {
	return &sigv4.Verifier{
		Lookup: func(id string) (sigv4.Credentials, bool) {
			if id != creds.AccessKeyID {
				return sigv4.Credentials{}, false
			}
			return creds, true
		},
		Now: func() time.Time { return now },
	}
}

// ---- sigv4-wss-presign.json ----

type presignFile struct {
	Cases []struct {
		Name   string `json:"name"`
		Inputs struct {
			Region          string            `json:"region"`
			Service         string            `json:"service"`
			ChannelEndpoint string            `json:"channelEndpoint"`
			AccessKeyID     string            `json:"accessKeyId"`
			SecretAccessKey string            `json:"secretAccessKey"`
			SessionToken    *string           `json:"sessionToken"`
			Date            string            `json:"date"`
			QueryParams     map[string]string `json:"queryParams"`
		} `json:"inputs"`
		Intermediate struct {
			AmzDate          string `json:"amzDate"`
			CredentialScope  string `json:"credentialScope"`
			Host             string `json:"host"`
			CanonicalRequest string `json:"canonicalRequest"`
			StringToSign     string `json:"stringToSign"`
		} `json:"intermediate"`
		Output struct {
			Signature string `json:"signature"`
			SignedURL string `json:"signedURL"`
		} `json:"output"`
	} `json:"cases"`
	Negative []struct {
		Name            string `json:"name"`
		URL             string `json:"url"`
		HostHeader      string `json:"hostHeader"`
		SecretAccessKey string `json:"secretAccessKey"`
		ExpectValid     bool   `json:"expectValid"`
	} `json:"negative"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func TestPresignVectors(t *testing.T) {
	var f presignFile
	loadJSON(t, "sigv4-wss-presign.json", &f)
	if len(f.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			in := c.Inputs
			if in.Service != sigv4.ServiceName {
				t.Fatalf("vector service %q", in.Service)
			}
			creds := sigv4.Credentials{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey, SessionToken: str(in.SessionToken)}
			date := mustTime(t, in.Date)
			got, cr, sts, err := sigv4.PresignDebug(in.ChannelEndpoint, in.QueryParams, creds, in.Region, date, sigv4.DefaultPresignExpiry)
			if err != nil {
				t.Fatalf("PresignDebug: %v", err)
			}
			if cr != c.Intermediate.CanonicalRequest {
				t.Errorf("canonical request\n got %q\nwant %q", cr, c.Intermediate.CanonicalRequest)
			}
			if sts != c.Intermediate.StringToSign {
				t.Errorf("string to sign\n got %q\nwant %q", sts, c.Intermediate.StringToSign)
			}
			if got != c.Output.SignedURL {
				t.Errorf("signed URL\n got %s\nwant %s", got, c.Output.SignedURL)
			}
			pub, err := sigv4.PresignURL(in.ChannelEndpoint, in.QueryParams, creds, in.Region, date, sigv4.DefaultPresignExpiry)
			if err != nil || pub != got {
				t.Errorf("PresignURL = %q, %v; want %q", pub, err, got)
			}

			// Server side: the URL as received verifies.
			r := upgradeRequest(t, c.Output.SignedURL, c.Intermediate.Host)
			res, vcr, vsts, err := sigv4.VerifyPresignedDebug(staticVerifier(creds, date), r)
			if err != nil {
				t.Fatalf("VerifyPresigned: %v\ncanonical: %q", err, vcr)
			}
			if vcr != c.Intermediate.CanonicalRequest || vsts != c.Intermediate.StringToSign {
				t.Errorf("verifier canonical request %q / sts %q differ from the vector", vcr, vsts)
			}
			want := sigv4.Result{
				AccessKeyID: in.AccessKeyID, Region: in.Region, Service: sigv4.ServiceName,
				Date: date.UTC().Truncate(time.Second), SessionToken: str(in.SessionToken), Expires: 299 * time.Second,
			}
			if *res != want {
				t.Errorf("result %+v, want %+v", *res, want)
			}
			if got := res.Date.Format(sigv4.AmzDateFormat); got != c.Intermediate.AmzDate {
				t.Errorf("date %s, want %s", got, c.Intermediate.AmzDate)
			}
		})
	}
}

func TestPresignNegativeVectors(t *testing.T) {
	var f presignFile
	loadJSON(t, "sigv4-wss-presign.json", &f)
	if len(f.Negative) == 0 {
		t.Fatal("no negative cases")
	}
	for _, n := range f.Negative {
		t.Run(n.Name, func(t *testing.T) {
			u, err := url.Parse(n.URL)
			if err != nil {
				t.Fatal(err)
			}
			now, err := time.Parse(sigv4.AmzDateFormat, u.Query().Get("X-Amz-Date"))
			if err != nil {
				t.Fatal(err)
			}
			creds := sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: n.SecretAccessKey}
			_, err = staticVerifier(creds, now).VerifyPresigned(upgradeRequest(t, n.URL, n.HostHeader))
			if n.ExpectValid {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if !errors.Is(err, sigv4.ErrSignatureMismatch) {
				t.Fatalf("want ErrSignatureMismatch, got %v", err)
			}
			var se *sigv4.Error
			if !errors.As(err, &se) || se.Code != "InvalidSignatureException" || se.HTTPStatus() != http.StatusForbidden {
				t.Fatalf("want *Error InvalidSignatureException/403, got %#v", err)
			}
		})
	}
}

// ---- sigv4-control-plane-node.json ----

type controlPlaneFile struct {
	Cases []struct {
		Name   string `json:"name"`
		Inputs struct {
			Region          string  `json:"region"`
			AccessKeyID     string  `json:"accessKeyId"`
			SecretAccessKey string  `json:"secretAccessKey"`
			SessionToken    *string `json:"sessionToken"`
			Date            string  `json:"date"`
		} `json:"inputs"`
		Request struct {
			Method  string         `json:"method"`
			URL     string         `json:"url"`
			Path    string         `json:"path"`
			Headers map[string]any `json:"headers"`
			Body    string         `json:"body"`
		} `json:"request"`
		Intermediate struct {
			SignedHeaders    string `json:"signedHeaders"`
			PayloadSha256    string `json:"payloadSha256"`
			CanonicalRequest string `json:"canonicalRequest"`
			StringToSign     string `json:"stringToSign"`
		} `json:"intermediate"`
		Output struct {
			Authorization string `json:"authorization"`
		} `json:"output"`
	} `json:"cases"`
}

// rawRequest renders a request in HTTP/1.1 wire format.
func rawRequest(method, target string, headers [][2]string, body string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\n")
	for _, h := range headers {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

func TestControlPlaneVectors(t *testing.T) {
	var f controlPlaneFile
	loadJSON(t, "sigv4-control-plane-node.json", &f)
	if len(f.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			in := c.Inputs
			creds := sigv4.Credentials{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey, SessionToken: str(in.SessionToken)}
			date := mustTime(t, in.Date)
			build := func(mutate func(h map[string]string) (body string)) *http.Request {
				h := map[string]string{}
				for k, v := range c.Request.Headers {
					h[k] = fmt.Sprint(v) // Content-Length is a JSON number
				}
				body := c.Request.Body
				if mutate != nil {
					body = mutate(h)
				}
				var hs [][2]string
				for k, v := range h {
					hs = append(hs, [2]string{k, v})
				}
				return readRequest(t, rawRequest(c.Request.Method, c.Request.Path, hs, body))
			}
			v := staticVerifier(creds, date)

			r := build(nil)
			res, cr, sts, err := sigv4.VerifyRequestDebug(v, r, []byte(c.Request.Body))
			if err != nil {
				t.Fatalf("VerifyRequest: %v\ncanonical: %q", err, cr)
			}
			if cr != c.Intermediate.CanonicalRequest || sts != c.Intermediate.StringToSign {
				t.Errorf("canonical request\n got %q\nwant %q\nsts got %q\nwant %q", cr, c.Intermediate.CanonicalRequest, sts, c.Intermediate.StringToSign)
			}
			if res.AccessKeyID != in.AccessKeyID || res.Region != in.Region || res.Service != sigv4.ServiceName ||
				res.SessionToken != str(in.SessionToken) || !res.Date.Equal(date.Truncate(time.Second)) || res.Expires != 0 {
				t.Errorf("result %+v", *res)
			}

			// Client side: SignRequest signs the same header set as aws-sdk v2 in node.
			sr, err := http.NewRequest(c.Request.Method, c.Request.URL, strings.NewReader(c.Request.Body))
			if err != nil {
				t.Fatal(err)
			}
			sr.Header.Set("Content-Type", "application/json")
			if err := sigv4.SignRequest(sr, []byte(c.Request.Body), creds, in.Region, date); err != nil {
				t.Fatal(err)
			}
			if got := sr.Header.Get("Authorization"); got != c.Output.Authorization {
				t.Errorf("SignRequest Authorization\n got %s\nwant %s", got, c.Output.Authorization)
			}

			// One byte of the body changed.
			body := []byte(c.Request.Body)
			body[len(body)/2] ^= 1
			if _, err := v.VerifyRequest(build(func(map[string]string) string { return string(body) }), body); !errors.Is(err, sigv4.ErrSignatureMismatch) {
				t.Errorf("changed body: want ErrSignatureMismatch, got %v", err)
			}
			// Same change, X-Amz-Content-Sha256 updated to match: the signature must catch it.
			if _, err := v.VerifyRequest(build(func(h map[string]string) string {
				h["X-Amz-Content-Sha256"] = sha256Hex(body)
				return string(body)
			}), body); !errors.Is(err, sigv4.ErrSignatureMismatch) {
				t.Errorf("changed body and hash: want ErrSignatureMismatch, got %v", err)
			}
			// Wrong secret.
			wrong := creds
			wrong.SecretAccessKey = strings.ToLower(creds.SecretAccessKey)
			if _, err := staticVerifier(wrong, date).VerifyRequest(build(nil), []byte(c.Request.Body)); !errors.Is(err, sigv4.ErrSignatureMismatch) {
				t.Errorf("wrong secret: want ErrSignatureMismatch, got %v", err)
			}
			// Server clock 6 minutes ahead, then 6 minutes behind.
			for _, d := range []time.Duration{6 * time.Minute, -6 * time.Minute} {
				_, err := staticVerifier(creds, date.Add(d)).VerifyRequest(build(nil), []byte(c.Request.Body))
				if !errors.Is(err, sigv4.ErrClockSkew) {
					t.Errorf("skew %v: want ErrClockSkew, got %v", d, err)
				}
			}
			// X-Amz-Date header shifted by 6 minutes.
			if _, err := v.VerifyRequest(build(func(h map[string]string) string {
				h["X-Amz-Date"] = date.Add(6 * time.Minute).UTC().Format(sigv4.AmzDateFormat)
				return c.Request.Body
			}), []byte(c.Request.Body)); !errors.Is(err, sigv4.ErrClockSkew) {
				t.Errorf("shifted X-Amz-Date: want ErrClockSkew, got %v", err)
			}
			// Host changed.
			if _, err := v.VerifyRequest(build(func(h map[string]string) string {
				h["Host"] += "0"
				return c.Request.Body
			}), []byte(c.Request.Body)); !errors.Is(err, sigv4.ErrSignatureMismatch) {
				t.Errorf("changed host: want ErrSignatureMismatch, got %v", err)
			}
		})
	}
}

// ---- browser-capture-*.json ----

type browserFile struct {
	Inputs struct {
		AccessKeyID     string  `json:"accessKeyId"`
		SecretAccessKey string  `json:"secretAccessKey"`
		SessionToken    *string `json:"sessionToken"`
		Region          string  `json:"region"`
		Date            string  `json:"date"`
	} `json:"inputs"`
	ControlPlane []struct {
		Operation string `json:"operation"`
		Request   struct {
			Method     string      `json:"method"`
			URL        string      `json:"url"`
			RawHeaders [][2]string `json:"rawHeaders"`
			Body       string      `json:"body"`
		} `json:"request"`
		SigV4 struct {
			Valid            bool   `json:"valid"`
			CanonicalRequest string `json:"canonicalRequest"`
			StringToSign     string `json:"stringToSign"`
		} `json:"sigv4"`
	} `json:"controlPlane"`
	Websockets []struct {
		Role          string      `json:"role"`
		RequestTarget string      `json:"requestTarget"`
		RawHeaders    [][2]string `json:"rawHeaders"`
		SigV4         struct {
			Valid            bool   `json:"valid"`
			CanonicalRequest string `json:"canonicalRequest"`
		} `json:"sigv4"`
	} `json:"websockets"`
}

func TestBrowserCaptureVectors(t *testing.T) {
	for _, name := range []string{"browser-capture-fixed-time.json", "browser-capture-session-token.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			var f browserFile
			loadJSON(t, name, &f)
			if len(f.ControlPlane) == 0 || len(f.Websockets) == 0 {
				t.Fatal("vector file has no requests")
			}
			in := f.Inputs
			creds := sigv4.Credentials{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey, SessionToken: str(in.SessionToken)}
			v := staticVerifier(creds, mustTime(t, in.Date))
			for i, c := range f.ControlPlane {
				r := readRequest(t, rawRequest(c.Request.Method, c.Request.URL, c.Request.RawHeaders, c.Request.Body))
				res, cr, sts, err := sigv4.VerifyRequestDebug(v, r, []byte(c.Request.Body))
				if c.SigV4.Valid != (err == nil) {
					t.Errorf("controlPlane[%d] %s: valid=%v, got err %v\ncanonical %q", i, c.Operation, c.SigV4.Valid, err, cr)
					continue
				}
				if cr != c.SigV4.CanonicalRequest || sts != c.SigV4.StringToSign {
					t.Errorf("controlPlane[%d] canonical request\n got %q\nwant %q", i, cr, c.SigV4.CanonicalRequest)
				}
				if err == nil && res.SessionToken != creds.SessionToken {
					t.Errorf("controlPlane[%d] token %q", i, res.SessionToken)
				}
				// The browser's signed x-amz-user-agent must be honoured.
				r = readRequest(t, rawRequest(c.Request.Method, c.Request.URL, c.Request.RawHeaders, c.Request.Body))
				r.Header.Set("X-Amz-User-Agent", r.Header.Get("X-Amz-User-Agent")+"x")
				if _, err := v.VerifyRequest(r, []byte(c.Request.Body)); !errors.Is(err, sigv4.ErrSignatureMismatch) {
					t.Errorf("controlPlane[%d] changed x-amz-user-agent: want mismatch, got %v", i, err)
				}
			}
			for i, w := range f.Websockets {
				r := readRequest(t, rawRequest("GET", w.RequestTarget, w.RawHeaders, ""))
				res, cr, _, err := sigv4.VerifyPresignedDebug(v, r)
				if w.SigV4.Valid != (err == nil) {
					t.Errorf("websockets[%d] %s: valid=%v, got err %v", i, w.Role, w.SigV4.Valid, err)
					continue
				}
				if cr != w.SigV4.CanonicalRequest {
					t.Errorf("websockets[%d] canonical request\n got %q\nwant %q", i, cr, w.SigV4.CanonicalRequest)
				}
				if err == nil && (res.Expires != sigv4.DefaultPresignExpiry || res.SessionToken != creds.SessionToken) {
					t.Errorf("websockets[%d] result %+v", i, *res)
				}
			}
		})
	}
}
