// Package master is a Chorus master node (`chorus master`): the signaling
// plane. It serves OpenVidu's REST API and JSON-RPC WebSocket, registers
// itself in Redis with a heartbeat, and runs the cluster housekeeping every
// master shares (evictions, crashed masters' participants, garbage
// collection). It holds no session state: only its open WebSockets.
package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/chorus-rtc/chorus/master/eventdelivery"
	"github.com/chorus-rtc/chorus/master/medianodes"
	"github.com/chorus-rtc/chorus/master/metrics"
	"github.com/chorus-rtc/chorus/master/netquality"
	"github.com/chorus-rtc/chorus/master/restapi"
	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/master/signaling"
	"github.com/chorus-rtc/chorus/shared/clientip"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/credential"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recstorage"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Config configures a master.
type Config struct {
	Cluster *config.Config
	Redis   redis.UniversalClient
	Logger  *slog.Logger
}

// Master is a running master node.
type Master struct {
	cluster *config.Config
	// clusterSecret authenticates peer masters' health checks.
	clusterSecret credential.Secret
	cfg           config.Master
	id            protocol.MasterID
	inc           *session.Incarnation
	peers         *peerChecker
	log           *slog.Logger
	store         *store.Store
	sessions      *session.Service
	signaling     *signaling.Server
	api           *restapi.API
	nodes         *medianodes.Controller
	// quality polls the nodes' network quality levels (nil: disabled).
	quality   *netquality.Monitor
	metrics   *metrics.Metrics
	startedAt time.Time
	draining  atomic.Bool
}

