package sfu

import (
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// discardWriter is a subscriber's TrackLocalWriter that drops packets: the
// benchmarks below measure the SFU's own work per packet, without pion's
// interceptors, SRTP and the send call (the load tester measures those).
type discardWriter struct {
	n       int
	lastSeq map[uint32]uint16 // by SSRC
	gaps    int               // sequence numbers not following the previous one
}

func (w *discardWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n++
	if last, ok := w.lastSeq[h.SSRC]; ok && h.SequenceNumber != last+1 {
		w.gaps++
	}
	w.lastSeq[h.SSRC] = h.SequenceNumber
	return h.MarshalSize() + len(payload), nil
}
func (w *discardWriter) Write(b []byte) (int, error) { w.n++; return len(b), nil }

func benchForwarder(b *testing.B, subscribers int) {
	codec := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	stats := &Stats{}
	fw := newForwarder(webrtc.RTPCodecTypeVideo, codec, "str_CAM_bench", 512, stats, slog.New(slog.DiscardHandler))
	w := &discardWriter{lastSeq: map[uint32]uint16{}}
	for i := 0; i < subscribers; i++ {
		dt := newDownTrack(fw, stats, nil)
		dt.writer, dt.ssrc, dt.pt = w, uint32(1000+i), 96
		dt.bound.Store(true)
		fw.addDownTrack(dt)
	}
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 42}, Payload: make([]byte, 1100)}).Marshal()
	var h rtp.Header
	b.ReportAllocs()
	b.SetBytes(int64(len(raw) * subscribers))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// What the read loop does for one received packet: each has the
		// next sequence number.
		binary.BigEndian.PutUint16(raw[2:4], uint16(i))
		hlen, _ := h.Unmarshal(raw)
		fw.layers[0].rtx.put(h.SequenceNumber, raw)
		fw.fanOut(&h, raw[hlen:], packetSource{gen: 1})
	}
	b.StopTimer()
	if w.n != b.N*subscribers || w.gaps != 0 || stats.ForwardedPackets.Load() != uint64(w.n) {
		b.Fatalf("%d packets forwarded (%d counted), want %d; %d sequence gaps", w.n, stats.ForwardedPackets.Load(), b.N*subscribers, w.gaps)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subscribers), "ns/forwarded-packet")
}

// BenchmarkForwardPacket: one received video packet forwarded to N
// subscribers, the SFU's part only (header rewrite, retransmission buffer,
// counters).
func BenchmarkForwardPacket(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(map[int]string{1: "subscribers=1", 10: "subscribers=10", 100: "subscribers=100"}[n], func(b *testing.B) { benchForwarder(b, n) })
	}
}

// TestForwardPathAllocatesNothing: what the SFU itself does per forwarded
// packet (header rewrite, retransmission buffer, counters) allocates no
// memory (BENCHMARKS.md: 0 B/op).
func TestForwardPathAllocatesNothing(t *testing.T) {
	codec := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	stats := &Stats{}
	fw := newForwarder(webrtc.RTPCodecTypeVideo, codec, "str_CAM_allocs", 512, stats, slog.New(slog.DiscardHandler))
	w := &discardWriter{lastSeq: map[uint32]uint16{}}
	for i := 0; i < 10; i++ {
		dt := newDownTrack(fw, stats, nil)
		dt.writer, dt.ssrc, dt.pt = w, uint32(2000+i), 96
		dt.bound.Store(true)
		fw.addDownTrack(dt)
	}
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 42}, Payload: make([]byte, 1100)}).Marshal()
	var h rtp.Header
	seq := uint16(0)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		binary.BigEndian.PutUint16(raw[2:4], seq)
		hlen, _ := h.Unmarshal(raw)
		fw.layers[0].rtx.put(h.SequenceNumber, raw)
		fw.fanOut(&h, raw[hlen:], packetSource{gen: 1})
	})
	if allocs != 0 || w.gaps != 0 {
		t.Errorf("%.1f allocations per packet forwarded to 10 subscribers, %d sequence gaps; want none", allocs, w.gaps)
	}
}
