package proxy

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Error causes of the proxy's own answers (chorus_proxy_errors_total's
// cause label), by status.
var errorCauses = map[int]string{
	http.StatusServiceUnavailable:    "no_healthy_master",
	http.StatusBadGateway:            "master_failed",
	http.StatusGatewayTimeout:        "master_timeout",
	http.StatusRequestEntityTooLarge: "body_too_large",
}

// metrics are the proxy's Prometheus series (issue 15): the health of each
// master as the proxy sees it, the requests it retried on another master,
// the failures it held against masters, the requests their clients gave up,
// and the error answers it made itself, by status and cause.
type metrics struct {
	reg    *prometheus.Registry
	errors *prometheus.CounterVec
}

func newMetrics(p *Proxy) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chorus_proxy_errors_total", Help: "Error answers the proxy made itself, by status code and cause.",
		}, []string{"code", "cause"}),
	}
	counter := func(name, help string, read func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(read()) })
	}
	m.reg.MustRegister(m.errors,
		counter("chorus_proxy_connect_retries_total", "Requests retried on another master because the first could not be connected to.", p.stats.ConnectRetries.Load),
		counter("chorus_proxy_abandoned_total", "Requests and WebSockets given up because their master was found unreachable (its host lost) while they waited on it; GETs among them are retried on another master.", p.stats.Abandoned.Load),
		counter("chorus_proxy_upstream_failures_total", "Requests a master failed after receiving them (held against it).", p.stats.UpstreamFailures.Load),
		counter("chorus_proxy_client_cancelled_total", "Requests whose client went away before the master answered.", p.stats.ClientCancelled.Load),
		&upstreamCollector{p: p, desc: prometheus.NewDesc("chorus_proxy_upstream_healthy",
			"1 while the proxy sends requests to the master, 0 while it holds it unhealthy.", []string{"master"}, nil)},
	)
	// Every cause at 0 from the start: rate() sees the first error.
	for code, cause := range errorCauses {
		m.errors.WithLabelValues(strconv.Itoa(code), cause)
	}
	return m
}

// countError counts an error answer of the proxy's own.
func (m *metrics) countError(status int) {
	if cause, ok := errorCauses[status]; ok {
		m.errors.WithLabelValues(strconv.Itoa(status), cause).Inc()
	}
}

// handler serves the metrics in Prometheus' text format. The proxy is the
// cluster's public entry point: it serves them on proxy.metrics_listen
// only (a private address), never on its public listener, where /metrics
// answers 404.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// upstreamCollector reports each known master's health.
type upstreamCollector struct {
	p    *Proxy
	desc *prometheus.Desc
}

func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	c.p.mu.RLock()
	defer c.p.mu.RUnlock()
	for _, b := range c.p.backends {
		v := 0.0
		if b.healthy.Load() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, b.id)
	}
}
