//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPrometheusScrapesCluster: Debian's Prometheus, with Chorus' alerting
// rules (configs/prometheus/alerts.yml) and the masters' HTTP service
// discovery as configs/prometheus/prometheus.yml uses it, scrapes a
// `chorus dev` cluster: its targets are every master and media node, all
// up; a media node launched during the test is scraped too; after a media
// node's SIGKILL, ChorusMediaNodeCrashed fires.
func TestPrometheusScrapesCluster(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found: install Debian's prometheus package (make deps does)")
	}
	dc := startDev(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "cluster-secret")
	if err := os.WriteFile(secretFile, []byte(dc.ClusterSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	var sd strings.Builder
	for _, n := range dc.Nodes {
		if n.Role == "master" {
			fmt.Fprintf(&sd, "      - url: http://%s/metrics/targets\n        refresh_interval: 1s\n        authorization:\n          type: Bearer\n          credentials_file: %s\n", n.Addr, secretFile)
		}
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: chorus
    authorization:
      type: Bearer
      credentials_file: %s
    http_sd_configs:
%s`, filepath.Join(repoRoot, "configs", "prometheus", "alerts.yml"), secretFile, sd.String())
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs strings.Builder
	cmd := exec.CommandContext(ctx, promBin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", tail(logs.String(), 60))
		}
	})
	prom := "http://" + addr

	// targets reads Prometheus' active targets: chorus_id -> health.
	targets := func() map[string]string {
		out := map[string]string{}
		for _, tg := range promTargets(t, prom) {
			out[tg.Labels["role"]+"/"+tg.Labels["chorus_id"]] = tg.Health
		}
		return out
	}
	// allUp: exactly the cluster's masters (chorus_id is a master's
	// incarnation, master_1.1) and the media nodes media, all up.
	masters := 0
	for _, n := range dc.Nodes {
		if n.Role == "master" {
			masters++
		}
	}
	allUp := func(media ...string) func() bool {
		return func() bool {
			got := targets()
			m := 0
			for k, health := range got {
				if health != "up" {
					return false
				}
				if strings.HasPrefix(k, "master/master_") {
					m++
				} else if !slices.Contains(media, strings.TrimPrefix(k, "media/")) {
					return false
				}
			}
			return m == masters && len(got) == masters+len(media)
		}
	}
	var want []string
	for _, n := range dc.Nodes {
		if n.Role == "media" {
			want = append(want, n.ID)
		}
	}
	waitFor(t, "every master and media node scraped", 60*time.Second, allUp(want...), func() string { return fmt.Sprint(targets()) })

	launched := decodeNode(t, expect(t, dc, "POST", "/openvidu/api/media-nodes?wait=true", "{}", 200, ""))
	want = append(want, launched.ID)
	waitFor(t, "the launched node scraped", 30*time.Second, allUp(want...), func() string { return fmt.Sprint(targets()) })
	// scalar evaluates a PromQL expression of one value ("" when none).
	scalar := func(expr string) string {
		var res struct {
			Data struct {
				Result []struct {
					Value []any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		promGet(t, prom+`/api/v1/query?query=`+url.QueryEscape(expr), &res)
		if len(res.Data.Result) != 1 || len(res.Data.Result[0].Value) != 2 {
			return ""
		}
		v, _ := res.Data.Result[0].Value[1].(string)
		return v
	}
	exactly := func(what, expr, want string) {
		t.Helper()
		waitFor(t, what+": "+expr+" = "+want, 15*time.Second, func() bool { return scalar(expr) == want },
			func() string { return "got " + scalar(expr) })
	}
	exactly("one launch counted over the masters", `sum(chorus_master_controller_actions_total{action="launch"})`, "1")

	killed := time.Now()
	if err := syscall.Kill(dc.pid(t, "media_1"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	firing := func() []string {
		var out []string
		for _, a := range promAlerts(t, prom) {
			if a.State == "firing" {
				out = append(out, a.Labels["alertname"])
			}
		}
		return out
	}
	waitFor(t, "ChorusMediaNodeCrashed firing", 30*time.Second,
		func() bool { return slices.Contains(firing(), "ChorusMediaNodeCrashed") }, func() string { return fmt.Sprint(firing()) })
	t.Logf("ChorusMediaNodeCrashed firing %s after the SIGKILL (scrape and evaluation every second)", time.Since(killed).Round(time.Millisecond))
	exactly("one crash declared over the masters", `sum(chorus_master_controller_actions_total{action="crash"})`, "1")
	exactly("the crashed node's sessions: none", `sum(chorus_master_controller_actions_total{action="migrate"})`, "0")

	// A master SIGKILLed: the others' health checks see it down
	// (chorus_master_peer_up 0), declare it crashed, and the alert fires.
	killed = time.Now()
	if err := syscall.Kill(dc.pid(t, "master_3"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ChorusMasterCrashed firing", 30*time.Second,
		func() bool { return slices.Contains(firing(), "ChorusMasterCrashed") }, func() string { return fmt.Sprint(firing()) })
	t.Logf("ChorusMasterCrashed firing %s after the SIGKILL", time.Since(killed).Round(time.Millisecond))
	exactly("one master crash declared over the masters", `sum(chorus_master_peer_crashes_total)`, "1")
	exactly("two masters left in the cluster", `max(chorus_cluster_masters)`, "2")
	var down struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	promGet(t, prom+`/api/v1/query?query=`+url.QueryEscape(`min_over_time(chorus_master_peer_up{peer=~"master_3[.].*"}[5m]) == 0`), &down)
	seenBy := map[string]bool{}
	for _, r := range down.Data.Result {
		seenBy[r.Metric["master"]] = true
	}
	if len(seenBy) != masters-1 {
		t.Errorf("masters that saw master_3 down (chorus_master_peer_up 0): %v, want the %d others", seenBy, masters-1)
	}
}

func promGet(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return // not up yet
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, v)
}

// promTarget is one of Prometheus' active targets (GET /api/v1/targets).
type promTarget struct {
	Labels map[string]string `json:"labels"`
	Health string            `json:"health"`
}

// promTargets lists a Prometheus' active targets (none while it is not up).
func promTargets(t *testing.T, prom string) []promTarget {
	t.Helper()
	var res struct {
		Data struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		} `json:"data"`
	}
	promGet(t, prom+"/api/v1/targets?state=active", &res)
	return res.Data.ActiveTargets
}

// promAlert is one of Prometheus' alerts (GET /api/v1/alerts).
type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

// promAlerts lists a Prometheus' pending and firing alerts.
func promAlerts(t *testing.T, prom string) []promAlert {
	t.Helper()
	var res struct {
		Data struct {
			Alerts []promAlert `json:"alerts"`
		} `json:"data"`
	}
	promGet(t, prom+"/api/v1/alerts", &res)
	return res.Data.Alerts
}
