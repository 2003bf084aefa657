package turn

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/chorus-rtc/chorus/shared/turncred"
)

var transports = []string{"udp", "tcp", "tls"}

// TestRelay: over each transport, a client allocates, sends to an allowed
// peer through its relay, and gets the peer's answer back.
func TestRelay(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			e := startServer(t, nil)
			peer := newPeer(t)
			e.peers.Replace([]netip.AddrPort{addrOf(peer)})
			u, p := mint(t, "con_"+transport)
			relay := e.newClient(t, transport, u, p).allocate(t)

			relayAddr := relay.LocalAddr().(*net.UDPAddr).AddrPort()
			if relayAddr.Addr() != loopback || relayAddr.Port() == 0 {
				t.Fatalf("relayed address %v, want 127.0.0.1:<port>", relayAddr)
			}
			if _, err := relay.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil {
				t.Fatalf("WriteTo peer: %v", err)
			}
			from := expectPacket(t, peer, []byte("hello"), 3*time.Second)
			if got := from.(*net.UDPAddr).AddrPort(); got != relayAddr {
				t.Errorf("peer got the datagram from %v, want the relayed address %v", got, relayAddr)
			}
			if _, err := peer.WriteTo([]byte("world"), from); err != nil {
				t.Fatal(err)
			}
			from = expectPacket(t, relay, []byte("world"), 3*time.Second)
			if got := from.(*net.UDPAddr).AddrPort(); got != addrOf(peer) {
				t.Errorf("client got the answer from %v, want the peer %v", got, addrOf(peer))
			}

			st := e.srv.Stats()
			if st.AllocationsActive.Load() != 1 || st.Allocations.Load() != 1 {
				t.Errorf("allocations: active %d, total %d; want 1, 1", st.AllocationsActive.Load(), st.Allocations.Load())
			}
			// A datagram is counted once its write returned, which may be
			// after the peer has it.
			eventually(t, 3*time.Second, "2 relayed datagrams of 10 bytes in all", func() bool {
				return st.RelayedPackets.Load() >= 2 && st.RelayedBytes.Load() >= 10
			})
			if st.AuthFailures.Load() != 0 || st.DroppedByFilter.Load() != 0 {
				t.Errorf("auth failures %d, dropped by filter %d; want 0, 0", st.AuthFailures.Load(), st.DroppedByFilter.Load())
			}
		})
	}
}

// TestAuthRefused: credentials the server must refuse get 401 Unauthorized
// (RFC 8489 section 9.2.4) and no allocation, whether the client answered
// the challenge with them (through pion's client) or sent them at once (the
// raw cases). pion/turn v5.1.0 answered 400 Bad Request to the former;
// v5.1.3 answers 401.
func TestAuthRefused(t *testing.T) {
	good, goodPassword := mint(t, "con_A")
	expired, expiredPassword, err := turncred.Mint(testSecret, "con_A", time.Hour, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherSecretUser, otherSecretPassword, err := turncred.Mint("another-secret", "con_A", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	farFuture := "99999999999:con_A"
	tests := []struct {
		name               string
		username, password string
		realm              string // "": through pion's client, which uses the server's realm
		wantCode           int
	}{
		{name: "wrong password", username: good, password: "not-the-password", wantCode: 401},
		{name: "password of another secret", username: otherSecretUser, password: otherSecretPassword, wantCode: 401},
		{name: "expired username", username: expired, password: expiredPassword, wantCode: 401},
		{name: "malformed username", username: "con_A", password: goodPassword, wantCode: 401},
		{name: "forged expiry", username: farFuture, password: goodPassword, wantCode: 401},
		{name: "unknown realm", username: good, password: goodPassword, realm: "elsewhere", wantCode: 401},
		{name: "realm differing in case", username: good, password: goodPassword, realm: "Chorus", wantCode: 401},
		{name: "control: right realm by hand", username: good, password: goodPassword, realm: "chorus", wantCode: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startServer(t, nil)
			var code int
			if tt.realm == "" {
				_, err := e.newClient(t, "udp", tt.username, tt.password).Allocate()
				if err == nil {
					t.Fatal("Allocate succeeded")
				}
				code = turnCode(err)
			} else {
				r := e.newRawSession(t, tt.username, tt.realm, tt.password)
				code = r.request(t, stun.MethodAllocate, requestedUDP)
				if code == 0 {
					// Free the control allocation (Refresh, LIFETIME 0).
					lifetime0 := stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}}
					if c := r.request(t, stun.MethodRefresh, lifetime0); c != 0 {
						t.Fatalf("Refresh(0): code %d", c)
					}
				}
			}
			if code != tt.wantCode {
				t.Fatalf("code %d, want %d", code, tt.wantCode)
			}
			st := e.srv.Stats()
			if tt.wantCode != 0 {
				if st.Allocations.Load() != 0 {
					t.Errorf("%d allocations made", st.Allocations.Load())
				}
				if st.AuthFailures.Load() == 0 {
					t.Error("auth failure not counted")
				}
			}
		})
	}
}

