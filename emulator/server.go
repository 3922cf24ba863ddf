package emulator

import (
	"context"
	"crypto/tls"
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
	archive  *archives
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
	s.archive = newArchives(cfg.DataDir, s.log.With("component", "archive"))
	s.removeStaleArchives()
	s.sessions = newStorageSessions(s.log.With("component", "storage"), cfg.StorageMaxViewers, cfg.StorageMedia)
	s.hub = hub.New(hub.Config{
		Intercept:     s.interceptStorage,
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
