package rtc

import (
	"crypto/x509"
	"log/slog"
	"net"
)

// DialTURN dials a TCP TURN server at addr as a PeerConnection of an API
// with TURNRootCAs roots would.
func DialTURN(roots *x509.CertPool, log *slog.Logger, addr string) (net.Conn, error) {
	return (&turnDialer{roots: roots, log: log}).Dial("tcp4", addr)
}
