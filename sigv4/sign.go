package sigv4

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ServiceName is the SigV4 signing name of every KVS API, including the
// signaling channel endpoints and the WSS data plane.
const ServiceName = "kinesisvideo"

// DefaultPresignExpiry is the X-Amz-Expires the official JS SDK uses for
// signaling URLs (hard-coded "299").
const DefaultPresignExpiry = 299 * time.Second

// ErrInvalidInput is wrapped by every error PresignURL and SignRequest return
// for unusable arguments (bad endpoint, empty credentials, ...).
var ErrInvalidInput = errors.New("sigv4: invalid signing input")

func inputErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidInput}, args...)...)
}

// presigned is the result of presign with the intermediate values.
type presigned struct {
	url, canonicalRequest, stringToSign, signature string
}

// PresignURL returns the presigned WSS URL exactly as the official KVS WebRTC
// JS SDK's SigV4RequestSigner.getSignedURL builds it.
//
// endpoint is "wss://host[:port][/path]" (ws, https and http are accepted
// too; the scheme is kept in the result). It must not contain a query or a
// fragment. The host is signed exactly as written, including the port. The
// path defaults to "/" and is used as is, so it must already be a valid
// escaped URI path.
//
// params are the extra query parameters (X-Amz-ChannelARN, X-Amz-ClientId);
// they must not use the names the signer sets itself. expires is rounded
// down to whole seconds; 0 means DefaultPresignExpiry; it must be at most
// 7 days. now is truncated to the second (in UTC).
//
// The query is sorted by key and the signature is sorted in with the rest,
// as the JS SDK does. Values are encoded with strict RFC 3986 encoding, which
// equals JS encodeURIComponent except for the characters !'()* (JS leaves
// them bare, which no SigV4 verifier would accept); KVS ARNs, client ids and
// session tokens never contain them.
func PresignURL(endpoint string, params map[string]string, creds Credentials, region string, now time.Time, expires time.Duration) (string, error) {
	p, err := presign(endpoint, params, creds, region, now, expires)
	if err != nil {
		return "", err
	}
	return p.url, nil
}

var reservedParams = []string{qAlgorithm, qCredential, qDate, qExpires, qSignedHeaders, qSecurityToken, qSignature}

func presign(endpoint string, params map[string]string, creds Credentials, region string, now time.Time, expires time.Duration) (presigned, error) {
	if err := checkSigningInputs(creds, region); err != nil {
		return presigned{}, err
	}
	if expires == 0 {
		expires = DefaultPresignExpiry
	}
	secs := int64(expires / time.Second)
	if secs < 1 || expires > maxPresignExpiry {
		return presigned{}, inputErr("expiry %v out of range: use 1s to 168h (604800 s)", expires)
	}
	scheme, host, path, err := splitEndpoint(endpoint)
	if err != nil {
		return presigned{}, err
	}
	for k := range params {
		if k == "" {
			return presigned{}, inputErr("query parameter with an empty name")
		}
		for _, r := range reservedParams {
			if strings.EqualFold(k, r) {
				return presigned{}, inputErr("query parameter %q is set by the signer; remove it from params", k)
			}
		}
	}

	t := now.UTC().Truncate(time.Second)
	amzDate := t.Format(AmzDateFormat)
	scope := credentialScope(t, region, ServiceName)

	ps := make([]pair, 0, len(params)+7)
	for k, v := range params {
		ps = append(ps, pair{k, v})
	}
	ps = append(ps,
		pair{qAlgorithm, Algorithm},
		pair{qCredential, creds.AccessKeyID + "/" + scope},
		pair{qDate, amzDate},
		pair{qExpires, strconv.FormatInt(secs, 10)},
		pair{qSignedHeaders, "host"},
	)
	if creds.SessionToken != "" {
		ps = append(ps, pair{qSecurityToken, creds.SessionToken})
	}
	cq := canonicalQuery(ps)
	cr := "GET\n" + path + "\n" + cq + "\nhost:" + host + "\n\nhost\n" + emptySHA256
	sts := stringToSign(amzDate, scope, cr)
	sig := signature(creds.SecretAccessKey, t.Format(scopeDateFormat), region, ServiceName, sts)

	ps = append(ps, pair{qSignature, sig})
	u := scheme + "://" + host + path + "?" + canonicalQuery(ps)
	return presigned{url: u, canonicalRequest: cr, stringToSign: sts, signature: sig}, nil
}

func checkSigningInputs(creds Credentials, region string) error {
	switch {
	case creds.AccessKeyID == "" || creds.SecretAccessKey == "":
		return inputErr("credentials need both an access key id and a secret access key")
	case strings.ContainsAny(creds.AccessKeyID, "/ \t\r\n"):
		return inputErr("access key id must not contain '/' or whitespace")
	case region == "" || strings.ContainsAny(region, "/ \t\r\n"):
		return inputErr("region %q is not valid: use a region name such as us-west-2", region)
	}
	return nil
}