// TestPermissionRefused: CreatePermission and ChannelBind to an IP that is
// no allowed peer's are refused; the allocation stays usable.
func TestPermissionRefused(t *testing.T) {
	e := startServer(t, nil)
	peer := newPeer(t)
	e.peers.Replace([]netip.AddrPort{addrOf(peer)})
	u, p := mint(t, "con_A")
	c := e.newClient(t, "udp", u, p)
	relay := c.allocate(t)

	stranger := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(addrOf(peer).Port())}
	err := c.CreatePermission(stranger)
	if code := turnCode(err); code != 403 {
		t.Fatalf("CreatePermission(%v): %v (code %d), want 403", stranger, err, code)
	}
	if _, err := relay.WriteTo([]byte("x"), stranger); turnCode(err) != 403 {
		t.Fatalf("WriteTo(%v): %v, want 403", stranger, err)
	}
	if _, err := relay.WriteTo([]byte("still works"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	expectPacket(t, peer, []byte("still works"), 3*time.Second)

	// ChannelBind by hand (pion's client binds only after a permission).
	// pion answers a refused ChannelBind with 401 Unauthorized.
	r := e.newRawSession(t, u, DefaultRealm, p)
	if code := r.request(t, stun.MethodAllocate, requestedUDP); code != 0 {
		t.Fatalf("raw Allocate: code %d", code)
	}
	channel := stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40, 0x00, 0, 0}}
	strangerPeer := peerAddress(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), 9))
	if code := r.request(t, stun.MethodChannelBind, channel, strangerPeer); code != 401 {
		t.Fatalf("ChannelBind to 127.0.0.2: code %d, want 401 (pion's answer to a refused peer)", code)
	}
	if code := r.request(t, stun.MethodChannelBind, channel, peerAddress(addrOf(peer))); code != 0 {
		t.Fatalf("ChannelBind to the allowed peer: code %d", code)
	}
	if got := e.srv.Stats().PermissionDenials.Load(); got < 3 {
		t.Errorf("permission denials %d, want at least 3", got)
	}
}

// TestRelayFilterPorts: a permitted IP does not open its other ports, in
// either direction.
func TestRelayFilterPorts(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			e := startServer(t, nil)
			allowed, other := newPeer(t), newPeer(t)
			e.peers.Replace([]netip.AddrPort{addrOf(allowed)})
			u, p := mint(t, "con_A")
			relay := e.newClient(t, transport, u, p).allocate(t)

			// Several rounds, spaced, so that both the Send indication and
			// the ChannelData paths (after pion's client binds channels) run.
			for i := range 5 {
				for _, to := range []*net.UDPConn{allowed, other} {
					if _, err := relay.WriteTo(fmt.Appendf(nil, "to %v #%d", addrOf(to), i), to.LocalAddr()); err != nil {
						t.Fatalf("WriteTo %v: %v", addrOf(to), err)
					}
				}
				expectPacket(t, allowed, fmt.Appendf(nil, "to %v #%d", addrOf(allowed), i), 3*time.Second)
				time.Sleep(20 * time.Millisecond)
			}
			if got, _, err := readFrom(t, other, 200*time.Millisecond); err == nil {
				t.Fatalf("the other port of the allowed IP received %q", got)
			}
			if got := e.srv.Stats().DroppedByFilter.Load(); got < 5 {
				t.Errorf("dropped by filter %d, want at least 5", got)
			}

			// Inbound: the other port's datagrams never reach the client.
			relayAddr := relay.LocalAddr()
			before := e.srv.Stats().DroppedByFilter.Load()
			for range 3 {
				if _, err := other.WriteTo([]byte("from other"), relayAddr); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 3*time.Second, "inbound drops", func() bool {
				return e.srv.Stats().DroppedByFilter.Load() >= before+3
			})
			if _, err := allowed.WriteTo([]byte("from allowed"), relayAddr); err != nil {
				t.Fatal(err)
			}
			for {
				got, from, err := readFrom(t, relay, 3*time.Second)
				if err != nil {
					t.Fatalf("client read: %v", err)
				}
				if bytes.Equal(got, []byte("from other")) {
					t.Fatalf("client received %q from %v", got, from)
				}
				if bytes.Equal(got, []byte("from allowed")) {
					break
				}
			}
		})
	}
}

