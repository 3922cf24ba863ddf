package sigv4

import (
	"net/http"
	"time"
)

// PresignDebug is PresignURL that also returns the canonical request and the
// string to sign.
func PresignDebug(endpoint string, params map[string]string, creds Credentials, region string, now time.Time, expires time.Duration) (url, canonicalRequest, sts string, err error) {
	p, err := presign(endpoint, params, creds, region, now, expires)
	return p.url, p.canonicalRequest, p.stringToSign, err
}

// VerifyPresignedDebug is VerifyPresigned that also returns the canonical
// request and string to sign it computed (empty if it got no that far).
func VerifyPresignedDebug(v *Verifier, r *http.Request) (res *Result, canonicalRequest, sts string, err error) {
	res, dbg, err := v.verifyPresigned(r)
	if dbg != nil {
		canonicalRequest, sts = dbg.canonicalRequest, dbg.stringToSign
	}
	return res, canonicalRequest, sts, err
}

// VerifyRequestDebug is VerifyRequest that also returns the canonical request
// and string to sign it computed.
func VerifyRequestDebug(v *Verifier, r *http.Request, body []byte) (res *Result, canonicalRequest, sts string, err error) {
	res, dbg, err := v.verifyRequest(r, body)
	if dbg != nil {
		canonicalRequest, sts = dbg.canonicalRequest, dbg.stringToSign
	}
	return res, canonicalRequest, sts, err
}

// SignRequestPayload is SignRequest with an explicit payload hash (for
// UNSIGNED-PAYLOAD); it returns the canonical request.
func SignRequestPayload(r *http.Request, payload string, creds Credentials, region string, now time.Time) (string, error) {
	return signRequest(r, payload, creds, region, now)
}

// ParseAuthorization parses an Authorization header and, on success, returns
// it re-rendered in canonical form.
func ParseAuthorization(h string) (string, error) {
	a, e := parseAuthorization(h)
	if e != nil {
		return "", e
	}
	return a.format(), nil
}
