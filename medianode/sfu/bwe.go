package sfu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// Bitrate bounds of a subscriber's bandwidth estimate, in bits per second.
// The estimate starts at the top, as a subscription starts on the best
// layer arriving: Google Congestion Control brings it down on the first
// sign of congestion (queueing delay or loss), never up without traffic
// that shows the path carries it (see probe).
const (
	bweInitialBitrate = 10_000_000
	bweMinBitrate     = 30_000
	bweMaxBitrate     = 20_000_000
)

// subscriberBWE is a subscription's send-side bandwidth estimation: the
// subscriber's transport-wide congestion control feedback (TWCC,
// draft-holmer-rmcat-transport-wide-cc-extensions-01) feeds pion's Google
// Congestion Control (draft-ietf-rmcat-gcc-02: a delay-based and a
// loss-based estimate, the lower one wins) and a deliveryMeter, which
// judges the probes the down track sends before it moves up a layer.
//
// It implements cc.BandwidthEstimator for pion's congestion control
// interceptor, with a pacer that does not pace: a forwarding SFU sends
// what its publishers send, when they send it, and chooses layers to fit
// the estimate instead.
type subscriberBWE struct {
	gcc   *gcc.SendSideBWE
	meter *deliveryMeter
}

// newSubscriberBWE creates an estimator; logs (nil: pion's default) gets
// GCC's logs.
func newSubscriberBWE(logs logging.LoggerFactory) (*subscriberBWE, error) {
	opts := []gcc.Option{
		gcc.SendSideBWEInitialBitrate(bweInitialBitrate),
		gcc.SendSideBWEMinBitrate(bweMinBitrate),
		gcc.SendSideBWEMaxBitrate(bweMaxBitrate),
		gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
	}
	if logs != nil {
		opts = append(opts, gcc.WithLoggerFactory(logs))
	}
	g, err := gcc.NewSendSideBWE(opts...)
	if err != nil {
		return nil, fmt.Errorf("create bandwidth estimator: %w", err)
	}
	return &subscriberBWE{gcc: g, meter: newDeliveryMeter()}, nil
}

// interceptorFactory returns pion's congestion control interceptor bound to
// this estimator (one subscriber peer connection per estimator).
func (b *subscriberBWE) interceptorFactory() (*cc.InterceptorFactory, error) {
	return cc.NewInterceptor(func() (cc.BandwidthEstimator, error) { return b, nil })
}

// AddStream implements cc.BandwidthEstimator: the meter sees each packet as
// it leaves, after the transport-wide sequence number was set.
func (b *subscriberBWE) AddStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	var extID uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			extID = uint8(e.ID) //nolint:gosec // header extension ids are 1-14 (RFC 8285)
		}
	}
	if extID == 0 {
		return b.gcc.AddStream(info, writer) // audio: not in the feedback
	}
	return b.gcc.AddStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if ext := h.GetExtension(extID); len(ext) >= 2 {
			b.meter.sent(binary.BigEndian.Uint16(ext), h.MarshalSize()+len(payload), time.Now())
		}
		return writer.Write(h, payload, a)
	}))
}

// WriteRTCP implements cc.BandwidthEstimator. Feedback the estimator cannot
// use is dropped, not returned: pion's interceptor would turn the error
// into a failed read of the subscriber's RTCP, and the down track would
// stop answering NACKs and keyframe requests.
func (b *subscriberBWE) WriteRTCP(pkts []rtcp.Packet, attrs interceptor.Attributes) error {
	now := time.Now()
	for _, p := range pkts {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			b.meter.feedback(fb, now)
		}
	}
	if err := b.gcc.WriteRTCP(pkts, attrs); errors.Is(err, gcc.ErrSendSideBWEClosed) {
		return err
	}
	return nil
}

// GetTargetBitrate implements cc.BandwidthEstimator: GCC's estimate, in
// bits per second.
func (b *subscriberBWE) GetTargetBitrate() int { return b.gcc.GetTargetBitrate() }

// OnTargetBitrateChange implements cc.BandwidthEstimator.
func (b *subscriberBWE) OnTargetBitrateChange(f func(bitrate int)) { b.gcc.OnTargetBitrateChange(f) }

// GetStats implements cc.BandwidthEstimator.
func (b *subscriberBWE) GetStats() map[string]any { return b.gcc.GetStats() }

// Close implements cc.BandwidthEstimator: it stops GCC's goroutines (pion
// calls it when the peer connection closes).
func (b *subscriberBWE) Close() error { return b.gcc.Close() }

// deliveryRing is how many packets a deliveryMeter remembers, by
// transport-wide sequence number: 4 s at 1000 packets per second.
const deliveryRing = 4096

// deliveryMeter pairs what was sent to a subscriber (transport-wide
// sequence number, size, time) with what its TWCC feedback says arrived and
// when, by the subscriber's clock. Over a window of sent packets it tells
// the rate sent, the rate delivered, the loss, and how much the one-way
// delay grew: what a probe needs to know whether the path carried it.
type deliveryMeter struct {
	mu   sync.Mutex
	ring [deliveryRing]deliveryRecord
}

type deliveryRecord struct {
	seq  uint16
	size int
	sent time.Time
	// arrival is the subscriber's receive time (its own clock, from the
	// feedback's reference time and deltas); lost is set when a feedback
	// reported the packet missing and none reported it since.
	arrival  time.Duration
	reported bool
	lost     bool
}

