// Package metrics is a master's Prometheus metrics (issue 15, first
// increment): its REST requests by route, method and status, its JSON-RPC
// requests by method and outcome, with latency histograms, its open
// WebSockets, and, from the media node controller only, the cluster's
// sessions, participants, publishers and subscriptions (a gauge summed
// over N masters must not count a session N times).
//
// Names follow Prometheus' conventions: the chorus_ prefix, seconds,
// _total counters. Served at GET /metrics behind the cluster secret, or
// without it on master.metrics_listen, as media nodes serve theirs.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ClusterCounts are the cluster-wide gauges' values.
type ClusterCounts struct {
	Sessions, Participants, Publishers, Subscriptions int
	// Masters counts the registered masters.
	Masters int
	// MediaNodes counts the media nodes by OpenVidu status (launching,
	// running, ...); CrashedMediaNodes those declared crashed that have
	// not recovered or been terminated yet.
	MediaNodes        map[string]int
	CrashedMediaNodes int
	// EventsUndelivered counts the events waiting in the event bus;
	// OldestUndelivered is when the oldest of them was emitted (zero: none).
	EventsUndelivered int
	OldestUndelivered time.Time
	// DeadLetters counts the events whose delivery gave up.
	DeadLetters int
}

// Config says where a master's metrics come from.
type Config struct {
	// Master labels every series (the master's id).
	Master string
	// Sockets counts the master's open WebSockets.
	Sockets func() int
	// Cluster counts the cluster's sessions and what is in them; ok is
	// false on a master that is not the media node controller (it then
	// exports no cluster gauge). Called at each scrape, bounded by
	// ClusterTimeout.
	Cluster        func(ctx context.Context) (counts ClusterCounts, ok bool, err error)
	ClusterTimeout time.Duration
	// PingRedis, if set, is called at each scrape (bounded by
	// ClusterTimeout) for chorus_master_redis_up.
	PingRedis func(ctx context.Context) error
}

// Metrics holds a master's collectors.
type Metrics struct {
	reg         *prometheus.Registry
	rest        *prometheus.CounterVec
	restSeconds *prometheus.HistogramVec
	rpc         *prometheus.CounterVec
	rpcSeconds  *prometheus.HistogramVec
	actions     *prometheus.CounterVec
	in          *internals
}

// New registers a master's collectors.
func New(cfg Config) *Metrics {
	if cfg.ClusterTimeout <= 0 {
		cfg.ClusterTimeout = 5 * time.Second
	}
	labels := prometheus.Labels{"master": cfg.Master}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rest: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chorus_master_http_requests_total", Help: "REST requests answered, by route template, method and status code.", ConstLabels: labels,
		}, []string{"route", "method", "code"}),
		restSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chorus_master_http_request_duration_seconds", Help: "REST request latency, by route template and method.", ConstLabels: labels,
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
		rpc: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chorus_master_rpc_requests_total", Help: "JSON-RPC requests handled (pings excluded), by method and outcome (ok, error).", ConstLabels: labels,
		}, []string{"method", "outcome"}),
		rpcSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chorus_master_rpc_request_duration_seconds", Help: "JSON-RPC request latency, by method.", ConstLabels: labels,
			Buckets: prometheus.DefBuckets,
		}, []string{"method"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chorus_master_controller_actions_total", Help: "What this master did to media nodes: crash (a node declared crashed), recover, migrate (a session moved off a node), close (a session closed with its node), as the controller; launch and drop, by REST or its autoscaler. Summed over masters: the cluster's.", ConstLabels: labels,
		}, []string{"action"}),
	}
	m.in = newInternals(labels)
	m.reg.MustRegister(m.rest, m.restSeconds, m.rpc, m.rpcSeconds, m.actions)
	m.reg.MustRegister(m.in.collectors()...)
	// Every action's series exists from the start at 0, so that increase()
	// sees the first one (a series born at 1 shows no increase).
	for _, a := range []string{"crash", "recover", "migrate", "close", "launch", "drop"} { // medianodes.Action*
		m.actions.WithLabelValues(a)
	}
	if cfg.PingRedis != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chorus_master_redis_up", Help: "1 if this master's Redis answered a PING at scrape time, else 0.", ConstLabels: labels,
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ClusterTimeout)
			defer cancel()
			if cfg.PingRedis(ctx) != nil {
				return 0
			}
			return 1
		}))
	}
	if cfg.Sockets != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chorus_master_websockets", Help: "Participants' WebSockets open on this master.", ConstLabels: labels,
		}, func() float64 { return float64(cfg.Sockets()) }))
	}
	if cfg.Cluster != nil {
		m.reg.MustRegister(newClusterCollector(cfg))
	}
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// REST is gin middleware counting the requests of the routes after it,
// WebSocket upgrades aside. A request no route matched is counted under
// route "unmatched".
func (m *Metrics) REST() gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.IsWebsocket() {
			c.Next() // a socket's life is no request's latency
			return
		}
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		method := c.Request.Method
		m.rest.WithLabelValues(route, method, strconv.Itoa(c.Writer.Status())).Inc()
		m.restSeconds.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	}
}

