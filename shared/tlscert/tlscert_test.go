package tlscert

import (
	"bytes"
	"crypto/x509"
	"net"
	"testing"

	"github.com/chorus-rtc/chorus/shared/config"
)

func TestSelfSignedCertificateIsKeptAcrossStarts(t *testing.T) {
	dir := t.TempDir()
	cfg := config.TLS{Mode: "self-signed", SelfSignedDir: dir, Hosts: []string{"localhost", "127.0.0.1", "192.168.1.20"}}
	first, err := Config(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Config(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, b := first.Certificates[0].Certificate[0], second.Certificates[0].Certificate[0]
	if !bytes.Equal(a, b) {
		t.Fatal("a second start generated another certificate instead of reading the first")
	}
	cert, err := x509.ParseCertificate(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
	if err := cert.VerifyHostname("192.168.1.20"); err != nil {
		t.Error(err)
	}
	if err := cert.VerifyHostname("example.com"); err == nil {
		t.Error("certificate valid for a host it was not made for")
	}
	if !cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IP SANs %v", cert.IPAddresses)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.TLS
		ok   bool
	}{
		{"off", config.TLS{Mode: "off"}, true},
		{"missing files", config.TLS{Mode: "file", CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"}, false},
		{"unknown mode", config.TLS{Mode: "acme"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Config(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestSelfSignedCertificateIsNotACA: the generated certificate is a server's
// (not a CA, no certificate signing), so that trusting it in a browser
// trusts nothing else.
func TestSelfSignedCertificateIsNotACA(t *testing.T) {
	cfg, err := Config(config.TLS{Mode: "self-signed", SelfSignedDir: t.TempDir(), Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if cert.IsCA || !cert.BasicConstraintsValid {
		t.Errorf("IsCA %v, basic constraints present %v: want an end-entity certificate", cert.IsCA, cert.BasicConstraintsValid)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign != 0 || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("key usage %b: want digital signature and no certificate signing", cert.KeyUsage)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("extended key usage %v, want server auth only", cert.ExtKeyUsage)
	}
}
