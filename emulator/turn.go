package emulator

import (
	"context"
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

	"github.com/pion/dtls/v3"
	"github.com/pion/turn/v5"
)

// turnRealm is the realm of the embedded TURN server.
const turnRealm = "kvsrtc.local"

// turnOptions configures startTURN.
type turnOptions struct {
	// bind is where the TURN listeners and relay sockets bind; it may be
	// unspecified (every interface).
	bind net.IP
	// relayIP is the relayed address handed to clients (XOR-RELAYED-ADDRESS):
	// an address of this machine the peers can reach.
	relayIP net.IP
	// uriHost is the host put into the URIs (the --hostname or the IP).
	uriHost string
	// udpPort is the preferred port of the TURN/STUN UDP listener (the
	// service's own port number, so that a service on 443 answers STUN on
	// udp/443 as the KVS C SDK expects); 0 or a taken port falls back to an
	// ephemeral one.
	udpPort int
	// servicePort is the service's HTTP(S)/WSS port, which no relay may reach.
	servicePort int
	// tls, when set, adds the TLS (turns: over TCP) and DTLS (turns: over
	// UDP) listeners with this certificate.
	tls *tlsMaterial
	// quota is the most allocations one username may hold at once.
	quota int
	now   func() time.Time
	log   *slog.Logger
}

// turnServer is the embedded TURN server (pion/turn) with time-limited
// credentials in the TURN REST style: username "<expiry unix>:<random>",
// password base64url(HMAC-SHA1(key, username)). Rotating the key invalidates
// every credential issued so far.
//
// Relays are confined to the relay's own scope (peerAllowed) and never reach
// the service's own ports (ownAddr); each username holds at most
// opts.quota allocations at once.
type turnServer struct {
	srv  *turn.Server
	opts turnOptions
	log  *slog.Logger
	udp  string // host:port of each listener as bound ("" when absent)
	dtls string
	tls  string

	lns []*trackingListener

	// ownPorts are the ports of this service (HTTP, TURN UDP, TLS, DTLS);
	// localIPs are the addresses that reach this machine.
	ownPorts map[int]bool
	localIPs []net.IP

	mu    sync.RWMutex
	key   []byte
	gen   int            // key generation, for logs
	inUse map[string]int // allocations per username
}

