package sigv4

import (
	"strconv"
	"strings"
	"time"
)

// credential is a parsed "AKID/yyyymmdd/region/service/aws4_request".
type credential struct {
	accessKeyID, date, region, service string
}

func (c credential) scope() string {
	return c.date + "/" + c.region + "/" + c.service + "/" + scopeTerminator
}

// authorization is a parsed Authorization header.
type authorization struct {
	cred          credential
	signedHeaders []string
	signature     string
}

// format renders a in the canonical form signers emit.
func (a authorization) format() string {
	return Algorithm + " Credential=" + a.cred.accessKeyID + "/" + a.cred.scope() +
		", SignedHeaders=" + strings.Join(a.signedHeaders, ";") + ", Signature=" + a.signature
}

// clip shortens untrusted text quoted in error messages.
func clip(s string) string {
	const n = 64
	if len(s) > n {
		return strconv.Quote(s[:n]) + "..."
	}
	return strconv.Quote(s)
}

// parseCredential parses the Credential value. The service is not checked here.
func parseCredential(v string) (credential, *Error) {
	parts := strings.Split(v, "/")
	if len(parts) != 5 {
		return credential{}, malformed("Credential " + clip(v) + " must have the form <AccessKeyId>/<yyyymmdd>/<region>/<service>/aws4_request.")
	}
	c := credential{accessKeyID: parts[0], date: parts[1], region: parts[2], service: parts[3]}
	switch {
	case c.accessKeyID == "":
		return credential{}, malformed("Credential has an empty access key id.")
	case len(c.date) != 8 || strings.Trim(c.date, "0123456789") != "":
		return credential{}, malformed("Credential date " + clip(c.date) + " must be yyyymmdd.")
	case c.region == "":
		return credential{}, malformed("Credential has an empty region.")
	case c.service == "":
		return credential{}, malformed("Credential has an empty service.")
	case parts[4] != scopeTerminator:
		return credential{}, malformed("Credential should be scoped with a valid terminator: 'aws4_request', not " + clip(parts[4]) + ".")
	}
	return c, nil
}

// parseSignedHeaders parses "a;b;c". Names are lower-cased; host must be present.
func parseSignedHeaders(v string) ([]string, *Error) {
	if v == "" {
		return nil, malformed("SignedHeaders is empty.")
	}
	names := strings.Split(v, ";")
	hasHost := false
	for i, n := range names {
		if n == "" || !isToken(n) {
			return nil, malformed("SignedHeaders " + clip(v) + " contains an invalid header name.")
		}
		n = strings.ToLower(n)
		names[i] = n
		if n == "host" {
			hasHost = true
		}
	}
	if !hasHost {
		return nil, malformed("'Host' must be a 'SignedHeader' in the AWS Authorization.")
	}
	return names, nil
}

// isToken reports whether s is an RFC 7230 token (a valid header name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || strings.IndexByte("!#$%&'*+^`|", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// parseAuthorization parses
// "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...".
// Components may be separated by commas and/or whitespace, in any order, with
// case-insensitive names.
func parseAuthorization(h string) (authorization, *Error) {
	h = strings.TrimSpace(h)
	alg, rest, _ := strings.Cut(h, " ")
	if alg != Algorithm {
		if i := strings.IndexAny(alg, "\t,"); i >= 0 {
			alg, rest = alg[:i], alg[i:]+rest
		}
		if alg != Algorithm {
			return authorization{}, malformed("Unsupported Authorization algorithm " + clip(alg) + ": only " + Algorithm + " is accepted.")
		}
	}
	var a authorization
	var haveCred, haveSH, haveSig bool
	fields := strings.FieldsFunc(rest, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t'
	})
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return authorization{}, malformed("Authorization header component " + clip(f) + " is not of the form key=value.")
		}
		var err *Error
		switch {
		case strings.EqualFold(k, "Credential"):
			if haveCred {
				return authorization{}, malformed("Authorization header has Credential twice.")
			}
			haveCred = true
			a.cred, err = parseCredential(v)
		case strings.EqualFold(k, "SignedHeaders"):
			if haveSH {
				return authorization{}, malformed("Authorization header has SignedHeaders twice.")
			}
			haveSH = true
			a.signedHeaders, err = parseSignedHeaders(v)
		case strings.EqualFold(k, "Signature"):
			if haveSig {
				return authorization{}, malformed("Authorization header has Signature twice.")
			}
			haveSig = true
			a.signature = v
		default:
			return authorization{}, malformed("Authorization header has an unknown component " + clip(k) + ".")
		}
		if err != nil {
			return authorization{}, err
		}
	}
	var missing []string
	if !haveCred {
		missing = append(missing, "Authorization header requires 'Credential' parameter.")
	}
	if !haveSH {
		missing = append(missing, "Authorization header requires 'SignedHeaders' parameter.")
	}
	if !haveSig {
		missing = append(missing, "Authorization header requires 'Signature' parameter.")
	}
	if len(missing) > 0 {
		return authorization{}, malformed(strings.Join(missing, " "))
	}
	if !isSignatureHex(a.signature) {
		return authorization{}, malformed("Signature must be 64 hexadecimal characters.")
	}
	return a, nil
}

func isSignatureHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// parseAmzDate parses an X-Amz-Date value strictly.
func parseAmzDate(s string) (time.Time, bool) {
	t, err := time.Parse(AmzDateFormat, s)
	if err != nil || t.Format(AmzDateFormat) != s {
		return time.Time{}, false
	}
	return t, true
}