// New builds a master. Run serves it. It fails on secrets unfit for where
// the master listens (config.ErrUnsafeSecrets: see Config.CheckSecrets) and
// on a media node provider that cannot be set up.
func New(ctx context.Context, cfg Config) (*Master, error) {
	if err := cfg.Cluster.CheckSecrets(config.RoleMaster); err != nil {
		return nil, err
	}
	mc := cfg.Cluster.Master
	id := protocol.MasterID(mc.ID)
	if id == "" {
		id = protocol.NewMasterNodeID()
	}
	log := cfg.Logger.With("master", id)
	inc := session.NewIncarnation(id)
	// The metrics count what the parts built below do: mx is set once
	// they exist, before any of them runs.
	var mx *metrics.Metrics
	st := store.New(store.Config{Redis: cfg.Redis, ClusterID: cfg.Cluster.ClusterID,
		EventsMaxLen: cfg.Cluster.Events.MaxLen, DeadLetterMaxLen: cfg.Cluster.Events.DeadLetterMaxLen,
		OnConflict: func(tx string) { mx.TransactionConflict(tx) }})
	nc, lim := cfg.Cluster.MediaNodes, cfg.Cluster.Limits
	// Media nodes close idle connections after http.idle_timeout: drop ours
	// before, so that no request (a POST is not retried) goes out on a
	// connection the node is closing.
	internal := http.DefaultTransport.(*http.Transport).Clone()
	internal.IdleConnTimeout = cfg.Cluster.HTTP.IdleTimeout / 2
	sessions := session.New(session.Config{
		Store: st, HTTPClient: &http.Client{Timeout: mc.RequestTimeout, Transport: internal},
		ClusterSecret: cfg.Cluster.ClusterSecret, PublicURL: mc.PublicURL, Edition: mc.Edition, Incarnation: inc, ClusterID: cfg.Cluster.ClusterID,
		ReconnectGrace: mc.ReconnectGrace, ForcedVideoCodec: mc.ForcedVideoCodec, AllowTranscoding: mc.AllowTranscoding,
		MaxLoad: nc.MaxLoad, Nudges: session.Nudges{Delay: nc.NudgeDelay, CrashDelay: nc.NudgeCrashDelay, Interval: nc.NudgeInterval, Count: nc.NudgeCount},
		TURN: session.TURN{URLs: cfg.Cluster.Turn.URLs, Secret: cfg.Cluster.Turn.Secret, CredentialTTL: cfg.Cluster.Turn.CredentialTTL},
		Limits: session.Limits{SignalDataBytes: lim.SignalDataBytes, MetadataBytes: lim.MetadataBytes,
			OutboxBytes: lim.OutboxBytes, ParticipantsPerSession: lim.ParticipantsPerSession},
		RecordingDefaults: recordingDefaults(cfg.Cluster.Recording.Enabled),
		Logger:            log,
	})
	trusted, err := clientip.ParseTrusted(cfg.Cluster.Proxy.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("proxy.trusted_proxies: %w", err)
	}
	recStorage, err := recstorage.New(ctx, cfg.Cluster.Recording, log)
	if err != nil {
		return nil, fmt.Errorf("recording storage: %w", err)
	}
	provider, err := newProvider(ctx, cfg.Cluster, log)
	if err != nil {
		return nil, err
	}
	manager := medianodes.NewManager(medianodes.Config{
		Store: st.NodeRegistry, Provider: provider, ClusterID: cfg.Cluster.ClusterID, HTTPClient: &http.Client{Timeout: 3 * time.Second, Transport: internal},
		ClusterSecret: cfg.Cluster.ClusterSecret, Sessions: sessions, LaunchTimeout: nc.LaunchTimeout, CrashWindow: nc.CrashWindow,
		ReconnectionTimeout: cfg.Cluster.EffectiveReconnectionTimeout(), CrashPolicy: nc.CrashPolicy, AutoAdopt: nc.AutoAdopt,
		OnAction: func(action string) { mx.ControllerAction(action) }, Logger: log,
	})
	var autoscaler *medianodes.Autoscaler
	if as := cfg.Cluster.Autoscaling; as.Enabled {
		autoscaler = medianodes.NewAutoscaler(medianodes.AutoscalerConfig{
			Manager: manager, Interval: as.Interval, CoolDown: as.CoolDown, Drain: as.Drain, Logger: log,
			StartupGrace: 2 * nc.CrashWindow,
			Plan:         medianodes.PlanConfig{MaxNodes: as.MaxNodes, MinNodes: as.MinNodes, MaxAvgLoad: as.MaxLoad, MinAvgLoad: as.MinLoad},
		})
	}
	m := &Master{
		cluster: cfg.Cluster, clusterSecret: credential.New(cfg.Cluster.ClusterSecret), cfg: mc, id: id, inc: inc, log: log, store: st, sessions: sessions, startedAt: time.Now(),
		signaling: signaling.New(signaling.Config{
			Sessions: sessions, Store: st, Incarnation: inc, Secret: cfg.Cluster.Secret, TrustedProxies: trusted, VideoSimulcast: mc.VideoSimulcast,
			MaxMessageBytes: mc.MaxMessageBytes, JoinTimeout: mc.JoinTimeout, MaxPingInterval: mc.MaxPingInterval, RequestTimeout: mc.RequestTimeout, HoldTimeout: nc.HoldTimeout, DepartureDelay: mc.DepartureDelay,
			Limits:            signaling.Limits{SignalsPerSecond: lim.SignalsPerSecond, HeldRequests: lim.HeldRequests},
			OnRequest:         func(method string, failed bool, took time.Duration) { mx.RPC(method, failed, took) },
			OnOutboxDelivered: func(lag time.Duration) { mx.OutboxDelivered(lag) },
			Logger:            log,
		}),
		api: restapi.New(restapi.Config{
			Sessions: sessions, Secret: cfg.Cluster.Secret, PublicURL: mc.PublicURL,
			ForcedVideoCodec: mc.ForcedVideoCodec, AllowTranscoding: mc.AllowTranscoding, VideoSimulcast: mc.VideoSimulcast,
			GarbageInterval: mc.SessionsGarbageInterval, GarbageThreshold: mc.SessionsGarbageThreshold,
			RequestTimeout: mc.RequestTimeout, Webhook: cfg.Cluster.Webhook, CDR: cfg.Cluster.CDR,
			Recording: restapi.RecordingConfig{Enabled: cfg.Cluster.Recording.Enabled, Storage: recStorage,
				PublicAccess: cfg.Cluster.Recording.PublicAccess, StartWait: mc.RequestTimeout * 4 / 5},
			MediaNodes: manager, LaunchTimeout: nc.LaunchTimeout, TURNURLs: cfg.Cluster.Turn.URLs,
			Cluster: restapi.ClusterInfo{ID: cfg.Cluster.ClusterID, Provider: provider.Name(),
				ReconnectionTimeout: cfg.Cluster.EffectiveReconnectionTimeout(), Autoscaling: cfg.Cluster.Autoscaling},
			Logger: log,
		}),
		nodes: medianodes.NewController(medianodes.ControllerConfig{
			Manager: manager, Holder: inc.ID, LeaseTTL: 3 * time.Second, Interval: 250 * time.Millisecond,
			SuspectAfter: nc.CrashWindow / 2, Autoscaler: autoscaler, Logger: log,
			OnAction: func(action string) { mx.ControllerAction(action) },
		}),
	}
	if nq := cfg.Cluster.NetworkQuality; nq.Enabled {
		m.quality = netquality.New(netquality.Config{
			Interval: nq.Interval, Leading: m.nodes.Leading, Nodes: func(ctx context.Context) ([]string, error) { return servingNodes(ctx, manager) },
			HTTPClient: &http.Client{Timeout: 3 * time.Second, Transport: internal}, ClusterSecret: cfg.Cluster.ClusterSecret,
			Apply: sessions.SetNetworkQuality, Logger: log,
		})
	}
	mx = metrics.New(metrics.Config{Master: string(id), Sockets: m.signaling.Count, Cluster: m.clusterCounts, PingRedis: st.Ping})
	m.metrics = mx
	cfg.Redis.AddHook(mx.RedisHook())
	m.peers = newPeerChecker(st, sessions, inc, cfg.Cluster.ClusterSecret, mc.PeerCheckInterval, mc.CrashWindow, mx, log)
	sessions.SetPeerSuspect(m.peers.Suspect)
	return m, nil
}

