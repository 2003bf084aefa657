// Package turn is Chorus's TURN role: an embedded TURN relay (RFC 8656, which
// obsoletes RFC 5766) on pion/turn, for participants whose networks block
// direct UDP to the media nodes.
//
// It listens on UDP, TCP and optionally TLS (RFC 8656's transports); clients
// reach it with any of them, and it relays UDP only. What makes it Chorus's:
//
//   - Stateless authentication: credentials are the TURN REST API's, minted
//     by masters (shared/turncred); the server checks them from the shared
//     secret alone, with no Redis round trip.
//   - No open relay: peers are restricted to an AllowedPeers set, the media
//     nodes' ICE addresses. CreatePermission and ChannelBind to another IP
//     are refused, and every relayed datagram is checked against the exact
//     address (IP and port), both ways.
//   - Quotas: allocations per user (486 past MaxAllocationsPerUser) and a
//     bandwidth cap per allocation and direction (excess datagrams dropped).
//   - Counters in Stats, logs through log/slog.
//
// RFC 6062 TCP relay allocations are refused (see Config).
package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/chorus-rtc/chorus/shared/turncred"
)

// Defaults.
const (
	DefaultRealm   = "chorus"
	DefaultPort    = 3478 // TURN (and STUN) over UDP and TCP
	DefaultTLSPort = 5349 // TURN (and STUN) over TLS
	// DefaultRelayPortMin and DefaultRelayPortMax are coturn's defaults, the
	// Dynamic and/or Private Port range (RFC 6335).
	DefaultRelayPortMin                  = 49152
	DefaultRelayPortMax                  = 65535
	DefaultMaxAllocationsPerUser         = 10
	DefaultMaxBitsPerSecondPerAllocation = 5_000_000
	DefaultConnIdleTimeout               = 10 * time.Minute
)

// inboundMTU is the largest datagram pion reads (its default).
const inboundMTU = 1600

// shutdownTimeout bounds how long Run waits for pion to release everything.
const shutdownTimeout = 5 * time.Second

