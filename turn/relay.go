package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pionturn "github.com/pion/turn/v5"
	"golang.org/x/time/rate"
)

var (
	errTCPRelay      = errors.New("turn: TCP relay allocations (RFC 6062) are not offered")
	errShuttingDown  = errors.New("turn: server shutting down")
	errRelayFamily   = errors.New("turn: relay address family not served")
	errRelayPortUsed = errors.New("turn: no free relay port in range")
)

// maxPortScan bounds how many ports of the relay range one allocation tries.
const maxPortScan = 128

// bandwidthBurst is how much traffic above the cap a token bucket absorbs:
// a quarter of a second's worth (video frames leave in bursts), at least two
// full datagrams.
const bandwidthBurst = time.Second / 4

// relayGenerator is the server's pionturn.RelayAddressGenerator. UDP
// allocations get a socket bound on the relay bind IP, in the relay port
// range, announced with the relay IP, and wrapped in a relayConn that
// enforces the allowed peers and the bandwidth cap. TCP allocations (RFC 6062
// Allocate with REQUESTED-TRANSPORT TCP, and Connect) are refused: WebRTC
// clients never ask for them (they relay UDP, whichever transport reaches
// the server), and media nodes take ICE over UDP.
type relayGenerator struct {
	relayIP    netip.Addr // announced
	bindIP     netip.Addr
	minPort    int // 0/0: ephemeral
	maxPort    int
	peers      AllowedPeers
	stats      *Stats
	bytesPerS  float64 // <= 0: no cap
	closing    *atomic.Bool
	live       *sync.WaitGroup // one per relayConn until closed
	maxPayload int
}

// Validate implements pionturn.RelayAddressGenerator.
func (g *relayGenerator) Validate() error {
	switch {
	case !g.relayIP.IsValid() || g.relayIP.IsUnspecified():
		return fmt.Errorf("turn: relay IP %v cannot be announced", g.relayIP)
	case !g.bindIP.IsValid():
		return fmt.Errorf("turn: relay bind IP %v is invalid", g.bindIP)
	case g.peers == nil:
		return errors.New("turn: no allowed peers")
	}
	return nil
}

// AllocatePacketConn implements pionturn.RelayAddressGenerator: a UDP relay
// socket for network "udp4" or "udp6" (RFC 6156), on conf.RequestedPort when
// set (EVEN-PORT and RESERVATION-TOKEN, RFC 8656 section 7.2), else in the
// relay port range (ephemeral when none).
func (g *relayGenerator) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if g.closing.Load() {
		return nil, nil, errShuttingDown
	}
	if (conf.Network == "udp6") != g.bindIP.Is6() || (conf.Network != "udp4" && conf.Network != "udp6") {
		return nil, nil, fmt.Errorf("%w: %s on %v", errRelayFamily, conf.Network, g.bindIP)
	}
	conn, err := g.listen(conf.Network, conf.RequestedPort)
	if err != nil {
		return nil, nil, err
	}
	local, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("turn: relay socket address %v is not UDP", conn.LocalAddr())
	}
	rc := &relayConn{
		PacketConn: conn, peers: g.peers, stats: g.stats, live: g.live,
	}
	if g.bytesPerS > 0 {
		burst := max(int(g.bytesPerS*bandwidthBurst.Seconds()), 2*g.maxPayload)
		rc.toPeer = rate.NewLimiter(rate.Limit(g.bytesPerS), burst)
		rc.fromPeer = rate.NewLimiter(rate.Limit(g.bytesPerS), burst)
	}
	g.live.Add(1)
	return rc, &net.UDPAddr{IP: g.relayIP.AsSlice(), Port: local.Port}, nil
}

func (g *relayGenerator) listen(network string, requested int) (net.PacketConn, error) {
	bind := func(port int) (net.PacketConn, error) {
		return net.ListenPacket(network, net.JoinHostPort(g.bindIP.String(), strconv.Itoa(port))) //nolint:noctx
	}
	inRange := func(port int) bool { return g.minPort == 0 || (port >= g.minPort && port <= g.maxPort) }
	if requested != 0 {
		if !inRange(requested) {
			return nil, fmt.Errorf("%w: requested port %d outside %d-%d", errRelayPortUsed, requested, g.minPort, g.maxPort)
		}
		c, err := bind(requested)
		if err != nil {
			return nil, fmt.Errorf("turn: relay port %d: %w", requested, err)
		}
		return c, nil
	}
	if g.minPort == 0 {
		c, err := bind(0)
		if err != nil {
			return nil, fmt.Errorf("turn: relay socket: %w", err)
		}
		return c, nil
	}
	// A random start spreads allocations over the range; then scan upwards.
	size := g.maxPort - g.minPort + 1
	start := rand.IntN(size) //nolint:gosec // port choice, not a secret
	var lastErr error
	for i := range min(size, maxPortScan) {
		c, err := bind(g.minPort + (start+i)%size)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("%w %d-%d: %w", errRelayPortUsed, g.minPort, g.maxPort, lastErr)
}

// AllocateListener implements pionturn.RelayAddressGenerator: refused (see
// relayGenerator); pion answers the Allocate with 508 Insufficient Capacity.
func (g *relayGenerator) AllocateListener(pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errTCPRelay
}

// AllocateConn implements pionturn.RelayAddressGenerator: refused (see
// relayGenerator); pion answers the Connect with 447.
func (g *relayGenerator) AllocateConn(pionturn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTCPRelay
}

// relayConn is an allocation's relay socket as pion sees it. It drops, and
// counts, every datagram to or from an address that is not an allowed peer
// (IP and port: a permission is per IP, so pion alone would let a client
// reach any port of a media node's host), and every datagram over the
// allocation's bandwidth cap (one token bucket per direction, as coturn's
// max-bps). Dropped writes report success, as a firewall would: the client
// learns nothing, and pion logs nothing.
type relayConn struct {
	net.PacketConn
	peers    AllowedPeers
	stats    *Stats
	toPeer   *rate.Limiter // nil: no cap
	fromPeer *rate.Limiter
	live     *sync.WaitGroup
	once     sync.Once
}

// WriteTo sends p to a peer if addr is allowed and the cap has room.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, ok := addrPortOf(addr)
	if !ok || !c.peers.AllowsAddr(ap) {
		c.stats.DroppedByFilter.Add(1)
		return len(p), nil
	}
	if c.toPeer != nil && !c.toPeer.AllowN(time.Now(), len(p)) {
		c.stats.DroppedByBandwidth.Add(1)
		return len(p), nil
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.stats.RelayedPackets.Add(1)
		c.stats.RelayedBytes.Add(uint64(n))
	}
	return n, err
}

// ReadFrom returns the next datagram from an allowed peer within the cap.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		ap, ok := addrPortOf(addr)
		if !ok || !c.peers.AllowsAddr(ap) {
			c.stats.DroppedByFilter.Add(1)
			continue
		}
		if c.fromPeer != nil && !c.fromPeer.AllowN(time.Now(), n) {
			c.stats.DroppedByBandwidth.Add(1)
			continue
		}
		c.stats.RelayedPackets.Add(1)
		c.stats.RelayedBytes.Add(uint64(n))
		return n, addr, nil
	}
}

// Close closes the socket; the server's shutdown waits for every relayConn
// to be closed by pion.
func (c *relayConn) Close() error {
	err := c.PacketConn.Close()
	c.once.Do(c.live.Done)
	return err
}