func startTURN(o turnOptions) (_ *turnServer, err error) {
	t := &turnServer{opts: o, log: o.log, key: newTURNKey(), inUse: map[string]int{}}
	bindHost := o.bind.String()
	var closers []func() error
	defer func() {
		if err != nil {
			for _, c := range closers {
				_ = c()
			}
		}
	}()
	udpConn, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp", net.JoinHostPort(bindHost, strconv.Itoa(o.udpPort)))
	if err != nil && o.udpPort != 0 {
		lvl := slog.LevelDebug
		if o.udpPort == 443 {
			lvl = slog.LevelWarn
		}
		o.log.Log(context.Background(), lvl, "TURN/STUN UDP port is taken; using an ephemeral one (STUN clients that assume the service's port get no answer)",
			"port", o.udpPort, "err", err)
		udpConn, err = (&net.ListenConfig{}).ListenPacket(context.Background(), "udp", net.JoinHostPort(bindHost, "0"))
	}
	if err != nil {
		return nil, fmt.Errorf("emulator: TURN UDP listener on %s: %w", bindHost, err)
	}
	closers = append(closers, udpConn.Close)
	t.udp = udpConn.LocalAddr().String()
	gen := func() turn.RelayAddressGenerator {
		return &guardedRelay{t: t, inner: &turn.RelayAddressGeneratorStatic{RelayAddress: o.relayIP, Address: bindHost}}
	}
	cfg := turn.ServerConfig{
		Realm:         turnRealm,
		AuthHandler:   t.auth,
		QuotaHandler:  t.quotaOK,
		EventHandler:  turn.EventHandler{OnAllocationCreated: t.allocated, OnAllocationDeleted: t.deallocated},
		LoggerFactory: pionLogFactory{log: o.log.With("component", "turn")},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: udpConn, RelayAddressGenerator: gen(), PermissionHandler: t.permit,
		}},
	}
	if o.tls != nil {
		tlsLn, err := tls.Listen("tcp", net.JoinHostPort(bindHost, "0"), &tls.Config{
			Certificates: []tls.Certificate{o.tls.cert}, MinVersion: tls.VersionTLS12,
		})
		if err != nil {
			return nil, fmt.Errorf("emulator: TURN TLS listener: %w", err)
		}
		tl := newTrackingListener(tlsLn, false)
		closers = append(closers, tl.Close)
		t.tls = tlsLn.Addr().String()
		// DTLS on the TLS listener's port number, like the real service's
		// turns: URIs (one port for both): a client that treats every
		// turns: URI as TLS over TCP (libwebrtc) then still reaches TLS.
		listenDTLS := func(port int) (net.Listener, error) {
			return dtls.ListenWithOptions("udp", &net.UDPAddr{IP: o.bind, Port: port},
				dtls.WithCertificates(o.tls.cert),
				dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
		}
		dl, err := listenDTLS(tlsLn.Addr().(*net.TCPAddr).Port)
		if err != nil {
			o.log.Debug("TURN DTLS: the TLS listener's port number is taken over UDP; using an ephemeral one", "err", err)
			dl, err = listenDTLS(0)
		}
		if err != nil {
			return nil, fmt.Errorf("emulator: TURN DTLS listener: %w", err)
		}
		dtl := newTrackingListener(dl, true)
		closers = append(closers, dtl.Close)
		t.dtls = dl.Addr().String()
		t.lns = append(t.lns, tl, dtl)
		cfg.ListenerConfigs = []turn.ListenerConfig{
			{Listener: tl, RelayAddressGenerator: gen(), PermissionHandler: t.permit},
			{Listener: dtl, RelayAddressGenerator: gen(), PermissionHandler: t.permit},
		}
	}
	t.ownPorts = map[int]bool{o.servicePort: true}
	for _, a := range []string{t.udp, t.tls, t.dtls} {
		if _, p, err := net.SplitHostPort(a); err == nil {
			n, _ := strconv.Atoi(p)
			t.ownPorts[n] = true
		}
	}
	t.localIPs = localAddrs(o.bind)
	srv, err := turn.NewServer(cfg)
	if err != nil {
		return nil, fmt.Errorf("emulator: TURN server: %w", err)
	}
	t.srv = srv
	o.log.Info("TURN server listening", "udp_and_stun", t.udp, "tls", t.tls, "dtls", t.dtls,
		"relay_address", o.relayIP.String(), "uri_host", o.uriHost, "allocations_per_credential", o.quota)
	return t, nil
}

// startTURN starts the TURN server where the service listens (ln): bound to
// the same address, with its UDP listener (which also answers STUN Binding
// requests) on the same port number when it is free, and advertising host
// (the --hostname, else the listen address) in its URIs. The relayed
// address is the listen IP, or for an unspecified listen address the
// hostname's address (127.0.0.1 without one).
func (s *Server) startTURN(ctx context.Context, ln *net.TCPAddr, host string) (*turnServer, error) {
	bind := ln.IP
	if bind == nil {
		bind = net.IPv4zero
	}
	relayIP := bind
	if bind.IsUnspecified() {
		relayIP = hostIP(ctx, host)
		switch {
		case relayIP == nil:
			relayIP = net.IPv4(127, 0, 0, 1)
			s.log.Warn("listening on every interface without a --hostname that resolves: endpoints and TURN URIs name "+
				"127.0.0.1, which only clients on this machine can use; give --hostname NAME (a name or IP clients reach this machine by)",
				"listen", ln.String(), "hostname", host)
		case !isLocalIP(relayIP):
			// e.g. the AWS host name, mapped to this machine on the
			// clients only: it resolves to AWS here.
			other := relayIP
			relayIP = firstInterfaceIP()
			s.log.Warn("the hostname resolves to an address that is not this machine's; TURN hands out another address as the relayed "+
				"one (listen on a specific address to choose it)", "hostname", host, "resolves_to", other.String(), "relay_address", relayIP.String())
		}
	}
	uriHost := host
	if strings.HasPrefix(uriHost, "[") { // hostPort may have bracketed it
		uriHost = strings.Trim(uriHost, "[]")
	}
	return startTURN(turnOptions{
		bind: bind, relayIP: relayIP, uriHost: uriHost,
		udpPort: ln.Port, servicePort: ln.Port,
		tls: s.tls, quota: s.cfg.TURNQuota, now: s.now, log: s.log,
	})
}