// Config configures a Server. The zero value of a field means its default
// where one is given; DefaultConfig fills the ports.
type Config struct {
	// Realm is the REALM of the long-term credential mechanism (RFC 8489
	// section 9.2); requests naming another realm are refused.
	// Default DefaultRealm ("chorus").
	Realm string
	// Secret is the shared secret credentials are minted with (see
	// shared/turncred; coturn's static-auth-secret). Required.
	Secret string

	// ListenIP is the IP the UDP, TCP and TLS listeners bind.
	// Default 0.0.0.0 (every IPv4 address).
	ListenIP netip.Addr
	// UDPPort and TCPPort are the TURN ports: > 0 that port, 0 an ephemeral
	// port (for tests: see Server.Addrs), < 0 no such listener.
	// DefaultConfig sets both to DefaultPort (3478).
	UDPPort int
	TCPPort int
	// TLSConfig, when set, adds a TURN-over-TLS listener ("turns:" URLs) on
	// TLSPort; it must hold the server's certificate. The server uses it as
	// it is (set MinVersion there). Nil: no TLS listener.
	TLSConfig *tls.Config
	// TLSPort is the TLS listener's port when TLSConfig is set: > 0 that port,
	// 0 ephemeral. DefaultConfig sets DefaultTLSPort (5349).
	TLSPort int

	// RelayIP is the IP announced in XOR-RELAYED-ADDRESS (RFC 8656): the
	// address media nodes send to, e.g. the public IP of a host behind NAT
	// 1:1. Default RelayBindIP, which must then be a specific IP.
	RelayIP netip.Addr
	// RelayBindIP is the IP relay sockets bind.
	// Default the unspecified address of RelayIP's family (0.0.0.0 or ::).
	RelayBindIP netip.Addr
	// RelayPortMin and RelayPortMax bound relay sockets' ports, inclusive;
	// both 0: ephemeral ports. DefaultConfig sets DefaultRelayPortMin and
	// DefaultRelayPortMax (49152-65535, as coturn).
	RelayPortMin int
	RelayPortMax int

	// MaxAllocationsPerUser is how many allocations one user (the connection
	// id of a credential, so that fresh credentials for the same participant
	// share the quota) may hold at once; past it, Allocate gets 486
	// Allocation Quota Reached (RFC 8656 section 7.2).
	// Default DefaultMaxAllocationsPerUser (10); negative: no limit.
	MaxAllocationsPerUser int
	// MaxBitsPerSecondPerAllocation caps each allocation's relayed payload,
	// in bits per second, in each direction separately (as coturn's
	// max-bps), with a token bucket allowing bursts of a quarter second's
	// worth; datagrams over it are dropped and counted.
	// Default DefaultMaxBitsPerSecondPerAllocation (5 Mbit/s); negative: no cap.
	MaxBitsPerSecondPerAllocation int64

	// ConnIdleTimeout closes a TCP or TLS client connection that sent nothing
	// for that long (clients with an allocation refresh it, and their
	// permissions, every few minutes). Default DefaultConnIdleTimeout (10 min).
	ConnIdleTimeout time.Duration

	// Peers is the set of peers the relay may reach: the cluster's media
	// nodes' ICE addresses (see AllowedPeers). Required; the caller fills it
	// (e.g. a PeerSet refreshed from Redis).
	Peers AllowedPeers
	// Logger receives the server's logs and pion's. Default: discarded.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default set, the standard ports
// included; the caller adds Secret, RelayIP (or RelayBindIP), Peers and,
// for TLS, TLSConfig.
func DefaultConfig() Config {
	return Config{
		Realm: DefaultRealm, UDPPort: DefaultPort, TCPPort: DefaultPort, TLSPort: DefaultTLSPort,
		RelayPortMin: DefaultRelayPortMin, RelayPortMax: DefaultRelayPortMax,
		MaxAllocationsPerUser:         DefaultMaxAllocationsPerUser,
		MaxBitsPerSecondPerAllocation: DefaultMaxBitsPerSecondPerAllocation,
		ConnIdleTimeout:               DefaultConnIdleTimeout,
	}
}

// Addrs are the server's bound listening addresses; a listener that is off
// has the zero AddrPort.
type Addrs struct {
	UDP, TCP, TLS netip.AddrPort
}

// Server is a TURN server: New binds its sockets, Run serves until its
// context ends.
type Server struct {
	cfg   Config
	log   *slog.Logger
	stats Stats
	quota *quota
	gen   *relayGenerator
	addrs Addrs

	udp   *packetListener // nil: off
	tcp   *streamListener // nil: off
	tls   *streamListener // nil: off
	conns *connSet        // client TCP and TLS connections
	live  sync.WaitGroup  // relay sockets not closed yet
	quit  chan struct{}   // closed when Run starts shutting down
	stop  atomic.Bool     // the same, for the relay generator
	ran   atomic.Bool
}

// New checks cfg, applies defaults and binds the listening sockets (so that
// Addrs is known before Run). Errors: an invalid configuration, or a socket
// that cannot be bound. The sockets stay open until Run returns: call Run.
func New(cfg Config) (*Server, error) {
	if err := normalize(&cfg); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, quota: newQuota(cfg.MaxAllocationsPerUser), conns: newConnSet(),
		quit: make(chan struct{})}
	var bytesPerS float64
	if cfg.MaxBitsPerSecondPerAllocation > 0 {
		bytesPerS = float64(cfg.MaxBitsPerSecondPerAllocation) / 8
	}
	s.gen = &relayGenerator{
		relayIP: cfg.RelayIP, bindIP: cfg.RelayBindIP, minPort: cfg.RelayPortMin, maxPort: cfg.RelayPortMax,
		peers: cfg.Peers, stats: &s.stats, bytesPerS: bytesPerS, closing: &s.stop, live: &s.live,
		maxPayload: inboundMTU,
	}
	if err := s.gen.Validate(); err != nil {
		return nil, err
	}
	if err := s.bind(); err != nil {
		s.closeListeners()
		return nil, err
	}
	return s, nil
}

