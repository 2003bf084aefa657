package capture

import (
	"sort"
	"time"

	"github.com/pion/rtp"
)

// seqFilter drops the packets the sample builder must not see again: a
// packet at or behind the last one the builder released (consumed or gave
// up on) would move the builder's head backwards. Duplicates of packets
// still buffered are harmless (the builder overwrites them).
//
// It also counts losses: sequence numbers the builder went past without
// having had the packet (padding packets, which the builder drops too, are
// not losses).
type seqFilter struct {
	started     bool
	max         int64 // highest extended sequence number pushed
	anyReleased bool
	released    int64 // highest extended sequence number released by the builder
	lost        int64 // sequence numbers released over without a packet
}

// admit returns whether the packet with sequence number seq may be pushed.
func (f *seqFilter) admit(seq uint16) bool {
	if !f.started {
		f.started = true
		f.max = int64(seq)
		return true
	}
	ext := f.extend(seq)
	if f.anyReleased && ext <= f.released {
		return false
	}
	if ext > f.max {
		f.max = ext
	}
	return true
}

// release records that the builder released the packet seq.
func (f *seqFilter) release(seq uint16) {
	ext := f.extend(seq)
	if !f.anyReleased {
		f.anyReleased, f.released = true, ext
		return
	}
	if ext > f.released {
		f.lost += ext - f.released - 1
		f.released = ext
	}
}

func (f *seqFilter) extend(seq uint16) int64 {
	return f.max + int64(int16(seq-uint16(f.max)))
}

// startBuffer holds a track's first packets for a moment and releases them
// in sequence order: pion's sample builder starts its first sample at the
// first packet pushed, so a keyframe whose first packet arrived second
// would be dropped.
type startBuffer struct {
	window time.Duration
	first  time.Time
	held   []*rtp.Packet
	done   bool
}

// add returns the packets to push now, in order.
func (b *startBuffer) add(p *rtp.Packet, at time.Time) []*rtp.Packet {
	if b.done {
		return []*rtp.Packet{p}
	}
	if len(b.held) == 0 {
		b.first = at
	}
	b.held = append(b.held, p)
	if at.Sub(b.first) < b.window {
		return nil
	}
	return b.drain()
}

// drain returns the held packets in sequence order and stops holding.
func (b *startBuffer) drain() []*rtp.Packet {
	b.done = true
	held := b.held
	b.held = nil
	if len(held) == 0 {
		return nil
	}
	ref := held[0].SequenceNumber
	sort.SliceStable(held, func(i, j int) bool {
		return int16(held[i].SequenceNumber-ref) < int16(held[j].SequenceNumber-ref)
	})
	return held
}
