// Package medianode is a Chorus media node (`chorus media`): a pion SFU with
// an internal HTTP API for masters, registered in Redis with a heartbeat and
// the CPU load of its own process.
package medianode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/medianode/sfu"
	"github.com/chorus-rtc/chorus/medianode/udpbatch"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/credential"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Config configures a media node.
type Config struct {
	Cluster *config.Config
	Redis   redis.UniversalClient
	Logger  *slog.Logger
}

// clusterState is what a media node reads and writes in Redis: its own
// heartbeat, and the sessions whose endpoints it holds (to drop the ones no
// connection references any more).
type clusterState interface {
	HeartbeatMediaNode(ctx context.Context, hb store.MediaNodeHeartbeat) (store.NodeStanding, error)
	ForgetMediaNodeHeartbeat(ctx context.Context, id protocol.NodeID) error
	Load(ctx context.Context, sid protocol.SessionID) (*store.Snapshot, error)
}

// Node is a running media node.
type Node struct {
	cfg   config.Media
	http  config.HTTP
	id    protocol.NodeID
	ip    string
	store clusterState
	log   *slog.Logger
	sfu   *sfu.SFU
	udp   net.PacketConn // the media socket, batching when batch is set
	batch *udpbatch.Conn // nil when media.batch_writes is off
	// tcpPort is the bound ICE-TCP port (0: ICE-TCP off); the SFU owns
	// the listener.
	tcpPort int
	load    *loadMeter

	secret    credential.Secret // the cluster secret
	startedAt time.Time
	// stopping is closed when the node's API shuts down: it ends the
	// liveness streams (which http.Server.Shutdown would wait for).
	stopping    chan struct{}
	currentLoad atomic.Uint64 // float64 bits
	status      string        // as the cluster last saw it (heartbeat goroutine only)
}

// New binds the node's UDP port and, unless media.tcp_port is negative, its
// ICE-TCP port, and builds its SFU. Run serves it. It fails before binding
// anything on a cluster secret unfit for where the node's API listens
// (config.ErrUnsafeSecrets: see Config.CheckSecrets).
func New(cfg Config) (*Node, error) {
	if err := cfg.Cluster.CheckSecrets(config.RoleMedia); err != nil {
		return nil, err
	}
	mc := cfg.Cluster.Media
	id := protocol.NodeID(mc.ID)
	if id == "" {
		id = protocol.NewMediaNodeID()
	}
	log := cfg.Logger.With("node", id)
	lm, err := newLoadMeter()
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(mc.BindIP), Port: mc.UDPPort})
	if err != nil {
		return nil, fmt.Errorf("bind media UDP port %s:%d: %w", mc.BindIP, mc.UDPPort, err)
	}
	var tcp net.Listener
	tcpPort := 0
	if mc.TCPPort >= 0 {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.ParseIP(mc.BindIP), Port: mc.TCPPort})
		if err != nil {
			_ = udp.Close()
			return nil, fmt.Errorf("bind ICE-TCP port %s:%d (media.tcp_port; -1 turns ICE-TCP off): %w", mc.BindIP, mc.TCPPort, err)
		}
		tcp, tcpPort = ln, ln.Addr().(*net.TCPAddr).Port
	}
	var conn net.PacketConn = udp
	var batch *udpbatch.Conn
	if mc.BatchWrites {
		batch = udpbatch.New(udp, udpbatch.Config{})
		conn = batch
	}
	s, err := sfu.New(sfu.Config{
		Engine:               sfu.EngineConfig{UDPConn: conn, TCPListener: tcp, PublicIPs: mc.PublicIPs, KeepPrivateIPs: mc.AnnouncePrivateIPs},
		RetransmissionBuffer: mc.RetransmissionBuffer,
		CapUnusedLayers:      mc.SimulcastLayerCap,
		Logger:               log,
	})
	if err != nil {
		_ = conn.Close()
		if tcp != nil {
			_ = tcp.Close()
		}
		return nil, err
	}
	ip := mc.BindIP
	if len(mc.PublicIPs) > 0 {
		ip = mc.PublicIPs[0]
	}
	return &Node{
		cfg: mc, id: id, ip: ip, log: log, sfu: s, udp: conn, batch: batch, tcpPort: tcpPort, load: lm,
		store: store.New(store.Config{Redis: cfg.Redis, ClusterID: cfg.Cluster.ClusterID}),
		http:  cfg.Cluster.HTTP, secret: credential.New(cfg.Cluster.ClusterSecret), startedAt: time.Now(),
		stopping: make(chan struct{}),
	}, nil
}

// ID is the node's id (media_...).
func (n *Node) ID() protocol.NodeID { return n.id }