func normalize(cfg *Config) error {
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.Secret == "" {
		return errors.New("turn: config: Secret is required")
	}
	if cfg.Peers == nil {
		return errors.New("turn: config: Peers is required (the server is no open relay)")
	}
	if !cfg.ListenIP.IsValid() {
		cfg.ListenIP = netip.IPv4Unspecified()
	}
	cfg.ListenIP = canonicalAddr(cfg.ListenIP)
	cfg.RelayIP, cfg.RelayBindIP = canonicalAddr(cfg.RelayIP), canonicalAddr(cfg.RelayBindIP)
	if !cfg.RelayIP.IsValid() {
		if !cfg.RelayBindIP.IsValid() || cfg.RelayBindIP.IsUnspecified() {
			return errors.New("turn: config: RelayIP is required unless RelayBindIP is a specific address")
		}
		cfg.RelayIP = cfg.RelayBindIP
	}
	if cfg.RelayIP.IsUnspecified() || cfg.RelayIP.IsMulticast() {
		return fmt.Errorf("turn: config: RelayIP %v cannot be announced", cfg.RelayIP)
	}
	if !cfg.RelayBindIP.IsValid() {
		cfg.RelayBindIP = netip.IPv4Unspecified()
		if cfg.RelayIP.Is6() {
			cfg.RelayBindIP = netip.IPv6Unspecified()
		}
	}
	if cfg.RelayBindIP.Is6() != cfg.RelayIP.Is6() {
		return fmt.Errorf("turn: config: RelayBindIP %v and RelayIP %v are of different families", cfg.RelayBindIP, cfg.RelayIP)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"UDPPort", cfg.UDPPort}, {"TCPPort", cfg.TCPPort}, {"TLSPort", cfg.TLSPort}} {
		if p.port > 0xffff {
			return fmt.Errorf("turn: config: %s %d is not a port", p.name, p.port)
		}
	}
	if cfg.TLSConfig != nil && cfg.TLSPort < 0 {
		return fmt.Errorf("turn: config: TLSPort %d with a TLSConfig", cfg.TLSPort)
	}
	if cfg.UDPPort < 0 && cfg.TCPPort < 0 && cfg.TLSConfig == nil {
		return errors.New("turn: config: no listener (UDP, TCP and TLS all off)")
	}
	switch {
	case cfg.RelayPortMin == 0 && cfg.RelayPortMax == 0:
	case cfg.RelayPortMin <= 0 || cfg.RelayPortMax > 0xffff || cfg.RelayPortMin > cfg.RelayPortMax:
		return fmt.Errorf("turn: config: relay port range %d-%d is invalid", cfg.RelayPortMin, cfg.RelayPortMax)
	}
	if cfg.MaxAllocationsPerUser == 0 {
		cfg.MaxAllocationsPerUser = DefaultMaxAllocationsPerUser
	}
	if cfg.MaxBitsPerSecondPerAllocation == 0 {
		cfg.MaxBitsPerSecondPerAllocation = DefaultMaxBitsPerSecondPerAllocation
	}
	if cfg.ConnIdleTimeout <= 0 {
		cfg.ConnIdleTimeout = DefaultConnIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// bind opens the listening sockets.
func (s *Server) bind() error {
	host := s.cfg.ListenIP.String()
	udpNet, tcpNet := "udp4", "tcp4"
	if s.cfg.ListenIP.Is6() {
		udpNet, tcpNet = "udp6", "tcp6"
	}
	if s.cfg.UDPPort >= 0 {
		c, err := net.ListenPacket(udpNet, net.JoinHostPort(host, strconv.Itoa(s.cfg.UDPPort))) //nolint:noctx
		if err != nil {
			return fmt.Errorf("turn: UDP listener: %w", err)
		}
		s.udp = newPacketListener(c)
		s.addrs.UDP, _ = addrPortOf(c.LocalAddr())
	}
	listen := func(port int, tlsCfg *tls.Config) (*streamListener, netip.AddrPort, error) {
		l, err := net.Listen(tcpNet, net.JoinHostPort(host, strconv.Itoa(port))) //nolint:noctx
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		ap, _ := addrPortOf(l.Addr())
		return newStreamListener(l, tlsCfg, s.cfg.ConnIdleTimeout, s.conns, s.quit, s.log), ap, nil
	}
	var err error
	if s.cfg.TCPPort >= 0 {
		if s.tcp, s.addrs.TCP, err = listen(s.cfg.TCPPort, nil); err != nil {
			return fmt.Errorf("turn: TCP listener: %w", err)
		}
	}
	if s.cfg.TLSConfig != nil {
		if s.tls, s.addrs.TLS, err = listen(s.cfg.TLSPort, s.cfg.TLSConfig); err != nil {
			return fmt.Errorf("turn: TLS listener: %w", err)
		}
	}
	return nil
}

func (s *Server) closeListeners() {
	if s.udp != nil {
		_ = s.udp.Close()
	}
	for _, l := range []*streamListener{s.tcp, s.tls} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// Addrs returns the bound listening addresses (ports resolved when
// ephemeral).
func (s *Server) Addrs() Addrs { return s.addrs }

// Stats returns the server's live counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Run serves TURN until ctx ends, then closes every listener, client
// connection and allocation and waits for pion to let go of them (up to 5 s).
// It returns nil after ctx ends, or an error if pion cannot start or the UDP
// listener fails. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("turn: Run called twice")
	}
	pion, err := pionturn.NewServer(s.pionConfig())
	if err != nil {
		s.stopAccepting()
		s.closeListeners()
		return fmt.Errorf("turn: start pion: %w", err)
	}
	s.log.Info("turn server started", "udp", s.addrs.UDP, "tcp", s.addrs.TCP, "tls", s.addrs.TLS,
		"realm", s.cfg.Realm, "relay_ip", s.cfg.RelayIP)

	var udpStopped <-chan struct{}
	if s.udp != nil {
		udpStopped = s.udp.stopped
	}
	var runErr error
	select {
	case <-ctx.Done():
	case <-udpStopped:
		runErr = fmt.Errorf("turn: UDP listener stopped: %w", s.udp.stopErr)
	}

	s.stopAccepting()
	if err := pion.Close(); err != nil && runErr == nil {
		s.log.Debug("turn: closing listeners", "err", err)
	}
	s.conns.closeAll()
	if err := s.waitReleased(); err != nil {
		s.log.Warn("turn server stopped with leftovers", "err", err)
		if runErr == nil {
			runErr = err
		}
	} else {
		s.log.Info("turn server stopped")
	}
	return runErr
}

