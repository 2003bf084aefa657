package proxy

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/shared/config"
)

// silentListener listens on loopback with the smallest accept queue the
// kernel allows (backlog 0: one connection) and accepts until silence is
// called. Then it stops accepting and fills its queue, after which the
// kernel drops every new SYN: a dial to it hangs as a dial to a host that
// is gone does, where a closed port would answer with a reset at once.
type silentListener struct {
	net.Listener
	quiet   chan struct{}
	parked  chan struct{} // closed once Accept has stopped for good
	closed  chan struct{}
	fillers []net.Conn
}

func newSilentListener(t *testing.T) *silentListener {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "silent-listener")
	l, err := net.FileListener(f) // dups fd
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return &silentListener{Listener: l, quiet: make(chan struct{}), parked: make(chan struct{}), closed: make(chan struct{})}
}

func (l *silentListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case <-l.quiet:
		c.Close()
		close(l.parked)
		<-l.closed // never again
		return nil, net.ErrClosed
	default:
	}
	return c, nil
}

func (l *silentListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return l.Listener.Close()
}

// silence stops accepting and fills the accept queue: until the test ends,
// SYNs to the listener go unanswered.
func (l *silentListener) silence(t *testing.T) {
	t.Helper()
	close(l.quiet)
	// The server's Accept loop takes one more connection, sees the
	// silence and stops; from then on nobody empties the queue, which
	// holds one connection (backlog 0), and the next SYN is dropped.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-l.parked
	for i := 0; i < 4; i++ {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 200*time.Millisecond)
		if err != nil {
			return // the queue is full
		}
		l.fillers = append(l.fillers, c)
	}
	t.Fatal("the listener still completes handshakes")
}

