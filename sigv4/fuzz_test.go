package sigv4_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/sigv4"
)

// fuzzVerifier accepts the vector keys and has a fixed clock at the vectors' date.
func fuzzVerifier() *sigv4.Verifier {
	return &sigv4.Verifier{
		Lookup: func(id string) (sigv4.Credentials, bool) {
			switch id {
			case "AKIDEXAMPLE":
				return testCreds, true
			case "AKIA4F7WJQR7FMMWMNXI":
				return sigv4.Credentials{AccessKeyID: id, SecretAccessKey: "FakeSecretKey", SessionToken: "FakeSessionToken"}, true
			}
			return sigv4.Credentials{}, false
		},
		Now: func() time.Time { return testDate },
	}
}

// checkVerifyErr fails unless err is nil or a *sigv4.Error wrapping a sentinel.
func checkVerifyErr(t *testing.T, res *sigv4.Result, err error) {
	t.Helper()
	if err == nil {
		if res == nil {
			t.Fatal("nil result without error")
		}
		return
	}
	var se *sigv4.Error
	if !errors.As(err, &se) || se.Err == nil || se.Code == "" || se.Message == "" {
		t.Fatalf("error %#v is not a complete *sigv4.Error", err)
	}
	if res != nil {
		t.Fatal("result with error")
	}
}

func FuzzVerifyPresigned(f *testing.F) {
	var pf presignFile
	loadJSON(f, "sigv4-wss-presign.json", &pf)
	for _, c := range pf.Cases {
		u, err := url.Parse(c.Output.SignedURL)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(u.EscapedPath(), u.RawQuery, c.Intermediate.Host)
	}
	for _, n := range pf.Negative {
		u, _ := url.Parse(n.URL)
		f.Add(u.EscapedPath(), u.RawQuery, n.HostHeader)
	}
	f.Add("/", "X-Amz-Signature=&X-Amz-Credential=%%%", "")
	f.Add("", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a/b/c/d/e&X-Amz-Date=x&X-Amz-Expires=1&X-Amz-SignedHeaders=;&X-Amz-Signature=0", "h")
	f.Fuzz(func(t *testing.T, path, rawQuery, host string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: rawQuery}, Host: host, Header: http.Header{}}
		res, err := fuzzVerifier().VerifyPresigned(r)
		checkVerifyErr(t, res, err)
	})
}

func FuzzVerifyRequest(f *testing.F) {
	var cf controlPlaneFile
	loadJSON(f, "sigv4-control-plane-node.json", &cf)
	for _, c := range cf.Cases {
		f.Add(c.Request.Path, "", c.Request.Headers["Authorization"].(string), c.Request.Headers["X-Amz-Date"].(string),
			c.Request.Headers["X-Amz-Content-Sha256"].(string), c.Request.Headers["Host"].(string), c.Request.Body)
	}
	f.Add("/a%zz", "a=%zz&&=&b", "AWS4-HMAC-SHA256 ,,Credential=/,Signature=", "", "UNSIGNED-PAYLOAD", "", "")
	f.Fuzz(func(t *testing.T, path, rawQuery, authz, date, contentSHA, host, body string) {
		h := http.Header{}
		h.Set("Authorization", authz)
		if date != "" {
			h.Set("X-Amz-Date", date)
		}
		if contentSHA != "" {
			h.Set("X-Amz-Content-Sha256", contentSHA)
		}
		r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: path, RawQuery: rawQuery}, Host: host, Header: h, ContentLength: int64(len(body))}
		res, err := fuzzVerifier().VerifyRequest(r, []byte(body))
		checkVerifyErr(t, res, err)
	})
}

func FuzzParseAuthorization(f *testing.F) {
	var cf controlPlaneFile
	loadJSON(f, "sigv4-control-plane-node.json", &cf)
	for _, c := range cf.Cases {
		f.Add(c.Output.Authorization)
	}
	for _, s := range []string{
		"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-west-2/kinesisvideo/aws4_request,SignedHeaders=host;x-amz-date,Signature=" + strings.Repeat("a", 64),
		"AWS4-HMAC-SHA256\tSignature=" + strings.Repeat("F", 64) + " SignedHeaders=Host Credential=A/20240102/r/s/aws4_request",
		"AWS4-HMAC-SHA256,Credential=x",
		"AWS AKID:sig",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		canon, err := sigv4.ParseAuthorization(h)
		if err != nil {
			var se *sigv4.Error
			if !errors.As(err, &se) || !errors.Is(err, sigv4.ErrMalformed) || se.HTTPStatus() != http.StatusBadRequest {
				t.Fatalf("parse error %#v is not a malformed *Error", err)
			}
			return
		}
		again, err := sigv4.ParseAuthorization(canon)
		if err != nil || again != canon {
			t.Fatalf("canonical form %q does not re-parse to itself: %q, %v", canon, again, err)
		}
	})
}
