package turn

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestPeerSet(t *testing.T) {
	ap := netip.MustParseAddrPort
	set := NewPeerSet(
		ap("10.0.0.1:40000"),
		ap("[::ffff:10.0.0.2]:40001"), // stored as 10.0.0.2
		ap("[fe80::1%eth0]:40002"),    // stored without its zone
		ap("[2001:db8::1]:40003"),
		netip.AddrPortFrom(netip.MustParseAddr("10.0.0.9"), 0), // ignored: port 0
		netip.AddrPort{},                                       // ignored: invalid
	)
	tests := []struct {
		addr       netip.AddrPort
		wantAddr   bool
		wantIPOnly bool
	}{
		{addr: ap("10.0.0.1:40000"), wantAddr: true, wantIPOnly: true},
		{addr: ap("[::ffff:10.0.0.1]:40000"), wantAddr: true, wantIPOnly: true},
		{addr: ap("10.0.0.1:40001"), wantAddr: false, wantIPOnly: true},
		{addr: ap("10.0.0.2:40001"), wantAddr: true, wantIPOnly: true},
		{addr: ap("[fe80::1]:40002"), wantAddr: true, wantIPOnly: true},
		{addr: ap("[fe80::1%eth1]:40002"), wantAddr: true, wantIPOnly: true},
		{addr: ap("[2001:db8::1]:40003"), wantAddr: true, wantIPOnly: true},
		{addr: ap("[2001:db8::2]:40003"), wantAddr: false, wantIPOnly: false},
		{addr: ap("10.0.0.9:0"), wantAddr: false, wantIPOnly: false},
		{addr: ap("10.0.0.3:40000"), wantAddr: false, wantIPOnly: false},
		{addr: netip.AddrPort{}, wantAddr: false, wantIPOnly: false},
	}
	for _, tt := range tests {
		if got := set.AllowsAddr(tt.addr); got != tt.wantAddr {
			t.Errorf("AllowsAddr(%v) = %v, want %v", tt.addr, got, tt.wantAddr)
		}
		if got := set.AllowsIP(tt.addr.Addr()); got != tt.wantIPOnly {
			t.Errorf("AllowsIP(%v) = %v, want %v", tt.addr.Addr(), got, tt.wantIPOnly)
		}
	}
	if got := len(set.Addrs()); got != 4 {
		t.Errorf("Addrs() = %v, want 4 addresses", set.Addrs())
	}

	set.Replace(nil)
	if set.AllowsIP(netip.MustParseAddr("10.0.0.1")) || set.AllowsAddr(ap("10.0.0.1:40000")) {
		t.Error("an emptied set still allows")
	}
	var zero PeerSet
	if zero.AllowsIP(netip.MustParseAddr("10.0.0.1")) || zero.AllowsAddr(ap("10.0.0.1:40000")) || zero.Addrs() != nil {
		t.Error("the zero PeerSet allows")
	}
}

func TestPeerSetRefresh(t *testing.T) {
	ap := netip.MustParseAddrPort
	var calls atomic.Int32
	fetch := func(ctx context.Context) ([]netip.AddrPort, error) {
		switch calls.Add(1) {
		case 1:
			return []netip.AddrPort{ap("10.0.0.1:1")}, nil
		case 2:
			return nil, errors.New("redis down") // keeps the previous set
		default:
			return []netip.AddrPort{ap("10.0.0.2:2")}, nil
		}
	}
	set := NewPeerSet()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- set.Refresh(ctx, 20*time.Millisecond, fetch, nil) }()

	eventually(t, 3*time.Second, "the first fetch", func() bool { return set.AllowsAddr(ap("10.0.0.1:1")) })
	eventually(t, 3*time.Second, "the failed fetch", func() bool { return calls.Load() >= 2 })
	if calls.Load() == 2 && !set.AllowsAddr(ap("10.0.0.1:1")) {
		t.Error("a failed fetch emptied the set")
	}
	eventually(t, 3*time.Second, "the third fetch", func() bool {
		return slices.Equal(set.Addrs(), []netip.AddrPort{ap("10.0.0.2:2")})
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Refresh did not return after its context ended")
	}
	if err := set.Refresh(context.Background(), 0, fetch, nil); err == nil {
		t.Error("Refresh with interval 0 did not fail")
	}
}

// fakePacketConn records what a relayConn writes.
type fakePacketConn struct {
	net.PacketConn
	wrote []netip.AddrPort
}

