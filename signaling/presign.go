package signaling

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// Query parameters of a presigned signaling URL.
const (
	paramChannelARN = "X-Amz-ChannelARN"
	paramClientID   = "X-Amz-ClientId"
)

// secretParams are the query parameters a log must never show.
var secretParams = []string{"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"}

// PresignedURL is a presigned WSS URL. It holds a signature (and a session
// token with temporary credentials), so String and LogValue redact them;
// convert it to a string explicitly to use it.
type PresignedURL string

// Redacted returns the URL with X-Amz-Signature, X-Amz-Credential and
// X-Amz-Security-Token replaced by "REDACTED".
func (u PresignedURL) Redacted() string {
	s := string(u)
	base, query, ok := strings.Cut(s, "?")
	if !ok {
		return s
	}
	parts := strings.Split(query, "&")
	for i, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			dk = k
		}
		for _, sp := range secretParams {
			if strings.EqualFold(dk, sp) {
				parts[i] = k + "=REDACTED"
			}
		}
	}
	return base + "?" + strings.Join(parts, "&")
}

// String returns the redacted URL.
func (u PresignedURL) String() string { return u.Redacted() }

// LogValue implements slog.LogValuer with the redacted URL.
func (u PresignedURL) LogValue() slog.Value { return slog.StringValue(u.Redacted()) }

// PresignURL validates cfg and returns the presigned URL Dial would open
// now: cfg.Endpoint with X-Amz-ChannelARN, X-Amz-ClientId (viewers) and the
// SigV4 query of the official JS SDK (X-Amz-Expires=299), signed at
// cfg.Now().
func PresignURL(ctx context.Context, cfg Config) (PresignedURL, error) {
	if err := cfg.validate(); err != nil {
		return "", err
	}
	return cfg.presign(ctx)
}

func (cfg *Config) presign(ctx context.Context) (PresignedURL, error) {
	creds, err := cfg.Credentials(ctx)
	if err != nil {
		return "", fmt.Errorf("signaling: getting credentials: %w", err)
	}
	params := map[string]string{paramChannelARN: cfg.ChannelARN}
	if cfg.Role == kvsproto.RoleViewer {
		params[paramClientID] = cfg.ClientID
	}
	u, err := sigv4.PresignURL(cfg.Endpoint, params, creds, cfg.Region, cfg.now(), sigv4.DefaultPresignExpiry)
	if err != nil {
		return "", fmt.Errorf("signaling: presigning %s: %w", cfg.Endpoint, err)
	}
	return PresignedURL(u), nil
}
