// Package netdiag tells why a request never got an answer from a service:
// the host name did not resolve, nothing listened, the TLS handshake
// failed, a proxy refused, or nothing came back in time. Package control
// and package signaling wrap such failures in an *Error (exported there as
// UnreachableError), so that the viewer, the doctor and the web player name
// the same endpoint, the same failure and the same fix.
//
// It uses the standard library only.
package netdiag

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// Failure is what went wrong on the way to a service.
type Failure string

// Failures, from the first step of a connection to the last.
const (
	// FailureDNS: the endpoint's host name did not resolve.
	FailureDNS Failure = "dns"
	// FailureProxy: the HTTP proxy (HTTPS_PROXY, HTTP_PROXY) could not be
	// reached or refused the connection.
	FailureProxy Failure = "proxy"
	// FailureRefused: nothing listens on the endpoint's port (connection
	// refused).
	FailureRefused Failure = "refused"
	// FailureDial: the connection could not be made (no route, network
	// unreachable).
	FailureDial Failure = "dial"
	// FailureTLSUnknownCA: the server's certificate is signed by an
	// authority this machine does not trust.
	FailureTLSUnknownCA Failure = "tls-unknown-ca"
	// FailureTLSName: the server's certificate is not valid for the
	// endpoint's host name.
	FailureTLSName Failure = "tls-name-mismatch"
	// FailureTLS: another TLS failure (expired certificate, not a TLS
	// server, handshake alert, an https client talking to an http port).
	FailureTLS Failure = "tls"
	// FailureClosed: the server closed the connection before it answered.
	FailureClosed Failure = "closed"
	// FailureTimeout: no connection or no answer within the time limit.
	FailureTimeout Failure = "timeout"
)

// String returns the failure's name.
func (f Failure) String() string { return string(f) }

// what says which step failed and how, in a few words.
func (f Failure) what() string {
	switch f {
	case FailureDNS:
		return "DNS: lookup failed"
	case FailureProxy:
		return "proxy: failed"
	case FailureRefused:
		return "dial: connection refused"
	case FailureDial:
		return "dial: no route"
	case FailureTLSUnknownCA:
		return "TLS: certificate signed by an unknown authority"
	case FailureTLSName:
		return "TLS: certificate not valid for this host name"
	case FailureTLS:
		return "TLS: handshake failed"
	case FailureClosed:
		return "closed before an answer"
	case FailureTimeout:
		return "timeout: no answer in time"
	}
	return string(f)
}

// Service is the service an endpoint belongs to.
type Service string

// Services kvsrtc talks to.
const (
	ServiceControl   Service = "KVS control plane"
	ServiceSignaling Service = "KVS signaling endpoint"
	ServiceSTS       Service = "STS"
)

// Error is a request that got no answer from a service. It unwraps to the
// sentinel of the package that made it (control.ErrUnreachable,
// signaling.ErrUnreachable) and to the underlying error.
type Error struct {
	// Service is the service the endpoint belongs to.
	Service Service
	// Op is what was being done ("DescribeSignalingChannel", "dial").
	Op string
	// Endpoint is the endpoint's scheme, host and port (no path, no
	// query: presigned URLs carry credentials).
	Endpoint string
	// Proxy is the HTTP proxy the request went through ("" if none).
	Proxy string
	// Failure is what failed.
	Failure Failure
	// Err is the underlying error.
	Err error

	prefix   string // "control: ", "signaling: "
	sentinel error
}

// Error says which endpoint could not be reached and what failed.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.prefix)
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s %s unreachable (%s", e.Service, e.Endpoint, e.Failure.what())
	if e.Proxy != "" {
		fmt.Fprintf(&b, ", via proxy %s", e.Proxy)
	}
	b.WriteString(")")
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(innermost(e.Err))
	}
	return b.String()
}

