package sigv4

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxSkew is the clock skew a Verifier allows when MaxSkew is 0.
const DefaultMaxSkew = 5 * time.Minute

// errNoLookup is returned (not as *Error) by a Verifier without Lookup.
var errNoLookup = errors.New("sigv4: Verifier.Lookup is nil; set it to a function returning the credentials of an access key id")

// Verifier checks SigV4 signatures of incoming requests. The zero value is
// not usable: Lookup is required. A Verifier is safe for concurrent use if
// Lookup and Now are.
type Verifier struct {
	// Lookup returns the credentials of an access key id, and false if the key
	// is unknown. When the returned SessionToken is non-empty, the request
	// must carry exactly that token.
	Lookup func(accessKeyID string) (Credentials, bool)
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// MaxSkew is the largest allowed distance between X-Amz-Date and Now;
	// 0 (or negative) means DefaultMaxSkew (5 minutes).
	MaxSkew time.Duration
	// AllowUnsignedPayload makes VerifyRequest accept
	// "X-Amz-Content-Sha256: UNSIGNED-PAYLOAD" (the body then is not
	// covered by the signature). Kinesis Video Streams signs bodies, so by
	// default such requests are refused.
	AllowUnsignedPayload bool
}

// Result describes a request whose signature verified.
type Result struct {
	// AccessKeyID is the access key id from the credential scope.
	AccessKeyID string
	// Region is the region from the credential scope (not checked).
	Region string
	// Service is the service from the credential scope (always ServiceName).
	Service string
	// Date is the signing time (X-Amz-Date, or the Date header).
	Date time.Time
	// SessionToken is the X-Amz-Security-Token the request carried, if any.
	SessionToken string
	// Expires is X-Amz-Expires of a presigned URL; 0 for header-signed requests.
	Expires time.Duration
}

// debugInfo holds the intermediate values of a verification (for tests).
type debugInfo struct {
	canonicalRequest, stringToSign string
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) maxSkew() time.Duration {
	if v.MaxSkew > 0 {
		return v.MaxSkew
	}
	return DefaultMaxSkew
}

func (v *Verifier) usable() error {
	if v == nil || v.Lookup == nil {
		return errNoLookup
	}
	return nil
}

