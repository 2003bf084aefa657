package turn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// AllowedPeers is the set of peers the relay may talk to: the cluster's media
// nodes' ICE addresses (IP and UDP or TCP port, as they announce them in
// their SDP candidates). Anything else is refused, so the server is no open
// relay.
//
// Both methods run on the packet path (once per relayed datagram) and from
// several goroutines at once: they must be safe for concurrent use, must not
// block and must not do I/O. Addresses reach them canonical: IPv4 as 4-byte
// addresses (IPv4-mapped IPv6 unmapped), no zone.
type AllowedPeers interface {
	// AllowsIP reports whether ip is the IP of an allowed peer. It decides
	// CreatePermission and ChannelBind (TURN permissions are per IP, RFC 8656
	// section 9).
	AllowsIP(ip netip.Addr) bool
	// AllowsAddr reports whether addr (IP and port) is an allowed peer. It
	// decides every datagram relayed to or from a peer.
	AllowsAddr(addr netip.AddrPort) bool
}

// PeerSet is an in-memory AllowedPeers: an immutable snapshot replaced as a
// whole, read without locks. The zero value allows nothing.
//
// An IP AllowsIP refuses makes a running Refresh fetch again at once (at
// most once per RefreshSpacing) instead of at its next tick: a media node
// that has just started may be given sessions before the next tick, and
// TURN clients retry a refused CreatePermission with their next
// connectivity check.
type PeerSet struct {
	cur   atomic.Pointer[peerSnapshot]
	nudge chan struct{} // nil in the zero value: no early fetches
}

// RefreshSpacing is the shortest time between two fetches of Refresh that
// refused IPs asked for.
const RefreshSpacing = 250 * time.Millisecond

type peerSnapshot struct {
	addrs map[netip.AddrPort]struct{}
	ips   map[netip.Addr]struct{}
}

// NewPeerSet returns a set holding addrs.
func NewPeerSet(addrs ...netip.AddrPort) *PeerSet {
	p := &PeerSet{nudge: make(chan struct{}, 1)}
	p.Replace(addrs)
	return p
}

// Replace makes addrs the whole set. Invalid addresses and port 0 are
// ignored; IPv4-mapped IPv6 addresses are stored as IPv4, zones are dropped.
func (p *PeerSet) Replace(addrs []netip.AddrPort) {
	s := &peerSnapshot{addrs: make(map[netip.AddrPort]struct{}, len(addrs)), ips: make(map[netip.Addr]struct{}, len(addrs))}
	for _, a := range addrs {
		a = canonicalAddrPort(a)
		if !a.Addr().IsValid() || a.Port() == 0 {
			continue
		}
		s.addrs[a] = struct{}{}
		s.ips[a.Addr()] = struct{}{}
	}
	p.cur.Store(s)
}

// Addrs returns the set's addresses, sorted.
func (p *PeerSet) Addrs() []netip.AddrPort {
	s := p.cur.Load()
	if s == nil {
		return nil
	}
	out := make([]netip.AddrPort, 0, len(s.addrs))
	for a := range s.addrs {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

// AllowsIP implements AllowedPeers.
func (p *PeerSet) AllowsIP(ip netip.Addr) bool {
	s := p.cur.Load()
	if s == nil {
		return false
	}
	_, ok := s.ips[canonicalAddr(ip)]
	if !ok {
		select {
		case p.nudge <- struct{}{}:
		default:
		}
	}
	return ok
}

// AllowsAddr implements AllowedPeers.
func (p *PeerSet) AllowsAddr(addr netip.AddrPort) bool {
	s := p.cur.Load()
	if s == nil {
		return false
	}
	_, ok := s.addrs[canonicalAddrPort(addr)]
	return ok
}

// FetchPeers returns the current allowed peer addresses, e.g. the media
// nodes' ICE addresses read from Redis by the caller.
type FetchPeers func(ctx context.Context) ([]netip.AddrPort, error)

// Refresh fills the set from fetch at once and then every interval until ctx
// ends (it then returns nil), and sooner when AllowsIP refused an IP (see
// PeerSet; at most once per RefreshSpacing). A failed fetch keeps the previous set (a Redis
// outage must not cut running relays; a node removed meanwhile stays allowed
// until a fetch succeeds) and is logged to log (nil: not logged). Each fetch
// gets a context bounded by interval. interval must be positive.
func (p *PeerSet) Refresh(ctx context.Context, interval time.Duration, fetch FetchPeers, log *slog.Logger) error {
	if interval <= 0 {
		return fmt.Errorf("turn: peer refresh interval %v is not positive", interval)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	once := func() {
		fctx, cancel := context.WithTimeout(ctx, interval)
		defer cancel()
		addrs, err := fetch(fctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("turn: allowed peers not refreshed, keeping the previous set", "err", err)
			}
			return
		}
		p.Replace(addrs)
	}
	once()
	last := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.nudge:
			if wait := RefreshSpacing - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
		}
		once()
		last = time.Now()
	}
}

// canonicalAddr unmaps IPv4-mapped IPv6 addresses and drops zones.
func canonicalAddr(ip netip.Addr) netip.Addr {
	return ip.Unmap().WithZone("")
}

func canonicalAddrPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(canonicalAddr(a.Addr()), a.Port())
}

// addrPortOf converts a UDP or TCP net.Addr to a canonical netip.AddrPort;
// ok is false for other kinds and unusable IPs.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	var ip net.IP
	var port int
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, port = a.IP, a.Port
	case *net.TCPAddr:
		ip, port = a.IP, a.Port
	default:
		return netip.AddrPort{}, false
	}
	addr, ok := ipOf(ip)
	if !ok || port < 0 || port > 0xffff {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, uint16(port)), true
}

// ipOf converts a 4- or 16-byte net.IP to a canonical netip.Addr.
func ipOf(ip net.IP) (netip.Addr, bool) {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	return canonicalAddr(addr), true
}
