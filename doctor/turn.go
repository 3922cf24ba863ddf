package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// allocTimeout bounds one TURN allocation.
const allocTimeout = 5 * time.Second

// errTURNRefused is wrapped when the TURN server answered the allocation
// with 401 Unauthorized or 438 Stale Nonce after authenticating.
var errTURNRefused = errors.New("the TURN server refused the credentials")

// checkTURN makes a real TURN allocation with the fetched credentials:
// the first URI of each transport of the first TURN server that works.
func (d *run) checkTURN(ctx context.Context) {
	k := d.begin(CheckTURN, "turn: a real TURN allocation with those credentials")
	if !d.haveICE {
		k.skip("needs the ICE servers")
		return
	}
	tried := 0
	var firstErr error
	refused := false
	for _, s := range d.ice.Servers {
		if s.Username == "" && s.Credential == "" {
			continue
		}
		for _, raw := range s.URLs {
			u, err := stun.ParseURI(raw)
			if err != nil || (u.Scheme != stun.SchemeTypeTURN && u.Scheme != stun.SchemeTypeTURNS) {
				continue
			}
			if u.Scheme == stun.SchemeTypeTURNS && u.Proto == stun.ProtoTypeUDP {
				continue // TURN over DTLS: kvsrtc's peers (like the C SDK) do not use it
			}
			tried++
			start := time.Now()
			relay, err := d.allocate(ctx, u, s.Username, s.Credential)
			if err == nil {
				k.fact("uri", raw)
				k.fact("relayAddress", relay)
				k.fact("allocationTime", time.Since(start).Round(time.Millisecond).String())
				k.pass("")
				return
			}
			k.fact("failed:"+raw, err.Error())
			if errors.Is(err, errTURNRefused) {
				refused = true
			}
			if firstErr == nil {
				firstErr = err
			}
			if tried >= 3 || ctx.Err() != nil {
				break
			}
		}
		break // the first TURN server tells enough
	}
	switch {
	case tried == 0:
		k.skip("no TURN server to allocate on")
	case refused:
		k.fail(cause.ICEExpired, firstErr, "TURN refused freshly issued credentials",
			"the TURN server rejects credentials GetIceServerConfig just issued: the service's TURN clock or configuration is off; relay paths will not work (direct paths may)")
	default:
		k.fail(cause.NoMedia, firstErr, "no TURN allocation: the TURN servers are unreachable from here",
			"allow UDP and TCP (443) to the TURN servers: without them, viewers behind strict NATs or firewalls get no video")
	}
}

// allocate makes one allocation and releases it, returning the relayed
// address.
func (d *run) allocate(ctx context.Context, u *stun.URI, user, pass string) (string, error) {
	actx, cancel := context.WithTimeout(ctx, allocTimeout)
	defer cancel()
	addr := net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	var conn net.PacketConn
	switch {
	case u.Proto == stun.ProtoTypeUDP && u.Scheme == stun.SchemeTypeTURN:
		network, local := "udp4", "0.0.0.0:0"
		if ip := net.ParseIP(u.Host); ip != nil && ip.To4() == nil {
			network, local = "udp6", "[::]:0"
		}
		c, err := (&net.ListenConfig{}).ListenPacket(actx, network, local)
		if err != nil {
			return "", err
		}
		conn = c
	default:
		var dl net.Dialer
		c, err := dl.DialContext(actx, "tcp", addr)
		if err != nil {
			return "", err
		}
		if u.Scheme == stun.SchemeTypeTURNS {
			tc := tls.Client(c, &tls.Config{ServerName: u.Host, RootCAs: d.rootCAs(), MinVersion: tls.VersionTLS12})
			if err := tc.HandshakeContext(actx); err != nil {
				_ = c.Close()
				return "", err
			}
			c = tc
		}
		conn = turn.NewSTUNConn(c)
	}
	defer conn.Close()
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass,
		LoggerFactory: rtc.NewLoggerFactory(d.log),
	})
	if err != nil {
		return "", err
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		return "", err
	}
	relay, err := client.AllocateWithContext(actx)
	if err != nil {
		var te *stun.TurnError
		if errors.As(err, &te) && (te.ErrorCodeAttr.Code == stun.CodeUnauthorized || te.ErrorCodeAttr.Code == stun.CodeStaleNonce) {
			return "", fmt.Errorf("%w: %w", errTURNRefused, err)
		}
		if actx.Err() != nil && ctx.Err() == nil {
			return "", fmt.Errorf("no answer from %s within %v: %w", addr, allocTimeout, err)
		}
		return "", err
	}
	a := relay.LocalAddr().String()
	_ = relay.Close()
	return a, nil
}

// rootCAs returns the TLS roots of Config.HTTPClient, if any.
func (d *run) rootCAs() *x509.CertPool {
	if d.cfg.HTTPClient == nil {
		return nil
	}
	if tr, ok := d.cfg.HTTPClient.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil {
		return tr.TLSClientConfig.RootCAs
	}
	return nil
}
