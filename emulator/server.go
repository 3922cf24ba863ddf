package emulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator/internal/hub"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// ErrClosed is returned by Server methods called after Close.
var ErrClosed = errors.New("emulator: server closed")

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	ln       net.Listener
	httpSrv  *http.Server
	host     string // host[:port] used in URLs and endpoints
	scheme   string // http or https
	wsScheme string // ws or wss
	hub      *hub.Hub
	store    *store
	sessions *storageSessions
	turn     *turnServer
	tls      *tlsMaterial
	verifier *sigv4.Verifier
	throttle apiThrottle
	skew     atomic.Int64
	epoch    time.Time // monotonic base for connection timers

	baseCtx   context.Context
	cancel    context.CancelFunc
	serveDone chan struct{}

	mu      sync.Mutex
	conns   map[*wsConn]struct{}
	fresh   map[net.Conn]struct{} // accepted, no request yet (see connState)
	closing bool
	wsWG    sync.WaitGroup
	connSeq atomic.Uint64

	caFile       string
	removeCAFile bool

	closeOnce sync.Once
	closeErr  error
}

// Start validates cfg, starts listening on cfg.Addr and serves in the
// background until Close. ctx bounds the start-up only.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		// Paths the service prints (AWS_CA_BUNDLE) must work from any
		// directory.
		if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("%w: DataDir: %w", ErrInvalidConfig, err)
		}
	}
	faults := make([]Fault, 0, len(cfg.Faults))
	for _, spec := range cfg.Faults {
		f, err := ParseFault(spec)
		if err != nil {
			return nil, fmt.Errorf("%w: Faults: %w", ErrInvalidConfig, err)
		}
		faults = append(faults, f)
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		conns:     map[*wsConn]struct{}{},
		fresh:     map[net.Conn]struct{}{},
		epoch:     time.Now(),
		serveDone: make(chan struct{}),
	}
	s.store, err = newStore(cfg.DataDir, cfg.Region, cfg.AccountID)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		s.store.close()
		return nil, fmt.Errorf("emulator: listen on %s: %w", cfg.Addr, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = ln.Close()
			s.store.close()
			if s.turn != nil {
				_ = s.turn.close()
			}
			if s.hub != nil {
				s.hub.Close()
			}
			if s.removeCAFile {
				_ = os.Remove(s.caFile)
			}
		}
	}()
	reqHost, _, _ := net.SplitHostPort(cfg.Addr)
	port := ln.Addr().(*net.TCPAddr).Port
	host := advertisedHost(reqHost)
	if cfg.Hostname != "" {
		host = cfg.Hostname
	}
	s.scheme, s.wsScheme = "http", "ws"
	if cfg.TLS {
		s.scheme, s.wsScheme = "https", "wss"
		s.tls, err = loadOrCreateCert(cfg.DataDir, host, time.Now())
		if err != nil {
			return nil, err
		}
	}
	s.host = hostPort(host, port, cfg.TLS)
	s.verifier = &sigv4.Verifier{Lookup: s.lookupCredentials, Now: s.now}
	if !cfg.TURNDisabled {
		s.turn, err = s.startTURN(ctx, ln.Addr().(*net.TCPAddr), host)
		if err != nil {
			return nil, err
		}
	}
	s.sessions = newStorageSessions(s.log.With("component", "storage"), cfg.StorageMaxViewers)
	s.hub = hub.New(hub.Config{
		MaxViewers:    cfg.MaxViewers,
		DisableQuotas: cfg.DisableQuotas,
		Now:           s.now,
		Logger:        s.log.With("component", "hub"),
	})
	for _, a := range cfg.PreCreate {
		a := a
		if _, e := s.store.create(a.Name, kvsproto.DefaultMessageTTLSeconds, nil, s.now(), &a); e != nil {
			return nil, fmt.Errorf("%w: PreCreate %s: %s", ErrInvalidConfig, a, e.Message)
		}
	}
	for _, name := range cfg.Channels {
		if _, exists := s.store.byNameGet(name); exists {
			continue
		}
		if _, e := s.store.create(name, kvsproto.DefaultMessageTTLSeconds, nil, s.now(), nil); e != nil {
			return nil, fmt.Errorf("emulator: creating channel %s: %s", name, e.Message)
		}
	}
	if s.tls != nil {
		if cfg.DataDir != "" {
			s.caFile = filepath.Join(cfg.DataDir, "cert.pem")
		} else {
			f, err := os.CreateTemp("", "kvsrtc-local-ca-*.pem")
			if err != nil {
				return nil, err
			}
			_, werr := f.Write(s.tls.certPEM)
			cerr := f.Close()
			if werr != nil || cerr != nil {
				_ = os.Remove(f.Name())
				return nil, fmt.Errorf("emulator: writing CA file: %w", errors.Join(werr, cerr))
			}
			s.caFile, s.removeCAFile = f.Name(), true
			if abs, err := filepath.Abs(f.Name()); err == nil {
				s.caFile = abs
			}
		}
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.httpSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: httpLimits.readHeader,
		ReadTimeout:       httpLimits.read,
		WriteTimeout:      httpLimits.write,
		IdleTimeout:       httpLimits.idle,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState:         s.connState,
	}
	s.ln = ln
	if !cfg.DisableQuotas {
		// Benchmarks (quotas off) hold more sockets than the cap allows.
		s.ln = limitListener(ln, httpLimits.maxConns)
	}
	if s.tls != nil {
		s.ln = tls.NewListener(s.ln, &tls.Config{
			Certificates: []tls.Certificate{s.tls.cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		})
	}
	for _, f := range faults {
		if _, err := s.Inject(f); err != nil {
			return nil, fmt.Errorf("%w: Faults: %w", ErrInvalidConfig, err)
		}
	}
	ok = true
	s.store.setURL(s.URL())
	for _, n := range s.store.staleTemps {
		s.log.Info("removed a temporary file of an interrupted write", "file", n)
	}
	go func() {
		defer close(s.serveDone)
		if err := s.httpSrv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve failed", "err", err)
		}
	}()
	s.log.Info("kvsrtc local signaling service listening", "url", s.URL(), "region", cfg.Region,
		"account", cfg.AccountID, "channels", s.store.count(), "tls", cfg.TLS, "data_dir", cfg.DataDir)
	return s, nil
}