// TestQuota: past MaxAllocationsPerUser allocations of one connection id,
// Allocate gets 486; ending allocations (Refresh with lifetime 0, or the
// client's TCP connection closing) lets new ones in.
func TestQuota(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MaxAllocationsPerUser = 2 })
	st := e.srv.Stats()
	u1, p1 := mint(t, "con_A")
	// A fresh credential for the same connection shares its quota.
	u2, p2, err := turncred.Mint(testSecret, "con_A", 2*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	first := e.newClient(t, "udp", u1, p1)
	firstRelay, err := first.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	tcpClient := e.newClient(t, "tcp", u2, p2)
	tcpClient.allocate(t)

	third := e.newClient(t, "udp", u1, p1)
	if _, err := third.Allocate(); turnCode(err) != 486 {
		t.Fatalf("third Allocate: %v, want 486", err)
	}
	if st.QuotaRejections.Load() != 1 {
		t.Errorf("quota rejections %d, want 1", st.QuotaRejections.Load())
	}
	ub, pb := mint(t, "con_B")
	e.newClient(t, "udp", ub, pb).allocate(t) // another user is not affected

	// Refresh with lifetime 0 (pion's client sends it on Close).
	if err := firstRelay.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the allocation to end", func() bool { return e.srv.quota.count("con_A") == 1 })
	third.allocate(t)
	if _, err := e.newClient(t, "udp", u1, p1).Allocate(); turnCode(err) != 486 {
		t.Fatalf("Allocate past the quota again: %v, want 486", err)
	}

	// The TCP client's connection closing ends its allocation.
	_ = tcpClient.conn.Close()
	eventually(t, 3*time.Second, "the TCP allocation to end", func() bool { return e.srv.quota.count("con_A") == 1 })
	e.newClient(t, "udp", u1, p1).allocate(t)
	if got := st.AllocationsActive.Load(); got != 3 {
		t.Errorf("active allocations %d, want 3", got)
	}
}