func (s *Server) stopAccepting() {
	if s.stop.CompareAndSwap(false, true) {
		close(s.quit)
	}
}

// waitReleased waits until pion's loops have ended, every client connection
// and relay socket is closed and every allocation reported deleted.
func (s *Server) waitReleased() error {
	deadline := time.NewTimer(shutdownTimeout)
	defer deadline.Stop()
	for _, stopped := range []func() <-chan struct{}{
		func() <-chan struct{} { return stoppedOf(s.udp) },
		func() <-chan struct{} { return streamStoppedOf(s.tcp) },
		func() <-chan struct{} { return streamStoppedOf(s.tls) },
		func() <-chan struct{} { return waitChan(&s.conns.wg) },
		func() <-chan struct{} { return waitChan(&s.live) },
	} {
		select {
		case <-stopped():
		case <-deadline.C:
			return fmt.Errorf("turn: shutdown: %d connections, %d allocations still open after %v",
				s.conns.len(), s.stats.AllocationsActive.Load(), shutdownTimeout)
		}
	}
	// Relay sockets are closed; their readers report the deletions next.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for s.stats.AllocationsActive.Load() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("turn: shutdown: %d allocations not reported deleted after %v",
				s.stats.AllocationsActive.Load(), shutdownTimeout)
		}
	}
	return nil
}

func stoppedOf(l *packetListener) <-chan struct{} {
	if l == nil {
		return closedChan()
	}
	return l.stopped
}

func streamStoppedOf(l *streamListener) <-chan struct{} {
	if l == nil {
		return closedChan()
	}
	return l.stopped
}

func closedChan() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// waitChan is closed when wg's count reaches zero. Its goroutine ends then,
// which Run only asks for once everything that holds wg is closing.
func waitChan(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		wg.Wait()
		close(c)
	}()
	return c
}

