package emulator_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func iceConfig(t *testing.T, c *client, arn string) kvsproto.IceServer {
	t.Helper()
	var out kvsproto.GetIceServerConfigOutput
	c.mustPost(kvsproto.PathGetIceServerConfig, kvsproto.GetIceServerConfigInput{ChannelARN: arn, ClientID: "ProducerMaster", Service: "TURN"}, &out)
	if len(out.IceServerList) != 1 {
		t.Fatalf("IceServerList %+v", out)
	}
	s := out.IceServerList[0]
	for _, u := range s.Uris {
		if len(u) > 127 {
			t.Errorf("URI longer than 127 characters: %s", u)
		}
	}
	return s
}

// channelICE creates channel name and returns its ICE configuration.
func channelICE(t *testing.T, srv *emulator.Server, name string) kvsproto.IceServer {
	t.Helper()
	c := newClient(t, srv)
	return iceConfig(t, c, c.createChannel(name))
}

// turnClient is a pion TURN client connected to uri ("turn:host:port?
// transport=udp", "turns:...?transport=udp" (DTLS) or "turns:...tcp" (TLS)).
type turnClient struct {
	*turn.Client
	conn net.PacketConn
}

func (c *turnClient) close() {
	c.Client.Close()
	_ = c.conn.Close()
}

func dialTURN(uri, user, pass string, tlsCfg *tls.Config) (*turnClient, error) {
	scheme, rest, _ := strings.Cut(uri, ":")
	addr, query, _ := strings.Cut(rest, "?")
	var conn net.PacketConn
	switch {
	case scheme == "turn" && query == "transport=udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		conn = c
	case scheme == "turns" && query == "transport=udp":
		raddr, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return nil, err
		}
		uc, err := net.DialUDP("udp4", nil, raddr)
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(addr)
		dc, err := dtls.ClientWithOptions(dtlsnet.PacketConnFromConn(uc), raddr,
			dtls.WithRootCAs(tlsCfg.RootCAs), dtls.WithServerName(host),
			dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
		if err != nil {
			_ = uc.Close()
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = dc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = dc.Close()
			return nil, fmt.Errorf("DTLS handshake: %w", err)
		}
		conn = dtlsnet.PacketConnFromConn(dc)
	case scheme == "turns" && query == "transport=tcp":
		c, err := tls.Dial("tcp", addr, tlsCfg)
		if err != nil {
			return nil, err
		}
		conn = turn.NewSTUNConn(c)
	default:
		return nil, fmt.Errorf("unexpected URI %s", uri)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, LoggerFactory: lf, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := cl.Listen(); err != nil {
		cl.Close()
		_ = conn.Close()
		return nil, err
	}
	return &turnClient{Client: cl, conn: conn}, nil
}

// allocate makes a UDP relay allocation at uri and closes it again.
func allocate(uri, user, pass string, tlsCfg *tls.Config) error {
	c, err := dialTURN(uri, user, pass, tlsCfg)
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err != nil {
		return err
	}
	if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.IsLoopback() {
		relay.Close()
		return fmt.Errorf("relay address %v is not loopback", ip)
	}
	return relay.Close()
}

// turnErrorCode returns the STUN error code of a TURN transaction error.
func turnErrorCode(err error) stun.ErrorCode {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return te.ErrorCodeAttr.Code
	}
	return 0
}