// servingNodes returns the internal URLs of the media nodes that serve
// sessions: running or waiting to be idle, and not crashed.
func servingNodes(ctx context.Context, manager *medianodes.Manager) ([]string, error) {
	nodes, err := manager.List(ctx)
	if err != nil {
		return nil, err
	}
	var uris []string
	for _, n := range nodes {
		if medianodes.Serving(n) {
			uris = append(uris, n.URI)
		}
	}
	return uris, nil
}

// ID is the master's node id.
func (m *Master) ID() protocol.MasterID { return m.id }

// Handler is the master's HTTP handler: REST API, WebSocket and health.
func (m *Master) Handler() http.Handler {
	r := gin.New()
	r.RedirectTrailingSlash, r.RedirectFixedPath, r.HandleMethodNotAllowed = false, false, true
	r.Use(gin.Recovery(), m.metrics.REST())
	m.api.Register(r)
	if m.cfg.MetricsListen == "" {
		r.GET("/metrics", m.metricsBehindSecret)
		r.GET("/metrics/targets", m.metricsBehindSecret)
	}
	r.GET("/openvidu", gin.WrapH(m.signaling))
	r.GET("/chorus/health", m.health)
	r.GET("/internal/v1/health", m.internalHealth)
	r.NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, gin.H{"status": 404, "error": "Not Found", "path": c.Request.URL.Path})
	})
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, gin.H{"status": 405, "error": "Method Not Allowed", "path": c.Request.URL.Path})
	})
	return restapi.LegacyPaths(restapi.CORSPreflight(r))
}