func (s *Server) pionConfig() pionturn.ServerConfig {
	cfg := pionturn.ServerConfig{
		LoggerFactory: slogFactory{log: s.log},
		Realm:         s.cfg.Realm,
		AuthHandler:   s.authenticate,
		QuotaHandler:  s.admit,
		EventHandler: pionturn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnAllocationError:   s.onAllocationError,
		},
		InboundMTU: inboundMTU,
	}
	if s.udp != nil {
		cfg.PacketConnConfigs = append(cfg.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn: s.udp, RelayAddressGenerator: s.gen, PermissionHandler: s.permit,
		})
	}
	for _, l := range []*streamListener{s.tcp, s.tls} {
		if l != nil {
			cfg.ListenerConfigs = append(cfg.ListenerConfigs, pionturn.ListenerConfig{
				Listener: l, RelayAddressGenerator: s.gen, PermissionHandler: s.permit,
			})
		}
	}
	return cfg
}

// authenticate is pion's AuthHandler (RFC 8489 section 9.2.4): it refuses
// another realm, and malformed or expired usernames (pion then answers 401,
// see the package tests), and otherwise returns the user (the credential's
// connection id) and the long-term key MD5(username:realm:password), with
// which pion checks MESSAGE-INTEGRITY. No state, no I/O.
func (s *Server) authenticate(ra *pionturn.RequestAttributes) (userID string, key []byte, ok bool) {
	if ra.Realm != s.cfg.Realm {
		s.authFailed(ra.SrcAddr, ra.Method.String(), "unknown realm")
		return "", nil, false
	}
	id, password, err := turncred.Check(s.cfg.Secret, ra.Username, time.Now())
	if err != nil {
		s.authFailed(ra.SrcAddr, ra.Method.String(), err.Error())
		return "", nil, false
	}
	return id, pionturn.GenerateAuthKey(ra.Username, ra.Realm, password), true
}

func (s *Server) authFailed(src net.Addr, method, reason string) {
	s.stats.AuthFailures.Add(1)
	s.log.Debug("turn: authentication refused", "src", src, "method", method, "reason", reason)
}

// onAuth counts requests whose MESSAGE-INTEGRITY did not match (a wrong
// password); refusals by authenticate are counted there.
func (s *Server) onAuth(src, _ net.Addr, _, _, _, method string, verdict bool) {
	if !verdict {
		s.authFailed(src, method, "wrong MESSAGE-INTEGRITY")
	}
}

// permit is pion's PermissionHandler for CreatePermission, ChannelBind and
// Connect: only allowed peers' IPs.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	if ip, ok := ipOf(peer); ok && s.cfg.Peers.AllowsIP(ip) {
		return true
	}
	s.stats.PermissionDenials.Add(1)
	s.log.Debug("turn: permission refused", "client", client, "peer", peer)
	return false
}

// admit is pion's QuotaHandler (RFC 8656 section 7.2; RFC 5766 section 6.2).
func (s *Server) admit(userID, _ string, src net.Addr) bool {
	if s.quota.admit(userID, src, time.Now()) {
		return true
	}
	s.stats.QuotaRejections.Add(1)
	s.log.Debug("turn: allocation quota reached", "user", userID, "src", src, "max", s.cfg.MaxAllocationsPerUser)
	return false
}

func (s *Server) onAllocationCreated(src, _ net.Addr, protocol, userID, _ string, relay net.Addr, _ int) {
	s.quota.created(userID, src)
	s.stats.Allocations.Add(1)
	s.stats.AllocationsActive.Add(1)
	s.log.Debug("turn: allocation created", "user", userID, "src", src, "transport", protocol, "relay", relay)
}

func (s *Server) onAllocationDeleted(src, _ net.Addr, _, userID, _ string) {
	s.quota.deleted(userID)
	s.stats.AllocationsActive.Add(-1)
	s.log.Debug("turn: allocation deleted", "user", userID, "src", src)
}

// onAllocationError is called for every request pion could not handle, from
// garbage to a failed Allocate: the latter releases its quota slot.
func (s *Server) onAllocationError(src, _ net.Addr, _, message string) {
	s.quota.failed(src)
	s.log.Debug("turn: request failed", "src", src, "err", message)
}
