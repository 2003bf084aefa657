package clustertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/redistest"
)

// scrape reads a master's /metrics with the cluster secret (or without,
// when secret is empty) and returns the HTTP status and the raw text.
func scrape(t *testing.T, masterURL, secret string) (int, string) {
	t.Helper()
	return get(t, masterURL+"/metrics", secret)
}

// get GETs url with secret as bearer token ("": none).
func get(t *testing.T, url, secret string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// samples parses Prometheus' text format into "name{labels}" -> value,
// labels sorted as Prometheus prints them.
func samples(t *testing.T, text string) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if l.GetName() == "master" {
					continue // every series has it
				}
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestMasterMetrics: after a scripted scenario through the proxy (a session
// created, three REST calls, two Go participants joining, one publishing,
// the other subscribing, a bad call, a webhook that fails its first two
// POSTs), each master's /metrics counts what it served, exactly; the
// cluster gauges come from the media node controller alone (summed over
// the masters, each session once); the machinery's series (Redis command
// latency, transaction conflicts, outbox lag, event delivery, peer health)
// are there and count what happened; /metrics needs the cluster secret;
// promtool accepts every master's output.
func TestMasterMetrics(t *testing.T) {
	var posts atomic.Int32
	webhook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if posts.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(webhook.Close)
	c := clustertest.Start(t, clustertest.Options{Masters: 2, MediaNodes: 1, Proxy: true, Configure: func(cfg *config.Config) {
		cfg.Webhook.Enabled, cfg.Webhook.Endpoint, cfg.Webhook.Events = true, webhook.URL, []string{"sessionCreated"}
		cfg.Webhook.RetryWaitMin, cfg.Webhook.RetryWaitMax = 10*time.Millisecond, 50*time.Millisecond
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ov, err := openvidu.New(openvidu.Config{URL: c.ProxyURL, Secret: clustertest.Secret})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ov.CreateSession(ctx, openvidu.SessionProperties{})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*participant.Participant
	for range 2 {
		conn, err := ov.CreateConnection(ctx, sess.ID, openvidu.ConnectionProperties{Role: "PUBLISHER"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := participant.Join(ctx, participant.Config{Token: conn.Token, LoopbackOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		ps = append(ps, p)
	}
	pub, err := ps[0].Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ps[1].Subscribe(ctx, pub.StreamID); err != nil {
		t.Fatal(err)
	}
	if _, err := ov.Session(ctx, "no_such_session"); err == nil {
		t.Fatal("GET of an unknown session succeeded")
	}

	// The webhook gets sessionCreated on its third POST; each master has
	// checked the other.
	deadline := time.Now().Add(20 * time.Second)
	for {
		total := map[string]float64{}
		for _, u := range c.MasterURLs {
			_, text := scrape(t, u, clustertest.ClusterSecret)
			for k, v := range samples(t, text) {
				total[k] += v
			}
		}
		peers := 0.0
		for k, v := range total {
			if strings.HasPrefix(k, "chorus_master_peer_up{") {
				peers += v
			}
		}
		if total[`chorus_master_events_delivered_total{outcome=delivered,sink=webhook}`] == 1 && peers == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %v webhook deliveries, %v healthy peers (want 1 and 2)",
				total[`chorus_master_events_delivered_total{outcome=delivered,sink=webhook}`], peers)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if status, _ := scrape(t, c.MasterURLs[0], ""); status != http.StatusUnauthorized {
		t.Errorf("/metrics without the cluster secret: %d, want 401", status)
	}
	if status, _ := scrape(t, c.MasterURLs[0], clustertest.Secret); status != http.StatusUnauthorized {
		t.Errorf("/metrics with the OpenVidu secret: %d, want 401", status)
	}
	total := map[string]float64{}
	controllers := 0
	for i, u := range c.MasterURLs {
		status, text := scrape(t, u, clustertest.ClusterSecret)
		if status != http.StatusOK {
			t.Fatalf("master %d /metrics: %d", i, status)
		}
		if _, err := exec.LookPath("promtool"); err == nil {
			cmd := exec.Command("promtool", "check", "metrics")
			cmd.Stdin = strings.NewReader(text)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool check metrics, master %d: %v\n%s", i, err, out)
			}
		} else {
			t.Log("promtool not installed (Debian's prometheus package; make deps installs it): not checked")
		}
		s := samples(t, text)
		if _, ok := s["chorus_cluster_sessions{}"]; ok {
			controllers++
		}
		for k, v := range s {
			total[k] += v
		}
	}
	if controllers != 1 {
		t.Errorf("%d masters export the cluster gauges, want the controller alone", controllers)
	}
	want := map[string]float64{
		`chorus_master_http_requests_total{code=200,method=POST,route=/openvidu/api/sessions}`:                       1,
		`chorus_master_http_requests_total{code=200,method=POST,route=/openvidu/api/sessions/:sessionId/connection}`: 2,
		`chorus_master_http_requests_total{code=404,method=GET,route=/openvidu/api/sessions/:sessionId}`:             1,
		`chorus_master_rpc_requests_total{method=joinRoom,outcome=ok}`:                                               2,
		`chorus_master_rpc_requests_total{method=publishVideo,outcome=ok}`:                                           1,
		`chorus_master_rpc_requests_total{method=prepareReceiveVideoFrom,outcome=ok}`:                                1,
		`chorus_master_rpc_requests_total{method=receiveVideoFrom,outcome=ok}`:                                       1,
		`chorus_master_rpc_request_duration_seconds{method=joinRoom}_count`:                                          2,
		`chorus_master_websockets{}`:                                             2,
		`chorus_cluster_sessions{}`:                                              1,
		`chorus_cluster_participants{}`:                                          2,
		`chorus_cluster_publishers{}`:                                            1,
		`chorus_cluster_subscriptions{}`:                                         1,
		`chorus_cluster_masters{}`:                                               2,
		`chorus_cluster_media_nodes{status=running}`:                             1,
		`chorus_master_redis_up{}`:                                               2,
		`chorus_master_webhook_retries_total{}`:                                  2,
		`chorus_master_events_delivered_total{outcome=delivered,sink=webhook}`:   1,
		`chorus_master_events_delivered_total{outcome=dead_letter,sink=webhook}`: 0,
		`chorus_master_event_delivery_latency_seconds{sink=webhook}_count`:       1,
	}
	for k, v := range want {
		if total[k] != v {
			t.Errorf("%s = %v over the masters, want %v", k, total[k], v)
		}
	}
	// Series that are 0 here, but must exist (alerts read them).
	for _, k := range []string{`chorus_cluster_media_nodes_crashed{}`, `chorus_cluster_events_undelivered{}`,
		`chorus_cluster_events_oldest_undelivered_age_seconds{}`, `chorus_cluster_events_dead_letters{}`,
		`chorus_master_controller_actions_total{action=crash}`, `chorus_master_controller_actions_total{action=migrate}`,
		`chorus_master_redis_transaction_conflicts_total{tx=session}`, `chorus_master_redis_transaction_conflicts_total{tx=media_nodes}`,
		`chorus_master_redis_transaction_conflicts_total{tx=event_stream}`} {
		if _, ok := total[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
	// Series that counted what the scenario did: session transactions
	// (MULTI/EXEC round trips and their WATCHed reads), notifications
	// written to the participants (participantJoined, participantPublished...).
	for _, k := range []string{`chorus_master_redis_command_duration_seconds{command=multi}_count`,
		`chorus_master_redis_command_duration_seconds{command=hgetall}_count`,
		`chorus_master_outbox_delivery_lag_seconds{}_count`} {
		if total[k] < 1 {
			t.Errorf("%s = %v, want at least 1", k, total[k])
		}
	}
	if t.Failed() {
		var keys []string
		for k, v := range total {
			keys = append(keys, fmt.Sprintf("%s %v", k, v))
		}
		t.Logf("all samples:\n%s", strings.Join(keys, "\n"))
	}
}

// TestMasterMetricsListen: with master.metrics_listen the metrics are
// served there without authentication, and no longer on the master's
// listener (404, even with the cluster secret).
func TestMasterMetricsListen(t *testing.T) {
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := clustertest.Start(t, clustertest.Options{Masters: 1, Configure: func(cfg *config.Config) {
		cfg.Master.MetricsListen = addr
	}})
	if status, _ := scrape(t, c.MasterURLs[0], clustertest.ClusterSecret); status != http.StatusNotFound {
		t.Errorf("/metrics on the master's listener: %d, want 404", status)
	}
	var status int
	var text string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, text = resp.StatusCode, string(body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics listener: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status != http.StatusOK || !strings.Contains(text, "chorus_master_websockets") {
		t.Errorf("metrics listener: %d %.200q", status, text)
	}
}

// TestMetricsTargets: a master answers Prometheus' HTTP service discovery
// with every registered master and media node (their internal URLs), to
// holders of the cluster secret only; a media node stopped for good
// (terminated) leaves the list.
func TestMetricsTargets(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Masters: 2, MediaNodes: 2})
	if status, _ := get(t, c.MasterURLs[1]+"/metrics/targets", ""); status != http.StatusUnauthorized {
		t.Errorf("targets without the cluster secret: %d, want 401", status)
	}
	targets := func() map[string]string {
		t.Helper()
		status, body := get(t, c.MasterURLs[1]+"/metrics/targets", clustertest.ClusterSecret)
		if status != http.StatusOK {
			t.Fatalf("targets: %d %s", status, body)
		}
		var groups []struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		if err := json.Unmarshal([]byte(body), &groups); err != nil {
			t.Fatalf("targets %q: %v", body, err)
		}
		out := map[string]string{}
		for _, g := range groups {
			if len(g.Targets) != 1 || g.Labels["__metrics_path__"] != "/metrics" || g.Labels["__scheme__"] != "http" {
				t.Errorf("target group %+v", g)
			}
			out["http://"+g.Targets[0]] = g.Labels["role"]
		}
		return out
	}
	want := map[string]string{c.MasterURLs[0]: "master", c.MasterURLs[1]: "master", c.MediaNodeURLs[0]: "media", c.MediaNodeURLs[1]: "media"}
	if got := targets(); !maps.Equal(got, want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	req, _ := http.NewRequest(http.MethodDelete, c.MasterURLs[0]+"/openvidu/api/media-nodes/media_2?wait=true", nil)
	req.SetBasicAuth("OPENVIDUAPP", clustertest.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE media_2: %d", resp.StatusCode)
	}
	delete(want, c.MediaNodeURLs[1])
	if got := targets(); !maps.Equal(got, want) {
		t.Errorf("targets after media_2 was dropped %v, want %v", got, want)
	}
}
