// Package tlscert gives a role its TLS server configuration from
// config.TLS: off, certificate files, or a self-signed certificate made once
// and kept on disk. The proxy (HTTPS) and the TURN role (TURN over TLS, RFC
// 8656 section 3.1) use it.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/chorus-rtc/chorus/shared/config"
)

// selfSignedValidity is how long a generated certificate is valid.
const selfSignedValidity = 2 * 365 * 24 * time.Hour

// Config returns a server TLS configuration (nil when mode is off):
// the configured files, or a self-signed certificate for t.Hosts, generated
// on first start and kept in t.SelfSignedDir (cert.pem, key.pem) so that a
// browser's exception survives restarts.
func Config(t config.TLS) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	switch t.Mode {
	case "", "off":
		return nil, nil
	case "file":
		cert, err = tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	case "self-signed":
		cert, err = selfSigned(t.SelfSignedDir, t.Hosts)
	default:
		return nil, fmt.Errorf("tls: unknown mode %q (off, file or self-signed)", t.Mode)
	}
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// selfSigned loads dir/cert.pem and dir/key.pem, or writes them first.
func selfSigned(dir string, hosts []string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		return cert, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, err
	}
	certPEM, keyPEM, err := generateSelfSigned(hosts, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// generateSelfSigned makes a P-256 certificate for hosts (DNS names and IP
// addresses), valid from now for selfSignedValidity, as PEM.
func generateSelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Chorus (self-signed)"}, CommonName: "chorus"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(selfSignedValidity),
		// A server's certificate, not a CA: a browser exception for it
		// cannot vouch for any other certificate. ECDSA keys sign only
		// (RFC 5480 section 3: no keyEncipherment).
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
