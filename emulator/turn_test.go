package emulator_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
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

// allocate makes a TURN allocation at uri ("turn:host:port?transport=udp",
// "...tcp" or "turns:...tcp") with the given credentials.
func allocate(uri, user, pass string, tlsCfg *tls.Config) error {
	scheme, rest, _ := strings.Cut(uri, ":")
	addr, query, _ := strings.Cut(rest, "?")
	var conn net.PacketConn
	switch {
	case scheme == "turn" && query == "transport=udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		conn = c
	case scheme == "turn" && query == "transport=tcp":
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		conn = turn.NewSTUNConn(c)
	case scheme == "turns":
		c, err := tls.Dial("tcp", addr, tlsCfg)
		if err != nil {
			return err
		}
		conn = turn.NewSTUNConn(c)
	default:
		return fmt.Errorf("unexpected URI %s", uri)
	}
	defer conn.Close()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, LoggerFactory: lf, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	relay, err := cl.AllocateWithContext(ctx)
	if err != nil {
		return err
	}
	if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.IsLoopback() {
		relay.Close()
		return fmt.Errorf("relay address %v is not loopback", ip)
	}
	return relay.Close()
}

func TestTURNCredentialsExpire(t *testing.T) {
	srv := start(t, emulator.Config{ICETTL: time.Second, Channels: []string{"turn"}})
	c := newClient(t, srv)
	var d kvsproto.DescribeSignalingChannelOutput
	c.mustPost(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelName": "turn"}, &d)
	arn := d.ChannelInfo.ChannelARN

	ice := iceConfig(t, c, arn)
	if ice.Ttl != 1 || len(ice.Uris) != 2 {
		t.Fatalf("ice %+v", ice)
	}
	for _, u := range ice.Uris {
		if err := allocate(u, ice.Username, ice.Password, nil); err != nil {
			t.Fatalf("allocation at %s with fresh credentials: %v", u, err)
		}
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
	if err := allocate(fresh.Uris[1], fresh.Username, fresh.Password, nil); err != nil {
		t.Fatalf("fresh credentials over TCP: %v", err)
	}
	srv.ExpireTURNCredentials()
	if err := allocate(fresh.Uris[1], fresh.Username, fresh.Password, nil); err == nil {
		t.Fatal("allocation after ExpireTURNCredentials succeeded")
	}
}

func TestTURNOverTLS(t *testing.T) {
	srv := start(t, emulator.Config{TLS: true, Channels: []string{"turns"}})
	c := newClient(t, srv)
	var d kvsproto.DescribeSignalingChannelOutput
	c.mustPost(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelName": "turns"}, &d)
	ice := iceConfig(t, c, d.ChannelInfo.ChannelARN)
	if len(ice.Uris) != 3 || !strings.HasPrefix(ice.Uris[2], "turns:") || ice.Ttl != 300 {
		t.Fatalf("ice %+v", ice)
	}
	if err := allocate(ice.Uris[2], ice.Username, ice.Password, tlsConfig(srv.CertPool())); err != nil {
		t.Fatalf("allocation over TLS: %v", err)
	}
}
