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
// that reconnected, or another simulcast layer), so the subscriber's decoder
// never sees a jump.
//
// Of a simulcast track it forwards one layer, cur, and switches to target
// at target's next keyframe (never mid-frame: the decoder could not use
// the new layer's delta frames); VP8 picture ids and TL0PICIDX continue
// across the switch too. A target of -1 pauses the video (noLayer). With a
// bandwidth estimate (bwe) the target is the best layer that fits it, and
// the track pads its stream to probe for the next one (allocator).
type downTrack struct {
	id       string
	streamID string
	fw       *forwarder
	stats    *Stats
	// bwe is the subscription's bandwidth estimation (nil: none, every
	// layer fits) and alloc the layer choice within it, owned by the
	// selection goroutine.
	bwe   *subscriberBWE
	alloc allocator

	bound atomic.Bool
	// stopSelect ends the layer selection of a simulcast video track
	// (started by Bind, closed by Unbind).
	stopSelect chan struct{}

	// mu guards the binding and the rewriting state: the forwarder's read loop
	// and the subscriber's NACK handler both write.
	mu     sync.Mutex
	ssrc   uint32
	pt     uint8
	writer webrtc.TrackLocalWriter

	cur, target int
	started     bool
	// seg maps the source being forwarded to the subscriber's numbering;
	// history keeps the last segments so that NACKs of packets sent before
	// a switch are answered from the right layer.
	seg       segment
	history   [segmentHistory]segment
	histNext  int
	lastSeq   uint16
	lastTS    uint32
	lastWrite time.Time
	// lastPic and lastTL0 are the last VP8 picture id (15 bits) and
	// TL0PICIDX sent, for simulcast tracks.
	lastPic uint16
	lastTL0 uint8
	// keySeq is the first sequence number of the keyframe the last layer
	// switch started at (keyed: there was one): the subscriber's decoder
	// needs nothing sent before it, so NACKs of older media go unanswered
	// (after a downswitch for congestion, retransmitting the higher
	// layer's lost packets would only prolong it).
	keySeq    uint16
	keyed     bool
	rtxBuf    [maxPacketSize]byte
	rewritten [maxPacketSize]byte
	// out is the header being written, reused: passed to the writer
	// interface, a local would escape and cost an allocation per packet.
	out rtp.Header

	// demand is the best layer the subscription's budget holds, sent or
	// not (noLayer: none): what the publisher is left to send is the
	// highest demand of its subscriptions (layerCap).
	demand atomic.Int32

	sent     atomic.Uint64 // packets written, for tests and the endpoint listing
	switches atomic.Uint64 // layer switches done
	// rtt is the subscriber's round-trip time from its receiver reports.
	rtt rttMeter
	// padRate is the padding a probe asks for (bits per second; 0: none),
	// sent after the frames forwarded; lastPad is when padding was last
	// due.
	padRate float64
	lastPad time.Time
	padBuf  [paddingPacketBytes]byte
	// sentBytes counts the bytes written (under mu, which write holds
	// anyway: no atomic per forwarded packet); remb compares them with the
	// subscriber's bandwidth estimates.
	sentBytes uint64
	remb      rembMeter
}

// noLayer is a down track's layer when it forwards none: not started, or
// paused.
const noLayer = -1

// segmentHistory is how many past segments a down track can still answer
// NACKs from: a probe makes two per frame (its padding, then the media
// after it), so about a second of them.
const segmentHistory = 64

// segment is one run of packets from one source, as the subscriber numbers
// them: outgoing = incoming + offset (modulo each field's width).
type segment struct {
	fromSeq   uint16 // the subscriber's first sequence number of the run
	layer     int
	gen       uint32
	seqOffset uint16
	tsOffset  uint32
	picDelta  uint16
	tl0Delta  uint8
	// padding marks a run of padding-only packets (a probe): a NACK of
	// one is answered with padding.
	padding bool
}

