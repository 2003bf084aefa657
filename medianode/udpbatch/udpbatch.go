// Package udpbatch is a UDP net.PacketConn whose writes are queued and sent
// in batches, one sendmmsg(2) system call for many packets. A media node
// sends each forwarded packet to each subscriber: one sendto per packet is
// half of its CPU (BENCHMARKS.md), and batching divides that cost.
//
// Writes return once the packet is copied into the queue; a writer goroutine
// owned by the Conn sends what has queued up since its last call. Under load
// the forwarder fans a packet out to every subscriber before the writer runs,
// so batches form by themselves; when idle, a packet leaves at once. Packets
// keep their order. As with UDP itself, a write never blocks: when the queue
// is full (the kernel cannot keep up) packets are dropped and counted.
//
// The Conn implements pion's ice.AddrPortReaderWriter, so pion's UDP mux
// uses its allocation-free netip paths.
package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// Config sizes a Conn.
type Config struct {
	// Batch is the most packets per system call (default 64).
	Batch int
	// QueueLimit is the most packets waiting; more are dropped (default
	// 4096, about 5 MB of media).
	QueueLimit int
	// MaxPacket is the largest packet (default 1500 bytes); larger ones are
	// sent directly, unbatched.
	MaxPacket int
}

// Stats count what a Conn did.
type Stats struct {
	Packets atomic.Uint64 // packets sent
	Calls   atomic.Uint64 // system calls that sent them
	Dropped atomic.Uint64 // packets dropped on a full queue
	Errors  atomic.Uint64 // failed sends
}

// errClosed is returned by writes after Close.
var errClosed = errors.New("udpbatch: use of closed connection")

// Conn is a batching UDP connection. Use New; Close stops its writer.
type Conn struct {
	udp   *net.UDPConn
	batch *ipv4.PacketConn
	cfg   Config
	stats Stats

	mu      sync.Mutex
	queue   []packet
	free    [][]byte
	closed  bool
	wake    chan struct{}
	stopped chan struct{}
}

type packet struct {
	buf  []byte
	addr netip.AddrPort
}

// New wraps udp (IPv4) and starts the writer.
func New(udp *net.UDPConn, cfg Config) *Conn {
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 4096
	}
	if cfg.MaxPacket <= 0 {
		cfg.MaxPacket = 1500
	}
	c := &Conn{udp: udp, batch: ipv4.NewPacketConn(udp), cfg: cfg,
		wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go c.writer()
	return c
}

// Stats returns the Conn's counters.
func (c *Conn) Stats() *Stats { return &c.stats }

// WriteToAddrPort queues b for addr. It reports len(b) written unless the
// Conn is closed.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	a := addr.Addr().Unmap()
	if len(b) > c.cfg.MaxPacket || !a.Is4() {
		return c.udp.WriteToUDPAddrPort(b, addr) // rare: sent as is
	}
	addr = netip.AddrPortFrom(a, addr.Port())
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, errClosed
	}
	if len(c.queue) >= c.cfg.QueueLimit {
		c.mu.Unlock()
		c.stats.Dropped.Add(1)
		return len(b), nil
	}
	var buf []byte
	if n := len(c.free); n > 0 {
		buf, c.free = c.free[n-1], c.free[:n-1]
	} else {
		buf = make([]byte, c.cfg.MaxPacket)
	}
	buf = buf[:copy(buf[:cap(buf)], b)]
	c.queue = append(c.queue, packet{buf: buf, addr: addr})
	first := len(c.queue) == 1
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

// WriteTo implements net.PacketConn.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errors.New("not a UDP address")}
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// writer sends the queue in batches until Close.
func (c *Conn) writer() {
	defer close(c.stopped)
	var sending []packet
	msgs := make([]ipv4.Message, c.cfg.Batch)
	addrs := make([]net.UDPAddr, c.cfg.Batch)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	for {
		c.mu.Lock()
		sending, c.queue = c.queue, sending[:0]
		closed := c.closed
		c.mu.Unlock()
		if len(sending) == 0 {
			if closed {
				return
			}
			<-c.wake
			continue
		}
		for off := 0; off < len(sending); off += c.cfg.Batch {
			chunk := sending[off:min(off+c.cfg.Batch, len(sending))]
			for i, p := range chunk {
				ip := p.addr.Addr().As4()
				addrs[i].IP = append(addrs[i].IP[:0], ip[:]...)
				addrs[i].Port = int(p.addr.Port())
				msgs[i].Buffers[0] = p.buf
				msgs[i].Addr = &addrs[i]
			}
			c.send(msgs[:len(chunk)])
		}
		c.mu.Lock()
		for _, p := range sending {
			c.free = append(c.free, p.buf)
		}
		c.mu.Unlock()
	}
}

// send writes msgs, retrying the rest after a partial write; a message
// the kernel refuses is skipped (counted), as a lost UDP packet would be.
func (c *Conn) send(msgs []ipv4.Message) {
	for len(msgs) > 0 {
		n, err := c.batch.WriteBatch(msgs, 0)
		c.stats.Calls.Add(1)
		if n > 0 {
			c.stats.Packets.Add(uint64(n))
			msgs = msgs[n:]
			continue
		}
		if err != nil {
			c.stats.Errors.Add(1)
			msgs = msgs[1:]
		}
	}
}

// ReadFromAddrPort implements pion's AddrPortReaderWriter.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.udp.ReadFromUDPAddrPort(b)
}

// ReadFrom implements net.PacketConn.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) { return c.udp.ReadFrom(b) }

// Close stops the writer once the queue is sent, then closes the socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.stopped
	return c.udp.Close()
}

// LocalAddr implements net.PacketConn.
func (c *Conn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

// SetDeadline implements net.PacketConn (reads only: writes never block).
func (c *Conn) SetDeadline(t time.Time) error { return c.udp.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.udp.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn; writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