// splitEndpoint splits "scheme://host[/path]" the way the JS signer does.
func splitEndpoint(endpoint string) (scheme, host, path string, err error) {
	s, rest, ok := strings.Cut(endpoint, "://")
	if !ok {
		return "", "", "", inputErr("endpoint %q has no scheme: use wss://host[:port][/path]", endpoint)
	}
	scheme = strings.ToLower(s)
	switch scheme {
	case "wss", "ws", "https", "http":
	default:
		return "", "", "", inputErr("endpoint %q: scheme %q not supported, use wss://", endpoint, s)
	}
	if strings.ContainsAny(rest, "?#") {
		return "", "", "", inputErr("endpoint %q must not contain a query or fragment", endpoint)
	}
	host, path = rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	if host == "" {
		return "", "", "", inputErr("endpoint %q has no host", endpoint)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if c <= ' ' || c >= 0x7f || c == '@' || c == '\\' {
			return "", "", "", inputErr("endpoint %q: host contains %q", endpoint, c)
		}
	}
	if err := checkPath(path); err != nil {
		return "", "", "", inputErr("endpoint %q: %v", endpoint, err)
	}
	return scheme, host, path, nil
}

// checkPath accepts an escaped URI path: RFC 3986 pchars, '/' and %XX.
func checkPath(p string) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case unreserved(c) || c == '/' || c == ':' || c == '@' || strings.IndexByte("!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return fmt.Errorf("path has a bad %%-escape at offset %d", i)
			}
			i += 2
		default:
			return fmt.Errorf("path contains %q; percent-encode it", c)
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// SignRequest signs r in place with header-based SigV4 for ServiceName.
//
// It sets X-Amz-Date, X-Amz-Content-Sha256 (sha256 of body),
// X-Amz-Security-Token (when creds has a token) and Authorization, replacing
// earlier values. The signed headers are host, x-amz-content-sha256,
// x-amz-date and x-amz-security-token when present. The host is r.Host, or
// r.URL.Host when r.Host is empty. body must be the exact bytes that will be
// sent; SignRequest does not touch r.Body.
func SignRequest(r *http.Request, body []byte, creds Credentials, region string, now time.Time) error {
	_, err := signRequest(r, hashHex(body), creds, region, now)
	return err
}

// signRequest signs r with the given payload hash (hex sha256 or UNSIGNED-PAYLOAD)
// and returns the canonical request.
func signRequest(r *http.Request, payload string, creds Credentials, region string, now time.Time) (string, error) {
	if r == nil || r.URL == nil {
		return "", inputErr("request or its URL is nil")
	}
	if err := checkSigningInputs(creds, region); err != nil {
		return "", err
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	if host == "" {
		return "", inputErr("request has no host: set r.Host or an absolute URL")
	}
	qs, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return "", inputErr("request URL: %v", err)
	}
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	t := now.UTC().Truncate(time.Second)
	amzDate := t.Format(AmzDateFormat)
	scope := credentialScope(t, region, ServiceName)

	r.Header.Del("Authorization")
	r.Header.Set("X-Amz-Date", amzDate)
	r.Header.Set("X-Amz-Content-Sha256", payload)
	r.Header.Del("X-Amz-Security-Token")
	hdrs := map[string]string{
		"host":                 host,
		"x-amz-content-sha256": payload,
		"x-amz-date":           amzDate,
	}
	if creds.SessionToken != "" {
		r.Header.Set("X-Amz-Security-Token", creds.SessionToken)
		hdrs["x-amz-security-token"] = creds.SessionToken
	}
	names := make([]string, 0, len(hdrs))
	for k := range hdrs {
		names = append(names, k)
	}
	sort.Strings(names)
	var ch strings.Builder
	for _, k := range names {
		ch.WriteString(k + ":" + canonicalHeaderValue(hdrs[k]) + "\n")
	}
	signed := strings.Join(names, ";")
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	cr := method + "\n" + canonicalURIDouble(r.URL.EscapedPath()) + "\n" + canonicalQuery(qs) + "\n" +
		ch.String() + "\n" + signed + "\n" + payload
	sts := stringToSign(amzDate, scope, cr)
	sig := signature(creds.SecretAccessKey, t.Format(scopeDateFormat), region, ServiceName, sts)
	r.Header.Set("Authorization", Algorithm+" Credential="+creds.AccessKeyID+"/"+scope+
		", SignedHeaders="+signed+", Signature="+sig)
	return cr, nil
}