// Unwrap returns the package's sentinel and the underlying error.
func (e *Error) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.sentinel != nil {
		out = append(out, e.sentinel)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// What says which step failed and how ("dial: connection refused",
// "TLS: certificate signed by an unknown authority").
func (e *Error) What() string { return e.Failure.what() }

// Detail is the most specific message of the underlying error (the one
// below net/http's *url.Error, which repeats the whole URL).
func (e *Error) Detail() string {
	if e.Err == nil {
		return ""
	}
	return innermost(e.Err)
}

// Host returns the endpoint's host:port.
func (e *Error) Host() string {
	u, err := url.Parse(e.Endpoint)
	if err != nil || u.Host == "" {
		return e.Endpoint
	}
	if u.Port() != "" {
		return u.Host
	}
	switch u.Scheme {
	case "http", "ws":
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return net.JoinHostPort(u.Hostname(), "443")
}

// Advice says what to do about the failure, naming the settings that
// decide the endpoint and its trust.
func (e *Error) Advice() string {
	host := e.Host()
	name := hostname(e.Endpoint)
	var where string
	switch e.Service {
	case ServiceSignaling:
		where = "the control plane handed out this endpoint: if it is `kvsrtc local`, it stopped, or it advertises a name or address this machine cannot reach (start it with --hostname set to one it can)"
	case ServiceSTS:
		where = "set AWS_ENDPOINT_URL_STS (--sts-endpoint) to a reachable STS endpoint, or unset it for AWS's"
	default:
		where = "is `kvsrtc local` running? Start it, or point AWS_ENDPOINT_URL_KINESIS_VIDEO (--endpoint-url) at the address it prints; for AWS, unset AWS_ENDPOINT_URL_KINESIS_VIDEO and check AWS_REGION"
	}
	switch e.Failure {
	case FailureDNS:
		return fmt.Sprintf("the host name %s does not resolve: check the endpoint for typos, and this machine's network and DNS; %s", name, where)
	case FailureProxy:
		return fmt.Sprintf("the HTTP proxy %s failed on the way to %s: check HTTPS_PROXY / HTTP_PROXY, or add %s to NO_PROXY", orDefault(e.Proxy, "(HTTPS_PROXY)"), host, name)
	case FailureRefused:
		return fmt.Sprintf("nothing accepts connections on %s: %s", host, where)
	case FailureDial:
		return fmt.Sprintf("no network path to %s: check this machine's network connection, VPN and firewall; %s", host, where)
	case FailureTLSUnknownCA:
		return fmt.Sprintf("the TLS certificate of %s is signed by an authority this machine does not trust: for `kvsrtc local --tls`, export AWS_CA_BUNDLE=<the cert.pem it prints>; behind a TLS-inspecting proxy, set AWS_CA_BUNDLE to the proxy's CA", host)
	case FailureTLSName:
		return fmt.Sprintf("the TLS certificate of %s is not valid for the name %s: use the host name the certificate names in the endpoint URL (`kvsrtc local --tls --hostname NAME` puts NAME into it)", host, name)
	case FailureTLS:
		return fmt.Sprintf("the TLS handshake with %s failed: check that the endpoint URL's scheme matches the server (https:// for `kvsrtc local --tls`, http:// without), the certificate's dates, and AWS_CA_BUNDLE", host)
	case FailureClosed:
		return fmt.Sprintf("%s closed the connection without answering: check the endpoint URL's port and scheme; %s", host, where)
	case FailureTimeout:
		return fmt.Sprintf("%s did not answer in time: check this machine's network, a firewall that drops packets, and whether the service hangs; %s", host, where)
	}
	return where
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// hostname returns the host name of an endpoint URL.
func hostname(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return endpoint
	}
	return u.Hostname()
}

// Endpoint returns the scheme, host and port of a URL (no user info, path
// or query), or "" if it does not parse.
func Endpoint(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// Classify returns what failed when err is a failure to reach a service
// (no HTTP answer), and false for anything else: an HTTP error answer,
// a cancelled context, an error of the caller's own making.
func Classify(err error) (Failure, bool) {
	if err == nil || errors.Is(err, context.Canceled) {
		return "", false
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr):
		return FailureDNS, true
	case errors.As(err, &opErr) && opErr.Op == "proxyconnect":
		return FailureProxy, true
	case errors.As(err, &unknownCA):
		return FailureTLSUnknownCA, true
	case errors.As(err, &hostErr):
		return FailureTLSName, true
	case errors.As(err, &invalid), errors.As(err, &verify), errors.As(err, &record), errors.As(err, &alert),
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return FailureTLS, true
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailureRefused, true
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return FailureTimeout, true
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH),
		errors.As(err, &opErr) && opErr.Op == "dial":
		return FailureDial, true
	case errors.Is(err, syscall.ECONNRESET), isEOF(err):
		return FailureClosed, true
	}
	return "", false
}

// isEOF reports a transport-level EOF (the server closed the connection
// before answering), as net/http reports it inside a *url.Error.
func isEOF(err error) bool {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return false
	}
	s := ue.Err.Error()
	return s == "EOF" || strings.HasSuffix(s, ": EOF") || strings.Contains(s, "unexpected EOF")
}

// Wrap returns an *Error for err when err is a failure to reach endpoint
// (see Classify), and nil otherwise. sentinel is what the *Error unwraps
// to; prefix starts its message ("control: "). An empty endpoint is taken
// from the *url.Error in err's chain.
func Wrap(err, sentinel error, prefix string, service Service, op, endpoint string) *Error {
	f, ok := Classify(err)
	if !ok {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) && endpoint == "" {
		endpoint = Endpoint(ue.URL)
	}
	e := &Error{Service: service, Op: op, Endpoint: endpoint, Failure: f, Err: err, prefix: prefix, sentinel: sentinel}
	if p := proxyFor(endpoint); p != "" {
		e.Proxy = p
		if f == FailureClosed {
			e.Failure = FailureProxy
		}
	} else if f == FailureProxy {
		e.Proxy = proxyAddr(err)
	}
	return e
}

// proxyAddr returns the address of the proxy net/http failed to reach:
// the address of the dial below its "proxyconnect" error.
func proxyAddr(err error) string {
	for err != nil {
		if op, ok := err.(*net.OpError); ok && op.Addr != nil { //nolint:errorlint // walking the chain one error at a time
			return op.Addr.String()
		}
		err = errors.Unwrap(err)
	}
	return ""
}

// proxyFor returns the proxy host net/http's default transport uses for
// endpoint ("" for none).
func proxyFor(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return ""
	}
	switch u.Scheme {
	case "wss":
		u.Scheme = "https"
	case "ws":
		u.Scheme = "http"
	}
	p, err := http.ProxyFromEnvironment(&http.Request{URL: u})
	if err != nil || p == nil {
		return ""
	}
	return p.Host
}

// innermost returns the most specific message of err: the one below the
// *url.Error that net/http reports (which repeats the whole URL), or
// err's own.
func innermost(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err.Error()
	}
	return err.Error()
}
