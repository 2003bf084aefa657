package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/shared/clientip"
	"github.com/chorus-rtc/chorus/shared/config"
)

// apiMaster is a fake master's REST API: it records the calls it gets and
// answers sessions (409 when they exist) and connections.
type apiMaster struct {
	*httptest.Server
	mu       sync.Mutex
	calls    []string
	sessions map[string]bool
}

func startAPIMaster(t *testing.T, existing ...string) *apiMaster {
	t.Helper()
	m := &apiMaster{sessions: map[string]bool{}}
	for _, s := range existing {
		m.sessions[s] = true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/chorus/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.calls = append(m.calls, r.Method+" "+r.URL.Path)
		if user, pass, ok := r.BasicAuth(); !ok || user != "OPENVIDUAPP" || pass != "s" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/openvidu/api/sessions":
			var in struct {
				CustomSessionID string `json:"customSessionId"`
			}
			_ = json.NewDecoder(r.Body).Decode(&in)
			if m.sessions[in.CustomSessionID] {
				w.WriteHeader(http.StatusConflict)
				return
			}
			m.sessions[in.CustomSessionID] = true
			_ = json.NewEncoder(w).Encode(map[string]string{"id": in.CustomSessionID})
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/connection"):
			sid := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/openvidu/api/sessions/"), "/connection")
			_ = json.NewEncoder(w).Encode(map[string]string{"token": "ws://x?sessionId=" + sid + "&token=tok_1"})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	})
	m.Server = httptest.NewServer(mux)
	t.Cleanup(m.Close)
	return m
}

func (m *apiMaster) seen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

func demoToken(t *testing.T, url, body string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Post(url+"/demo/token", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp.Header
}

func withDemo(rate, burst int) func(*config.Proxy) {
	return func(c *config.Proxy) {
		c.Demo = config.Demo{Enabled: true, AssetsDir: "web", RateLimit: rate, RateBurst: burst}
	}
}

// TestDemoServesOnlyItsOwnSessions: the token endpoint creates and joins
// demo_ sessions, and refuses, without a call to any master, a session an
// application created (here "standup", which exists).
func TestDemoServesOnlyItsOwnSessions(t *testing.T) {
	m := startAPIMaster(t, "standup")
	_, url := startProxyWith(t, true, withDemo(100, 100), m.URL)

	status, body, _ := demoToken(t, url, `{"sessionId":"standup"}`)
	if status != http.StatusForbidden || !strings.Contains(body, "only its own sessions") {
		t.Errorf("an application's session: %d %s, want 403", status, body)
	}
	if calls := m.seen(); len(calls) != 0 {
		t.Errorf("the master was called for it: %v", calls)
	}
	for _, bad := range []string{`{"sessionId":"demo_"}`, `{"sessionId":"demo_a/b"}`, `not json`} {
		if status, body, _ := demoToken(t, url, bad); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, status, body)
		}
	}

	for i := 0; i < 2; i++ { // created, then found existing (409)
		status, body, _ = demoToken(t, url, `{"sessionId":"demo_room"}`)
		if status != http.StatusOK || !strings.Contains(body, "sessionId=demo_room") {
			t.Fatalf("the demo's own session, request %d: %d %s", i, status, body)
		}
	}
	want := []string{"POST /openvidu/api/sessions", "POST /openvidu/api/sessions/demo_room/connection",
		"POST /openvidu/api/sessions", "POST /openvidu/api/sessions/demo_room/connection"}
	if got := m.seen(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("master calls %v, want %v", got, want)
	}
}

// TestDemoRateLimit: a client gets rate_burst tokens at once, then 429 with
// Retry-After, without the masters hearing of it.
func TestDemoRateLimit(t *testing.T) {
	m := startAPIMaster(t)
	_, url := startProxyWith(t, true, withDemo(1, 3), m.URL)
	for i := 0; i < 3; i++ {
		if status, body, _ := demoToken(t, url, `{"sessionId":"demo_r"}`); status != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, status, body)
		}
	}
	before := len(m.seen())
	status, body, h := demoToken(t, url, `{"sessionId":"demo_r"}`)
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("past the burst: %d %s (Retry-After %q), want 429", status, body, h.Get("Retry-After"))
	}
	if len(m.seen()) != before {
		t.Error("a refused request reached a master")
	}
}