// Run serves the internal API and heartbeats until ctx ends or the cluster
// terminates the node; then it closes every peer connection and returns.
func (n *Node) Run(ctx context.Context) error {
	defer n.udp.Close()
	defer n.sfu.Close()

	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.cfg.Listen, err)
	}
	metricsSrv, metricsLn, err := n.metricsServer()
	if err != nil {
		ln.Close()
		return err
	}
	srv := n.http.Server(n.handler())
	srv.RegisterOnShutdown(func() { close(n.stopping) })
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	if metricsSrv != nil {
		go func() { serveErr <- metricsSrv.Serve(metricsLn) }()
		n.log.Info("metrics served apart, without authentication", "metrics_listen", metricsLn.Addr().String())
	}
	n.log.Info("media node started", "api", n.cfg.InternalURL, "udp", n.udp.LocalAddr().String(), "ice_tcp_port", n.tcpPort, "announce", n.ip)

	recCtx, stopReconciling := context.WithCancel(ctx)
	reconciled := make(chan struct{})
	go func() {
		defer close(reconciled)
		(&reconciler{node: n, interval: n.cfg.ReconcileInterval, grace: n.cfg.ReconcileGrace, missing: map[string]time.Time{}}).run(recCtx)
	}()
	err = n.heartbeat(ctx, serveErr)
	stopReconciling()
	<-reconciled

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// A node stopping right after a drain still refuses its former
	// clients' checks until they noticed (sfu.consentGate).
	n.sfu.WaitLingering(shutdownCtx)
	// The record stays: the cluster owns it and sees the node stop
	// heartbeating (a node stopped by its operator is a crash to the
	// cluster unless it was dropped first, as in OpenVidu).
	if ferr := n.store.ForgetMediaNodeHeartbeat(shutdownCtx, n.id); ferr != nil {
		n.log.Warn("forget heartbeat", "err", ferr)
	}
	_ = srv.Shutdown(shutdownCtx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shutdownCtx)
	}
	n.log.Info("media node stopped")
	return err
}

// heartbeat reports the node's load every interval until ctx ends, the HTTP
// server fails or the cluster terminated the node.
func (n *Node) heartbeat(ctx context.Context, serveErr <-chan error) error {
	tick := time.NewTicker(n.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		if n.report(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-serveErr:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("internal API: %w", err)
		case <-tick.C:
		}
	}
}

// report sends one heartbeat and acts on how the cluster sees the node. It
// returns true when the node must stop.
//
// Fencing: a node the cluster declared crashed has had its sessions moved or
// closed, so it closes every peer connection it still has: a node wrongly
// declared dead (a network partition, a long pause) cannot keep half a
// session alive. A node instance the cluster terminated (or one whose record
// reached terminated) stops for good. A node whose record vanished without
// either (Redis lost its data) keeps its peer connections and waits to be
// adopted again; the reconciler releases what the lost state no longer
// references.
func (n *Node) report(ctx context.Context) (stop bool) {
	load, err := n.load.sample()
	if err != nil {
		n.log.Warn("measure load", "err", err)
	}
	n.currentLoad.Store(math.Float64bits(load))
	rctx, cancel := context.WithTimeout(ctx, max(n.cfg.HeartbeatInterval, time.Second))
	defer cancel()
	st, err := n.store.HeartbeatMediaNode(rctx, store.MediaNodeHeartbeat{
		ID: n.id, URI: n.cfg.InternalURL, IP: n.ip, Load: load, StartedAt: n.startedAt.UnixMilli(),
		ICEUDPPort: n.udp.LocalAddr().(*net.UDPAddr).Port, ICETCPPort: n.tcpPort,
	})
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("heartbeat", "err", err)
		}
		return false
	}
	switch {
	case st.Gone || st.Status == protocol.NodeTerminated:
		n.fence("the cluster terminated this media node")
		return true
	case st.Crashed:
		n.fence("the cluster declared this media node crashed")
	}
	if st.Status != n.status {
		n.log.Info("media node status", "status", st.Status)
		n.status = st.Status
	}
	return false
}

// fence closes every peer connection.
func (n *Node) fence(why string) {
	if _, endpoints := n.sfu.Counts(); endpoints > 0 {
		n.log.Warn(why+": closing every peer connection", "endpoints", endpoints)
		n.sfu.CloseAll()
	}
}

