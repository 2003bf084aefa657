package udpbatch

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBatchedWritesArriveInOrder: a burst of packets (as a fan-out makes)
// arrives complete, in order, with fewer system calls than packets; Close
// sends what is queued and stops the writer.
func TestBatchedWritesArriveInOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	recv := listen(t)
	defer recv.Close()
	_ = recv.SetReadBuffer(4 << 20)
	c := New(listen(t), Config{})
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	const n = 2000
	for i := 0; i < n; i++ {
		pkt := make([]byte, 100+i%1000)
		binary.BigEndian.PutUint32(pkt, uint32(i))
		if _, err := c.WriteToAddrPort(pkt, dst); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToAddrPort([]byte{1}, dst); err == nil {
		t.Error("write after Close accepted")
	}
	buf := make([]byte, 2000)
	_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < n; i++ {
		m, _, err := recv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("packet %d: %v (stats: %d sent, %d calls, %d dropped)", i, err, c.Stats().Packets.Load(), c.Stats().Calls.Load(), c.Stats().Dropped.Load())
		}
		if got := binary.BigEndian.Uint32(buf); got != uint32(i) || m != 100+i%1000 {
			t.Fatalf("packet %d: got #%d of %d bytes", i, got, m)
		}
	}
	st := c.Stats()
	if st.Packets.Load() != n || st.Calls.Load() >= n/2 {
		t.Errorf("%d packets in %d calls: not batched", st.Packets.Load(), st.Calls.Load())
	}
	t.Logf("%d packets in %d system calls", st.Packets.Load(), st.Calls.Load())
}

func TestWriteToAndFullQueue(t *testing.T) {
	defer goleak.VerifyNone(t)
	recv := listen(t)
	defer recv.Close()
	c := New(listen(t), Config{QueueLimit: 1})
	defer c.Close()
	if _, err := c.WriteTo([]byte("x"), &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil {
		t.Error("a non-UDP address accepted")
	}
	for i := 0; i < 1000; i++ {
		if _, err := c.WriteTo([]byte("hello"), recv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Packets.Load()+c.Stats().Dropped.Load() < 1000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.Stats().Packets.Load() + c.Stats().Dropped.Load(); got != 1000 {
		t.Fatalf("%d packets sent or dropped, want 1000", got)
	}
}