// isLocalIP reports whether ip is loopback or an address of one of this
// machine's interfaces.
func isLocalIP(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// firstInterfaceIP returns the first IPv4 address of an up, non-loopback
// interface that is neither link-local nor unspecified, else 127.0.0.1.
func firstInterfaceIP() net.IP {
	ifaces, _ := net.Interfaces()
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() && !n.IP.IsLoopback() {
				return n.IP.To4()
			}
		}
	}
	return net.IPv4(127, 0, 0, 1)
}

// hostIP returns host's address (IPv4 preferred), or nil when it does not
// resolve.
func hostIP(ctx context.Context, host string) net.IP {
	if ip := net.ParseIP(host); ip != nil {
		return ip
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return nil
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.To4()
		}
	}
	return ips[0]
}

// localAddrs lists the addresses through which a relay could reach this
// machine: loopback, the bind address and, for an unspecified bind, every
// interface address.
func localAddrs(bind net.IP) []net.IP {
	ips := []net.IP{bind}
	if bind.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					ips = append(ips, n.IP)
				}
			}
		}
	}
	return ips
}

func newTURNKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// uris lists the TURN URIs for GetIceServerConfig in the order and forms
// the real service uses: turn: over UDP, then (with TLS) turns: over UDP
// (DTLS) and turns: over TCP (TLS). There is no plain-TCP turn: URI: the
// KVS C SDK wraps every TCP TURN connection in TLS. Each URI stays well
// under the C SDK's 127-character limit.
func (t *turnServer) uris() []string {
	u := []string{"turn:" + t.uriAddr(t.udp) + "?transport=udp"}
	if t.dtls != "" {
		u = append(u, "turns:"+t.uriAddr(t.dtls)+"?transport=udp")
	}
	if t.tls != "" {
		u = append(u, "turns:"+t.uriAddr(t.tls)+"?transport=tcp")
	}
	return u
}

// uriAddr replaces the host of a bound address with the advertised host.
func (t *turnServer) uriAddr(bound string) string {
	_, port, _ := net.SplitHostPort(bound)
	return net.JoinHostPort(t.opts.uriHost, port)
}

// credentials issues a username and password valid for ttl on the service
// clock.
func (t *turnServer) credentials(ttl time.Duration) (user, pass string) {
	exp := t.opts.now().Add(ttl).Unix()
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
	if now := t.opts.now().Unix(); e < now {
		t.log.Info("TURN request rejected: credentials expired", "username", ra.Username, "expired_seconds_ago", now-e, "from", ra.SrcAddr)
		return "", nil, false
	}
	t.mu.RLock()
	pass := turnPassword(t.key, ra.Username)
	t.mu.RUnlock()
	return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, pass), true
}

// quotaOK is the pion QuotaHandler: a username may hold at most opts.quota
// allocations at once (pion answers 486 Allocation Quota Reached beyond).
// Concurrent Allocate requests of one username may overshoot by the number
// in flight.
func (t *turnServer) quotaOK(user, _ string, src net.Addr) bool {
	t.mu.RLock()
	n := t.inUse[user]
	t.mu.RUnlock()
	if n < t.opts.quota {
		return true
	}
	t.log.Info("TURN allocation refused: quota reached for this credential", "username", user, "allocations", n, "quota", t.opts.quota, "from", src)
	return false
}

func (t *turnServer) allocated(_, _ net.Addr, _, user, _ string, _ net.Addr, _ int) {
	t.mu.Lock()
	t.inUse[user]++
	t.mu.Unlock()
}

func (t *turnServer) deallocated(_, _ net.Addr, _, user, _ string) {
	t.mu.Lock()
	if t.inUse[user]--; t.inUse[user] <= 0 {
		delete(t.inUse, user)
	}
	t.mu.Unlock()
}

func (t *turnServer) allocations() int { return t.srv.AllocationCount() }

// close stops the server and closes every accepted TLS/DTLS connection
// (pion closes the listeners only).
func (t *turnServer) close() error {
	err := t.srv.Close()
	for _, l := range t.lns {
		l.closeConns()
	}
	return err
}

// STUNURL returns the STUN server of the service, "stun:HOST:PORT": the
// TURN UDP listener, which answers STUN Binding requests without
// credentials, on the service's own port number when that UDP port was free
// (so a service on 443 answers the KVS C SDK's
// stun:stun.kinesisvideo.REGION.amazonaws.com:443 when that name resolves to
// it). "" with Config.TURNDisabled.
func (s *Server) STUNURL() string {
	if s.turn == nil {
		return ""
	}
	return "stun:" + s.turn.uriAddr(s.turn.udp)
}