func (f *fakePacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, _ := addrPortOf(addr)
	f.wrote = append(f.wrote, ap)
	return len(p), nil
}

// FuzzRelayFilter feeds the relay filter peer addresses as pion hands them
// over (net.UDPAddr or net.TCPAddr with a 4- or 16-byte or malformed IP) and
// checks it against a reference: a datagram goes out exactly when the
// address, IPv4-mapped IPv6 unmapped, is an allowed one; the permission
// check agrees on the IP.
func FuzzRelayFilter(f *testing.F) {
	allowed := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:5000"),
		netip.MustParseAddrPort("[2001:db8::1]:6000"),
	}
	f.Add([]byte{127, 0, 0, 1}, uint16(5000), false)
	f.Add([]byte{127, 0, 0, 1}, uint16(5001), true)
	f.Add([]byte(net.ParseIP("127.0.0.1").To16()), uint16(5000), false)
	f.Add([]byte(net.ParseIP("2001:db8::1").To16()), uint16(6000), true)
	f.Add([]byte{127, 0, 0}, uint16(5000), false)
	f.Add([]byte{}, uint16(0), false)
	f.Fuzz(func(t *testing.T, ip []byte, port uint16, tcp bool) {
		fake := &fakePacketConn{}
		stats := &Stats{}
		c := &relayConn{PacketConn: fake, peers: NewPeerSet(allowed...), stats: stats}
		var addr net.Addr = &net.UDPAddr{IP: ip, Port: int(port)}
		if tcp {
			addr = &net.TCPAddr{IP: ip, Port: int(port)}
		}
		want := false
		if a, ok := netip.AddrFromSlice(ip); ok {
			want = slices.Contains(allowed, netip.AddrPortFrom(a.Unmap(), port))
		}
		n, err := c.WriteTo([]byte("payload"), addr)
		if err != nil || n != len("payload") {
			t.Fatalf("WriteTo = %d, %v", n, err)
		}
		if sent := len(fake.wrote) == 1; sent != want {
			t.Fatalf("WriteTo(%v): sent %v, want %v", addr, sent, want)
		}
		if want != (stats.DroppedByFilter.Load() == 0) {
			t.Fatalf("WriteTo(%v): dropped count %d with sent=%v", addr, stats.DroppedByFilter.Load(), want)
		}
		if want && !c.peers.AllowsIP(netip.AddrPortFrom(mustAddr(ip), port).Addr()) {
			t.Fatalf("address %v allowed but not its IP", addr)
		}
	})
}

func mustAddr(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// TestPeerSetRefreshesOnRefusal: a media node that has just started (not
// in the set yet) becomes allowed well before the next periodic fetch once
// a client asked for it (a refused CreatePermission, which clients retry).
func TestPeerSetRefreshesOnRefusal(t *testing.T) {
	ap := netip.MustParseAddrPort
	var started atomic.Bool
	var calls atomic.Int32
	fetch := func(ctx context.Context) ([]netip.AddrPort, error) {
		calls.Add(1)
		if started.Load() {
			return []netip.AddrPort{ap("10.0.0.1:1"), ap("10.0.0.2:2")}, nil
		}
		return []netip.AddrPort{ap("10.0.0.1:1")}, nil
	}
	set := NewPeerSet()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- set.Refresh(ctx, time.Hour, fetch, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Refresh: %v", err)
		}
	}()
	eventually(t, 3*time.Second, "the first fetch", func() bool { return set.AllowsIP(netip.MustParseAddr("10.0.0.1")) })
	started.Store(true)
	asked := time.Now()
	eventually(t, 3*time.Second, "the new node allowed", func() bool { return set.AllowsIP(netip.MustParseAddr("10.0.0.2")) })
	if took := time.Since(asked); took > time.Second {
		t.Errorf("the new node was allowed after %v, want within a second of the first refusal", took)
	}
	// Refusals do not make it fetch more than once per RefreshSpacing.
	before := calls.Load()
	deadline := time.Now().Add(4 * RefreshSpacing)
	for time.Now().Before(deadline) {
		set.AllowsIP(netip.MustParseAddr("192.0.2.1"))
		time.Sleep(time.Millisecond)
	}
	if n := calls.Load() - before; n > 5 {
		t.Errorf("%d fetches in %v of refusals, want at most 5 (one per %v)", n, 4*RefreshSpacing, RefreshSpacing)
	}
}
