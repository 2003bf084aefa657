package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The media node metrics the load tester reads (medianode's GET /metrics).
const (
	metricCPUSeconds = "chorus_media_cpu_seconds_total"
	metricForwarded  = "chorus_media_forwarded_packets_total"
	metricFwdBytes   = "chorus_media_forwarded_bytes_total"
	metricCPUs       = "chorus_media_cpus"
)

// scrapeNode reads a media node's counters from its /metrics (Prometheus
// text format) at base, the node's uri as the REST API lists it.
// clusterSecret, when set, is sent as the bearer token the node's API
// requires.
func scrapeNode(ctx context.Context, client *http.Client, base, clusterSecret string) (nodeCounters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nodeCounters{}, err
	}
	if clusterSecret != "" {
		req.Header.Set("Authorization", "Bearer "+clusterSecret)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nodeCounters{}, fmt.Errorf("scrape %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nodeCounters{}, fmt.Errorf("scrape %s: %s", base, resp.Status)
	}
	c, err := parseNodeMetrics(resp.Body)
	c.at = time.Now()
	return c, err
}

// parseNodeMetrics extracts the counters the load tester needs.
func parseNodeMetrics(r io.Reader) (nodeCounters, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nodeCounters{}, fmt.Errorf("parse media node metrics: %w", err)
	}
	value := func(name string) (float64, bool) {
		f := families[name]
		if f == nil || len(f.GetMetric()) == 0 {
			return 0, false
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
		return 0, false
	}
	var c nodeCounters
	var ok1, ok2 bool
	c.cpuSeconds, ok1 = value(metricCPUSeconds)
	c.forwarded, ok2 = value(metricForwarded)
	if !ok1 || !ok2 {
		return nodeCounters{}, fmt.Errorf("media node metrics lack %s or %s (not a Chorus media node?)", metricCPUSeconds, metricForwarded)
	}
	c.forwardedBytes, _ = value(metricFwdBytes) // absent from nodes older than the figure
	c.cpus, _ = value(metricCPUs)
	if c.cpus <= 0 {
		c.cpus = 1
	}
	return c, nil
}