// TestQuotaConcurrent: Allocate requests of one user arriving at once on
// many TCP connections (each served by its own goroutine) do not overshoot.
func TestQuotaConcurrent(t *testing.T) {
	const max, clients = 2, 8
	e := startServer(t, func(c *Config) { c.MaxAllocationsPerUser = max })
	u, p := mint(t, "con_A")
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = e.newClient(t, "tcp", u, p)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, refused int
	var relays []net.PacketConn
	defer func() {
		for _, r := range relays {
			_ = r.Close()
		}
	}()
	for _, c := range cs {
		wg.Go(func() {
			relay, err := c.Allocate()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
				relays = append(relays, relay)
			case turnCode(err) == 486:
				refused++
			default:
				t.Errorf("Allocate: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != max || refused != clients-max {
		t.Fatalf("%d allocated, %d refused; want %d, %d", ok, refused, max, clients-max)
	}
}

// TestBandwidthCap: datagrams over an allocation's cap are dropped, in each
// direction.
func TestBandwidthCap(t *testing.T) {
	// 80 kbit/s = 10 kB/s; the bucket holds max(2.5 kB, 2 datagrams of 1600 B).
	e := startServer(t, func(c *Config) { c.MaxBitsPerSecondPerAllocation = 80_000 })
	peer := newPeer(t)
	e.peers.Replace([]netip.AddrPort{addrOf(peer)})
	u, p := mint(t, "con_A")
	relay := e.newClient(t, "udp", u, p).allocate(t)
	st := e.srv.Stats()

	if _, err := relay.WriteTo([]byte("first"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	relayAddr := expectPacket(t, peer, []byte("first"), 3*time.Second)

	const n, size = 60, 1000
	payload := bytes.Repeat([]byte{'x'}, size)
	for range n {
		if _, err := relay.WriteTo(payload, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	got := countPackets(t, peer, size)
	if got == 0 || got > n/2 {
		t.Errorf("peer received %d of %d datagrams of %d B at 10 kB/s, want some but at most half", got, n, size)
	}
	out := st.DroppedByBandwidth.Load()
	if out == 0 {
		t.Fatal("no datagram dropped by the cap towards the peer")
	}

	for range n {
		if _, err := peer.WriteTo(payload, relayAddr); err != nil {
			t.Fatal(err)
		}
	}
	got = countPackets(t, relay, size)
	if got == 0 || got > n/2 {
		t.Errorf("client received %d of %d datagrams, want some but at most half", got, n)
	}
	if st.DroppedByBandwidth.Load() == out {
		t.Error("no datagram dropped by the cap towards the client")
	}
}

// countPackets counts datagrams of size until none comes for 300 ms.
func countPackets(t *testing.T, c net.PacketConn, size int) int {
	t.Helper()
	n := 0
	for {
		got, _, err := readFrom(t, c, 300*time.Millisecond)
		if err != nil {
			return n
		}
		if len(got) == size {
			n++
		}
	}
}

// TestTCPAllocationRefused: RFC 6062 TCP relay allocations are not offered
// (pion answers 508 Insufficient Capacity when the generator refuses).
func TestTCPAllocationRefused(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MaxAllocationsPerUser = 1 })
	u, p := mint(t, "con_A")
	for _, transport := range transports {
		_, err := e.newClient(t, transport, u, p).AllocateTCP()
		if code := turnCode(err); code != 508 {
			t.Fatalf("AllocateTCP over %s: %v (code %d), want 508", transport, err, code)
		}
		// pion reports the failure (which releases the slot) just after
		// sending the 508.
		eventually(t, 3*time.Second, "the quota slot to be released", func() bool {
			return e.srv.quota.pendingCount() == 0
		})
	}
	if e.srv.quota.count("con_A") != 0 || e.srv.Stats().Allocations.Load() != 0 {
		t.Error("a refused TCP allocation was counted")
	}
	// The refused requests' quota slots were released (well before
	// pendingTTL): the user's one allowed allocation is still available.
	e.newClient(t, "udp", u, p).allocate(t)
}

// garbage is a set of malformed inputs: random bytes, truncated and
// oversized STUN headers, bad ChannelData, unknown comprehension-required
// attributes, requests without an allocation.
func garbage(rnd *rand.Rand) [][]byte {
	cookie := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[4:8], 0x2112A442) // STUN's magic cookie
		return b
	}
	out := [][]byte{
		{}, {0}, {0x00, 0x01}, bytes.Repeat([]byte{0xff}, 1500),
		cookie([]byte{0x00, 0x01, 0xff, 0xfc, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}),                   // length past the end
		cookie([]byte{0x00, 0x03, 0x00, 0x08, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x00, 0x19, 0x00}), // truncated attribute
		{0x40, 0x00, 0x00, 0x64, 1, 2, 3}, // ChannelData, short
		{0x7f, 0xff, 0x00, 0x00},          // ChannelData, empty, unbound
	}
	unknown := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: 0x0033, Value: []byte{1, 2, 3, 4}})
	send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		stun.RawAttribute{Type: stun.AttrData, Value: []byte("x")})
	refresh := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
		stun.NewUsername("1:x"), stun.NewRealm("chorus"), stun.NewNonce("bogus"),
		stun.NewLongTermIntegrity("1:x", "chorus", "p"))
	out = append(out, unknown.Raw, send.Raw, refresh.Raw)
	for range 12 {
		b := make([]byte, 1+rnd.IntN(600))
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		if rnd.IntN(2) == 0 && len(b) >= 20 {
			b[0] &= 0x3f
			cookie(b)
		}
		out = append(out, b)
	}
	return out
}

