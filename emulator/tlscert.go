package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// tlsMaterial is the service's self-signed certificate.
type tlsMaterial struct {
	cert    tls.Certificate
	leaf    *x509.Certificate
	certPEM []byte
}

const certValidity = 365 * 24 * time.Hour

// loadOrCreateCert returns a certificate for host (plus 127.0.0.1, ::1 and
// localhost). With a dataDir it reuses cert.pem/key.pem there when they are
// still valid for a week and cover host, and stores a new pair otherwise.
func loadOrCreateCert(dataDir, host string, now time.Time) (*tlsMaterial, error) {
	var certPath, keyPath string
	if dataDir != "" {
		certPath = filepath.Join(dataDir, "cert.pem")
		keyPath = filepath.Join(dataDir, "key.pem")
		if m, err := loadCert(certPath, keyPath); err == nil {
			// A certificate of an older version that is a CA is replaced:
			// whoever trusts it would trust anything its key signs.
			if !m.leaf.IsCA && m.leaf.NotAfter.After(now.Add(7*24*time.Hour)) && m.leaf.VerifyHostname(host) == nil {
				return m, nil
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("emulator: TLS certificate in %s: %w (delete cert.pem and key.pem to get a new one)", dataDir, err)
		}
	}
	certPEM, keyPEM, err := newSelfSigned(host, now)
	if err != nil {
		return nil, err
	}
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
			return nil, err
		}
	}
	return parseCert(certPEM, keyPEM)
}

func loadCert(certPath, keyPath string) (*tlsMaterial, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	return parseCert(certPEM, keyPEM)
}

func parseCert(certPEM, keyPEM []byte) (*tlsMaterial, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, err
	}
	c.Leaf = leaf
	return &tlsMaterial{cert: c, leaf: leaf, certPEM: certPEM}, nil
}

// newSelfSigned makes a self-signed ECDSA P-256 server certificate. It is
// a leaf, not a CA (basic constraints CA:FALSE, no certSign key usage):
// clients trust exactly this certificate (AWS_CA_BUNDLE, a Go cert pool,
// Chromium's SPKI list), and its key, should it leak, can sign nothing
// else they would accept.
func newSelfSigned(host string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	dns := []string{"localhost"}
	if ip := net.ParseIP(host); ip != nil {
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	} else if host != "" && host != "localhost" {
		dns = append(dns, host)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "kvsrtc local signaling service", Organization: []string{"kvsrtc"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		IPAddresses:           ips,
		DNSNames:              dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// spkiHash is base64(sha256(SubjectPublicKeyInfo)), the form Chromium's
// --ignore-certificate-errors-spki-list takes.
func (m *tlsMaterial) spkiHash() string {
	sum := sha256.Sum256(m.leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
