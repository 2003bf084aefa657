package turn

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/shared/turncred"
)

// TestMain checks for leaked goroutines after plain test runs (seed corpora
// included). Under -fuzz it does not: the fuzzing engine's coordinator and
// worker processes run their own goroutines around m.Run.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

const testSecret = "test-secret"

var loopback = netip.MustParseAddr("127.0.0.1")

// testLogger discards, unless TURN_TEST_LOG=1 (then debug to stderr).
func testLogger() *slog.Logger {
	if os.Getenv("TURN_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is a running server on loopback with UDP, TCP and TLS on ephemeral
// ports, and an empty peer set.
type env struct {
	srv   *Server
	peers *PeerSet
	roots *x509.CertPool
}

func startServer(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	tlsCfg, roots := selfSignedTLS(t)
	peers := NewPeerSet()
	cfg := Config{
		Secret: testSecret, ListenIP: loopback, TLSConfig: tlsCfg,
		RelayIP: loopback, RelayBindIP: loopback, Peers: peers, Logger: testLogger(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
		if n := srv.Stats().AllocationsActive.Load(); n != 0 {
			t.Errorf("%d allocations active after Run returned", n)
		}
	})
	return &env{srv: srv, peers: peers, roots: roots}
}

// selfSignedTLS returns a server TLS config with a fresh self-signed
// certificate for 127.0.0.1 and localhost, and a pool trusting it.
func selfSignedTLS(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chorus turn test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	}, pool
}

// mint returns a credential for id valid for an hour.
func mint(t *testing.T, id string) (string, string) {
	t.Helper()
	u, p, err := turncred.Mint(testSecret, id, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return u, p
}

// peer is a UDP socket on loopback standing for a media node.
func newPeer(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// dialTransport opens the client side of transport ("udp", "tcp" or "tls")
// to the server, as a net.PacketConn for pion's client.
func (e *env) dialTransport(t *testing.T, transport string) (net.PacketConn, netip.AddrPort) {
	t.Helper()
	a := e.srv.Addrs()
	switch transport {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return c, a.UDP
	case "tcp":
		c, err := net.Dial("tcp4", a.TCP.String())
		if err != nil {
			t.Fatal(err)
		}
		return pionturn.NewSTUNConn(c), a.TCP
	case "tls":
		c, err := tls.Dial("tcp4", a.TLS.String(), &tls.Config{RootCAs: e.roots, ServerName: "localhost",
			MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		return pionturn.NewSTUNConn(c), a.TLS
	}
	t.Fatalf("unknown transport %q", transport)
	return nil, netip.AddrPort{}
}

// client is a pion TURN client over transport, closed (with its socket) at
// the end of the test.
type client struct {
	*pionturn.Client
	conn net.PacketConn
}

func (e *env) newClient(t *testing.T, transport, username, password string) *client {
	t.Helper()
	conn, server := e.dialTransport(t, transport)
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: server.String(), Username: username, Password: password, Conn: conn,
		LoggerFactory: slogFactory{log: testLogger()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return &client{Client: c, conn: conn}
}

// allocate allocates a UDP relay, closed at the end of the test.
func (c *client) allocate(t *testing.T) net.PacketConn {
	t.Helper()
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay
}

// turnCode returns the STUN error code in err, or 0.
func turnCode(err error) int {
	var pe *stun.TurnError
	if errors.As(err, &pe) {
		return int(pe.ErrorCodeAttr.Code)
	}
	var ve stun.TurnError
	if errors.As(err, &ve) {
		return int(ve.ErrorCodeAttr.Code)
	}
	return 0
}

// readFrom reads one datagram with a timeout.
func readFrom(t *testing.T, c net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, from, err := c.ReadFrom(buf)
	return buf[:n], from, err
}

// expectPacket reads from c until want arrives (other payloads are
// skipped), failing after timeout.
func expectPacket(t *testing.T, c net.PacketConn, want []byte, timeout time.Duration) net.Addr {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, from, err := readFrom(t, c, time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if bytes.Equal(got, want) {
			return from
		}
	}
}

// eventually polls cond every 5 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawSession speaks STUN by hand over a connected UDP socket, for requests
// pion's client does not make (another realm, ChannelBind on its own).
type rawSession struct {
	conn                      net.Conn
	username, realm, password string
	nonce                     stun.Nonce
}

var requestedUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

func (e *env) newRawSession(t *testing.T, username, realm, password string) *rawSession {
	t.Helper()
	c, err := net.Dial("udp4", e.srv.Addrs().UDP.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawSession{conn: c, username: username, realm: realm, password: password}
}

// roundTrip sends a request and returns the response with its transaction id.
func (r *rawSession) roundTrip(t *testing.T, setters ...stun.Setter) *stun.Message {
	t.Helper()
	req, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for {
		if err := r.conn.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := r.conn.Read(buf)
		if err != nil {
			t.Fatalf("no answer to %v: %v", req.Type, err)
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if res.Decode() == nil && res.TransactionID == req.TransactionID {
			return res
		}
	}
}

// request makes an authenticated request (after a first challenge to learn
// the nonce) and returns the response's error code (0 for success).
func (r *rawSession) request(t *testing.T, method stun.Method, attrs ...stun.Setter) int {
	t.Helper()
	if r.nonce == nil {
		res := r.roundTrip(t, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP)
		if code := errorCode(res); code != int(stun.CodeUnauthorized) {
			t.Fatalf("challenge: code %d, want 401", code)
		}
		if err := r.nonce.GetFrom(res); err != nil {
			t.Fatalf("challenge without nonce: %v", err)
		}
	}
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	setters = append(setters, stun.NewUsername(r.username), stun.NewRealm(r.realm), r.nonce,
		stun.NewLongTermIntegrity(r.username, r.realm, r.password), stun.Fingerprint)
	return errorCode(r.roundTrip(t, setters...))
}

func errorCode(m *stun.Message) int {
	if m.Type.Class != stun.ClassErrorResponse {
		return 0
	}
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(m); err != nil {
		return -1
	}
	return int(code.Code)
}

// peerAddress is an XOR-PEER-ADDRESS attribute.
type peerAddress netip.AddrPort

func (p peerAddress) AddTo(m *stun.Message) error {
	a := netip.AddrPort(p)
	return stun.XORMappedAddress{IP: a.Addr().AsSlice(), Port: int(a.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}