// advertisedHost is the host put into URLs: the listen host, or 127.0.0.1
// for an unspecified one.
func advertisedHost(h string) string {
	if h == "" {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		if ip.To4() == nil {
			return "::1"
		}
		return "127.0.0.1"
	}
	return h
}

// hostPort joins host and port, leaving out the scheme's default port (the
// browser drops it from Host, which would break the JS signer).
func hostPort(host string, port int, tlsOn bool) string {
	if (tlsOn && port == 443) || (!tlsOn && port == 80) {
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func (s *Server) lookupCredentials(akid string) (sigv4.Credentials, bool) {
	for _, c := range s.cfg.Credentials {
		if c.AccessKeyID == akid {
			return c, true
		}
	}
	return sigv4.Credentials{}, false
}

// now is the service clock: Config.Now plus the injected skew.
func (s *Server) now() time.Time {
	return s.cfg.Now().Add(time.Duration(s.skew.Load()))
}

// mono is a monotonic clock for connection timers.
func (s *Server) mono() time.Duration { return time.Since(s.epoch) }

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

// Close shuts the service down gracefully: it stops accepting, closes every
// WebSocket with 1001 (going away), stops TURN and waits for its goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		conns := make([]*wsConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- s.httpSrv.Shutdown(ctx) }()
		// net/http counts a connection that has sent no request as idle only
		// after 5 s, and Shutdown waits for it (a browser's spare socket
		// can be one): close those now, until Shutdown is done.
		var err error
		tick := time.NewTicker(20 * time.Millisecond)
	wait:
		for {
			s.closeFresh()
			select {
			case err = <-shut:
				break wait
			case <-tick.C:
			}
		}
		tick.Stop()
		for _, c := range conns {
			c.Close(hub.CloseCodeShutdown, hub.CloseReasonShutdown, false)
		}
		done := make(chan struct{})
		go func() { s.wsWG.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(shutdownWait):
			s.log.Warn("shutdown: WebSockets did not close in time; dropping them")
			for _, c := range conns {
				c.Close(hub.CloseCodeShutdown, hub.CloseReasonShutdown, true)
			}
			<-done
		}
		<-s.serveDone
		s.hub.Close()
		if s.turn != nil {
			if terr := s.turn.close(); terr != nil {
				err = errors.Join(err, terr)
			}
		}
		if s.removeCAFile {
			_ = os.Remove(s.caFile)
		}
		s.store.close()
		s.closeErr = err
		s.log.Info("kvsrtc local signaling service stopped")
	})
	return s.closeErr
}

// connState keeps the set of connections that have not sent a request.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateNew {
		s.fresh[c] = struct{}{}
	} else {
		delete(s.fresh, c)
	}
}

// closeFresh closes the connections that have not sent a request.
func (s *Server) closeFresh() {
	s.mu.Lock()
	fresh := make([]net.Conn, 0, len(s.fresh))
	for c := range s.fresh {
		fresh = append(fresh, c)
	}
	s.mu.Unlock()
	for _, c := range fresh {
		_ = c.Close()
	}
}

// track registers a WebSocket connection; false when shutting down.
func (s *Server) track(c *wsConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wsWG.Add(1)
	return true
}

func (s *Server) untrack(c *wsConn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok {
		s.wsWG.Done()
	}
}
