package medianode_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/shared/config"
)

func scrape(t *testing.T, url, bearer string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestMetricsNeedTheClusterSecret: by default a media node serves its
// metrics on its API address only to holders of the cluster secret (401
// otherwise); with media.metrics_listen they are served there to anyone
// (a scraper on a private network) and no longer on the API address.
func TestMetricsNeedTheClusterSecret(t *testing.T) {
	const metric = "chorus_media_peer_connections"
	c := clustertest.Start(t, clustertest.Options{MediaNodes: 1})
	api := c.MediaNodeURLs[0] + "/metrics"
	if st, body := scrape(t, api, ""); st != http.StatusUnauthorized || strings.Contains(body, metric) {
		t.Errorf("metrics without the secret: %d, want 401 and no metrics (%.80q)", st, body)
	}
	st, body := scrape(t, api, clustertest.ClusterSecret)
	if st != http.StatusOK || !strings.Contains(body, metric) {
		t.Errorf("metrics with the secret: %d, want 200 with %s (%.80q)", st, metric, body)
	}
	if _, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed (make deps installs it): not checked")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	apart := clustertest.Start(t, clustertest.Options{MediaNodes: 1,
		Configure: func(cfg *config.Config) { cfg.Media.MetricsListen = metricsAddr }})
	if st, body := scrape(t, fmt.Sprintf("http://%s/metrics", metricsAddr), ""); st != http.StatusOK || !strings.Contains(body, metric) {
		t.Errorf("metrics on media.metrics_listen: %d, want 200 with %s (%.80q)", st, metric, body)
	}
	if st, _ := scrape(t, apart.MediaNodeURLs[0]+"/metrics", clustertest.ClusterSecret); st != http.StatusNotFound {
		t.Errorf("metrics on the API address with media.metrics_listen set: %d, want 404", st)
	}
}
