package sigv4

import (
	"log/slog"
)

// redacted replaces secrets in every printed or logged form of Credentials.
const redacted = "REDACTED"

// Credentials are static AWS credentials. The secret access key and the
// session token never appear in String, GoString or LogValue output.
type Credentials struct {
	// AccessKeyID is the access key id (AKIA... or ASIA...).
	AccessKeyID string
	// SecretAccessKey is the secret used to derive signing keys.
	SecretAccessKey string
	// SessionToken is the optional session token of temporary credentials.
	SessionToken string
}

// String returns the credentials with the secret and the token redacted.
func (c Credentials) String() string {
	s := "Credentials{AccessKeyID: " + c.AccessKeyID + ", SecretAccessKey: " + mask(c.SecretAccessKey)
	if c.SessionToken != "" {
		s += ", SessionToken: " + redacted
	}
	return s + "}"
}

// GoString is like String, so that %#v does not print the secret either.
func (c Credentials) GoString() string { return "sigv4." + c.String() }

// LogValue implements slog.LogValuer: the access key id is logged, the secret
// and the session token are replaced by "REDACTED".
func (c Credentials) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("access_key_id", c.AccessKeyID),
		slog.String("secret_access_key", mask(c.SecretAccessKey)),
	}
	if c.SessionToken != "" {
		attrs = append(attrs, slog.String("session_token", redacted))
	}
	return slog.GroupValue(attrs...)
}

func mask(s string) string {
	if s == "" {
		return `""`
	}
	return redacted
}
