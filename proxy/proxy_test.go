package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/shared/config"
)

// stubMaster is a fake master: it answers the health check and a few test routes.
func stubMaster(t *testing.T, name string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/chorus/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, name+" "+r.Header.Get("X-Forwarded-For")+" "+string(body))
	})
	mux.HandleFunc("/boom", func(w http.ResponseWriter, _ *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close() // dies mid-request
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/openvidu", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err == nil {
			_ = c.Write(r.Context(), typ, append([]byte(name+":"), msg...))
		}
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func startProxy(t *testing.T, wantHealthy bool, masters ...string) (*Proxy, string) {
	t.Helper()
	return startProxyWith(t, wantHealthy, nil, masters...)
}

// startProxyWith is startProxy with a change to the proxy's configuration.
func startProxyWith(t *testing.T, wantHealthy bool, change func(*config.Proxy), masters ...string) (*Proxy, string) {
	t.Helper()
	return startProxyConfig(t, wantHealthy, func(c *config.Config) {
		if change != nil {
			change(&c.Proxy)
		}
	}, masters...)
}

// startProxyConfig is startProxy with a change to the whole configuration.
func startProxyConfig(t *testing.T, wantHealthy bool, change func(*config.Config), masters ...string) (*Proxy, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := &config.Config{Secret: "s", Proxy: config.Proxy{
		Listen: addr, Masters: masters, HealthInterval: time.Hour, HealthTimeout: time.Second, DialTimeout: time.Second,
		UnhealthyAfter: 100, RequestTimeout: 300 * time.Millisecond,
	}}
	if change != nil {
		change(cfg)
	}
	p, err := New(Config{Cluster: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/chorus/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 || !wantHealthy {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("proxy not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p, "http://" + addr
}

func get(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func TestRetriesWhatNeverReachedAMaster(t *testing.T) {
	a := stubMaster(t, "A")
	b := stubMaster(t, "B")
	_, url := startProxy(t, true, a.URL, b.URL)
	b.Close() // B dies after the health check: the proxy still believes it healthy
	for i := 0; i < 6; i++ {
		status, body := get(t, url+"/who", "payload")
		if status != 200 || !strings.HasPrefix(body, "A 127.0.0.1 payload") {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
}

func TestStatusWhenMastersFail(t *testing.T) {
	a := stubMaster(t, "A")
	_, url := startProxy(t, true, a.URL)
	if status, _ := get(t, url+"/boom", ""); status != http.StatusBadGateway {
		t.Errorf("master died mid-request: %d, want 502", status)
	}
	if status, _ := get(t, url+"/slow", ""); status != http.StatusGatewayTimeout {
		t.Errorf("master too slow: %d, want 504", status)
	}
	a.Close()
	for i := 0; i < 2; i++ { // the first marks it down, the second finds nobody
		if status, _ := get(t, url+"/who", ""); status != http.StatusServiceUnavailable {
			t.Errorf("no master left: %d, want 503", status)
		}
	}
}

func TestNoMastersAtAll(t *testing.T) {
	gone := stubMaster(t, "gone")
	gone.Close()
	_, url := startProxy(t, false, gone.URL)
	resp, err := http.Get(url + "/openvidu/api/sessions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("%d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestWebSocketPassThrough(t *testing.T) {
	a := stubMaster(t, "A")
	dead := stubMaster(t, "dead")
	_, url := startProxy(t, true, a.URL, dead.URL)
	dead.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ { // an upgrade to the dead master is retried too
		c, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1)+"/openvidu?sessionId=x", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Write(ctx, websocket.MessageText, []byte("hi"))
		_, msg, err := c.Read(ctx)
		if err != nil || string(msg) != "A:hi" {
			t.Fatalf("echo %q, %v", msg, err)
		}
		c.CloseNow()
	}
}

// TestClientsGivingUpDoNotMarkAMasterDown: requests that their clients
// cancel (a load test stopping, a browser tab closed) say nothing about the
// master: it stays healthy however many there are.
func TestClientsGivingUpDoNotMarkAMasterDown(t *testing.T) {
	a := stubMaster(t, "A")
	p, url := startProxyWith(t, true, func(c *config.Proxy) { c.UnhealthyAfter, c.RequestTimeout = 2, 5*time.Second }, a.URL)
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/slow", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
	// The proxy has handled all five (a master marked down by them would be
	// by now)...
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().ClientCancelled.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy saw %d cancelled requests of 5", p.Stats().ClientCancelled.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ...and held none of them against the master.
	if f := p.Stats().UpstreamFailures.Load(); f != 0 {
		t.Errorf("%d cancelled requests counted as master failures", f)
	}
	if status, body := get(t, url+"/who", ""); status != http.StatusOK {
		t.Fatalf("after clients gave up: %d %s, want the master still serving", status, body)
	}
}

// TestWebSocketsPerIP: a client address holds at most limits.websockets_per_ip
// WebSocket connections through the proxy; the next upgrade gets 429 while
// plain requests still pass, and a closed connection frees its place.
func TestWebSocketsPerIP(t *testing.T) {
	const limit = 3
	a := stubMaster(t, "A")
	_, url := startProxyConfig(t, true, func(c *config.Config) { c.Limits.WebSocketsPerIP = limit }, a.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsURL := strings.Replace(url, "http", "ws", 1) + "/openvidu?sessionId=x"
	var open []*websocket.Conn
	for i := 0; i < limit; i++ {
		c, _, err := websocket.Dial(ctx, wsURL, nil)
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, limit, err)
		}
		defer c.CloseNow()
		open = append(open, c)
	}
	c, resp, err := websocket.Dial(ctx, wsURL, nil)
	if err == nil {
		c.CloseNow()
		t.Fatalf("connection %d of a client allowed %d was accepted", limit+1, limit)
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("connection %d: %v (response %+v), want 429 with Retry-After", limit+1, err, resp)
	}
	if status, body := get(t, url+"/who", ""); status != http.StatusOK {
		t.Errorf("a plain request past the WebSocket limit: %d %s", status, body)
	}
	// Closing one frees its place (once the proxy has seen the relay end).
	_ = open[0].Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _, err := websocket.Dial(ctx, wsURL, nil)
		if err == nil {
			_ = c.Write(ctx, websocket.MessageText, []byte("hi"))
			_, msg, rerr := c.Read(ctx)
			c.CloseNow()
			if rerr != nil || string(msg) != "A:hi" {
				t.Fatalf("echo through the freed place: %q, %v", msg, rerr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place freed 5 s after a connection closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
