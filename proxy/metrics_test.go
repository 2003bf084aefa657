package proxy

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/chorus-rtc/chorus/shared/config"
)

// TestProxyMetrics: the proxy counts, on proxy.metrics_listen only, what
// it did with requests it could not simply pass: a retry on another master
// when the first refused the connection, a master that timed out (504), a
// request with no healthy master left (503); each master's health as a
// gauge; promtool accepts the output. Its public listener answers 404 to
// /metrics.
func TestProxyMetrics(t *testing.T) {
	a := stubMaster(t, "A")
	b := stubMaster(t, "B")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	_, base := startProxyWith(t, true, func(c *config.Proxy) { c.MetricsListen = metricsAddr }, a.URL, b.URL)
	b.Close() // dies after the health check: the request that lands on it is retried on A (1 retry), B marked down
	for i := 0; i < 4; i++ {
		if status, _ := get(t, base+"/who", ""); status != http.StatusOK {
			t.Fatalf("request %d: %d", i, status)
		}
	}
	if status, _ := get(t, base+"/slow", ""); status != http.StatusGatewayTimeout {
		t.Fatalf("slow master: %d, want 504", status)
	}
	a.Close()
	for i := 0; i < 2; i++ { // the first is retried (2 retries) then finds nobody, the second finds nobody
		if status, _ := get(t, base+"/who", ""); status != http.StatusServiceUnavailable {
			t.Fatalf("no master left: %d, want 503", status)
		}
	}
	if status, _ := get(t, base+"/metrics", ""); status != http.StatusNotFound {
		t.Errorf("/metrics on the public listener: %d, want 404", status)
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`chorus_proxy_connect_retries_total 2`,
		`chorus_proxy_upstream_failures_total 1`,
		`chorus_proxy_errors_total{cause="master_timeout",code="504"} 1`,
		`chorus_proxy_errors_total{cause="no_healthy_master",code="503"} 2`,
		`chorus_proxy_errors_total{cause="master_failed",code="502"} 0`,
		`chorus_proxy_upstream_healthy{master="` + strings.TrimPrefix(a.URL, "http://") + `"} 0`,
		`chorus_proxy_upstream_healthy{master="` + strings.TrimPrefix(b.URL, "http://") + `"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
	if _, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed (make deps installs it): not checked")
	}
}
