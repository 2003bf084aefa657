package sfu

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// errCodecNotNegotiated is returned by Bind when the subscriber's answer kept
// none of the track's codec.
var errCodecNotNegotiated = errors.New("the subscriber did not accept the track's codec")

// downTrack is one published track as one subscriber receives it: a pion
// TrackLocal bound to the subscriber's peer connection. It rewrites SSRC and
// payload type to the subscriber's negotiated values and keeps sequence
// numbers and timestamps continuous across a change of source (a publisher
// that reconnected), so the subscriber's decoder never sees a jump.
type downTrack struct {
	id       string
	streamID string
	fw       *forwarder
	stats    *Stats

	bound atomic.Bool

	// mu guards the binding and the rewriting state: the forwarder's read loop
	// and the subscriber's NACK handler both write.
	mu     sync.Mutex
	ssrc   uint32
	pt     uint8
	writer webrtc.TrackLocalWriter

	started   bool
	gen       uint32
	seqOffset uint16
	tsOffset  uint32
	lastSeq   uint16
	lastTS    uint32
	lastWrite time.Time
	rtxBuf    [maxPacketSize]byte
	// out is the header being written, reused: passed to the writer
	// interface, a local would escape and cost an allocation per packet.
	out rtp.Header

	sent atomic.Uint64 // packets written, for tests and the endpoint listing
	// rtt is the subscriber's round-trip time from its receiver reports.
	rtt rttMeter
	// sentBytes counts the bytes written (under mu, which write holds
	// anyway: no atomic per forwarded packet); remb compares them with the
	// subscriber's bandwidth estimates.
	sentBytes uint64
	remb      rembMeter
}

func newDownTrack(fw *forwarder, stats *Stats) *downTrack {
	return &downTrack{id: fw.kind.String(), streamID: fw.streamID, fw: fw, stats: stats}
}

// ID implements webrtc.TrackLocal.
func (d *downTrack) ID() string { return d.id }

// RID implements webrtc.TrackLocal.
func (d *downTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal: the published stream id, so a
// subscriber's audio and video tracks share one MediaStream.
func (d *downTrack) StreamID() string { return d.streamID }

// Kind implements webrtc.TrackLocal.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.fw.kind }

// Bind implements webrtc.TrackLocal: it is called once the subscriber's answer
// is applied, with the negotiated codecs.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, d.fw.codec.MimeType) {
			d.mu.Lock()
			d.ssrc, d.pt, d.writer = uint32(ctx.SSRC()), uint8(c.PayloadType), ctx.WriteStream()
			d.mu.Unlock()
			d.bound.Store(true)
			d.fw.addDownTrack(d)
			d.fw.requestKeyframe() // the new subscriber can only start decoding at a keyframe
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, errCodecNotNegotiated
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(false)
	d.fw.removeDownTrack(d)
	return nil
}

// write forwards one packet of source generation gen and returns the
// bytes written (0: not written). The caller counts them in Stats.
func (d *downTrack) write(h *rtp.Header, payload []byte, gen uint32) int {
	if !d.bound.Load() {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if !d.started {
		d.started, d.gen = true, gen
	} else if gen != d.gen {
		// New source: continue right after the last packet sent, and advance
		// the timestamp by the wall-clock time elapsed since.
		d.gen = gen
		d.seqOffset = d.lastSeq + 1 - h.SequenceNumber
		elapsed := uint32(now.Sub(d.lastWrite).Seconds() * float64(d.fw.codec.ClockRate))
		d.tsOffset = d.lastTS + max(elapsed, 1) - h.Timestamp
	}
	out := &d.out
	*out = *h
	out.SSRC, out.PayloadType = d.ssrc, d.pt
	out.SequenceNumber = h.SequenceNumber + d.seqOffset
	out.Timestamp = h.Timestamp + d.tsOffset
	// Header extension ids are the publisher's negotiation, not the
	// subscriber's: drop them.
	out.Extension, out.Extensions, out.ExtensionProfile = false, nil, 0
	if _, err := d.writer.WriteRTP(out, payload); err != nil {
		d.stats.WriteErrors.Add(1)
		return 0
	}
	if seqNewer(out.SequenceNumber, d.lastSeq) || d.lastWrite.IsZero() {
		d.lastSeq, d.lastTS = out.SequenceNumber, out.Timestamp
	}
	d.lastWrite = now
	d.sent.Add(1)
	n := out.MarshalSize() + len(payload)
	d.sentBytes += uint64(n)
	return n
}

// retransmit answers a subscriber's NACK for sequence numbers (in the
// subscriber's numbering) from the track's retransmission buffer.
func (d *downTrack) retransmit(seqs []uint16) {
	if d.fw.rtx == nil || !d.bound.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, outSeq := range seqs {
		n := d.fw.rtx.get(outSeq-d.seqOffset, d.rtxBuf[:])
		if n == 0 {
			d.stats.NACKMisses.Add(1)
			continue
		}
		var h rtp.Header
		hlen, err := h.Unmarshal(d.rtxBuf[:n])
		if err != nil {
			continue
		}
		out := h
		out.SSRC, out.PayloadType = d.ssrc, d.pt
		out.SequenceNumber = h.SequenceNumber + d.seqOffset
		out.Timestamp = h.Timestamp + d.tsOffset
		out.Extension, out.Extensions, out.ExtensionProfile = false, nil, 0
		if _, err := d.writer.WriteRTP(&out, d.rtxBuf[hlen:n]); err == nil {
			d.stats.Retransmissions.Add(1)
		}
	}
}

// handleRTCP reacts to a subscriber's feedback: keyframe requests go to the
// publisher (rate-limited by the forwarder), NACKs are answered locally.
func (d *downTrack) handleRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			d.fw.requestKeyframe()
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			if d.fw.kind == webrtc.RTPCodecTypeVideo {
				d.mu.Lock()
				sent := d.sentBytes
				d.mu.Unlock()
				d.remb.observe(float64(p.Bitrate), sent, time.Now())
			}
		case *rtcp.ReceiverReport:
			d.mu.Lock()
			ssrc := d.ssrc
			d.mu.Unlock()
			d.rtt.observe(ssrc, p.Reports, time.Now())
		case *rtcp.TransportLayerNack:
			var seqs []uint16
			for _, pair := range p.Nacks {
				seqs = append(seqs, pair.PacketList()...)
			}
			d.retransmit(seqs)
		}
	}
}

// seqNewer reports whether a is after b in RTP sequence-number order.
func seqNewer(a, b uint16) bool { return a != b && a-b < 0x8000 }