// VerifyPresigned verifies a presigned GET request (the WSS upgrade of
// ConnectAsMaster/ConnectAsViewer). It uses r.URL's raw query and escaped
// path and r.Host exactly as received (port included).
//
// The canonical query is rebuilt from the decoded parameters with strict
// RFC 3986 encoding; the payload hash is that of an empty body. The request
// must be within MaxSkew of Now and not older than X-Amz-Expires (1 to
// 604800 s). A non-nil error other than the Lookup configuration error is
// always an *Error.
func (v *Verifier) VerifyPresigned(r *http.Request) (*Result, error) {
	res, _, err := v.verifyPresigned(r)
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (v *Verifier) verifyPresigned(r *http.Request) (*Result, *debugInfo, error) {
	if err := v.usable(); err != nil {
		return nil, nil, err
	}
	if r == nil || r.URL == nil {
		return nil, nil, malformed("Request has no URL.")
	}
	pairs, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, nil, malformed("The query string is not validly percent-encoded.")
	}
	special := map[string]string{}
	signedPairs := pairs[:0:0]
	for _, p := range pairs {
		switch p.k {
		case qAlgorithm, qCredential, qDate, qExpires, qSignedHeaders, qSecurityToken, qSignature:
			if _, dup := special[p.k]; dup {
				return nil, nil, malformed("Query parameter '" + p.k + "' appears more than once.")
			}
			special[p.k] = p.v
		}
		if p.k != qSignature {
			signedPairs = append(signedPairs, p)
		}
	}
	_, hasAlg := special[qAlgorithm]
	_, hasCred := special[qCredential]
	_, hasSig := special[qSignature]
	if !hasAlg && !hasCred && !hasSig {
		return nil, nil, missingAuth()
	}
	var missing []string
	for _, k := range []string{qAlgorithm, qCredential, qDate, qExpires, qSignedHeaders, qSignature} {
		if _, ok := special[k]; !ok {
			missing = append(missing, "'"+k+"'")
		}
	}
	if len(missing) > 0 {
		return nil, nil, malformed("AWS query-string parameters must include " + strings.Join(missing, ", ") + ". Re-examine the query-string parameters.")
	}
	if special[qAlgorithm] != Algorithm {
		return nil, nil, malformed("X-Amz-Algorithm " + clip(special[qAlgorithm]) + " is not supported: use " + Algorithm + ".")
	}
	cred, e := parseCredential(special[qCredential])
	if e != nil {
		return nil, nil, e
	}
	if cred.service != ServiceName {
		return nil, nil, wrongService(cred.service)
	}
	amzDate := special[qDate]
	date, ok := parseAmzDate(amzDate)
	if !ok {
		return nil, nil, malformed("X-Amz-Date " + clip(amzDate) + " must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z'.")
	}
	if date.Format(scopeDateFormat) != cred.date {
		return nil, nil, malformed("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" + cred.date + "' != '" + date.Format(scopeDateFormat) + "'.")
	}
	expires, ok := parseExpires(special[qExpires])
	if !ok {
		return nil, nil, malformed("X-Amz-Expires must be a whole number of seconds from 1 to 604800, not " + clip(special[qExpires]) + ".")
	}
	signed, e := parseSignedHeaders(special[qSignedHeaders])
	if e != nil {
		return nil, nil, e
	}
	sig := special[qSignature]
	if !isSignatureHex(sig) {
		return nil, nil, malformed("X-Amz-Signature must be 64 hexadecimal characters.")
	}
	creds, ok := v.Lookup(cred.accessKeyID)
	if !ok {
		return nil, nil, unknownKey()
	}
	if e := v.checkTime(amzDate, date, expires); e != nil {
		return nil, nil, e
	}
	token, hasToken := special[qSecurityToken]
	if e := checkToken(creds, token, hasToken); e != nil {
		return nil, nil, e
	}
	ch, e := canonicalHeaders(r, signed)
	if e != nil {
		return nil, nil, e
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	cr := method + "\n" + path + "\n" + canonicalQuery(signedPairs) + "\n" + ch + "\n" +
		strings.Join(signed, ";") + "\n" + emptySHA256
	dbg, e := checkSignature(creds, cred, amzDate, cr, sig)
	if e != nil {
		return nil, dbg, e
	}
	return &Result{
		AccessKeyID:  cred.accessKeyID,
		Region:       cred.region,
		Service:      cred.service,
		Date:         date,
		SessionToken: token,
		Expires:      expires,
	}, dbg, nil
}

// VerifyRequest verifies a request signed with an Authorization header.
// body is the full request body, already read. Whatever SignedHeaders lists
// is honoured (host comes from r.Host, content-length from the header or
// r.ContentLength). X-Amz-Security-Token may be signed or not; when present
// it must match the token Lookup returned, if any. X-Amz-Content-Sha256, when
// sent, must match the body (UNSIGNED-PAYLOAD is refused unless
// AllowUnsignedPayload is set). SignedHeaders must include host. A non-nil
// error other than the Lookup configuration error is always an *Error.
func (v *Verifier) VerifyRequest(r *http.Request, body []byte) (*Result, error) {
	res, _, err := v.verifyRequest(r, body)
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (v *Verifier) verifyRequest(r *http.Request, body []byte) (*Result, *debugInfo, error) {
	if err := v.usable(); err != nil {
		return nil, nil, err
	}
	if r == nil || r.URL == nil {
		return nil, nil, malformed("Request has no URL.")
	}
	authz := headerValues(r.Header, "Authorization")
	if len(authz) == 0 || (len(authz) == 1 && strings.TrimSpace(authz[0]) == "") {
		return nil, nil, missingAuth()
	}
	if len(authz) > 1 {
		return nil, nil, malformed("The request has more than one Authorization header.")
	}
	a, e := parseAuthorization(authz[0])
	if e != nil {
		return nil, nil, e
	}
	if a.cred.service != ServiceName {
		return nil, nil, wrongService(a.cred.service)
	}
	amzDate, date, e := requestDate(r.Header)
	if e != nil {
		return nil, nil, e
	}
	if date.Format(scopeDateFormat) != a.cred.date {
		return nil, nil, malformed("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" + a.cred.date + "' != '" + date.Format(scopeDateFormat) + "'.")
	}
	creds, ok := v.Lookup(a.cred.accessKeyID)
	if !ok {
		return nil, nil, unknownKey()
	}
	if e := v.checkTime(amzDate, date, 0); e != nil {
		return nil, nil, e
	}
	tokens := headerValues(r.Header, "X-Amz-Security-Token")
	if len(tokens) > 1 {
		return nil, nil, malformed("The request has more than one X-Amz-Security-Token header.")
	}
	var token string
	if len(tokens) == 1 {
		token = tokens[0]
	}
	if e := checkToken(creds, token, len(tokens) == 1); e != nil {
		return nil, nil, e
	}
	payload := hashHex(body)
	switch hs := headerValues(r.Header, "X-Amz-Content-Sha256"); {
	case len(hs) > 1:
		return nil, nil, malformed("The request has more than one X-Amz-Content-Sha256 header.")
	case len(hs) == 0:
	case hs[0] == UnsignedPayload:
		if !v.AllowUnsignedPayload {
			return nil, nil, malformed("X-Amz-Content-Sha256 UNSIGNED-PAYLOAD is not accepted: this service requires a signed payload; sign the SHA-256 of the request body.")
		}
		payload = UnsignedPayload
	case strings.HasPrefix(hs[0], "STREAMING-"):
		return nil, nil, malformed("X-Amz-Content-Sha256 " + clip(hs[0]) + ": streaming payload signing is not supported.")
	case !strings.EqualFold(hs[0], payload):
		return nil, nil, &Error{
			Code:    CodeInvalidSignature,
			Message: "The provided 'x-amz-content-sha256' header does not match what was computed. Client computed " + clip(hs[0]) + ", server computed \"" + payload + "\".",
			Err:     ErrSignatureMismatch,
		}
	default:
		payload = hs[0]
	}
	ch, e := canonicalHeaders(r, a.signedHeaders)
	if e != nil {
		return nil, nil, e
	}
	qs, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, nil, malformed("The query string is not validly percent-encoded.")
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	cr := method + "\n" + canonicalURIDouble(r.URL.EscapedPath()) + "\n" + canonicalQuery(qs) + "\n" +
		ch + "\n" + strings.Join(a.signedHeaders, ";") + "\n" + payload
	dbg, e := checkSignature(creds, a.cred, amzDate, cr, a.signature)
	if e != nil {
		return nil, dbg, e
	}
	return &Result{
		AccessKeyID:  a.cred.accessKeyID,
		Region:       a.cred.region,
		Service:      a.cred.service,
		Date:         date,
		SessionToken: token,
	}, dbg, nil
}

// requestDate returns the signing time from X-Amz-Date, or else Date.
func requestDate(h http.Header) (string, time.Time, *Error) {
	switch ds := headerValues(h, "X-Amz-Date"); len(ds) {
	case 0:
	case 1:
		t, ok := parseAmzDate(ds[0])
		if !ok {
			return "", time.Time{}, malformed("X-Amz-Date " + clip(ds[0]) + " must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z'.")
		}
		return ds[0], t, nil
	default:
		return "", time.Time{}, malformed("The request has more than one X-Amz-Date header.")
	}
	ds := headerValues(h, "Date")
	if len(ds) != 1 {
		return "", time.Time{}, malformed("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	t, err := http.ParseTime(ds[0])
	if err != nil {
		return "", time.Time{}, malformed("Date header " + clip(ds[0]) + " is not a valid HTTP date.")
	}
	t = t.UTC()
	return t.Format(AmzDateFormat), t, nil
}

func parseExpires(s string) (time.Duration, bool) {
	if s == "" || len(s) > 6 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > int(maxPresignExpiry/time.Second) {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// checkTime enforces |now - date| <= MaxSkew and, for presigned URLs
// (expires > 0), now <= date + expires.
func (v *Verifier) checkTime(amzDate string, date time.Time, expires time.Duration) *Error {
	now := v.now().UTC()
	skew := v.maxSkew()
	nowS := now.Format(AmzDateFormat)
	if date.After(now.Add(skew)) {
		return &Error{
			Code: CodeInvalidSignature,
			Message: "Signature not yet current: " + amzDate + " is still later than " +
				now.Add(skew).Format(AmzDateFormat) + " (" + nowS + " + " + describeDuration(skew) + ")",
			Err: ErrClockSkew,
		}
	}
	if date.Before(now.Add(-skew)) {
		return &Error{
			Code: CodeInvalidSignature,
			Message: "Signature expired: " + amzDate + " is now earlier than " +
				now.Add(-skew).Format(AmzDateFormat) + " (" + nowS + " - " + describeDuration(skew) + ")",
			Err: ErrClockSkew,
		}
	}
	if expires > 0 && now.After(date.Add(expires)) {
		return &Error{
			Code: CodeInvalidSignature,
			Message: "Signature expired: " + amzDate + " is now earlier than " +
				now.Add(-expires).Format(AmzDateFormat) + " (" + nowS + " - " + describeDuration(expires) + ")",
			Err: ErrExpired,
		}
	}
	return nil
}

// describeDuration renders "5 min." or "299 sec." as in AWS messages.
func describeDuration(d time.Duration) string {
	switch {
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + " min."
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + " sec."
	default:
		return d.String() + "."
	}
}

// checkToken applies the session token rule: when the credentials have a
// token, the request must carry the same one.
func checkToken(creds Credentials, token string, present bool) *Error {
	if creds.SessionToken == "" {
		return nil
	}
	if !present || subtle.ConstantTimeCompare([]byte(token), []byte(creds.SessionToken)) != 1 {
		return badToken()
	}
	return nil
}

// checkSignature computes the expected signature and compares it in
// constant time with the provided one (case-insensitive hex).
func checkSignature(creds Credentials, cred credential, amzDate, canonicalRequest, provided string) (*debugInfo, *Error) {
	sts := stringToSign(amzDate, cred.scope(), canonicalRequest)
	want := signature(creds.SecretAccessKey, cred.date, cred.region, cred.service, sts)
	dbg := &debugInfo{canonicalRequest: canonicalRequest, stringToSign: sts}
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(provided))) != 1 {
		return dbg, mismatch("")
	}
	return dbg, nil
}

// canonicalHeaders renders "name:value\n" for every signed header, in the
// order of the SignedHeaders list.
func canonicalHeaders(r *http.Request, signed []string) (string, *Error) {
	var b strings.Builder
	for _, name := range signed {
		vals := signedHeaderValues(r, name)
		if len(vals) == 0 {
			return "", mismatch("signed header '" + name + "' is missing from the request")
		}
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range vals {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(canonicalHeaderValue(v))
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// signedHeaderValues returns the values of a signed header as the server
// received it, or nil if the request does not have it.
func signedHeaderValues(r *http.Request, name string) []string {
	switch name {
	case "host":
		h := r.Host
		if h == "" {
			h = r.URL.Host
		}
		if h == "" {
			return nil
		}
		return []string{h}
	case "content-length":
		if vs := headerValues(r.Header, name); len(vs) > 0 {
			return vs
		}
		if r.ContentLength >= 0 {
			return []string{strconv.FormatInt(r.ContentLength, 10)}
		}
		return nil
	case "transfer-encoding":
		if vs := headerValues(r.Header, name); len(vs) > 0 {
			return vs
		}
		if len(r.TransferEncoding) > 0 {
			return []string{strings.Join(r.TransferEncoding, ",")}
		}
		return nil
	}
	return headerValues(r.Header, name)
}

// headerValues looks a header up by canonical key, then case-insensitively
// (for maps built by hand with non-canonical keys). nil if absent.
func headerValues(h http.Header, name string) []string {
	if h == nil {
		return nil
	}
	if vs, ok := h[http.CanonicalHeaderKey(name)]; ok {
		return vs
	}
	var out []string
	for k, vs := range h {
		if strings.EqualFold(k, name) {
			out = append(out, vs...)
		}
	}
	return out
}