// health is the proxy's active check: 200 while the master serves, 503 while
// it drains (so no new request or reconnection lands on it).
func (m *Master) health(c *gin.Context) {
	if m.draining.Load() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "DRAINING", "id": m.id})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "UP", "id": m.id, "sockets": m.signaling.Count()})
}

// metricsBehindSecret serves the metrics to holders of the cluster secret
// (Bearer), as media nodes do, unless master.metrics_listen serves them
// apart. The proxy does not forward /metrics.
func (m *Master) metricsBehindSecret(c *gin.Context) {
	if !mediaapi.Authorized(c.Request, m.clusterSecret) {
		c.Status(http.StatusUnauthorized)
		return
	}
	if c.FullPath() == "/metrics/targets" {
		m.metricsTargets(c.Writer, c.Request)
		return
	}
	m.metrics.Handler().ServeHTTP(c.Writer, c.Request)
}

// metricsTargets is Prometheus' HTTP service discovery
// (http_sd_configs, configs/prometheus/prometheus.yml): every registered
// master and every media node with a process (launching to terminating),
// read from Redis at each call, so nodes launched later are scraped too.
// Served where the metrics are: behind the cluster secret, or on
// master.metrics_listen. The targets are the processes' internal URLs,
// where their /metrics need the cluster secret; the proxy, which is in no
// registry, is a static target.
func (m *Master) metricsTargets(w http.ResponseWriter, r *http.Request) {
	masters, _, err := m.store.Masters(r.Context())
	if err != nil {
		http.Error(w, "list masters: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	nodes, err := m.store.MediaNodes(r.Context())
	if err != nil {
		http.Error(w, "list media nodes: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var targets []metrics.Target
	for _, mi := range masters {
		targets = append(targets, metrics.Target{Role: "master", ID: string(mi.ID), URL: mi.InternalURL})
	}
	for _, n := range nodes {
		if n.Status == protocol.NodeTerminated || n.Status == protocol.NodeFailed {
			continue
		}
		targets = append(targets, metrics.Target{Role: "media", ID: string(n.ID), URL: n.URI})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(metrics.TargetGroups(targets))
}

// clusterCounts counts the cluster's sessions and what is in them, on the
// media node controller only (metrics.Config.Cluster).
func (m *Master) clusterCounts(ctx context.Context) (metrics.ClusterCounts, bool, error) {
	var out metrics.ClusterCounts
	holder, err := m.store.ControllerHolder(ctx)
	if err != nil || holder != string(m.inc.ID()) {
		return out, false, err
	}
	snaps, err := m.sessions.ListSessions(ctx)
	if err != nil {
		return out, false, err
	}
	out.Sessions = len(snaps)
	for _, snap := range snaps {
		for _, c := range snap.Conns {
			if !c.Active() || c.Recorder {
				continue
			}
			out.Participants++
			if c.Publisher != nil && c.Publisher.Live() {
				out.Publishers++
			}
			out.Subscriptions += len(c.Subscriptions)
		}
	}
	masters, _, err := m.store.Masters(ctx)
	if err != nil {
		return out, false, err
	}
	out.Masters = len(masters)
	nodes, err := m.store.MediaNodes(ctx)
	if err != nil {
		return out, false, err
	}
	out.MediaNodes = map[string]int{}
	for _, n := range nodes {
		out.MediaNodes[n.Status]++
		if n.Crashed() {
			out.CrashedMediaNodes++
		}
	}
	undelivered, oldest, err := m.store.Backlog(ctx)
	if err != nil {
		return out, false, err
	}
	out.EventsUndelivered, out.OldestUndelivered = int(undelivered), oldest
	dead, err := m.store.DeadLetterCount(ctx)
	if err != nil {
		return out, false, err
	}
	out.DeadLetters = int(dead)
	return out, true, nil
}

// internalHealth answers peer masters' checks (cluster secret required).
func (m *Master) internalHealth(c *gin.Context) {
	if !mediaapi.Authorized(c.Request, m.clusterSecret) {
		c.Status(http.StatusUnauthorized)
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": m.inc.ID(), "draining": m.draining.Load()})
}

// Run serves until ctx ends, then shuts down gracefully: it drains (health
// answers 503), closes its participants' WebSockets (they resume on another
// master), deregisters and stops.
func (m *Master) Run(ctx context.Context) error {
	if err := m.takeIncarnation(ctx); err != nil {
		return err
	}
	dispatcher, closeSinks, err := m.eventDispatcher()
	if err != nil {
		return err
	}
	defer closeSinks()
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.cfg.Listen, err)
	}
	srv := m.cluster.HTTP.Server(m.Handler())
	m.log.Info("master started", "listen", ln.Addr().String(), "internal_url", m.cfg.InternalURL, "public_url", m.cfg.PublicURL)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	if m.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", m.cfg.MetricsListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on %s (master.metrics_listen): %w", m.cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.metrics.Handler())
		mux.HandleFunc("GET /metrics/targets", m.metricsTargets)
		msrv := m.cluster.HTTP.Server(mux)
		m.log.Info("metrics served apart, without authentication", "metrics_listen", mln.Addr().String())
		g.Go(func() error {
			if err := msrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve metrics: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
			defer cancel()
			return msrv.Shutdown(sctx)
		})
	}
	g.Go(func() error { return m.heartbeat(gctx) })
	g.Go(func() error { return m.signaling.Run(gctx) })
	g.Go(func() error { return dispatcher.Run(gctx) })
	g.Go(func() error { return m.peers.Run(gctx) })
	g.Go(func() error { return m.nodes.Run(gctx) })
	if m.quality != nil {
		g.Go(func() error { return m.quality.Run(gctx) })
	}
	g.Go(func() error {
		return m.sessions.RunSweeper(gctx, session.SweepConfig{
			Interval:         time.Second,
			GarbageInterval:  m.cfg.SessionsGarbageInterval,
			GarbageThreshold: m.cfg.SessionsGarbageThreshold,
			RecoveryGrace:    m.cfg.RedisRecoveryGrace,
			// Recorders renew their leases every 5/3 s: 20 s without one
			// is a dead worker no other recorder took over.
			RecordingOrphanTimeout:   recordingOrphanTimeout(m.cluster.Recording.Enabled),
			RecordingAutostop:        m.cluster.Recording.Enabled,
			RecordingAutostopTimeout: m.cluster.Recording.AutostopTimeout,
		})
	})
	g.Go(func() error {
		<-gctx.Done()
		m.shutdown(srv)
		return nil
	})
	err = g.Wait()
	m.log.Info("master stopped")
	return err
}

// eventDispatcher builds the event delivery with the configured sinks.
func (m *Master) eventDispatcher() (*eventdelivery.Dispatcher, func(), error) {
	var webhook *eventdelivery.Webhook
	if m.cluster.Webhook.Enabled {
		webhook = eventdelivery.NewWebhook(m.cluster.Webhook, m.metrics.WebhookRetried)
		m.log.Info("OpenVidu Webhook service is enabled", "endpoint", endpointForLog(m.cluster.Webhook.Endpoint), "events", m.cluster.Webhook.Events)
	}
	var cdr *eventdelivery.CDRFile
	if m.cluster.CDR.Enabled {
		var err error
		if cdr, err = eventdelivery.OpenCDR(m.cluster.CDR.Path, string(m.id)); err != nil {
			return nil, nil, err
		}
		m.log.Info("OpenVidu CDR service is enabled", "path", m.cluster.CDR.Path)
	}
	d := eventdelivery.New(eventdelivery.Config{
		Store: m.store.EventBus, Holder: m.id, Webhook: webhook, CDR: cdr, LeaseTTL: m.cluster.Events.LeaseTTL,
		OnDelivered: m.metrics.EventDelivered, Logger: m.log,
	})
	return d, func() {
		if cdr != nil {
			_ = cdr.Close()
		}
	}, nil
}

// endpointForLog is the part of a webhook URL fit for logs: its scheme and
// host. User info, path and query may hold credentials (a token in the
// path, as many webhook receivers take it), so they are left out.
func endpointForLog(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host
}

// takeIncarnation gives the master a new epoch: master_1.<epoch>.
func (m *Master) takeIncarnation(ctx context.Context) error {
	epoch, err := m.store.NextMasterEpoch(ctx, m.id)
	if err != nil {
		return fmt.Errorf("register master %s: %w", m.id, err)
	}
	m.inc.Set(protocol.MasterID(fmt.Sprintf("%s.%d", m.id, epoch)))
	m.log.Info("master incarnation", "incarnation", m.inc.ID())
	return nil
}

// shutdown drains gracefully: health checks answer 503 for drain_wait, so no
// proxy sends a new request or reconnection here; then the WebSockets close
// (openvidu-browser reconnects at once, through the proxy, elsewhere) and the
// master deregisters. It is bounded by 10 s.
func (m *Master) shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.draining.Store(true)
	m.register(ctx, 3*time.Second)
	select {
	case <-time.After(m.cfg.DrainWait):
	case <-ctx.Done():
	}
	m.signaling.Shutdown(ctx)
	// Deregistered before the listener closes: a peer that found the port
	// closed for its crash window while requests in flight finished would
	// declare this master crashed.
	if err := m.store.DeregisterMaster(ctx, m.inc.ID()); err != nil {
		m.log.Warn("deregister", "err", err)
	}
	_ = srv.Shutdown(ctx)
}

// heartbeat refreshes the registration every interval. If the registration
// vanished, either Redis lost it (then it is simply written again) or the
// cluster declared this master crashed: then the master fences itself, since
// its participants were handed over: it closes its sockets (their clients
// resume through fresh ones) and comes back as a new incarnation.
func (m *Master) heartbeat(ctx context.Context) error {
	ttl := max(3*m.cfg.HeartbeatInterval, 3*time.Second)
	m.register(ctx, ttl)
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		inc := m.inc.ID()
		alive, err := m.store.MasterAlive(ctx, inc)
		if err == nil && !alive {
			if crashed, err := m.store.MasterCrashed(ctx, inc); err == nil && crashed {
				m.log.Warn("this master was declared crashed: closing its WebSockets and coming back as a new node", "incarnation", inc)
				m.signaling.CloseAll("master declared crashed")
				if err := m.takeIncarnation(ctx); err != nil {
					m.log.Warn("new incarnation", "err", err)
					continue
				}
			} else if err == nil {
				m.log.Warn("registration lost (Redis restarted?): registering again", "incarnation", inc)
				m.register(ctx, ttl)
				m.signaling.VerifySockets(ctx)
				continue
			}
		}
		m.register(ctx, ttl)
	}
}

func (m *Master) register(ctx context.Context, ttl time.Duration) {
	err := m.store.RegisterMaster(ctx, store.MasterInfo{
		ID: m.inc.ID(), InternalURL: m.cfg.InternalURL, StartedAt: m.startedAt.UnixMilli(), Draining: m.draining.Load(),
	}, ttl)
	if err != nil && ctx.Err() == nil {
		m.log.Warn("heartbeat", "err", err)
	}
}

// recordingDefaults resolves the recording properties of sessions in
// recordingMode ALWAYS when recording is on (nil otherwise: not recorded).
func recordingDefaults(enabled bool) func(json.RawMessage) (session.RecordingProperties, error) {
	if !enabled {
		return nil
	}
	return restapi.RecordingDefaults
}

// recordingOrphanTimeout is the sweeper's bound on a recording without a
// recorder (session.SweepConfig.RecordingOrphanTimeout): 20 s with
// recording on, none otherwise.
func recordingOrphanTimeout(enabled bool) time.Duration {
	if enabled {
		return 20 * time.Second
	}
	return 0
}
