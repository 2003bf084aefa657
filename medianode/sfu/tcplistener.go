package sfu

import (
	"encoding/binary"
	"io"
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
//
// Its connections also pass their RFC 4571 frames through the consent gate
// (consentGate): checks to revoked credentials are answered on the
// connection and never reach the mux.
type closingListener struct {
	net.Listener
	gate *consentGate

	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

func newClosingListener(l net.Listener, gate *consentGate) *closingListener {
	return &closingListener{Listener: l, gate: gate, conns: map[*trackedConn]struct{}{}}
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
	tc := &trackedConn{Conn: c, owner: l, gate: l.gate}
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
	gate  *consentGate // nil: reads pass through

	// Read state (pion's mux reads from one goroutine): the frame being
	// handed out, header included, and the buffer frames are read into.
	pending []byte
	frame   []byte
}

// Read implements net.Conn: the stream as the client sent it, minus the
// frames the gate answered.
func (c *trackedConn) Read(p []byte) (int, error) {
	if c.gate == nil {
		return c.Conn.Read(p)
	}
	for len(c.pending) == 0 {
		if err := c.readFrame(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// readFrame reads one RFC 4571 frame into pending, or answers it.
func (c *trackedConn) readFrame() error {
	if c.frame == nil {
		c.frame = make([]byte, 2+0xffff)
	}
	if _, err := io.ReadFull(c.Conn, c.frame[:2]); err != nil {
		return err
	}
	n := 2 + int(binary.BigEndian.Uint16(c.frame))
	if _, err := io.ReadFull(c.Conn, c.frame[2:n]); err != nil {
		return err
	}
	if c.gate.revokedCount.Load() > 0 {
		if resp, consumed := c.gate.answer(c.frame[2:n]); consumed {
			if resp != nil {
				out := make([]byte, 2+len(resp))
				binary.BigEndian.PutUint16(out, uint16(len(resp)))
				copy(out[2:], resp)
				// One Write per frame, as pion's: Go serializes concurrent
				// Writes on a TCP connection, so frames never interleave.
				if _, err := c.Write(out); err != nil {
					return err
				}
			}
			return nil
		}
	}
	c.pending = c.frame[:n]
	return nil
}

// Close implements net.Conn.
func (c *trackedConn) Close() error {
	c.owner.forget(c)
	return c.Conn.Close()
}