// TestMasterOnALostHost: a master whose host is gone answers nothing, not
// even a reset. The proxy gives its TCP handshake proxy.dial_timeout and
// then sends the request to another master, so that losing a host costs a
// request (or a WebSocket reconnection) that much, not the kernel's SYN
// retries.
func TestMasterOnALostHost(t *testing.T) {
	a := stubMaster(t, "A")
	sl := newSilentListener(t)
	lost := httptest.NewUnstartedServer(a.Config.Handler)
	lost.Listener.Close()
	lost.Listener = sl
	lost.Start()
	t.Cleanup(func() {
		for _, c := range sl.fillers {
			c.Close()
		}
		lost.Close()
	})
	const dialTimeout = 300 * time.Millisecond
	p, url := startProxyWith(t, true, func(c *config.Proxy) { c.DialTimeout = dialTimeout }, a.URL, lost.URL)
	for deadline := time.Now().Add(5 * time.Second); len(p.Healthy()) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("healthy masters %v, want both", p.Healthy())
		}
	}
	lost.CloseClientConnections() // the proxy's health check held one open
	sl.silence(t)

	var slowest time.Duration
	for i := 0; i < 6; i++ {
		start := time.Now()
		status, body := get(t, url+"/who", "payload")
		took := time.Since(start)
		slowest = max(slowest, took)
		if status != http.StatusOK || !strings.HasPrefix(body, "A ") {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
	if p.Stats().ConnectRetries.Load() == 0 {
		t.Fatal("no request was tried on the lost master first: the test proves nothing")
	}
	t.Logf("slowest request %v with the lost master tried first (dial timeout %v)", slowest, dialTimeout)
	if slowest > dialTimeout+500*time.Millisecond {
		t.Errorf("slowest request %v, want the dial to the lost master given up after %v", slowest, dialTimeout)
	}
}

// lostHostMaster is a fake master for TestWaitersOnALostHost: /who answers
// its name, except on the master that will be lost, where a request
// arrives and is never answered; /chorus/health answers until lost is set,
// then hangs; /openvidu is a WebSocket that says the master's name and
// then echoes.
func lostHostMaster(t *testing.T, name string, lost *atomic.Bool, arrived chan<- string, end <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/chorus/health", func(w http.ResponseWriter, r *http.Request) {
		if lost.Load() {
			select {
			case <-r.Context().Done():
			case <-end:
			}
		}
	})
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) {
		if arrived == nil {
			io.WriteString(w, name)
			return
		}
		arrived <- r.Method
		<-end // the host is gone with the request
	})
	mux.HandleFunc("/openvidu", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.WithoutCancel(r.Context())
		if err := c.Write(ctx, websocket.MessageText, []byte(name)); err != nil {
			return
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if lost.Load() && name == "L" {
				select {
				case <-end:
				case <-r.Context().Done():
				}
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	return mux
}

// TestWaitersOnALostHost: what was waiting on a master when its host was
// lost is given up as soon as the health checks find it unreachable (a
// check that cannot even connect), rather than when the clients' own
// timeouts fire: a GET that reached it goes to another master, a POST gets
// 502 (it may have been processed), and a WebSocket relayed to it is
// closed so that its client reconnects; the other master's WebSocket stays.
func TestWaitersOnALostHost(t *testing.T) {
	end := make(chan struct{})
	var lost, neverLost atomic.Bool
	arrived := make(chan string, 2)
	a := httptest.NewServer(lostHostMaster(t, "A", &neverLost, nil, end))
	sl := newSilentListener(t)
	l := httptest.NewUnstartedServer(lostHostMaster(t, "L", &lost, arrived, end))
	l.Listener.Close()
	l.Listener = sl
	l.Start()
	t.Cleanup(func() { // in this order: the handlers return, then the servers close
		close(end)
		for _, c := range sl.fillers {
			c.Close()
		}
		l.Close()
		a.Close()
	})
	p, base := startProxyWith(t, true, func(c *config.Proxy) {
		c.HealthInterval, c.HealthTimeout, c.DialTimeout, c.UnhealthyAfter, c.RequestTimeout =
			100*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond, 2, 20*time.Second
	}, a.URL, l.URL)
	for deadline := time.Now().Add(5 * time.Second); len(p.Healthy()) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("healthy masters %v, want both", p.Healthy())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A WebSocket on each master (round robin).
	sockets := map[string]*websocket.Conn{}
	for i := 0; i < 2; i++ {
		c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/openvidu", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		_, who, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sockets[string(who)] = c
	}
	if sockets["A"] == nil || sockets["L"] == nil {
		t.Fatalf("WebSockets on %v, want one on each master", slices.Collect(maps.Keys(sockets)))
	}

	// A GET and a POST reach the master about to be lost and wait there
	// (requests answered by the other master on the way are sent again).
	type answer struct {
		method string
		status int
		body   string
		took   time.Duration
	}
	answers := make(chan answer, 2)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		for parked := false; !parked; {
			answered := make(chan answer, 1)
			go func() {
				start := time.Now()
				req, _ := http.NewRequestWithContext(ctx, method, base+"/who", strings.NewReader("x"))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					answered <- answer{method: method, body: err.Error(), took: time.Since(start)}
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answered <- answer{method, resp.StatusCode, string(raw), time.Since(start)}
			}()
			select {
			case <-arrived:
				parked = true
				go func() { answers <- <-answered }()
			case an := <-answered:
				if an.status != http.StatusOK || an.body != "A" {
					t.Fatalf("%s before the loss: %d %q", method, an.status, an.body)
				}
			case <-ctx.Done():
				t.Fatalf("no %s reached the master about to be lost", method)
			}
		}
	}

	// The host is lost: nothing it had answers again, nothing new connects.
	lost.Store(true)
	sl.silence(t)
	lostAt := time.Now()

	wsClosed := make(chan time.Duration, 1)
	go func() {
		_ = sockets["L"].Write(ctx, websocket.MessageText, []byte("hello?"))
		_, _, err := sockets["L"].Read(ctx)
		if err == nil {
			t.Error("the lost master's WebSocket answered")
		}
		wsClosed <- time.Since(lostAt)
	}()
	const bound = 3 * time.Second
	for i := 0; i < 2; i++ {
		an := <-answers
		t.Logf("%s: %d %q after %v", an.method, an.status, an.body, an.took.Round(time.Millisecond))
		switch {
		case an.took > bound:
			t.Errorf("%s answered %v after the request, want within %v of the loss", an.method, an.took, bound)
		case an.method == http.MethodGet && (an.status != http.StatusOK || an.body != "A"):
			t.Errorf("GET: %d %q, want the other master's answer", an.status, an.body)
		case an.method == http.MethodPost && an.status != http.StatusBadGateway:
			t.Errorf("POST: %d %q, want 502 (it reached the lost master: not sent again)", an.status, an.body)
		}
	}
	select {
	case took := <-wsClosed:
		t.Logf("the lost master's WebSocket closed %v after the loss", took.Round(time.Millisecond))
		if took > bound {
			t.Errorf("the lost master's WebSocket closed %v after the loss, want within %v", took, bound)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the lost master's WebSocket still open 10 s after the loss")
	}
	if n := p.Stats().Abandoned.Load(); n != 3 {
		t.Errorf("%d requests and WebSockets counted abandoned, want 3 (a GET, a POST, a WebSocket)", n)
	}
	if err := sockets["A"].Write(ctx, websocket.MessageText, []byte("still")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := sockets["A"].Read(ctx); err != nil || string(msg) != "still" {
		t.Errorf("the other master's WebSocket: %q, %v", msg, err)
	}
}
