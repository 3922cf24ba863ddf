package emulator

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // TURN REST credentials are HMAC-SHA1 by convention
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// turnRealm is the realm of the embedded TURN server.
const turnRealm = "kvsrtc.local"

// turnServer is the embedded TURN server (pion/turn) with time-limited
// credentials in the TURN REST style: username "<expiry unix>:<random>",
// password base64url(HMAC-SHA1(key, username)). Rotating the key invalidates
// every credential issued so far.
type turnServer struct {
	srv  *turn.Server
	now  func() time.Time
	log  *slog.Logger
	udp  string // host:port
	tcp  string
	tls  string // "" without TLS
	mu   sync.RWMutex
	key  []byte
	gen  int // key generation, for logs
	host string
}

func startTURN(host string, tlsCert *tlsMaterial, now func() time.Time, log *slog.Logger) (*turnServer, error) {
	t := &turnServer{now: now, log: log, host: host}
	t.key = newTURNKey()
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("emulator: TURN needs an IP address, not %q", host)
	}
	udpConn, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("emulator: TURN UDP listener: %w", err)
	}
	tcpLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		_ = udpConn.Close()
		return nil, fmt.Errorf("emulator: TURN TCP listener: %w", err)
	}
	gen := func() turn.RelayAddressGenerator {
		return &turn.RelayAddressGeneratorStatic{RelayAddress: ip, Address: host}
	}
	cfg := turn.ServerConfig{
		Realm:             turnRealm,
		AuthHandler:       t.auth,
		LoggerFactory:     pionLogFactory{log: log.With("component", "turn")},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: udpConn, RelayAddressGenerator: gen()}},
		ListenerConfigs:   []turn.ListenerConfig{{Listener: tcpLn, RelayAddressGenerator: gen()}},
	}
	t.udp = udpConn.LocalAddr().String()
	t.tcp = tcpLn.Addr().String()
	var tlsLn net.Listener
	if tlsCert != nil {
		tlsLn, err = tls.Listen("tcp", net.JoinHostPort(host, "0"), &tls.Config{Certificates: []tls.Certificate{tlsCert.cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			_ = udpConn.Close()
			_ = tcpLn.Close()
			return nil, fmt.Errorf("emulator: TURN TLS listener: %w", err)
		}
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, turn.ListenerConfig{Listener: tlsLn, RelayAddressGenerator: gen()})
		t.tls = tlsLn.Addr().String()
	}
	srv, err := turn.NewServer(cfg)
	if err != nil {
		_ = udpConn.Close()
		_ = tcpLn.Close()
		if tlsLn != nil {
			_ = tlsLn.Close()
		}
		return nil, fmt.Errorf("emulator: TURN server: %w", err)
	}
	t.srv = srv
	log.Info("TURN server listening", "udp", t.udp, "tcp", t.tcp, "tls", t.tls)
	return t, nil
}

func newTURNKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// uris lists the TURN URIs for GetIceServerConfig (each well under the C
// SDK's 127-character limit).
func (t *turnServer) uris() []string {
	u := []string{
		"turn:" + t.udp + "?transport=udp",
		"turn:" + t.tcp + "?transport=tcp",
	}
	if t.tls != "" {
		u = append(u, "turns:"+t.tls+"?transport=tcp")
	}
	return u
}

// credentials issues a username and password valid for ttl on the service
// clock.
func (t *turnServer) credentials(ttl time.Duration) (user, pass string) {
	exp := t.now().Add(ttl).Unix()
	user = strconv.FormatInt(exp, 10) + ":" + rand.Text()[:16]
	t.mu.RLock()
	pass = turnPassword(t.key, user)
	t.mu.RUnlock()
	return user, pass
}

func turnPassword(key []byte, user string) string {
	m := hmac.New(sha1.New, key)
	m.Write([]byte(user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// expireAll rotates the key so that no credential issued so far verifies.
func (t *turnServer) expireAll() {
	t.mu.Lock()
	t.key = newTURNKey()
	t.gen++
	g := t.gen
	t.mu.Unlock()
	t.log.Warn("fault: TURN credentials expired", "key_generation", g)
}

// auth is the pion AuthHandler: it rejects expired usernames and returns the
// long-term key of the expected password (pion then checks the message
// integrity, which fails for credentials issued under an older key).
func (t *turnServer) auth(ra *turn.RequestAttributes) (string, []byte, bool) {
	exp, _, ok := strings.Cut(ra.Username, ":")
	if !ok {
		t.log.Info("TURN request rejected: username not in <expiry>:<id> form", "username", ra.Username, "from", ra.SrcAddr)
		return "", nil, false
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		t.log.Info("TURN request rejected: bad expiry in username", "username", ra.Username, "from", ra.SrcAddr)
		return "", nil, false
	}
	if now := t.now().Unix(); e < now {
		t.log.Info("TURN request rejected: credentials expired", "username", ra.Username, "expired_seconds_ago", now-e, "from", ra.SrcAddr)
		return "", nil, false
	}
	t.mu.RLock()
	pass := turnPassword(t.key, ra.Username)
	t.mu.RUnlock()
	return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, pass), true
}

func (t *turnServer) allocations() int { return t.srv.AllocationCount() }

func (t *turnServer) close() error { return t.srv.Close() }

// pionLogFactory bridges pion's logging to slog: trace and debug go to
// Debug, info to Debug (pion is chatty), warn and error to Warn.
type pionLogFactory struct{ log *slog.Logger }

func (f pionLogFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("scope", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(format string, args ...any) {}
func (l pionLogger) Debug(msg string)                  { l.log.Debug(msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l pionLogger) Info(msg string)                   { l.log.Debug(msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l pionLogger) Warn(msg string)                   { l.log.Warn(msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l pionLogger) Error(msg string)                  { l.log.Warn(msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.log.Warn(fmt.Sprintf(format, args...)) }
