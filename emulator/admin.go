package emulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"strings"
)

// AdminTokenEnv is the environment variable kvsrtc prints the admin token
// in (export KVSRTC_ADMIN_TOKEN=...) and its commands read it from.
const AdminTokenEnv = "KVSRTC_ADMIN_TOKEN"

// AdminTokenHeader is the header that may carry the admin token instead of
// "Authorization: Bearer TOKEN".
const AdminTokenHeader = "X-Kvsrtc-Admin-Token"

// minAdminTokenLen is the shortest admin token Config accepts.
const minAdminTokenLen = 16

// adminTokenOrNew checks a configured admin token, or makes a random one
// (128 bits) when it is empty.
func adminTokenOrNew(tok string) (string, error) {
	if tok == "" {
		return rand.Text(), nil
	}
	if len(tok) < minAdminTokenLen || len(tok) > 256 {
		return "", invalidConfig("AdminToken", "%d characters; use %d to 256 (or leave it empty for a random one)", len(tok), minAdminTokenLen)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return "", invalidConfig("AdminToken", "must be printable ASCII without spaces")
		}
	}
	return tok, nil
}

// AdminToken returns the token the admin API (/_kvsrtc/) requires, as
// "Authorization: Bearer TOKEN" or in the X-Kvsrtc-Admin-Token header:
// Config.AdminToken, or the random one made at start.
func (s *Server) AdminToken() string { return s.cfg.AdminToken }

// adminPublic are the admin paths served without the token: they reveal
// nothing and change nothing (and carry no CORS headers, so no other web
// page can read them).
var adminPublic = map[string]bool{"healthz": true, "ca.pem": true}

// adminAllowed checks the Host and the token of an admin request and
// answers the refusal itself. The Host check defeats DNS rebinding (a page
// whose name has been re-pointed at 127.0.0.1 sends its own name); the
// token, every other web page and every other user of the network.
func (s *Server) adminAllowed(w http.ResponseWriter, r *http.Request, sub string) bool {
	refuse := func(status int, msg string) bool {
		s.log.Warn("admin request refused", "path", r.URL.Path, "host", r.Host, "remote", r.RemoteAddr, "reason", msg)
		w.Header().Set("Content-Type", "application/json")
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kvsrtc-admin"`)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"message":` + jsonString(msg) + `}`))
		return false
	}
	if !s.adminHostOK(r.Host) {
		return refuse(http.StatusForbidden, "Host "+clipHost(r.Host)+" is not this service's address; use "+s.URL())
	}
	if adminPublic[sub] {
		return true
	}
	tok := r.Header.Get(AdminTokenHeader)
	if tok == "" {
		if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok = strings.TrimSpace(t)
		}
	}
	if tok == "" {
		return refuse(http.StatusUnauthorized, "the admin API needs the admin token: send \"Authorization: Bearer $"+AdminTokenEnv+"\" (kvsrtc local prints it at start)")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) != 1 {
		return refuse(http.StatusUnauthorized, "wrong admin token; use the one kvsrtc local printed ($"+AdminTokenEnv+")")
	}
	return true
}

// adminHostOK reports whether host (the Host header) names this service:
// an IP address literal (which no DNS rebinding can produce), localhost,
// the listen host or Config.Hostname.
func (s *Server) adminHostOK(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if h == "" {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if s.cfg.Hostname != "" && h == strings.ToLower(s.cfg.Hostname) {
		return true
	}
	if lh, _, err := net.SplitHostPort(s.cfg.Addr); err == nil && lh != "" && h == strings.ToLower(lh) {
		return true
	}
	return false
}

func clipHost(h string) string {
	if len(h) > 100 {
		h = h[:100] + "..."
	}
	return "\"" + strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '"' {
			return '?'
		}
		return r
	}, h) + "\""
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
