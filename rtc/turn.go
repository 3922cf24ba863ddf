package rtc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
)

// TURN over TCP and TLS.
//
// pion verifies the certificate of a turns: server against the system roots
// only, so a TURN server with its own certificate (kvsrtc local, a private
// deployment trusted through AWS_CA_BUNDLE) fails with "bad certificate".
// pion hands a TCP TURN connection made by a proxy dialer to its TURN client
// as is, so [NewAPI] installs one (turnDialer) that speaks TLS itself, with
// [Config.TURNRootCAs] and the URI's host as server name.
//
// The dialer only sees "host:port", not the URI's scheme, so [ICEServers]
// records, per host:port, whether a TCP TURN URI was turns: (TLS) or turn:
// (plain TCP). An address nobody recorded gets TLS, as the KVS C SDK does
// for every TCP TURN server: KVS hands out TCP TURN only as turns:. The
// record is process-wide (a server's address speaks one protocol whatever
// API dials it), bounded, and the latest ICEServers call wins.
//
// turns: over UDP (DTLS) has no such hook in pion (it runs the DTLS client
// itself, system roots only), so ICEServers leaves those URIs out; the same
// servers stay reachable through their turn: UDP and turns: TCP URIs. The
// KVS C SDK skips them too.

// ErrTURNCertificate is wrapped by the error of a TLS connection to a TURN
// server (a turns: URI) whose certificate is not trusted.
var ErrTURNCertificate = errors.New("rtc: TURN server certificate not trusted")

// turnDialTimeout bounds the TCP connect and TLS handshake to a TURN server
// (pion gives the proxy dialer no context).
const turnDialTimeout = 10 * time.Second

// maxTURNRecords bounds the process-wide record of TCP TURN addresses.
const maxTURNRecords = 1024

type turnRecord struct {
	tls        bool
	serverName string
}

var turnRecords = struct {
	sync.Mutex
	m map[string]turnRecord
}{m: map[string]turnRecord{}}

// ICEServers prepares ICE servers for a PeerConnection of an API built by
// [NewAPI]: it records which TCP TURN addresses speak TLS (turns:) and which
// plain TCP (turn:), for the API's TURN dialer, and returns a copy without
// the turns: URIs over UDP (DTLS), which pion could only verify against the
// system roots. Servers left without URIs are dropped; URIs that do not
// parse are kept for pion to report.
func ICEServers(servers []webrtc.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(servers))
	turnRecords.Lock()
	defer turnRecords.Unlock()
	for _, s := range servers {
		urls := make([]string, 0, len(s.URLs))
		for _, raw := range s.URLs {
			u, err := stun.ParseURI(raw)
			if err != nil {
				urls = append(urls, raw)
				continue
			}
			switch {
			case u.Scheme == stun.SchemeTypeTURNS && u.Proto == stun.ProtoTypeUDP:
				continue
			case (u.Scheme == stun.SchemeTypeTURN || u.Scheme == stun.SchemeTypeTURNS) && u.Proto == stun.ProtoTypeTCP:
				if len(turnRecords.m) >= maxTURNRecords {
					clear(turnRecords.m)
				}
				turnRecords.m[net.JoinHostPort(u.Host, strconv.Itoa(u.Port))] = turnRecord{
					tls: u.Scheme == stun.SchemeTypeTURNS, serverName: u.Host,
				}
			}
			urls = append(urls, raw)
		}
		if len(urls) == 0 {
			continue
		}
		s.URLs = urls
		out = append(out, s)
	}
	return out
}

// turnRecordFor returns how to dial addr (as pion gives it: host:port).
func turnRecordFor(addr string) turnRecord {
	turnRecords.Lock()
	r, ok := turnRecords.m[addr]
	turnRecords.Unlock()
	if !ok {
		host, _, _ := net.SplitHostPort(addr)
		r = turnRecord{tls: true, serverName: host}
	}
	return r
}

// RootCAs returns the TLS roots an HTTP client trusts (its transport's
// RootCAs, the pool built from AWS_CA_BUNDLE), or nil for the system roots:
// what [Config.TURNRootCAs] should be for peers that talk to the same
// service.
func RootCAs(hc *http.Client) *x509.CertPool {
	if hc == nil {
		return nil
	}
	if tr, ok := hc.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil {
		return tr.TLSClientConfig.RootCAs
	}
	return nil
}

// turnDialer is the proxy dialer pion uses for TURN over TCP: plain TCP for
// turn: addresses, TLS with roots for turns: ones.
type turnDialer struct {
	roots *x509.CertPool
	log   *slog.Logger
}

// Dial implements golang.org/x/net/proxy.Dialer.
func (d *turnDialer) Dial(network, addr string) (net.Conn, error) {
	rec := turnRecordFor(addr)
	ctx, cancel := context.WithTimeout(context.Background(), turnDialTimeout)
	defer cancel()
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("rtc: TURN server %s: %w", addr, err)
	}
	if !rec.tls {
		return c, nil
	}
	tc := tls.Client(c, &tls.Config{ServerName: rec.serverName, RootCAs: d.roots, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			hint := "set AWS_CA_BUNDLE to the file with the service's CA certificate (kvsrtc local prints it)"
			if d.roots != nil {
				hint = "the configured CA bundle (AWS_CA_BUNDLE) does not hold the certificate that signed it"
			}
			err = fmt.Errorf("%w: turns:%s (server name %s): %w; %s", ErrTURNCertificate, addr, rec.serverName, err, hint)
			d.log.Error("TURN over TLS refused: certificate not trusted; this relay is not used", "server", addr, "err", err)
			return nil, err
		}
		d.log.Warn("TURN over TLS failed; this relay is not used", "server", addr, "err", err)
		return nil, fmt.Errorf("rtc: TURN server %s: TLS handshake: %w", addr, err)
	}
	return tc, nil
}
