package sfu

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
)

// revokedFor is how long the node refuses the connectivity checks of a
// peer connection it closed with consent revoked. A client that keeps
// checking past it gets silence, which ends its consent anyway (RFC 7675
// section 5.1: 30 s at most).
const revokedFor = 15 * time.Second

// addrPortConn is the allocation-free half of pion's ice.AddrPortReaderWriter.
type addrPortConn interface {
	ReadFromAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// consentGate sits between the node's UDP socket and pion's UDP mux and
// answers, in the mux's stead, the STUN binding requests (ICE connectivity
// and consent checks) addressed to peer connections the node closed with
// their consent revoked: a Binding error response 403 (Forbidden) with
// MESSAGE-INTEGRITY under the closed connection's ICE password (RFC 8489
// section 6.3.4; RFC 7675 section 5.2 lets either side end consent).
//
// Why: when a session moves to another media node while this one is alive
// (a drain), closing its peer connections here leaves the clients' ones
// looking healthy. A browser only sees silence, reports ICE "disconnected"
// 5-7 s later and openvidu-browser then waits 4 s more before
// re-establishing the stream. An authenticated error that is not one of
// the recoverable codes (401, 420, 487, 500) makes libwebrtc fail the
// candidate pair at once; with no pair left the connection is "failed",
// which openvidu-browser re-establishes immediately (ICE_CONNECTION_FAILED).
//
// Every other packet passes through untouched; the check costs one atomic
// load per packet while nothing is revoked. The gate implements
// addrPortConn when the socket does (udpbatch.Conn, *net.UDPConn), so the
// mux keeps its allocation-free path.
type consentGate struct {
	net.PacketConn
	rw  addrPortConn
	now func() time.Time

	revokedCount atomic.Int32
	mu           sync.Mutex
	revoked      map[string]revokedCredentials // by the node's ICE ufrag
}

type revokedCredentials struct {
	password string
	until    time.Time
	// refused, if set, is called (once, on the reading goroutine: it must
	// not block) when a check was first refused.
	refused func()
}

func newConsentGate(conn net.PacketConn) *consentGate {
	g := &consentGate{PacketConn: conn, now: time.Now, revoked: map[string]revokedCredentials{}}
	switch c := conn.(type) {
	case addrPortConn:
		g.rw = c
	case *net.UDPConn:
		g.rw = udpAddrPortConn{c}
	default:
		g.rw = packetAddrPortConn{c}
	}
	return g
}

// udpAddrPortConn adapts *net.UDPConn's netip methods.
type udpAddrPortConn struct{ c *net.UDPConn }

func (u udpAddrPortConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return u.c.ReadFromUDPAddrPort(b)
}

func (u udpAddrPortConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return u.c.WriteToUDPAddrPort(b, addr)
}

// packetAddrPortConn adapts any other net.PacketConn of UDP addresses.
type packetAddrPortConn struct{ c net.PacketConn }

func (p packetAddrPortConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, addr, err := p.c.ReadFrom(b)
	var ap netip.AddrPort
	if ua, ok := addr.(*net.UDPAddr); ok {
		ap = ua.AddrPort()
	}
	return n, ap, err
}

func (p packetAddrPortConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return p.c.WriteTo(b, net.UDPAddrFromAddrPort(addr))
}

// revoke refuses, for revokedFor, the checks of the local ICE credentials
// ufrag/password (a peer connection about to be closed); refused, if not
// nil, is called when the first check was refused.
func (g *consentGate) revoke(ufrag, password string, refused func()) {
	if ufrag == "" || password == "" {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for u, rc := range g.revoked {
		if !now.Before(rc.until) {
			delete(g.revoked, u)
		}
	}
	g.revoked[ufrag] = revokedCredentials{password: password, until: now.Add(revokedFor), refused: refused}
	g.revokedCount.Store(int32(len(g.revoked)))
}

// lookup returns the revoked credentials of a local ufrag, if they are
// still refused.
func (g *consentGate) lookup(ufrag string) (revokedCredentials, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rc, ok := g.revoked[ufrag]
	if !ok {
		return rc, false
	}
	if !g.now().Before(rc.until) {
		delete(g.revoked, ufrag)
		g.revokedCount.Store(int32(len(g.revoked)))
		return rc, false
	}
	return rc, true
}

// takeRefused returns the callback of a ufrag's first refusal, once.
func (g *consentGate) takeRefused(ufrag string) func() {
	g.mu.Lock()
	defer g.mu.Unlock()
	rc, ok := g.revoked[ufrag]
	if !ok || rc.refused == nil {
		return nil
	}
	f := rc.refused
	rc.refused = nil
	g.revoked[ufrag] = rc
	return f
}

// ReadFromAddrPort reads the next packet for the mux, answering refused
// checks on the way.
func (g *consentGate) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, addr, err := g.rw.ReadFromAddrPort(b)
		if err != nil || g.revokedCount.Load() == 0 || !g.refuse(b[:n], addr) {
			return n, addr, err
		}
	}
}

// WriteToAddrPort writes to the socket.
func (g *consentGate) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return g.rw.WriteToAddrPort(b, addr)
}

// ReadFrom implements net.PacketConn as ReadFromAddrPort.
func (g *consentGate) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := g.ReadFromAddrPort(b)
	if !addr.IsValid() {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), err
}

// WriteTo implements net.PacketConn as WriteToAddrPort.
func (g *consentGate) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return g.PacketConn.WriteTo(b, addr)
	}
	return g.WriteToAddrPort(b, ua.AddrPort())
}

// refuse answers pkt, arrived over UDP from from, if it is a check to
// revoked credentials (see answer), and reports whether it consumed it.
func (g *consentGate) refuse(pkt []byte, from netip.AddrPort) bool {
	resp, consumed := g.answer(pkt)
	if resp != nil {
		_, _ = g.WriteToAddrPort(resp, from)
	}
	return consumed
}

// answer returns the refusal of pkt if it is a binding request to revoked
// credentials, and reports whether the packet is consumed: answered, or a
// check for revoked credentials failing their integrity (dropped, as the
// mux would).
func (g *consentGate) answer(pkt []byte) (resp []byte, consumed bool) {
	if !stun.IsMessage(pkt) {
		return nil, false
	}
	m := &stun.Message{Raw: append([]byte(nil), pkt...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return nil, false
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil {
		return nil, false
	}
	local, _, _ := strings.Cut(user.String(), ":")
	rc, ok := g.lookup(local)
	if !ok {
		return nil, false
	}
	integrity := stun.NewShortTermIntegrity(rc.password)
	if err := integrity.Check(m); err != nil {
		return nil, true
	}
	out, err := stun.Build(m, stun.NewType(stun.MethodBinding, stun.ClassErrorResponse),
		stun.CodeForbidden, integrity, stun.Fingerprint)
	if err != nil {
		return nil, true
	}
	if refused := g.takeRefused(local); refused != nil {
		refused()
	}
	return out.Raw, true
}