// TestDemoOffByDefault: with the default configuration the proxy serves no
// demo: POST /demo/token goes to the masters like any other path (a
// master answers 404), and no token is handed out.
func TestDemoOffByDefault(t *testing.T) {
	def, err := config.Load(nil, config.RoleProxy, nil)
	if err != nil {
		t.Fatal(err)
	}
	if def.Proxy.Demo.Enabled {
		t.Fatal("proxy.demo.enabled defaults to true")
	}
	m := startAPIMaster(t)
	_, url := startProxyWith(t, true, func(c *config.Proxy) { c.Demo = def.Proxy.Demo }, m.URL)
	if status, body, _ := demoToken(t, url, `{"sessionId":"demo_x"}`); status != http.StatusUnauthorized || strings.Contains(body, "token") {
		t.Errorf("POST /demo/token: %d %s, want the master's 401", status, body)
	}
	if calls := m.seen(); len(calls) != 1 || calls[0] != "POST /demo/token" {
		t.Errorf("master calls %v", calls)
	}
}

func TestRateLimiterPerClient(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimiter(6, 2, func() time.Time { return now }) // a token every 10 s
	for i := 0; i < 2; i++ {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait != 10*time.Second {
		t.Fatalf("past the burst: %v, wait %s (want 10s)", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another client was refused")
	}
	now = now.Add(10 * time.Second)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("refused after the refill")
	}
	if ok, _ := l.allow("a"); ok {
		t.Fatal("a second request after one refill")
	}
	// Idle clients are forgotten once their bucket is full again.
	now = now.Add(2 * time.Minute)
	l.allow("c")
	if len(l.buckets) != 1 {
		t.Errorf("%d buckets kept, want 1 (c)", len(l.buckets))
	}
}

// TestClientKey: the demo counts a client by its peer address (an IPv6 one
// by its /64) and believes X-Forwarded-For only from a trusted proxy.
func TestClientKey(t *testing.T) {
	untrusting := &Proxy{}
	for addr, want := range map[string]string{
		"192.0.2.7:5000":              "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:5000": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:1":    "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:5000":     "192.0.2.7",
	} {
		r := &http.Request{RemoteAddr: addr, Header: http.Header{"X-Forwarded-For": {"203.0.113.1"}}}
		if got := clientKey(untrusting.clientAddr(r)); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
	trusted, err := clientip.ParseTrusted([]string{"192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	behindBalancer := &Proxy{trusted: trusted}
	r := &http.Request{RemoteAddr: "192.0.2.7:5000", Header: http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.1"}}}
	if got := clientKey(behindBalancer.clientAddr(r)); got != "203.0.113.1" {
		t.Errorf("behind a trusted balancer: %s, want 203.0.113.1", got)
	}
}

// TestRateLimiterIsBounded: a flood of addresses cannot grow the limiter
// past maxLimiterClients; new clients wait until buckets refill.
func TestRateLimiterIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimiter(6, 2, func() time.Time { return now })
	for i := 0; i < maxLimiterClients; i++ {
		l.allow(fmt.Sprint(i))
	}
	if ok, _ := l.allow("new"); ok || len(l.buckets) != maxLimiterClients {
		t.Fatalf("client %d admitted (%d buckets)", maxLimiterClients+1, len(l.buckets))
	}
	now = now.Add(10 * time.Second) // every bucket full again
	if ok, _ := l.allow("new"); !ok || len(l.buckets) != 1 {
		t.Fatalf("after the refill: %v, %d buckets", ok, len(l.buckets))
	}
}
