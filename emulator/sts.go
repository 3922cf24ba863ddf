package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// The emulator answers the one STS call a client needs to ask "who am I":
// GetCallerIdentity (AWS query protocol, POST / with a form body, signed
// with SigV4 for service "sts"). kvsrtc doctor uses it, with the STS
// client's endpoint set to the emulator's URL, the way it uses
// sts.amazonaws.com against AWS.
//
// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html

const (
	stsService   = "sts"
	stsVersion   = "2011-06-15"
	stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"
	stsUserName  = "kvsrtc-local"
	stsMaxBody   = 64 << 10
	amzDateForm  = "20060102T150405Z"
)

// isSTS reports whether r is an STS query-protocol call: POST / with a
// form body (the control plane never uses "/").
func isSTS(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/" &&
		strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "application/x-www-form-urlencoded")
}

// stsError is an STS error answer.
type stsError struct {
	status  int
	code    string
	message string
}

func (s *Server) serveSTS(w http.ResponseWriter, r *http.Request, reqID string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, stsMaxBody))
	var e *stsError
	if err != nil {
		e = &stsError{http.StatusBadRequest, "MalformedInput", "Could not read the request body."}
	}
	var form url.Values
	if e == nil {
		if form, err = url.ParseQuery(string(body)); err != nil {
			e = &stsError{http.StatusBadRequest, "MalformedInput", "The request body is not a valid form."}
		}
	}
	var akid string
	if e == nil {
		akid, e = s.verifySTS(r, body)
	}
	if e == nil {
		switch {
		case form.Get("Action") != "GetCallerIdentity":
			e = &stsError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s; the local service answers GetCallerIdentity only.", form.Get("Action"), form.Get("Version"))}
		case form.Get("Version") != "" && form.Get("Version") != stsVersion:
			e = &stsError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Version %s is not supported; use %s.", form.Get("Version"), stsVersion)}
		}
	}
	w.Header().Set("Content-Type", "text/xml")
	if e != nil {
		s.log.Info("request rejected", "operation", "GetCallerIdentity", "status", e.status, "code", e.code, "reason", e.message, "remote", r.RemoteAddr, "request_id", reqID)
		w.WriteHeader(e.status)
		_, _ = fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
			stsNamespace, e.code, xmlEscape(e.message), reqID)
		return
	}
	partition := kvsproto.PartitionForRegion(s.cfg.Region)
	s.log.Debug("request", "operation", "GetCallerIdentity", "remote", r.RemoteAddr, "request_id", reqID)
	_, _ = fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="%s"><GetCallerIdentityResult><Arn>arn:%s:iam::%s:user/%s</Arn><UserId>%s</UserId><Account>%s</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
		stsNamespace, partition, s.cfg.AccountID, stsUserName, xmlEscape(akid), s.cfg.AccountID, reqID)
}

func xmlEscape(v string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(v))
	return b.String()
}

// verifySTS checks the header SigV4 signature of an STS request (the
// sigv4 package verifies the kinesisvideo signing name only). It returns
// the access key id.
func (s *Server) verifySTS(r *http.Request, body []byte) (string, *stsError) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return "", &stsError{http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token"}
	}
	algo, rest, _ := strings.Cut(authz, " ")
	if algo != "AWS4-HMAC-SHA256" {
		return "", &stsError{http.StatusBadRequest, "IncompleteSignature", "Unsupported signing algorithm " + algo}
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || fields["SignedHeaders"] == "" || fields["Signature"] == "" || scope[4] != "aws4_request" {
		return "", &stsError{http.StatusBadRequest, "IncompleteSignature", "Authorization header requires Credential, SignedHeaders and Signature."}
	}
	akid, day, region, service := scope[0], scope[1], scope[2], scope[3]
	if service != stsService {
		return "", &stsError{http.StatusForbidden, "SignatureDoesNotMatch", "Credential should be scoped to correct service: 'sts'."}
	}
	if region != s.cfg.Region && region != "us-east-1" {
		return "", &stsError{http.StatusForbidden, "SignatureDoesNotMatch", fmt.Sprintf("Credential should be scoped to a valid region ('%s' or 'us-east-1').", s.cfg.Region)}
	}
	creds, ok := s.lookupCredentials(akid)
	if !ok {
		return "", &stsError{http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid."}
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(amzDateForm, amzDate)
	if err != nil || t.Format("20060102") != day {
		return "", &stsError{http.StatusBadRequest, "IncompleteSignature", "X-Amz-Date is missing or does not match the credential scope."}
	}
	now := s.now()
	switch {
	case t.Before(now.Add(-5 * time.Minute)):
		return "", &stsError{http.StatusForbidden, "SignatureDoesNotMatch", fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 5 min.)",
			amzDate, now.Add(-5*time.Minute).UTC().Format(amzDateForm), now.UTC().Format(amzDateForm))}
	case t.After(now.Add(5 * time.Minute)):
		return "", &stsError{http.StatusForbidden, "SignatureDoesNotMatch", fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + 5 min.)",
			amzDate, now.Add(5*time.Minute).UTC().Format(amzDateForm), now.UTC().Format(amzDateForm))}
	}
	if creds.SessionToken != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Amz-Security-Token")), []byte(creds.SessionToken)) != 1 {
		return "", &stsError{http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid."}
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	if !slices.Contains(signed, "host") {
		return "", &stsError{http.StatusBadRequest, "IncompleteSignature", "'Host' must be a 'SignedHeader' in the AWS Authorization."}
	}
	var ch strings.Builder
	for _, name := range signed {
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = r.Header.Values("Content-Length")
			if len(vals) == 0 {
				vals = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		default:
			vals = r.Header.Values(name)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		ch.WriteString(name + ":" + strings.Join(vals, ",") + "\n")
	}
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cq []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			cq = append(cq, strictEscape(k)+"="+strictEscape(v))
		}
	}
	sum := sha256.Sum256(body)
	cr := strings.Join([]string{r.Method, "/", strings.Join(cq, "&"), ch.String(), fields["SignedHeaders"], hex.EncodeToString(sum[:])}, "\n")
	crSum := sha256.Sum256([]byte(cr))
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + strings.Join(scope[1:], "/") + "\n" + hex.EncodeToString(crSum[:])
	key := []byte("AWS4" + creds.SecretAccessKey)
	for _, part := range []string{day, region, service, "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	want := hex.EncodeToString(hmacSHA256(key, sts))
	if subtle.ConstantTimeCompare([]byte(want), []byte(fields["Signature"])) != 1 {
		return "", &stsError{http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."}
	}
	return akid, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// strictEscape percent-encodes everything but the RFC 3986 unreserved
// characters, as SigV4 requires.
func strictEscape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