// ControllerAction counts one action of the media node controller
// (medianodes.ControllerConfig.OnAction).
func (m *Metrics) ControllerAction(action string) {
	m.actions.WithLabelValues(action).Inc()
}

// RPC counts one JSON-RPC request (signaling.Config.OnRequest).
func (m *Metrics) RPC(method string, failed bool, took time.Duration) {
	outcome := "ok"
	if failed {
		outcome = "error"
	}
	m.rpc.WithLabelValues(method, outcome).Inc()
	m.rpcSeconds.WithLabelValues(method).Observe(took.Seconds())
}

// clusterCollector exports the cluster gauges from the controller only.
type clusterCollector struct {
	cfg                                               Config
	sessions, participants, publishers, subscriptions *prometheus.Desc
	masters, mediaNodes, crashedMediaNodes            *prometheus.Desc
	undelivered, oldestUndelivered, deadLetters       *prometheus.Desc
}

func newClusterCollector(cfg Config) *clusterCollector {
	return &clusterCollector{
		cfg:           cfg,
		sessions:      prometheus.NewDesc("chorus_cluster_sessions", "Sessions in the cluster (exported by the media node controller only).", nil, nil),
		participants:  prometheus.NewDesc("chorus_cluster_participants", "Participants connected to the cluster's sessions, hidden recorders excluded (the controller only).", nil, nil),
		publishers:    prometheus.NewDesc("chorus_cluster_publishers", "Streams published in the cluster (the controller only).", nil, nil),
		subscriptions: prometheus.NewDesc("chorus_cluster_subscriptions", "Subscriptions in the cluster (the controller only).", nil, nil),
		masters:       prometheus.NewDesc("chorus_cluster_masters", "Masters registered in the cluster (the controller only).", nil, nil),
		mediaNodes: prometheus.NewDesc("chorus_cluster_media_nodes", "Media nodes in the cluster by OpenVidu status: launching, running, waiting-idle-to-terminate, terminating, ... (the controller only).",
			[]string{"status"}, nil),
		crashedMediaNodes: prometheus.NewDesc("chorus_cluster_media_nodes_crashed", "Media nodes declared crashed and neither recovered nor terminated yet (the controller only).", nil, nil),
		undelivered:       prometheus.NewDesc("chorus_cluster_events_undelivered", "Events waiting in the event bus for delivery to the webhook and CDR (the controller only).", nil, nil),
		oldestUndelivered: prometheus.NewDesc("chorus_cluster_events_oldest_undelivered_age_seconds", "Age of the oldest event waiting for delivery, 0 when none waits (the controller only).", nil, nil),
		deadLetters:       prometheus.NewDesc("chorus_cluster_events_dead_letters", "Events in the dead-letter stream: their delivery gave up after webhook.deadline (the controller only).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sessions
	ch <- c.participants
	ch <- c.publishers
	ch <- c.subscriptions
	ch <- c.masters
	ch <- c.mediaNodes
	ch <- c.crashedMediaNodes
	ch <- c.undelivered
	ch <- c.oldestUndelivered
	ch <- c.deadLetters
}

// Collect implements prometheus.Collector: nothing unless this master is
// the controller.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ClusterTimeout)
	defer cancel()
	counts, ok, err := c.cfg.Cluster(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.sessions, err)
		return
	}
	if !ok {
		return
	}
	for _, g := range []struct {
		desc *prometheus.Desc
		n    int
	}{{c.sessions, counts.Sessions}, {c.participants, counts.Participants}, {c.publishers, counts.Publishers}, {c.subscriptions, counts.Subscriptions},
		{c.masters, counts.Masters}, {c.crashedMediaNodes, counts.CrashedMediaNodes},
		{c.undelivered, counts.EventsUndelivered}, {c.deadLetters, counts.DeadLetters}} {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(g.n))
	}
	age := 0.0
	if !counts.OldestUndelivered.IsZero() {
		age = max(0, time.Since(counts.OldestUndelivered).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.oldestUndelivered, prometheus.GaugeValue, age)
	for status, n := range counts.MediaNodes {
		ch <- prometheus.MustNewConstMetric(c.mediaNodes, prometheus.GaugeValue, float64(n), status)
	}
}