// newDownTrack creates a down track of fw; bwe (simulcast video only, else
// nil) makes its layer follow the subscriber's bandwidth estimate.
func newDownTrack(fw *forwarder, stats *Stats, bwe *subscriberBWE) *downTrack {
	d := &downTrack{id: fw.kind.String(), streamID: fw.streamID, fw: fw, stats: stats, bwe: bwe}
	if fw.simulcast.Load() {
		d.cur, d.target = noLayer, noLayer
	}
	// Until its estimate says otherwise, a subscription needs the best.
	d.demand.Store(fw.layerCount.Load() - 1)
	d.padBuf[paddingPacketBytes-1] = paddingPacketBytes
	return d
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
			simulcast := d.cur == noLayer
			d.mu.Unlock()
			d.bound.Store(true)
			d.fw.addDownTrack(d)
			if simulcast {
				d.stopSelect = make(chan struct{})
				d.selectLayer(time.Now())
				go d.runSelection(d.stopSelect)
			} else {
				d.fw.requestKeyframe(0) // the new subscriber can only start decoding at a keyframe
			}
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, errCodecNotNegotiated
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(false)
	d.fw.removeDownTrack(d)
	if d.stopSelect != nil {
		close(d.stopSelect)
		d.stopSelect = nil
	}
	return nil
}

// selectionInterval is how often a simulcast down track reconsiders its
// layer.
const selectionInterval = 250 * time.Millisecond

// layerTimeout is how long a layer may stay silent before it counts as
// stopped: a browser stops an encoding its uplink cannot carry (30 frames
// per second: 33 ms apart; a keyframe takes longer on a slow uplink).
const layerTimeout = 1 * time.Second

func (d *downTrack) runSelection(stop <-chan struct{}) {
	tick := time.NewTicker(selectionInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			d.selectLayer(now)
		}
	}
}

// layerStable is how long a layer must have been arriving before a down
// track moves up to it: a browser resumes an encoding it had stopped at a
// low bitrate and may stop it again while its estimate settles, and each
// switch costs the subscriber a keyframe.
const layerStable = 2 * time.Second

// selectLayer targets the best layer the publisher is sending: the current
// one or a lower one as long as it arrives, a higher one once it has been
// arriving for layerStable (any one that arrives, to start); with a
// bandwidth estimate, the best of those that fits it (allocator). It asks
// for the target's keyframe until the switch happened.
func (d *downTrack) selectLayer(now time.Time) {
	live, stable := d.fw.live(now)
	// Decisions are about the layer chosen, which flows from its next
	// keyframe on: not yet the one forwarded.
	d.mu.Lock()
	cur, settled, sent := d.target, d.target == d.cur && d.started, d.sentBytes
	d.mu.Unlock()
	best := noLayer
	for i := int(d.fw.layerCount.Load()) - 1; i >= 0; i-- {
		if stable[i] || live[i] && (i <= cur || cur == noLayer) {
			best = i
			break
		}
	}
	if best == noLayer {
		return // nothing arrives: keep what was chosen until something does
	}
	if d.bwe == nil {
		d.setTarget(best)
		return
	}
	estimate := float64(d.bwe.GetTargetBitrate())
	d.remb.observe(estimate, sent, now) // the network quality's headroom
	need, measured := d.fw.needs(now)
	probes, failed := d.alloc.probes, d.alloc.probeFailures
	target, padRate := d.alloc.decide(allocation{
		now: now, estimate: estimate, best: best, chosen: cur, settled: settled,
		top: len(measured) - 1, allowed: int(d.fw.allowed.Load()),
		need: need,
	}, d.bwe.meter)
	d.demand.Store(int32(d.alloc.demand))
	d.stats.Probes.Add(uint64(d.alloc.probes - probes))
	d.stats.ProbesFailed.Add(uint64(d.alloc.probeFailures - failed))
	if d.alloc.probes != probes || d.alloc.probeFailures != failed {
		d.fw.log.Debug("simulcast probe", "stream", d.streamID, "estimate", estimate, "floor", d.alloc.floor, "padding", padRate, "target", target, "failed", d.alloc.probeFailures != failed, "verdict", d.alloc.verdict)
	}
	if target != cur {
		d.fw.log.Debug("simulcast layer budget", "stream", d.streamID, "from", cur, "to", target, "estimate", estimate, "floor", d.alloc.floor, "need", measured)
	}
	d.mu.Lock()
	if padRate > 0 && d.padRate == 0 {
		d.lastPad = time.Time{}
	}
	d.padRate = padRate
	d.mu.Unlock()
	d.setTarget(target)
}

// setTarget makes layer the one to forward from its next keyframe on (a
// keyframe is requested); noLayer pauses the track at once.
func (d *downTrack) setTarget(layer int) {
	d.mu.Lock()
	if layer != d.target {
		d.fw.log.Debug("simulcast layer target", "stream", d.streamID, "from", d.target, "to", layer, "forwarding", d.cur)
	}
	d.target = layer
	if layer == noLayer {
		d.cur = noLayer
	}
	pending := layer != d.cur
	d.mu.Unlock()
	if pending {
		d.fw.requestKeyframe(layer)
	}
}

