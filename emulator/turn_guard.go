package emulator

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/pion/turn/v5"
)

// errRelayRefused is returned to pion when a relay would reach an address
// outside the relay's scope (see turnServer.peerAllowed, ownAddr).
var errRelayRefused = errors.New("emulator: TURN relay to this address is not allowed")

// ipScope classifies addresses for the relay policy.
type ipScope int

const (
	scopeLoopback ipScope = iota
	scopePrivate          // RFC 1918, RFC 6598 shared (CGNAT), IPv6 ULA
	scopeGlobal
	scopeAny // an unspecified bind address: private and global
)

func (s ipScope) String() string {
	return [...]string{"loopback", "private", "global", "any"}[s]
}

var cgnat = &net.IPNet{IP: net.IPv4(100, 64, 0, 0), Mask: net.CIDRMask(10, 32)}

func scopeOf(ip net.IP) ipScope {
	switch {
	case ip.IsUnspecified():
		return scopeAny
	case ip.IsLoopback():
		return scopeLoopback
	case ip.IsPrivate() || cgnat.Contains(ip):
		return scopePrivate
	}
	return scopeGlobal
}

// awsIMDSv6 is the IPv6 address of the EC2 instance metadata service.
var awsIMDSv6 = net.ParseIP("fd00:ec2::254")

// peerAllowed decides whether a relay whose relayed address is relay may
// send to peer: only peers in the relay's own scope (loopback ones only for a
// loopback relay; private and global ones for a private relay; global ones
// for a global relay), and never unspecified,
// multicast, broadcast, link-local (169.254.169.254 is the cloud metadata
// service) or metadata addresses. The reason is returned for the log.
func peerAllowed(relay, peer net.IP) (bool, string) {
	if v4 := peer.To4(); v4 != nil {
		peer = v4
	}
	bs := scopeOf(relay)
	switch {
	case peer == nil || peer.IsUnspecified():
		return false, "unspecified address"
	case peer.IsMulticast() || peer.Equal(net.IPv4bcast):
		return false, "multicast or broadcast address"
	case peer.IsLinkLocalUnicast() || peer.IsLinkLocalMulticast():
		return false, "link-local address (the cloud metadata service lives at 169.254.169.254)"
	case peer.Equal(awsIMDSv6):
		return false, "cloud metadata address"
	}
	ps := scopeOf(peer)
	switch {
	case bs == scopeLoopback && ps != scopeLoopback:
		return false, "the relay is on loopback and serves loopback peers only"
	case bs != scopeLoopback && ps == scopeLoopback:
		return false, "loopback peers are refused when the relay is not on loopback"
	case bs == scopeGlobal && ps == scopePrivate:
		return false, "private addresses are refused when the relay is on a global address"
	}
	return true, ""
}

// permit is the pion PermissionHandler (CreatePermission, ChannelBind and
// RFC 6062 Connect).
func (t *turnServer) permit(src net.Addr, peer net.IP) bool {
	ok, why := peerAllowed(t.opts.relayIP, peer)
	if !ok {
		t.log.Info("TURN permission refused", "peer", peer.String(), "reason", why, "relay_address", t.opts.relayIP.String(), "from", src)
	}
	return ok
}

// ownAddr reports whether a is one of this service's own listeners (its
// HTTP/WSS port or a TURN port on an address of this machine), which a
// relay must never reach.
func (t *turnServer) ownAddr(a net.Addr) bool {
	var ip net.IP
	var port int
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, port = a.IP, a.Port
	case *net.TCPAddr:
		ip, port = a.IP, a.Port
	default:
		return true // unknown kinds are refused
	}
	if !t.ownPorts[port] {
		return false
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	for _, l := range t.localIPs {
		if l.Equal(ip) {
			return true
		}
	}
	return false
}

// guardedRelay wraps pion's static relay address generator so that no relay
// reaches the service's own ports: outgoing RFC 6062 connections to them are
// refused, and UDP datagrams to them are dropped.
type guardedRelay struct {
	t     *turnServer
	inner *turn.RelayAddressGeneratorStatic
}

func (g *guardedRelay) Validate() error { return g.inner.Validate() }

func (g *guardedRelay) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, a, err := g.inner.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return &guardedPacketConn{PacketConn: pc, t: g.t}, a, nil
}

func (g *guardedRelay) AllocateListener(c turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return g.inner.AllocateListener(c)
}

func (g *guardedRelay) AllocateConn(c turn.AllocateConnConfig) (net.Conn, error) {
	if g.t.ownAddr(c.RemoteAddr) {
		g.t.log.Info("TURN connect refused: the peer is one of this service's own ports", "peer", c.RemoteAddr.String(), "username", c.UserID)
		return nil, fmt.Errorf("%w: %s is this service", errRelayRefused, c.RemoteAddr)
	}
	return g.inner.AllocateConn(c)
}

// guardedPacketConn is a UDP relay socket that refuses to send to the
// service's own ports.
type guardedPacketConn struct {
	net.PacketConn
	t      *turnServer
	logged sync.Once
}

func (c *guardedPacketConn) WriteTo(p []byte, a net.Addr) (int, error) {
	if c.t.ownAddr(a) {
		c.logged.Do(func() {
			c.t.log.Info("TURN relay datagram dropped: the peer is one of this service's own ports", "peer", a.String())
		})
		return 0, fmt.Errorf("%w: %s is this service", errRelayRefused, a)
	}
	return c.PacketConn.WriteTo(p, a)
}
