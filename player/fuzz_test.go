package player

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsrtc/kvsrtc/control"
)

// FuzzSafeNext: after signing in with any next, the Location the server
// sends leads the browser back to this site, as a browser parses it (the
// WHATWG oracle browserOrigin, not a copy of safeNext's rules).
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"", "/", "/grid?channel=a", "//evil.example", "/\\evil", "https://evil", "/a\r\nb", "relative",
		"/\t/evil.example", "/%09/evil.example", "http:/\\evil.example", "/\x00/x"} {
		f.Add(s)
	}
	s := testServer(f, Config{})
	f.Fuzz(func(t *testing.T, next string) {
		loc := loginRedirect(t, s, next)
		if o := browserOrigin(playerBase, loc); o != "http://player.example:8080" {
			t.Fatalf("next %q: Location %q takes the browser to %s", next, loc, o)
		}
	})
}

func FuzzHandshakeError(f *testing.F) {
	f.Add(400, "ClientLimitExceededException", `{"message":"The channel already has the maximum number of viewers connected."}`)
	f.Add(403, "AccessDeniedException:http://internal", `{"Message":"Signature expired: 20260101T000000Z is now earlier than ..."}`)
	f.Add(404, "", `{"__type":"com.amazonaws#ResourceNotFoundException","message":"not found"}`)
	f.Add(500, "", `not json`)
	f.Fuzz(func(t *testing.T, status int, header, body string) {
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		resp.Header.Set("X-Amzn-ErrorType", header)
		code, _ := awsError(resp, []byte(body))
		if strings.ContainsAny(code, ":,#") {
			t.Fatalf("code %q keeps its decoration", code)
		}
		if c := handshakeCause(status, code, body); c == "" {
			t.Fatal("no cause")
		}
	})
}

// FuzzAPI sends arbitrary bodies to the JSON API: every answer is JSON or
// empty, with a status the API documents, and nothing panics. The control
// plane is a closed port on loopback, so channel lookups fail fast.
func FuzzAPI(f *testing.F) {
	for _, s := range []string{
		`{"channel":"cam"}`, `{"channel":"cam","renew":"kvsrtc-web-0011223344556677"}`, `{"channel":"nope"}`,
		`{"channel":"cam","cause":"no-answer","stage":"answer","attempts":3,"elapsedMs":7000}`,
		`{"channel":"cam","event":"first-frame","ms":120}`, `{"channel":"cam","event":"reconnect","cause":"x"}`,
		`{`, `[]`, `null`, `{"channel":123}`, strings.Repeat(`{"a":`, 100),
	} {
		f.Add("/api/session", s)
		f.Add("/api/diagnose", s)
		f.Add("/api/report", s)
	}
	ctl, err := control.New(context.Background(), control.Config{
		Region: "us-west-2", EndpointURL: "http://127.0.0.1:1", STUNURL: control.STUNNone,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "fuzz-secret-fuzz-secret", ""),
	})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Control: ctl, Channels: []string{"cam"}, Auth: "fuzz-token-1234567", SessionBurst: 1 << 20, SessionRate: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	s.reports = newLimiter(1<<20, 1<<20, time.Now)
	// A resolved channel, so that only ICE fetches reach the (closed) port.
	s.chans.infos["cam"] = &channelInfo{
		arn: "arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam/1700000000000",
		ep:  control.Endpoints{WSS: "wss://127.0.0.1:1/ws/viewer", HTTPS: "http://127.0.0.1:1"}, resolved: time.Now().Add(time.Hour),
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		if path != "/api/session" && path != "/api/diagnose" && path != "/api/report" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer fuzz-token-1234567")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusNoContent, http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound,
			http.StatusTooManyRequests, http.StatusRequestEntityTooLarge, http.StatusBadGateway, http.StatusServiceUnavailable,
			http.StatusInternalServerError:
		default:
			t.Fatalf("%s %q: status %d", path, body, w.Code)
		}
		if b := bytes.TrimSpace(w.Body.Bytes()); len(b) > 0 && b[0] != '{' {
			t.Fatalf("%s %q: body %q is not a JSON object", path, body, b)
		}
		if strings.Contains(w.Body.String(), "fuzz-secret") {
			t.Fatal("the secret key leaked")
		}
	})
}