// layer returns the layer forwarded (noLayer: none).
func (d *downTrack) layer() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

// write forwards one packet and returns the bytes written (0: not
// written). The caller counts them in Stats.
func (d *downTrack) write(h *rtp.Header, payload []byte, src packetSource) int {
	if !d.bound.Load() {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switched := false
	if src.layer != d.cur {
		if d.padRate > 0 && d.cur == noLayer && d.started && h.Marker && src.layer == 0 {
			d.pad(time.Now()) // paused: probing to resume, at the lowest layer's frame rate
		}
		if src.layer != d.target || !src.keyframe {
			return 0
		}
		if d.started {
			d.switches.Add(1)
		}
		d.fw.log.Debug("simulcast layer switch", "stream", d.streamID, "from", d.cur, "to", src.layer)
		d.cur, switched = src.layer, true
	}
	now := time.Now()
	vp8 := d.fw.simulcast.Load() && strings.EqualFold(d.fw.codec.MimeType, webrtc.MimeTypeVP8)
	if !d.started {
		d.started = true
		d.seg = segment{fromSeq: h.SequenceNumber, layer: src.layer, gen: src.gen}
		d.pushSegment()
	} else if switched || src.gen != d.seg.gen {
		// Another layer, a layer resumed after a pause (what was not sent
		// meanwhile must not look lost), or a new source.
		d.startSegment(h, payload, src, now, vp8)
	}
	if switched {
		d.keySeq, d.keyed = d.seg.fromSeq, true
	}
	out := &d.out
	*out = *h
	out.SSRC, out.PayloadType = d.ssrc, d.pt
	out.SequenceNumber = h.SequenceNumber + d.seg.seqOffset
	out.Timestamp = h.Timestamp + d.seg.tsOffset
	// Header extension ids are the publisher's negotiation, not the
	// subscriber's: drop them.
	out.Extension, out.Extensions, out.ExtensionProfile = false, nil, 0
	if vp8 {
		payload = d.rewritePicture(payload, d.seg, true)
	}
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
	if d.padRate > 0 && h.Marker {
		d.pad(now) // after the frame, never inside it
	}
	return n
}

// paddingPacketBytes is the size of a padding-only packet's payload: the
// most one can carry (RFC 3550 section 5.1: the last octet counts the
// padding, itself included).
const paddingPacketBytes = 255

// maxPaddingBurst is the most padding packets sent after one frame (a
// frame every 33 ms at 30 fps: 3.7 Mbit/s of padding at most).
const maxPaddingBurst = 60

// pad sends the padding due at padRate since the last padding, as
// padding-only packets numbered after the last packet sent (libwebrtc
// sends such packets on the media SSRC when no RTX is negotiated, and
// skips them). The media that follows continues after them: a new
// segment. d.mu is held.
func (d *downTrack) pad(now time.Time) {
	if d.lastPad.IsZero() || now.Sub(d.lastPad) > 200*time.Millisecond {
		d.lastPad = now // the first frame of a probe, or after a silence: no burst
		return
	}
	n := min(int(d.padRate*now.Sub(d.lastPad).Seconds()/8/paddingPacketBytes), maxPaddingBurst)
	if n == 0 {
		return
	}
	d.lastPad = d.lastPad.Add(time.Duration(float64(n*paddingPacketBytes*8) / d.padRate * float64(time.Second)))
	first := d.lastSeq + 1
	sent := 0
	for range n {
		if !d.writePadding(d.lastSeq + 1) {
			break
		}
		d.lastSeq++
		sent++
	}
	if sent == 0 {
		return
	}
	d.stats.PaddingPackets.Add(uint64(sent))
	media := d.seg
	d.seg = segment{fromSeq: first, layer: media.layer, gen: media.gen, padding: true}
	d.pushSegment()
	media.fromSeq = d.lastSeq + 1
	media.seqOffset += uint16(sent)
	d.seg = media
	d.pushSegment()
}

// writePadding writes one padding-only packet with sequence number seq
// and the last timestamp sent; d.mu is held.
func (d *downTrack) writePadding(seq uint16) bool {
	d.out = rtp.Header{Version: 2, Padding: true, PayloadType: d.pt, SequenceNumber: seq, Timestamp: d.lastTS, SSRC: d.ssrc}
	if _, err := d.writer.WriteRTP(&d.out, d.padBuf[:]); err != nil {
		d.stats.WriteErrors.Add(1)
		return false
	}
	d.sentBytes += uint64(d.out.MarshalSize() + paddingPacketBytes)
	return true
}

// startSegment continues the subscriber's numbering with a new source (a
// reconnected publisher, or another layer at its keyframe): right after
// the last packet sent, the timestamp advanced by the wall-clock time
// elapsed since, VP8 picture ids after the last one.
func (d *downTrack) startSegment(h *rtp.Header, payload []byte, src packetSource, now time.Time, vp8 bool) {
	elapsed := uint32(now.Sub(d.lastWrite).Seconds() * float64(d.fw.codec.ClockRate))
	seg := segment{
		fromSeq: d.lastSeq + 1, layer: src.layer, gen: src.gen,
		seqOffset: d.lastSeq + 1 - h.SequenceNumber,
		tsOffset:  d.lastTS + max(elapsed, 1) - h.Timestamp,
	}
	if vp8 {
		if desc, ok := parseVP8Descriptor(payload); ok {
			seg.picDelta = (d.lastPic + 1 - desc.pictureID) & 0x7fff
			seg.tl0Delta = d.lastTL0 + 1 - desc.tl0
		}
	}
	d.seg = seg
	d.pushSegment()
}

func (d *downTrack) pushSegment() {
	d.history[d.histNext] = d.seg
	d.histNext = (d.histNext + 1) % segmentHistory
}

// segmentOf returns the segment an outgoing sequence number was sent in.
func (d *downTrack) segmentOf(seq uint16) (segment, bool) {
	for k := 1; k <= segmentHistory; k++ {
		s := d.history[(d.histNext-k+segmentHistory)%segmentHistory]
		if s.gen == 0 {
			break
		}
		if s.fromSeq == seq || seqNewer(seq, s.fromSeq) {
			return s, true
		}
	}
	return segment{}, false
}

// rewritePicture returns a VP8 payload with seg's picture id and TL0PICIDX
// deltas applied (payload itself when both are 0); track records the ids
// as the last ones sent.
func (d *downTrack) rewritePicture(payload []byte, seg segment, track bool) []byte {
	desc, ok := parseVP8Descriptor(payload)
	if !ok || desc.picBits == 0 && desc.tl0Offset == 0 {
		return payload
	}
	if track {
		d.lastPic, d.lastTL0 = (desc.pictureID+seg.picDelta)&0x7fff, desc.tl0+seg.tl0Delta
	}
	if seg.picDelta == 0 && seg.tl0Delta == 0 {
		return payload
	}
	return rewriteVP8(d.rewritten[:], payload, desc, seg.picDelta, seg.tl0Delta)
}

// retransmit answers a subscriber's NACK for sequence numbers (in the
// subscriber's numbering) from the retransmission buffer of the layer
// each was sent from.
func (d *downTrack) retransmit(seqs []uint16) {
	if d.fw.kind != webrtc.RTPCodecTypeVideo || !d.bound.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	vp8 := d.fw.simulcast.Load() && strings.EqualFold(d.fw.codec.MimeType, webrtc.MimeTypeVP8)
	for _, outSeq := range seqs {
		seg, ok := d.segmentOf(outSeq)
		if ok && seg.padding {
			d.writePadding(outSeq)
			continue
		}
		if d.keyed && seqNewer(d.keySeq, outSeq) {
			continue // before the keyframe of the current layer: not needed
		}
		n := 0
		if ok {
			n = d.fw.layers[seg.layer].rtx.get(outSeq-seg.seqOffset, d.rtxBuf[:])
		}
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
		out.SequenceNumber = h.SequenceNumber + seg.seqOffset
		out.Timestamp = h.Timestamp + seg.tsOffset
		out.Extension, out.Extensions, out.ExtensionProfile = false, nil, 0
		payload := d.rtxBuf[hlen:n]
		if vp8 {
			payload = d.rewritePicture(payload, seg, false)
		}
		if _, err := d.writer.WriteRTP(&out, payload); err == nil {
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
			d.mu.Lock()
			layer := d.target
			d.mu.Unlock()
			d.fw.requestKeyframe(layer)
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
