package sfu

import "sync"

// maxPacketSize bounds the RTP packets kept for retransmission; larger ones
// (which a sane sender never produces over UDP) are not kept.
const maxPacketSize = 1500

// rtxBuffer keeps the last N packets of one published track, indexed by
// sequence number, so that subscribers' NACKs are answered by the media node
// instead of being forwarded to the publisher. One buffer serves every
// subscriber of the track. N is a power of two.
type rtxBuffer struct {
	mu    sync.Mutex
	mask  uint16
	slots []rtxSlot
}

type rtxSlot struct {
	seq   uint16
	valid bool
	n     int
	data  [maxPacketSize]byte
}

func newRTXBuffer(size int) *rtxBuffer {
	return &rtxBuffer{mask: uint16(size - 1), slots: make([]rtxSlot, size)}
}

// put stores a copy of packet (a whole RTP packet) under its sequence number.
func (b *rtxBuffer) put(seq uint16, packet []byte) {
	if len(packet) > maxPacketSize {
		return
	}
	b.mu.Lock()
	s := &b.slots[seq&b.mask]
	s.seq, s.valid, s.n = seq, true, copy(s.data[:], packet)
	b.mu.Unlock()
}

// get copies the packet with sequence number seq into dst and returns its
// length, or 0 when it is no longer (or never was) in the buffer.
func (b *rtxBuffer) get(seq uint16, dst []byte) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &b.slots[seq&b.mask]
	if !s.valid || s.seq != seq {
		return 0
	}
	return copy(dst, s.data[:s.n])
}
