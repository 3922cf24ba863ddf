package viewer_test

import (
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// turnOnlyNet is the viewer's network behind a NAT that only TURN crosses:
// every UDP datagram to or from anything but the TURN server's ports is
// dropped, so host candidates are gathered but unreachable both ways.
type turnOnlyNet struct {
	*stdnet.Net
	ports   []int
	dropped atomic.Int64
}

func (n *turnOnlyNet) allow(a net.Addr) bool {
	u, ok := a.(*net.UDPAddr)
	if !ok {
		return true
	}
	return slices.Contains(n.ports, u.Port)
}

func (n *turnOnlyNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &turnOnlyConn{UDPConn: c, n: n}, nil
}

func (n *turnOnlyNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenUDP(network, mustUDPAddr(address))
	if err != nil {
		return nil, err
	}
	return &turnOnlyConn{UDPConn: c, n: n}, nil
}

func mustUDPAddr(s string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return &net.UDPAddr{}
	}
	return a
}

type turnOnlyConn struct {
	transport.UDPConn
	n *turnOnlyNet
}

func (c *turnOnlyConn) WriteTo(p []byte, a net.Addr) (int, error) {
	if !c.n.allow(a) {
		c.n.dropped.Add(1)
		return len(p), nil // lost on the way, as a NAT would
	}
	return c.UDPConn.WriteTo(p, a)
}

func (c *turnOnlyConn) WriteToUDP(p []byte, a *net.UDPAddr) (int, error) { return c.WriteTo(p, a) }

func (c *turnOnlyConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.UDPConn.ReadFrom(p)
		if err != nil || c.n.allow(a) {
			return n, a, err
		}
		c.n.dropped.Add(1)
	}
}

func (c *turnOnlyConn) ReadFromUDP(p []byte) (int, *net.UDPAddr, error) {
	n, a, err := c.ReadFrom(p)
	u, _ := a.(*net.UDPAddr)
	return n, u, err
}

// turnPorts returns the UDP ports of the emulator's TURN URIs.
func turnPorts(t *testing.T, e *kvstest.Env) []int {
	t.Helper()
	ch, err := e.Control.ResolveChannel(t.Context(), "cam")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := e.Control.Endpoints(t.Context(), ch.ARN, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	ice, err := e.Control.ICEServers(t.Context(), ch.ARN, ep.HTTPS, "probe")
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, s := range ice.Servers {
		for _, u := range s.URLs {
			pu, err := url.Parse(u)
			if err != nil || pu.Opaque == "" {
				continue
			}
			hostport, _, _ := strings.Cut(pu.Opaque, "?")
			if _, p, err := net.SplitHostPort(hostport); err == nil {
				if n, err := strconv.Atoi(p); err == nil && !slices.Contains(ports, n) {
					ports = append(ports, n)
				}
			}
		}
	}
	if len(ports) == 0 {
		t.Fatalf("no TURN ports in %+v", ice)
	}
	return ports
}

// TestViewerConnectsThroughTURNWhenHostsAreUnreachable: the viewer gathers
// host candidates as usual (ICE policy "all"), but only TURN traffic gets
// through. It must connect through the relay about as fast as over the
// direct path (measured side by side), not after pion's 2 s wait for relay
// pairs.
func TestViewerConnectsThroughTURNWhenHostsAreUnreachable(t *testing.T) {
	e := newEnv(t, emulator.Config{DisableQuotas: true})
	startMaster(t, e, "cam")
	base, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	filtered := &turnOnlyNet{Net: base, ports: turnPorts(t, e)}
	connect := func(n transport.Net) time.Duration {
		var first time.Duration
		cfg := viewer.Config{Channel: "cam", Control: e.Control, LoopbackOnly: true, Retry: fastPolicy(), Duration: time.Millisecond,
			OnEvent: func(ev viewer.Event) {
				if ev.TimeToFirstFrame > 0 {
					first = ev.TimeToFirstFrame
				}
			}}
		if n != nil {
			viewer.SetICENet(&cfg, n)
		}
		s, err := viewer.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(t.Context()); err != nil {
			t.Fatalf("connect: %v", err)
		}
		if s.Summary().Attempts != 1 {
			t.Fatalf("needless retry: %+v", s.Summary())
		}
		return first
	}
	var direct, relayed []time.Duration
	for range 5 {
		direct = append(direct, connect(nil))
		relayed = append(relayed, connect(filtered))
	}
	if filtered.dropped.Load() == 0 {
		t.Fatal("the filter dropped nothing: host paths were not exercised")
	}
	d, r := percentile(direct, 0.5), percentile(relayed, 0.5)
	t.Logf("first frame p50: direct %v, hosts unreachable (via TURN) %v (%.2fx); %d datagrams dropped", d, r, float64(r)/float64(d), filtered.dropped.Load())
	// Goal 1.5x; the bound is generous for a shared machine: pion's
	// default wait alone was 2 s.
	if r > max(3*d, 800*time.Millisecond) {
		t.Errorf("via TURN p50 %v against direct %v", r, d)
	}
}
