package emulator

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator/internal/hub"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// URL returns the control-plane endpoint, e.g. "http://127.0.0.1:41234".
// The signaling HTTPS endpoint is the same URL.
func (s *Server) URL() string { return s.scheme + "://" + s.host }

// Addr returns the address the service listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Region returns the service region.
func (s *Server) Region() string { return s.cfg.Region }

// AccountID returns the account id used in channel ARNs.
func (s *Server) AccountID() string { return s.cfg.AccountID }

// Credentials returns the first accepted key pair.
func (s *Server) Credentials() sigv4.Credentials { return s.cfg.Credentials[0] }

// WSSEndpoint returns the WebSocket endpoint GetSignalingChannelEndpoint
// hands out for a role.
func (s *Server) WSSEndpoint(role kvsproto.Role) string {
	if role == kvsproto.RoleViewer {
		return s.wsScheme + "://" + s.host + pathWSViewer
	}
	return s.wsScheme + "://" + s.host + pathWSMaster
}

// Env returns the environment for AWS tools, as KEY=VALUE lines in the order
// printed at start-up: the endpoint overrides, region, credentials and, with
// TLS, AWS_CA_BUNDLE.
func (s *Server) Env() []string {
	c := s.Credentials()
	env := []string{
		"AWS_ENDPOINT_URL_KINESIS_VIDEO=" + s.URL(),
		"AWS_ENDPOINT_URL_KINESIS_VIDEO_SIGNALING=" + s.URL(),
		// The endpoints that clients otherwise get from GetDataEndpoint
		// and GetSignalingChannelEndpoint (WEBRTC): for the AWS CLI.
		"AWS_ENDPOINT_URL_KINESIS_VIDEO_ARCHIVED_MEDIA=" + s.URL(),
		"AWS_ENDPOINT_URL_KINESIS_VIDEO_WEBRTC_STORAGE=" + s.URL(),
		"AWS_REGION=" + s.cfg.Region,
		"AWS_DEFAULT_REGION=" + s.cfg.Region,
		"AWS_ACCESS_KEY_ID=" + c.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey,
	}
	if c.SessionToken != "" {
		env = append(env, "AWS_SESSION_TOKEN="+c.SessionToken)
	}
	if s.caFile != "" {
		env = append(env, "AWS_CA_BUNDLE="+s.caFile)
	}
	return env
}

// CACertPEM returns the self-signed certificate in PEM, or nil without TLS.
func (s *Server) CACertPEM() []byte {
	if s.tls == nil {
		return nil
	}
	return append([]byte(nil), s.tls.certPEM...)
}

// CACertFile returns the path of the PEM file named by AWS_CA_BUNDLE, or ""
// without TLS.
func (s *Server) CACertFile() string { return s.caFile }

// CertPool returns a pool holding the certificate, or nil without TLS.
func (s *Server) CertPool() *x509.CertPool {
	if s.tls == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(s.tls.leaf)
	return p
}

// SPKIHash returns base64(sha256(SubjectPublicKeyInfo)) of the certificate,
// for Chromium's --ignore-certificate-errors-spki-list; "" without TLS.
func (s *Server) SPKIHash() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.spkiHash()
}

// CreateChannel creates a channel with a message TTL (0 = 60 s) and
// returns its ARN.
func (s *Server) CreateChannel(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := kvsproto.ValidateChannelName(name); err != nil {
		return "", err
	}
	secs := kvsproto.DefaultMessageTTLSeconds
	if ttl != 0 {
		secs = int(ttl / time.Second)
		if err := kvsproto.ValidateMessageTTL(secs); err != nil {
			return "", err
		}
	}
	c, e := s.store.create(name, secs, nil, s.now(), nil)
	if e != nil {
		return "", e
	}
	s.log.Info("channel created", "channel", name, "arn", c.ARN)
	return c.ARN, nil
}

// SetClockSkew shifts the service clock by d (replacing any earlier skew).
func (s *Server) SetClockSkew(d time.Duration) {
	s.skew.Store(int64(d))
	s.log.Warn("fault: service clock skewed", "skew", d.String(), "service_now", s.now().UTC().Format(time.RFC3339))
}

// ExpireTURNCredentials makes every TURN credential issued so far invalid.
func (s *Server) ExpireTURNCredentials() {
	if s.turn == nil {
		s.log.Warn("fault: expire-turn ignored: TURN is disabled")
		return
	}
	s.turn.expireAll()
}

// Inject applies a fault. Connection faults act at once and return how many
// connections they affected; message and connect faults are armed.
func (s *Server) Inject(f Fault) (int, error) {
	if err := checkFault(f); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalidFault, err)
	}
	switch f.Kind {
	case FaultExpireTURN:
		s.ExpireTURNCredentials()
		return 0, nil
	case FaultSkewClock:
		s.SetClockSkew(f.Delay)
		return 0, nil
	case FaultThrottleAPI:
		s.throttle.arm(f)
		s.log.Warn("fault armed", "kind", f.Kind, "operation", f.Target, "count", max(f.Count, 1))
		return 0, nil
	}
	n, err := s.hub.Inject(f)
	if err != nil {
		if errors.Is(err, hub.ErrInvalidFault) {
			return 0, fmt.Errorf("%w: %v", ErrInvalidFault, err)
		}
		return 0, err
	}
	return n, nil // the hub logs the fault
}

// Stats is a snapshot of the service's state and counters (also served as
// JSON by GET /_kvsrtc/stats).
type Stats struct {
	Channels        int    `json:"channels"`
	Connections     int    `json:"connections"`
	Masters         int    `json:"masters"`
	Viewers         int    `json:"viewers"`
	Routed          uint64 `json:"routed"`
	Buffered        uint64 `json:"buffered"`
	Expired         uint64 `json:"expired"`
	Dropped         uint64 `json:"dropped"`
	Errors          uint64 `json:"errors"`
	TURNAllocations int    `json:"turnAllocations"`
	Goroutines      int    `json:"goroutines"`
	RSSBytes        int64  `json:"rssBytes"`
	HeapBytes       uint64 `json:"heapBytes"`
	ClockSkew       string `json:"clockSkew"`
	// StorageSessions counts channels with a recorded storage session
	// (JoinStorageSession / JoinStorageSessionAsViewer; no media yet).
	StorageSessions int `json:"storageSessions"`
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	hs := s.hub.Stats()
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	st := Stats{
		Channels: s.store.count(), Connections: n, Masters: hs.Masters, Viewers: hs.Viewers,
		Routed: hs.Routed, Buffered: hs.Buffered, Expired: hs.Expired, Dropped: hs.Dropped, Errors: hs.Errors,
		ClockSkew:       time.Duration(s.skew.Load()).String(),
		StorageSessions: len(s.sessions.snapshot()),
	}
	if s.turn != nil {
		st.TURNAllocations = s.turn.allocations()
	}
	processStats(&st)
	return st
}