func TestTURNCredentialsExpire(t *testing.T) {
	srv := start(t, emulator.Config{ICETTL: time.Second, Channels: []string{"turn"}})
	c := newClient(t, srv)
	var d kvsproto.DescribeSignalingChannelOutput
	c.mustPost(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelName": "turn"}, &d)
	arn := d.ChannelInfo.ChannelARN

	ice := iceConfig(t, c, arn)
	if ice.Ttl != 1 || len(ice.Uris) != 1 {
		t.Fatalf("ice %+v", ice)
	}
	if err := allocate(ice.Uris[0], ice.Username, ice.Password, nil); err != nil {
		t.Fatalf("allocation at %s with fresh credentials: %v", ice.Uris[0], err)
	}
	if err := allocate(ice.Uris[0], ice.Username, ice.Password+"x", nil); err == nil {
		t.Fatal("allocation with a wrong password succeeded")
	}
	// The username starts with the expiry (unix seconds); wait until it is past.
	exp, _, _ := strings.Cut(ice.Username, ":")
	var until int64
	fmt.Sscan(exp, &until)
	time.Sleep(time.Until(time.Unix(until+1, 0)) + 50*time.Millisecond)
	if err := allocate(ice.Uris[0], ice.Username, ice.Password, nil); err == nil {
		t.Fatal("allocation with expired credentials succeeded")
	}

	// ExpireTURNCredentials invalidates credentials that have not expired yet.
	fresh := iceConfig(t, c, arn)
	if err := allocate(fresh.Uris[0], fresh.Username, fresh.Password, nil); err != nil {
		t.Fatalf("fresh credentials: %v", err)
	}
	srv.ExpireTURNCredentials()
	if err := allocate(fresh.Uris[0], fresh.Username, fresh.Password, nil); err == nil {
		t.Fatal("allocation after ExpireTURNCredentials succeeded")
	}
}

// TestTURNURIsLikeTheService checks that GetIceServerConfig hands out what
// the real service does (turn: over UDP, turns: over UDP/DTLS, turns: over
// TCP/TLS; no plain-TCP turn:, which the KVS C SDK would wrap in TLS) and
// that an allocation works over each.
func TestTURNURIsLikeTheService(t *testing.T) {
	srv := start(t, emulator.Config{TLS: true})
	ice := channelICE(t, srv, "turns")
	var forms []string
	for _, u := range ice.Uris {
		scheme, rest, _ := strings.Cut(u, ":")
		_, q, _ := strings.Cut(rest, "?")
		forms = append(forms, scheme+"?"+q)
	}
	if got, want := strings.Join(forms, " "), "turn?transport=udp turns?transport=udp turns?transport=tcp"; got != want || ice.Ttl != 300 {
		t.Fatalf("URIs %v (forms %q, want %q), Ttl %d", ice.Uris, got, want, ice.Ttl)
	}
	if dtlsAddr, tlsAddr := strings.SplitN(ice.Uris[1], "?", 2)[0], strings.SplitN(ice.Uris[2], "?", 2)[0]; dtlsAddr != tlsAddr {
		t.Logf("turns: UDP %s and TCP %s do not share a port (UDP port taken?)", dtlsAddr, tlsAddr)
	}
	for _, u := range ice.Uris {
		if err := allocate(u, ice.Username, ice.Password, tlsConfig(srv.CertPool())); err != nil {
			t.Errorf("allocation at %s: %v", u, err)
		}
	}
	plain := start(t, emulator.Config{})
	if ice := channelICE(t, plain, "plain"); len(ice.Uris) != 1 || !strings.HasSuffix(ice.Uris[0], "?transport=udp") || !strings.HasPrefix(ice.Uris[0], "turn:") {
		t.Fatalf("without TLS: URIs %v, want only turn:...?transport=udp", ice.Uris)
	}
}

// TestTURNAnswersSTUNOnServicePort checks the STUN responder: the TURN UDP
// listener shares the service's port number (so a service on 443 answers
// STUN on udp/443, as the KVS C SDK expects) and answers Binding requests
// without credentials.
func TestTURNAnswersSTUNOnServicePort(t *testing.T) {
	srv := start(t, emulator.Config{})
	_, port, _ := net.SplitHostPort(srv.Addr().String())
	stunURL := srv.STUNURL()
	if want := "stun:127.0.0.1:" + port; stunURL != want {
		// The UDP port may have been taken by someone else; then an
		// ephemeral one is used and advertised.
		t.Logf("STUN URL %s, not %s (UDP port taken?)", stunURL, want)
	}
	ice := channelICE(t, srv, "stun")
	if !strings.Contains(ice.Uris[0], strings.TrimPrefix(stunURL, "stun:")) {
		t.Errorf("STUN URL %s is not the TURN UDP listener %s", stunURL, ice.Uris[0])
	}
	c, err := net.Dial("udp4", strings.TrimPrefix(stunURL, "stun:"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no STUN answer: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
		t.Fatalf("answer %v (%v)", res, err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(res); err != nil || xa.Port != c.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("XOR-MAPPED-ADDRESS %v (%v), want port %d", xa, err, c.LocalAddr().(*net.UDPAddr).Port)
	}
}

// TestTURNRefusesOwnPorts: a credential holder must not reach the service's
// own listeners through a relay (issue: an RFC 6062 TCP allocation reached
// the admin API). Another loopback TCP service stays reachable.
func TestTURNRefusesOwnPorts(t *testing.T) {
	srv := start(t, emulator.Config{TLS: true})
	ice := channelICE(t, srv, "ownports")
	tlsURI := ice.Uris[len(ice.Uris)-1]
	if !strings.HasPrefix(tlsURI, "turns:") || !strings.HasSuffix(tlsURI, "transport=tcp") {
		t.Fatalf("no turns: TCP URI in %v", ice.Uris)
	}
	other, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()

	c, err := dialTURN(tlsURI, ice.Username, ice.Password, tlsConfig(srv.CertPool()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alloc, err := c.AllocateTCPWithContext(ctx)
	if err != nil {
		t.Fatalf("TCP allocation: %v", err)
	}
	defer alloc.Close()

	own, err := net.ResolveTCPAddr("tcp4", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alloc.Connect(own); err == nil {
		t.Fatalf("RFC 6062 Connect to the service's own port %v succeeded", own)
	} else {
		t.Logf("Connect to own port refused: %v", err)
	}
	_, tlsPort, _ := net.SplitHostPort(strings.TrimPrefix(strings.SplitN(tlsURI, "?", 2)[0], "turns:"))
	p, _ := strconv.Atoi(tlsPort)
	if _, err := alloc.Connect(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}); err == nil {
		t.Fatal("RFC 6062 Connect to the service's own TURN TLS port succeeded")
	}
	if _, err := alloc.Connect(other.Addr()); err != nil {
		t.Fatalf("Connect to another loopback service: %v", err)
	}
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the other loopback service saw no connection")
	}
}

// TestTURNPermissionScope checks the relay policy on a loopback relay:
// loopback peers are allowed; private, global, link-local (metadata) and
// unspecified peers are refused.
func TestTURNPermissionScope(t *testing.T) {
	srv := start(t, emulator.Config{})
	ice := channelICE(t, srv, "scope")
	c, err := dialTURN(ice.Uris[0], ice.Username, ice.Password, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
		t.Errorf("permission for a loopback peer: %v", err)
	}
	for _, ip := range []string{"169.254.169.254", "10.1.2.3", "192.168.1.1", "8.8.8.8", "0.0.0.0", "224.0.0.1"} {
		err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP(ip), Port: 80})
		if err == nil {
			t.Errorf("permission for %s granted on a loopback relay", ip)
		} else if code := turnErrorCode(err); code != stun.CodeForbidden {
			t.Logf("%s refused with %v (code %d)", ip, err, code)
		}
	}
}

// TestTURNAllocationQuota: one credential gets at most TURNQuota
// allocations at once (before: 20 of 20); freeing one admits another.
func TestTURNAllocationQuota(t *testing.T) {
	const quota = 10
	srv := start(t, emulator.Config{TURNQuota: quota})
	ice := channelICE(t, srv, "quota")
	var clients []*turnClient
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	var relays []net.PacketConn
	defer func() {
		for _, r := range relays {
			_ = r.Close()
		}
	}()
	var refused int
	for i := range 20 {
		c, err := dialTURN(ice.Uris[0], ice.Username, ice.Password, nil)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.AllocateWithContext(ctx)
		cancel()
		switch {
		case err == nil && i < quota:
			relays = append(relays, r)
		case err == nil:
			_ = r.Close()
			t.Fatalf("allocation %d of one credential succeeded; quota is %d", i+1, quota)
		case i < quota:
			t.Fatalf("allocation %d: %v", i+1, err)
		default:
			if code := turnErrorCode(err); code != stun.CodeAllocQuotaReached {
				t.Errorf("allocation %d: %v, want 486 Allocation Quota Reached", i+1, err)
			}
			refused++
		}
	}
	if refused != 20-quota {
		t.Fatalf("%d refused, want %d", refused, 20-quota)
	}
	// Another credential is not affected.
	other := channelICE(t, srv, "quota2")
	if err := allocate(other.Uris[0], other.Username, other.Password, nil); err != nil {
		t.Fatalf("another credential: %v", err)
	}
	// Releasing one allocation admits a new one.
	if err := relays[0].Close(); err != nil {
		t.Fatal(err)
	}
	relays = relays[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := allocate(ice.Uris[0], ice.Username, ice.Password, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after releasing one: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTURNAdvertisesHostname: with an unspecified listen address TURN binds
// every interface and advertises the --hostname (and its address as the
// relayed address), not 127.0.0.1 unconditionally.
func TestTURNAdvertisesHostname(t *testing.T) {
	srv := start(t, emulator.Config{Addr: "0.0.0.0:0", Hostname: "localhost", TLS: true})
	ice := channelICE(t, srv, "host")
	for _, u := range ice.Uris {
		if !strings.Contains(u, ":localhost:") {
			t.Errorf("URI %s does not name the hostname", u)
		}
	}
	if !strings.HasPrefix(srv.STUNURL(), "stun:localhost:") {
		t.Errorf("STUN URL %s", srv.STUNURL())
	}
	// Reach it through loopback (TURN listens on every interface); the
	// certificate covers the hostname.
	for _, u := range ice.Uris {
		u = strings.Replace(u, ":localhost:", ":127.0.0.1:", 1)
		if err := allocate(u, ice.Username, ice.Password, tlsConfig(srv.CertPool())); err != nil {
			t.Errorf("allocation at %s: %v", u, err)
		}
	}
}

// TestTURNSTUNOnUDP443: a service listening on 443 answers STUN on udp/443
// of the same address, where the KVS C SDK's
// stun:stun.kinesisvideo.REGION.amazonaws.com:443 lands when that name
// resolves to the service. Port 443 needs root (CI runs as root).
func TestTURNSTUNOnUDP443(t *testing.T) {
	const addr = "127.0.0.99:443" // a loopback address nobody else uses
	srv, err := emulator.Start(context.Background(), emulator.Config{Addr: addr, TLS: true, Logger: testLogger(t)})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			t.Skipf("%s is in use: %v", addr, err)
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("Start on %s: %v", addr, err)
		}
		t.Skipf("cannot listen on %s here (not root?): %v", addr, err)
	}
	defer srv.Close()
	if got := srv.STUNURL(); got != "stun:127.0.0.99:443" {
		t.Fatalf("STUN URL %s, want stun:127.0.0.99:443", got)
	}
	c, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no STUN answer on udp/443: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
		t.Fatalf("answer %v (%v)", res, err)
	}
}
