package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

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