// TestGarbage: malformed input on each listener, sent while a good client
// of the same transport allocates and relays, leaves the server serving it
// and the next client.
func TestGarbage(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			e := startServer(t, nil)
			peer := newPeer(t)
			e.peers.Replace([]netip.AddrPort{addrOf(peer)})
			u, p := mint(t, "con_A")
			rnd := rand.New(rand.NewPCG(1, uint64(len(transport))))
			junk := garbage(rnd)

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { sendGarbage(ctx, t, e, transport, junk) })

			for i := range 2 {
				relay := e.newClient(t, transport, u, p).allocate(t)
				msg := fmt.Appendf(nil, "good client %d", i)
				if _, err := relay.WriteTo(msg, peer.LocalAddr()); err != nil {
					t.Fatalf("good client %d: %v", i, err)
				}
				expectPacket(t, peer, msg, 3*time.Second)
				if i == 0 {
					time.Sleep(100 * time.Millisecond) // let the garbage keep coming
				}
			}
			cancel()
			wg.Wait()

			relay := e.newClient(t, transport, u, p).allocate(t)
			if _, err := relay.WriteTo([]byte("after"), peer.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			expectPacket(t, peer, []byte("after"), 3*time.Second)
		})
	}
}

// sendGarbage sends junk to the server over transport until ctx ends (at
// least one full round), each TCP or TLS message on its own connection.
func sendGarbage(ctx context.Context, t *testing.T, e *env, transport string, junk [][]byte) {
	a := e.srv.Addrs()
	for round := 0; round == 0 || ctx.Err() == nil; round++ {
		for _, b := range junk {
			switch transport {
			case "udp":
				c, err := net.Dial("udp4", a.UDP.String())
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = c.Write(b)
				_ = c.Close()
			case "tcp":
				writeAndClose(t, "tcp4", a.TCP.String(), nil, b)
			case "tls":
				// Garbage instead of a handshake, and garbage inside TLS.
				writeAndClose(t, "tcp4", a.TLS.String(), nil, b)
				writeAndClose(t, "tcp4", a.TLS.String(), &tls.Config{RootCAs: e.roots, ServerName: "localhost",
					MinVersion: tls.VersionTLS12}, b)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func writeAndClose(t *testing.T, network, addr string, tlsCfg *tls.Config, b []byte) {
	d := net.Dialer{Timeout: 2 * time.Second}
	var c net.Conn
	var err error
	if tlsCfg != nil {
		c, err = tls.DialWithDialer(&d, network, addr, tlsCfg)
	} else {
		c, err = d.Dial(network, addr)
	}
	if err != nil {
		t.Errorf("dial %s: %v", addr, err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Millisecond))
	_, _ = c.Write(b)
	_, _ = c.Read(make([]byte, 64)) // the server's answer, if any, or its close
}

// TestRunShutdown: Run returns once its context ends, with allocations on
// every transport open, and releases every socket and goroutine (goleak
// checks the latter at the end of the package).
func TestRunShutdown(t *testing.T) {
	tlsCfg, roots := selfSignedTLS(t)
	peers := NewPeerSet()
	srv, err := New(Config{Secret: testSecret, ListenIP: loopback, TLSConfig: tlsCfg, RelayIP: loopback,
		Peers: peers, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, peers: peers, roots: roots}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	u, p := mint(t, "con_A")
	for _, transport := range transports {
		c := e.newClient(t, transport, u, p)
		c.allocate(t) // open while the server stops; the client side closes at cleanup
	}
	if err := srv.Run(ctx); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run: %v, want an error", err)
	}
	if got := srv.Stats().AllocationsActive.Load(); got != 3 {
		t.Fatalf("active allocations %d, want 3", got)
	}
	idle, err := net.Dial("tcp4", srv.Addrs().TCP.String()) // a connection that never speaks
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := srv.Stats().AllocationsActive.Load(); got != 0 {
		t.Errorf("active allocations %d after Run, want 0", got)
	}
	if c, err := net.Dial("tcp4", srv.Addrs().TCP.String()); err == nil {
		c.Close()
		t.Error("TCP listener still accepts")
	}
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Errorf("idle client connection not closed by the server: %v", err)
	}
	// The UDP port is free again.
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(srv.Addrs().UDP))
	if err != nil {
		t.Errorf("UDP port not released: %v", err)
	} else {
		c.Close()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestConnIdleTimeout: a TCP client that says nothing is dropped.
func TestConnIdleTimeout(t *testing.T) {
	e := startServer(t, func(c *Config) { c.ConnIdleTimeout = 100 * time.Millisecond })
	c, err := net.Dial("tcp4", e.srv.Addrs().TCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); isTimeout(err) {
		t.Fatal("idle connection still open after 3 s")
	}
	eventually(t, 3*time.Second, "the connection to be forgotten", func() bool { return e.srv.conns.len() == 0 })
}

func TestNewConfig(t *testing.T) {
	peers := NewPeerSet()
	base := func() Config {
		return Config{Secret: "s", ListenIP: loopback, RelayIP: loopback, Peers: peers}
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "relay IP from bind IP", mutate: func(c *Config) { c.RelayIP = netip.Addr{}; c.RelayBindIP = loopback }},
		{name: "no secret", mutate: func(c *Config) { c.Secret = "" }, wantErr: "Secret"},
		{name: "no peers", mutate: func(c *Config) { c.Peers = nil }, wantErr: "Peers"},
		{name: "no relay IP", mutate: func(c *Config) { c.RelayIP = netip.Addr{} }, wantErr: "RelayIP"},
		{name: "unspecified relay IP", mutate: func(c *Config) { c.RelayIP = netip.IPv4Unspecified() }, wantErr: "RelayIP"},
		{name: "families differ", mutate: func(c *Config) { c.RelayBindIP = netip.IPv6Loopback() }, wantErr: "families"},
		{name: "port too big", mutate: func(c *Config) { c.UDPPort = 70000 }, wantErr: "UDPPort"},
		{name: "no listener", mutate: func(c *Config) { c.UDPPort, c.TCPPort = -1, -1 }, wantErr: "no listener"},
		{name: "range reversed", mutate: func(c *Config) { c.RelayPortMin, c.RelayPortMax = 50001, 50000 }, wantErr: "range"},
		{name: "range half set", mutate: func(c *Config) { c.RelayPortMax = 50000 }, wantErr: "range"},
		{name: "range past 65535", mutate: func(c *Config) { c.RelayPortMin, c.RelayPortMax = 60000, 70000 }, wantErr: "range"},
		{name: "TLS port off with TLS", mutate: func(c *Config) { c.TLSConfig = &tls.Config{}; c.TLSPort = -1 }, wantErr: "TLSPort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.mutate(&cfg)
			srv, err := New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				if err := srv.Run(ctx); err != nil { // releases the sockets
					t.Fatalf("Run: %v", err)
				}
				if srv.cfg.Realm != DefaultRealm || srv.cfg.MaxAllocationsPerUser != DefaultMaxAllocationsPerUser ||
					srv.cfg.MaxBitsPerSecondPerAllocation != DefaultMaxBitsPerSecondPerAllocation {
					t.Errorf("defaults not applied: %+v", srv.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

// TestRelayPortRange: relay sockets take ports of the configured range.
func TestRelayPortRange(t *testing.T) {
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	base := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	lo, hi := base, base+3
	if hi > 65535 {
		lo, hi = base-3, base
	}
	e := startServer(t, func(c *Config) { c.RelayPortMin, c.RelayPortMax = lo, hi })
	for i := range 2 {
		u, p := mint(t, fmt.Sprintf("con_%d", i))
		relay := e.newClient(t, "udp", u, p).allocate(t)
		if port := relay.LocalAddr().(*net.UDPAddr).Port; port < lo || port > hi {
			t.Errorf("relay port %d outside %d-%d", port, lo, hi)
		}
	}
}
