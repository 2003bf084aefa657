package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/chorus-rtc/chorus/shared/config"
)

// TestInternalAPINotProxied: a master's internal API (/internal/v1/health,
// peer masters' checks) and its metrics are not reachable through the
// proxy, whatever the spelling of the path; the public API still is.
func TestInternalAPINotProxied(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/chorus/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	reached := 0
	mux.HandleFunc("/internal/", func(w http.ResponseWriter, _ *http.Request) { reached++; io.WriteString(w, "internal") })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { reached++; io.WriteString(w, "internal") })
	mux.HandleFunc("/openvidu/api/config", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "public") })
	m := httptest.NewServer(mux)
	t.Cleanup(m.Close)
	_, base := startProxy(t, true, m.URL)
	for _, path := range []string{"/internal/v1/health", "/internal/", "/%69nternal/v1/health", "//internal/v1/health", "/openvidu/../internal/v1/health",
		"/metrics", "/%6detrics", "//metrics", "/openvidu/../metrics"} {
		req, err := http.NewRequest(http.MethodGet, base+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = path // sent as written
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "internal\n") || string(body) == "internal" {
			t.Errorf("GET %s: %d %q, want 404", path, resp.StatusCode, body)
		}
	}
	if reached != 0 {
		t.Errorf("the master's internal API was reached %d times through the proxy", reached)
	}
	if status, body := getOK(t, base+"/openvidu/api/config"); status != 200 || body != "public" {
		t.Errorf("public API: %d %q", status, body)
	}
}

func getOK(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestAnswersNameNoMaster: the proxy's public health check and its error
// answers give no master's internal address nor the transport error
// (those go to the log).
func TestAnswersNameNoMaster(t *testing.T) {
	a := stubMaster(t, "A")
	u, _ := url.Parse(a.URL)
	_, base := startProxy(t, true, a.URL)
	status, body := getOK(t, base+"/chorus/health")
	var health map[string]any
	if err := json.Unmarshal([]byte(body), &health); status != 200 || err != nil || health["healthyMasters"] != float64(1) {
		t.Errorf("health: %d %s, want 200 with healthyMasters 1", status, body)
	}
	if strings.Contains(body, u.Host) {
		t.Errorf("health names a master: %s", body)
	}
	for path, want := range map[string]string{"/boom": "The master failed to answer", "/slow": "The master did not answer in time"} {
		status, body := get(t, base+path, "")
		var e struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Status != status {
			t.Errorf("%s: %d %s, want an OpenVidu-style error body", path, status, body)
		}
		if strings.Contains(body, u.Host) || strings.Contains(body, u.Port()) || e.Message != want {
			t.Errorf("%s: %d %s: want the message %q", path, status, body, want)
		}
	}
}

// TestForwardedFor: from a peer that is not a trusted proxy the incoming
// X-Forwarded-For is replaced by the peer's address; from a trusted one
// (proxy.trusted_proxies, a load balancer) the chain is kept and the peer
// appended.
func TestForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{"untrusted peer", nil, "127.0.0.1"},
		{"trusted peer", []string{"127.0.0.0/8"}, "203.0.113.9, 127.0.0.1"},
	} {
		a := stubMaster(t, "A")
		_, base := startProxyWith(t, true, func(c *config.Proxy) { c.TrustedProxies = tc.trusted }, a.URL)
		req, _ := http.NewRequest(http.MethodPost, base+"/who", strings.NewReader("x"))
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := string(raw); got != "A "+tc.want+" x" {
			t.Errorf("%s: the master saw %q, want X-Forwarded-For %q", tc.name, got, tc.want)
		}
	}
}

// TestDemoErrorsNameNoMaster: when the cluster fails the demo's token
// request (here the master drops the connection), the answer is a fixed
// message, not the transport error with the master's address.
func TestDemoErrorsNameNoMaster(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/chorus/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("/openvidu/api/sessions", func(w http.ResponseWriter, _ *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	m := httptest.NewServer(mux)
	t.Cleanup(m.Close)
	u, _ := url.Parse(m.URL)
	_, base := startProxyWith(t, true, withDemo(100, 100), m.URL)
	status, body, _ := demoToken(t, base, `{"sessionId":"demo_x"}`)
	if status != http.StatusBadGateway || strings.Contains(body, u.Port()) || strings.Contains(body, "EOF") ||
		!strings.Contains(body, "the cluster could not make a token") {
		t.Errorf("demo token with a failing master: %d %s, want 502 with the fixed message", status, body)
	}
}
