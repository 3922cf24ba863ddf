package player

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Signed access tokens: an app whose backend is not written in Go signs a
// short-lived token naming the channels a user may watch, with a key it
// shares with kvsrtc serve --api-only (--token-key-file); the page sends it
// as "Authorization: Bearer TOKEN". The format is
//
//	kvs1.BASE64URL(JSON claims).BASE64URL(HMAC-SHA256(key, "kvs1." + BASE64URL(JSON claims)))
//
// with unpadded base64url, and claims {"sub": "alice", "channels":
// ["front-door"], "exp": UNIX-SECONDS}. docs/EMBED.md shows it in other
// languages.
const (
	tokenPrefix = "kvs1."
	// MinTokenKeyLen is the shortest key TokenAuthorizer and SignToken
	// accept, in bytes.
	MinTokenKeyLen = 32
	// MaxTokenLifetime is the longest a signed token may be valid: a token
	// that expires later than this from now is refused, so that a leaked
	// one is useless soon.
	MaxTokenLifetime = 24 * time.Hour
	// tokenLeeway tolerates clock differences between the app and kvsrtc.
	tokenLeeway = 30 * time.Second
	maxTokenLen = 8 << 10
)

// TokenClaims are what a signed token says.
type TokenClaims struct {
	// Subject names the user (for logs); optional.
	Subject string `json:"sub,omitempty"`
	// Channels are the channels the user may watch.
	Channels []string `json:"channels"`
	// Expires is when the token stops working (Unix seconds).
	Expires int64 `json:"exp"`
}

// SignToken returns a token for claims signed with key (at least
// MinTokenKeyLen bytes): what an app's backend gives its page for
// kvsrtc serve --api-only --token-key-file, or for a Handler whose
// Authorize is TokenAuthorizer(key, nil).
func SignToken(key []byte, claims TokenClaims) (string, error) {
	if len(key) < MinTokenKeyLen {
		return "", invalid("token key", "the key has %d bytes; use at least %d random bytes", len(key), MinTokenKeyLen)
	}
	for _, c := range claims.Channels {
		if err := kvsproto.ValidateChannelName(c); err != nil {
			return "", invalid("token channels", "%v", err)
		}
	}
	if claims.Expires == 0 {
		return "", invalid("token expiry", "set Expires (Unix seconds), a few minutes ahead")
	}
	js, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	body := tokenPrefix + base64.RawURLEncoding.EncodeToString(js)
	return body + "." + tokenMAC(key, body), nil
}

func tokenMAC(key []byte, body string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TokenAuthorizer returns an AuthorizeFunc that accepts requests carrying
// "Authorization: Bearer TOKEN" with a token from SignToken under key: it
// allows the token's channels until it expires (ErrExpired after), and
// refuses tokens valid for longer than MaxTokenLifetime. now is the clock
// (nil: time.Now).
func TokenAuthorizer(key []byte, now func() time.Time) (AuthorizeFunc, error) {
	if len(key) < MinTokenKeyLen {
		return nil, invalid("token key", "the key has %d bytes; use at least %d random bytes (for example: head -c 32 /dev/urandom | base64 > key)", len(key), MinTokenKeyLen)
	}
	if now == nil {
		now = time.Now
	}
	key = append([]byte(nil), key...)
	return func(r *http.Request) ([]string, error) {
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, fmt.Errorf("%w: no bearer token", ErrUnauthorized)
		}
		c, err := verifyToken(key, strings.TrimSpace(tok), now())
		if err != nil {
			return nil, err
		}
		return c.Channels, nil
	}, nil
}

// verifyToken checks a token's MAC and lifetime and returns its claims.
func verifyToken(key []byte, tok string, now time.Time) (TokenClaims, error) {
	var c TokenClaims
	if len(tok) > maxTokenLen || !strings.HasPrefix(tok, tokenPrefix) {
		return c, fmt.Errorf("%w: not a kvs1 token", ErrUnauthorized)
	}
	i := strings.LastIndexByte(tok, '.')
	body, mac := tok[:i], tok[i+1:]
	if !hmac.Equal([]byte(mac), []byte(tokenMAC(key, body))) {
		return c, fmt.Errorf("%w: bad token signature", ErrUnauthorized)
	}
	js, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(body, tokenPrefix))
	if err != nil {
		return c, fmt.Errorf("%w: bad token encoding", ErrUnauthorized)
	}
	if err := json.Unmarshal(js, &c); err != nil {
		return c, fmt.Errorf("%w: bad token claims", ErrUnauthorized)
	}
	exp := time.Unix(c.Expires, 0)
	switch {
	case !now.Before(exp.Add(tokenLeeway)):
		return c, fmt.Errorf("%w: token of %q expired at %s", ErrExpired, c.Subject, exp.UTC().Format(time.RFC3339))
	case exp.Sub(now) > MaxTokenLifetime+tokenLeeway:
		return c, fmt.Errorf("%w: token of %q is valid until %s, longer than %v", ErrUnauthorized, c.Subject, exp.UTC().Format(time.RFC3339), MaxTokenLifetime)
	}
	return c, nil
}
