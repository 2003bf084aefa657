package turn

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// tlsHandshakeTimeout bounds a TLS client's handshake.
const tlsHandshakeTimeout = 10 * time.Second

// maxAcceptBackoff is the longest pause after a failed Accept (e.g. EMFILE).
const maxAcceptBackoff = time.Second

// packetListener is the UDP listening socket as pion reads it; stopped is
// closed once a read fails, which ends pion's read loop for good.
type packetListener struct {
	net.PacketConn
	stopped  chan struct{}
	stopOnce sync.Once
	stopErr  error
}

func newPacketListener(c net.PacketConn) *packetListener {
	return &packetListener{PacketConn: c, stopped: make(chan struct{})}
}

func (l *packetListener) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := l.PacketConn.ReadFrom(p)
	if err != nil {
		l.stopOnce.Do(func() { l.stopErr = err; close(l.stopped) })
	}
	return n, addr, err
}

// streamListener is a TCP (or TLS) listening socket as pion accepts from it.
// It retries failed accepts (pion's accept loop would end on the first
// error, EMFILE included) until the listener is closed, and hands pion
// serverConns registered in conns. pion must not see a *tls.Conn: it would
// run the handshake itself and, when that fails, never close the connection.
type streamListener struct {
	net.Listener
	tls      *tls.Config // nil: plain TCP
	idle     time.Duration
	conns    *connSet
	quit     <-chan struct{}
	log      *slog.Logger
	stopped  chan struct{}
	stopOnce sync.Once
}

func newStreamListener(l net.Listener, tlsCfg *tls.Config, idle time.Duration, conns *connSet, quit <-chan struct{},
	log *slog.Logger,
) *streamListener {
	return &streamListener{
		Listener: l, tls: tlsCfg, idle: idle, conns: conns, quit: quit, log: log, stopped: make(chan struct{}),
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		raw, err := l.Listener.Accept()
		if err == nil {
			return l.conns.add(newServerConn(raw, l.tls, l.idle, l.conns)), nil
		}
		if errors.Is(err, net.ErrClosed) {
			l.stopOnce.Do(func() { close(l.stopped) })
			return nil, err
		}
		l.log.Warn("turn: accept failed, retrying", "listener", l.Addr().String(), "err", err, "in", backoff)
		select {
		case <-l.quit:
			l.stopOnce.Do(func() { close(l.stopped) })
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxAcceptBackoff)
	}
}

// serverConn is one client's TCP or TLS connection. Every Read extends its
// idle deadline, so a connection that says nothing for the idle timeout is
// dropped (pion has no timeout of its own); TLS handshakes get
// tlsHandshakeTimeout. pion has one reader per connection, so handshook is
// only touched by it.
type serverConn struct {
	net.Conn // what pion reads and writes: raw, or TLS over it
	raw      net.Conn
	tlsConn  *tls.Conn
	idle     time.Duration
	set      *connSet

	handshook bool
	closeOnce sync.Once
	closeErr  error
}

func newServerConn(raw net.Conn, tlsCfg *tls.Config, idle time.Duration, set *connSet) *serverConn {
	c := &serverConn{Conn: raw, raw: raw, idle: idle, set: set}
	if tlsCfg != nil {
		c.tlsConn = tls.Server(raw, tlsCfg)
		c.Conn = c.tlsConn
	}
	return c
}

func (c *serverConn) Read(b []byte) (int, error) {
	if c.tlsConn != nil && !c.handshook {
		if err := c.raw.SetDeadline(time.Now().Add(tlsHandshakeTimeout)); err != nil {
			return 0, err
		}
		if err := c.tlsConn.Handshake(); err != nil {
			return 0, err
		}
		if err := c.raw.SetWriteDeadline(time.Time{}); err != nil {
			return 0, err
		}
		c.handshook = true
	}
	if err := c.raw.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		c.set.remove(c)
	})
	return c.closeErr
}

// connSet holds the client connections pion serves. wg counts those pion
// has not closed yet: pion closes a connection as its goroutine for it ends.
type connSet struct {
	mu     sync.Mutex
	m      map[*serverConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newConnSet() *connSet { return &connSet{m: map[*serverConn]struct{}{}} }

func (s *connSet) add(c *serverConn) *serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[c] = struct{}{}
	s.wg.Add(1)
	if s.closed {
		_ = c.raw.Close() // pion's reader fails at once and closes it
	}
	return c
}

func (s *connSet) remove(c *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[c]; ok {
		delete(s.m, c)
		s.wg.Done()
	}
}

// closeAll closes every connection's socket, and any accepted later: pion's
// readers fail and close them.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*serverConn, 0, len(s.m))
	for c := range s.m {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.raw.Close()
	}
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
