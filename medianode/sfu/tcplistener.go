package sfu

import (
	"net"
	"sync"
)

// closingListener is the ICE-TCP listener handed to pion's TCP mux. It
// remembers the connections it accepted until they close, and its Close
// closes them too. pion's TCPMuxDefault.Close closes the connections it has
// matched to a peer connection, then waits for every goroutine it started,
// including the one reading a new connection's first STUN message for up to
// ice.TCPMuxParams.FirstStunBindTimeout: without this, one client that
// connects and sends nothing would hold the node's shutdown that long.
type closingListener struct {
	net.Listener

	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

func newClosingListener(l net.Listener) *closingListener {
	return &closingListener{Listener: l, conns: map[*trackedConn]struct{}{}}
}

// Accept implements net.Listener.
func (l *closingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, owner: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// Close closes the listener and every connection it accepted that is
// still open.
func (l *closingListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[*trackedConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

func (l *closingListener) forget(c *trackedConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// trackedConn is an accepted connection that leaves its listener's set
// when it closes.
type trackedConn struct {
	net.Conn
	owner *closingListener
}

// Close implements net.Conn.
func (c *trackedConn) Close() error {
	c.owner.forget(c)
	return c.Conn.Close()
}
