package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"sort"
	"strings"
	"time"
)

const (
	// Algorithm is the only signing algorithm supported.
	Algorithm = "AWS4-HMAC-SHA256"
	// AmzDateFormat is the layout of X-Amz-Date values (ISO 8601 basic, UTC).
	AmzDateFormat = "20060102T150405Z"
	// UnsignedPayload is the X-Amz-Content-Sha256 value of an unsigned body.
	UnsignedPayload = "UNSIGNED-PAYLOAD"

	scopeDateFormat = "20060102"
	scopeTerminator = "aws4_request"
	// emptySHA256 is hex(sha256("")), the payload hash of presigned URLs.
	emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// maxPresignExpiry is the longest X-Amz-Expires SigV4 allows (7 days).
	maxPresignExpiry = 604800 * time.Second
)

// Query parameter names used by presigned URLs.
const (
	qAlgorithm     = "X-Amz-Algorithm"
	qCredential    = "X-Amz-Credential"
	qDate          = "X-Amz-Date"
	qExpires       = "X-Amz-Expires"
	qSignedHeaders = "X-Amz-SignedHeaders"
	qSecurityToken = "X-Amz-Security-Token"
	qSignature     = "X-Amz-Signature"
)

// uriEncode percent-encodes every byte outside the RFC 3986 unreserved set
// (A-Z a-z 0-9 - _ . ~) with upper-case hex, as SigV4 requires. With
// keepSlash, '/' is left as is (for paths).
func uriEncode(s string, keepSlash bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) && !(keepSlash && s[i] == '/') {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexUpper = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || (keepSlash && c == '/') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexUpper[c>>4])
		b.WriteByte(hexUpper[c&15])
	}
	return b.String()
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// pair is one decoded query parameter.
type pair struct{ k, v string }

// errBadQuery reports an undecodable query string.
var errBadQuery = errors.New("invalid percent-encoding in query string")

// parseQuery splits a raw query into decoded pairs in wire order. Like
// url.ParseQuery, '+' decodes to a space; unlike it, ';' is an ordinary
// character and a key without '=' gets an empty value.
func parseQuery(raw string) ([]pair, error) {
	var out []pair
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, errBadQuery
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, errBadQuery
		}
		out = append(out, pair{dk, dv})
	}
	return out, nil
}

// canonicalQuery encodes every pair strictly, sorts by encoded key then value
// and joins them with '&'.
func canonicalQuery(ps []pair) string {
	enc := make([]pair, len(ps))
	for i, p := range ps {
		enc[i] = pair{uriEncode(p.k, false), uriEncode(p.v, false)}
	}
	sort.Slice(enc, func(i, j int) bool {
		if enc[i].k != enc[j].k {
			return enc[i].k < enc[j].k
		}
		return enc[i].v < enc[j].v
	})
	var b strings.Builder
	for i, p := range enc {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// canonicalHeaderValue trims the value and collapses inner runs of
// whitespace to one space.
func canonicalHeaderValue(v string) string {
	return strings.Join(strings.Fields(v), " ")
}

// canonicalURIDouble is the canonical URI of a header-signed request to a
// non-S3 service: the escaped path as sent, escaped once more (slashes kept).
func canonicalURIDouble(escapedPath string) string {
	if escapedPath == "" {
		return "/"
	}
	return uriEncode(escapedPath, true)
}

// credentialScope returns "yyyymmdd/region/service/aws4_request".
func credentialScope(t time.Time, region, service string) string {
	return t.UTC().Format(scopeDateFormat) + "/" + region + "/" + service + "/" + scopeTerminator
}

// stringToSign builds the SigV4 string to sign from a canonical request.
func stringToSign(amzDate, scope, canonicalRequest string) string {
	h := sha256.Sum256([]byte(canonicalRequest))
	return Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// signingKey derives the SigV4 signing key for a scope.
func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, scopeTerminator)
}

// signature returns the lowercase hex signature of a string to sign.
func signature(secret, date, region, service, sts string) string {
	return hex.EncodeToString(hmacSHA256(signingKey(secret, date, region, service), sts))
}

// hashHex returns hex(sha256(b)).
func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