func newDeliveryMeter() *deliveryMeter { return &deliveryMeter{} }

func (m *deliveryMeter) sent(seq uint16, size int, at time.Time) {
	m.mu.Lock()
	m.ring[seq%deliveryRing] = deliveryRecord{seq: seq, size: size, sent: at}
	m.mu.Unlock()
}

// feedback records a TWCC feedback packet: each packet status from the base
// sequence number on, and the arrival times of those received (the
// reference time in 64 ms units plus the receive deltas in 250 µs units).
func (m *deliveryMeter) feedback(fb *rtcp.TransportLayerCC, _ time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	arrival := time.Duration(fb.ReferenceTime) * 64 * time.Millisecond
	seq := fb.BaseSequenceNumber
	deltas := fb.RecvDeltas
	status := func(s uint16) {
		r := &m.ring[seq%deliveryRing]
		matches := r.seq == seq && !r.sent.IsZero()
		switch s {
		case rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketReceivedLargeDelta:
			if len(deltas) > 0 {
				arrival += time.Duration(deltas[0].Delta) * time.Microsecond
				deltas = deltas[1:]
			}
			if matches {
				r.arrival, r.reported, r.lost = arrival, true, false
			}
		case rtcp.TypeTCCPacketNotReceived:
			if matches && !(r.reported && !r.lost) {
				r.reported, r.lost = true, true
			}
		}
		seq++
	}
	remaining := int(fb.PacketStatusCount)
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range min(int(c.RunLength), remaining) {
				status(c.PacketStatusSymbol)
				remaining--
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range c.SymbolList {
				if remaining == 0 {
					break
				}
				if c.SymbolSize == rtcp.TypeTCCSymbolSizeOneBit && s == 1 {
					s = rtcp.TypeTCCPacketReceivedSmallDelta
				}
				status(s)
				remaining--
			}
		}
	}
}

// delivery is what the feedback says of the packets sent in a window.
type delivery struct {
	Packets  int // reported, received or lost
	Lost     int
	SentBits int // of the reported packets
	// SentRate and DeliveredRate are in bits per second: the reported
	// packets' bits over the time it took to send them, and the received
	// ones' over the time it took them to arrive (0 below 2 packets).
	SentRate      float64
	DeliveredRate float64
	// DelayGrowth is how much later than the window's fastest packet the
	// last few received packets arrived, relative to when each was sent:
	// the queue that built up on the path.
	DelayGrowth time.Duration
}

// LossRatio is the share of the reported packets lost.
func (d delivery) LossRatio() float64 {
	if d.Packets == 0 {
		return 0
	}
	return float64(d.Lost) / float64(d.Packets)
}

// window sums the packets sent in [from, to] that a feedback reported.
func (m *deliveryMeter) window(from, to time.Time) delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	var d delivery
	var firstSent, lastSent time.Time
	var firstArr, lastArr time.Duration
	var firstSize, firstRecvSize, recvBits int
	received := 0
	// one-way delay (arrival by the subscriber's clock minus departure by
	// ours: an unknown offset, differences only) of the received packets
	// in send order, to find the smallest and the last ones.
	var minOWD time.Duration
	recent := make([]time.Duration, 0, 8)
	type rec struct {
		sent time.Time
		owd  time.Duration
	}
	var ordered []rec
	for i := range m.ring {
		r := &m.ring[i]
		if !r.reported || r.sent.Before(from) || r.sent.After(to) {
			continue
		}
		d.Packets++
		d.SentBits += r.size * 8
		if firstSent.IsZero() || r.sent.Before(firstSent) {
			firstSent, firstSize = r.sent, r.size
		}
		if r.sent.After(lastSent) {
			lastSent = r.sent
		}
		if r.lost {
			d.Lost++
			continue
		}
		received++
		recvBits += r.size * 8
		if received == 1 || r.arrival < firstArr {
			firstArr, firstRecvSize = r.arrival, r.size
		}
		if received == 1 || r.arrival > lastArr {
			lastArr = r.arrival
		}
		owd := r.arrival - time.Duration(r.sent.UnixNano())
		if received == 1 || owd < minOWD {
			minOWD = owd
		}
		ordered = append(ordered, rec{r.sent, owd})
	}
	if span := lastSent.Sub(firstSent); d.Packets > 1 && span > 0 {
		d.SentRate = float64(d.SentBits-firstSize*8) / span.Seconds()
	}
	if span := lastArr - firstArr; received > 1 && span > 0 {
		d.DeliveredRate = float64(recvBits-firstRecvSize*8) / span.Seconds()
	}
	// The last few packets sent: the least of their delays, so that one
	// late packet (a busy receiver) is not taken for a queue.
	for range min(5, len(ordered)) {
		last := 0
		for j := range ordered {
			if ordered[j].sent.After(ordered[last].sent) {
				last = j
			}
		}
		recent = append(recent, ordered[last].owd)
		ordered = append(ordered[:last], ordered[last+1:]...)
	}
	if len(recent) > 0 {
		least := recent[0]
		for _, o := range recent[1:] {
			least = min(least, o)
		}
		d.DelayGrowth = least - minOWD
	}
	return d
}
