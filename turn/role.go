package turn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/store"
	"github.com/chorus-rtc/chorus/shared/tlscert"
)

// RoleConfig configures the turn role (`chorus turn`): a Server whose
// allowed peers are the cluster's media nodes, as their heartbeats in Redis
// announce them.
type RoleConfig struct {
	Cluster *config.Config
	// Redis is where media nodes announce themselves; the caller owns it.
	Redis  redis.UniversalClient
	Logger *slog.Logger
}

// nodeLister is what the role reads from the cluster state: the media
// nodes and their heartbeats.
type nodeLister interface {
	MediaNodes(ctx context.Context) ([]store.MediaNodeInfo, error)
}

// Role is a running turn role: a Server and the refresh of its peers.
type Role struct {
	server  *Server
	peers   *PeerSet
	nodes   nodeLister
	refresh config.Turn
	log     *slog.Logger
}

// NewRole builds the turn role from the cluster configuration (keys turn.*)
// and binds its listeners. Errors: a TURN secret unfit for where the
// listeners bind (config.ErrUnsafeSecrets: see Config.CheckSecrets), an
// invalid configuration, a certificate that cannot be loaded or made, a
// port that cannot be bound.
func NewRole(cfg RoleConfig) (*Role, error) {
	if err := cfg.Cluster.CheckSecrets(config.RoleTurn); err != nil {
		return nil, err
	}
	t := cfg.Cluster.Turn
	tlsCfg, err := tlscert.Config(t.TLS)
	if err != nil {
		return nil, fmt.Errorf("turn: %w", err)
	}
	sc := DefaultConfig()
	sc.Realm, sc.Secret, sc.Logger = t.Realm, t.Secret, cfg.Logger
	if sc.ListenIP, err = parseIP("turn.listen_ip", t.ListenIP); err != nil {
		return nil, err
	}
	if sc.RelayIP, err = parseIP("turn.relay_ip", t.RelayIP); err != nil {
		return nil, err
	}
	if t.RelayBindIP != "" {
		if sc.RelayBindIP, err = parseIP("turn.relay_bind_ip", t.RelayBindIP); err != nil {
			return nil, err
		}
	}
	sc.UDPPort, sc.TCPPort = t.Port, t.Port
	sc.TLSConfig, sc.TLSPort = tlsCfg, t.TLSPort
	sc.RelayPortMin, sc.RelayPortMax = t.RelayPortMin, t.RelayPortMax
	sc.MaxAllocationsPerUser = t.MaxAllocationsPerUser
	sc.MaxBitsPerSecondPerAllocation = int64(t.MaxBitratePerAllocation)
	peers := NewPeerSet()
	sc.Peers = peers
	srv, err := New(sc)
	if err != nil {
		return nil, err
	}
	return &Role{
		server: srv, peers: peers, refresh: t, log: cfg.Logger,
		nodes: store.NewNodeRegistry(store.Config{Redis: cfg.Redis, ClusterID: cfg.Cluster.ClusterID}),
	}, nil
}

func parseIP(key, s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("turn: %s %q: %w", key, s, err)
	}
	return ip, nil
}

// Server is the role's TURN server (its addresses and counters).
func (r *Role) Server() *Server { return r.server }

// Run serves TURN and keeps the allowed peers current until ctx ends.
// When it stops it logs the server's counters (Stats) at info level, e.g.
// the relayed packets BENCHMARKS.md divides the process's CPU time by.
func (r *Role) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return r.peers.Refresh(ctx, r.refresh.PeerRefreshInterval, r.mediaNodeAddrs, r.log)
	})
	g.Go(func() error { return r.server.Run(ctx) })
	err := g.Wait()
	if r.log != nil {
		st := r.server.Stats()
		r.log.Info("turn: stopped", "allocations", st.Allocations.Load(), "relayed_packets", st.RelayedPackets.Load(),
			"relayed_bytes", st.RelayedBytes.Load(), "dropped_by_filter", st.DroppedByFilter.Load(),
			"dropped_by_bandwidth", st.DroppedByBandwidth.Load(), "auth_failures", st.AuthFailures.Load(),
			"permission_denials", st.PermissionDenials.Load(), "quota_rejections", st.QuotaRejections.Load())
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// mediaNodeAddrs lists the UDP addresses of the media nodes' ICE candidates
// (the only peers a participant's relay may reach), from their heartbeats;
// a node whose heartbeat expired has none.
func (r *Role) mediaNodeAddrs(ctx context.Context) ([]netip.AddrPort, error) {
	nodes, err := r.nodes.MediaNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("list media nodes: %w", err)
	}
	return NodeAddrs(nodes), nil
}

// NodeAddrs returns the ICE UDP addresses media node records announce
// (their heartbeat's IP and UDP port); records without one are skipped.
func NodeAddrs(nodes []store.MediaNodeInfo) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(nodes))
	for _, n := range nodes {
		ip, err := netip.ParseAddr(n.ReportedIP)
		if err != nil || n.ICEUDPPort <= 0 || n.ICEUDPPort > 0xffff {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, uint16(n.ICEUDPPort)))
	}
	return out
}