func (n *Node) metrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	st := n.sfu.Stats()
	counter := func(name, help string, v *atomic.Uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "chorus_media_" + name, Help: help, ConstLabels: prometheus.Labels{"node": string(n.id)},
		}, func() float64 { return float64(v.Load()) }))
	}
	counter("received_packets_total", "RTP packets received from publishers.", &st.ReceivedPackets)
	counter("received_bytes_total", "RTP bytes received from publishers.", &st.ReceivedBytes)
	counter("forwarded_packets_total", "RTP packets sent to subscribers.", &st.ForwardedPackets)
	counter("forwarded_bytes_total", "RTP bytes sent to subscribers.", &st.ForwardedBytes)
	counter("retransmissions_total", "Packets resent to subscribers from the retransmission buffer.", &st.Retransmissions)
	counter("nack_misses_total", "NACKed packets no longer buffered.", &st.NACKMisses)
	counter("keyframe_requests_total", "Keyframe requests (PLI) sent to publishers.", &st.KeyframeRequests)
	counter("padding_packets_total", "Padding-only packets sent to subscribers to probe their bandwidth.", &st.PaddingPackets)
	counter("probes_total", "Bandwidth probes started by simulcast subscriptions before moving up a layer.", &st.Probes)
	counter("probes_failed_total", "Bandwidth probes stopped because the subscriber's path queued or lost them.", &st.ProbesFailed)
	counter("publisher_rembs_total", "REMBs sent to simulcast publishers to cap them to the layers their subscribers need.", &st.PublisherREMBs)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chorus_media_layers_capped", Help: "Simulcast layers their publishers are told not to send (no subscriber needs them).", ConstLabels: prometheus.Labels{"node": string(n.id)},
	}, func() float64 { return float64(st.LayersCapped.Load()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chorus_media_peer_connections", Help: "Open peer connections (endpoints).", ConstLabels: prometheus.Labels{"node": string(n.id)},
	}, func() float64 { _, e := n.sfu.Counts(); return float64(e) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chorus_media_sessions", Help: "Sessions with at least one endpoint on this node.", ConstLabels: prometheus.Labels{"node": string(n.id)},
	}, func() float64 { s, _ := n.sfu.Counts(); return float64(s) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "chorus_media_cpu_seconds_total", Help: "CPU time (user+system) of the media node process.", ConstLabels: prometheus.Labels{"node": string(n.id)},
	}, n.load.cpuSeconds))
	if n.batch != nil {
		bs := n.batch.Stats()
		counter("udp_batched_packets_total", "Packets sent through the batching UDP writer.", &bs.Packets)
		counter("udp_send_calls_total", "sendmmsg system calls of the batching UDP writer.", &bs.Calls)
		counter("udp_dropped_packets_total", "Packets dropped because the UDP send queue was full.", &bs.Dropped)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chorus_media_cpus", Help: "CPUs the node process may use (GOMAXPROCS: its affinity or cgroup quota): 100 % load is all of them.", ConstLabels: prometheus.Labels{"node": string(n.id)},
	}, func() float64 { return float64(runtime.GOMAXPROCS(0)) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chorus_media_load", Help: "CPU load of the node process, 0-100, as reported to the cluster.", ConstLabels: prometheus.Labels{"node": string(n.id)},
	}, func() float64 { return math.Float64frombits(n.currentLoad.Load()) }))
	return reg
}

// metricsHandler serves the node's metrics in Prometheus' text format.
func (n *Node) metricsHandler() http.Handler {
	return promhttp.HandlerFor(n.metrics(), promhttp.HandlerOpts{})
}

// metricsServer serves GET /metrics alone, without authentication, on
// media.metrics_listen; nil when that is not set.
func (n *Node) metricsServer() (*http.Server, net.Listener, error) {
	if n.cfg.MetricsListen == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", n.cfg.MetricsListen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s (media.metrics_listen): %w", n.cfg.MetricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metricsHandler())
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln, nil
}

func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	if n.cfg.MetricsListen == "" {
		// Loads, counts and node ids are the cluster's business: behind the
		// cluster secret, unless media.metrics_listen serves them apart.
		mux.Handle("GET /metrics", n.authenticated(n.metricsHandler()))
	}
	mux.HandleFunc("GET /chorus/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "UP", "id": string(n.id)})
	})
	api := http.NewServeMux()
	api.HandleFunc(mediaapi.RoutePublish, n.handlePublish)
	api.HandleFunc(mediaapi.RouteSubscribe, n.handleSubscribe)
	api.HandleFunc(mediaapi.RouteAnswer, n.handleAnswer)
	api.HandleFunc(mediaapi.RouteICE, n.handleICE)
	api.HandleFunc(mediaapi.RouteRelease, n.handleRelease)
	api.HandleFunc(mediaapi.RouteReleaseSession, n.handleReleaseSession)
	api.HandleFunc(mediaapi.RouteEndpoints, n.handleEndpoints)
	api.HandleFunc(mediaapi.RouteNetworkQuality, n.handleNetworkQuality)
	api.HandleFunc(mediaapi.RouteHealth, n.handleHealth)
	api.HandleFunc(mediaapi.RouteLiveness, n.handleLiveness)
	// Go's profiler, for finding where forwarding time goes under load:
	//   curl -H "Authorization: Bearer <cluster secret>" -o cpu.pprof \
	//     'http://<node>/internal/debug/pprof/profile?seconds=20'
	//   go tool pprof -top bin/chorus cpu.pprof
	api.Handle("/internal/debug/pprof/", http.StripPrefix("/internal", http.HandlerFunc(pprof.Index)))
	api.Handle("/internal/debug/pprof/profile", http.StripPrefix("/internal", http.HandlerFunc(pprof.Profile)))
	mux.Handle("/internal/", n.authenticated(api))
	return mux
}
