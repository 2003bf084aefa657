package sfu

import (
	"math"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// feedbackFor builds the TWCC feedback a receiver sends for the arrivals
// given (transport-wide sequence number to arrival time, absent: lost),
// with pion's own recorder, through the wire format.
func feedbackFor(t *testing.T, base time.Time, first, last uint16, arrivals map[uint16]time.Time) []*rtcp.TransportLayerCC {
	t.Helper()
	rec := twcc.NewRecorder(1)
	for seq := first; ; seq++ {
		if at, ok := arrivals[seq]; ok {
			rec.Record(2, seq, at.Sub(base).Microseconds()+1_000_000)
		}
		if seq == last {
			break
		}
	}
	var out []*rtcp.TransportLayerCC
	for _, p := range rec.BuildFeedbackPacket() {
		raw, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		pkts, err := rtcp.Unmarshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range pkts {
			if fb, ok := q.(*rtcp.TransportLayerCC); ok {
				out = append(out, fb)
			}
		}
	}
	return out
}

// TestDeliveryMeter: the meter reads real TWCC feedback (pion's recorder,
// marshalled and parsed) and tells what a path carried: everything at the
// rate sent, a capped path's lower delivered rate and growing delay, and
// losses.
func TestDeliveryMeter(t *testing.T) {
	const size = 1000 // bytes per packet
	base := time.Unix(1_700_000_000, 0)
	cases := []struct {
		name string
		// arrival of packet i sent at i ms (1000 packets per second:
		// 8 Mbit/s), ok false when lost
		arrival       func(i int) (time.Duration, bool)
		wantDelivered float64 // bits per second, within 5 %
		wantLoss      float64
		wantDelay     time.Duration // DelayGrowth, within 3 ms
	}{
		{"clear path", func(i int) (time.Duration, bool) {
			return time.Duration(i)*time.Millisecond + 20*time.Millisecond, true
		}, 8e6, 0, 0},
		{"capped at half the rate", func(i int) (time.Duration, bool) {
			return time.Duration(2*i)*time.Millisecond + 20*time.Millisecond, true
		}, 4e6, 0, 195 * time.Millisecond}, // the least of the last five packets
		{"one in ten lost", func(i int) (time.Duration, bool) {
			return time.Duration(i)*time.Millisecond + 20*time.Millisecond, i%10 != 5
		}, 8e6 * 0.9, 0.1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newDeliveryMeter()
			arrivals := map[uint16]time.Time{}
			first := uint16(65500) // across the wrap
			for i := range 200 {
				seq := first + uint16(i)
				sent := base.Add(time.Duration(i) * time.Millisecond)
				m.sent(seq, size, sent)
				if at, ok := tc.arrival(i); ok {
					arrivals[seq] = base.Add(at)
				}
			}
			for _, fb := range feedbackFor(t, base, first, first+199, arrivals) {
				m.feedback(fb, base)
			}
			d := m.window(base, base.Add(time.Second))
			if d.Packets != 200 {
				t.Fatalf("%d packets reported, want 200: %+v", d.Packets, d)
			}
			if math.Abs(d.SentRate-8e6) > 0.05*8e6 {
				t.Errorf("sent %.0f bit/s, want 8e6", d.SentRate)
			}
			if math.Abs(d.DeliveredRate-tc.wantDelivered) > 0.05*tc.wantDelivered {
				t.Errorf("delivered %.0f bit/s, want %.0f", d.DeliveredRate, tc.wantDelivered)
			}
			if math.Abs(d.LossRatio()-tc.wantLoss) > 0.01 {
				t.Errorf("loss %.3f, want %.3f", d.LossRatio(), tc.wantLoss)
			}
			if diff := d.DelayGrowth - tc.wantDelay; diff < -3*time.Millisecond || diff > 3*time.Millisecond {
				t.Errorf("delay growth %v, want %v", d.DelayGrowth, tc.wantDelay)
			}
			// A window before any packet was sent is empty.
			if e := m.window(base.Add(-time.Second), base.Add(-time.Millisecond)); e.Packets != 0 {
				t.Errorf("an empty window has %d packets", e.Packets)
			}
		})
	}
}

// TestSubscriberBWEReadsPackets: the estimator records the transport-wide
// sequence number each video packet leaves with, and the feedback that
// comes back; GCC gets the feedback too and starts at the top.
func TestSubscriberBWEReadsPackets(t *testing.T) {
	b, err := newSubscriberBWE(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	if got := b.GetTargetBitrate(); got != bweInitialBitrate {
		t.Errorf("initial estimate %d, want %d", got, bweInitialBitrate)
	}
	written := 0
	info := &interceptor.StreamInfo{SSRC: 9, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}}
	w := b.AddStream(info, interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) {
		written++
		return 0, nil
	}))
	start := time.Now()
	arrivals := map[uint16]time.Time{}
	for i := range 50 {
		h := &rtp.Header{Version: 2, SequenceNumber: uint16(i), SSRC: 9}
		if err := h.SetExtension(5, []byte{0, byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(h, make([]byte, 100), nil); err != nil {
			t.Fatal(err)
		}
		arrivals[uint16(i)] = time.Now().Add(5 * time.Millisecond)
	}
	if written != 50 {
		t.Fatalf("%d packets went on, want 50", written)
	}
	var pkts []rtcp.Packet
	for _, fb := range feedbackFor(t, start, 0, 49, arrivals) {
		pkts = append(pkts, fb)
	}
	if err := b.WriteRTCP(pkts, nil); err != nil {
		t.Fatalf("feedback refused: %v", err)
	}
	if d := b.meter.window(start, time.Now()); d.Packets != 50 || d.Lost != 0 {
		t.Errorf("after the feedback: %+v, want 50 packets, none lost", d)
	}
}
