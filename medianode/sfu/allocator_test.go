package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// fixedDelivery answers every window with the same figures, but an empty
// one with nothing.
type fixedDelivery struct{ d delivery }

func (f *fixedDelivery) window(from, to time.Time) delivery {
	if !from.Before(to) {
		return delivery{}
	}
	return f.d
}

// need3 is three layers at Chrome's 1280x720 simulcast bitrates.
var need3 = [maxLayers]float64{150_000, 500_000, 2_500_000}

// TestBudgetLayer: the layer that fits an estimate, with the margins that
// keep it from oscillating.
func TestBudgetLayer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		chosen   int
		best     int
		estimate float64
		want     int
	}{
		{"a clear path takes the best layer", noLayer, 2, 10e6, 2},
		{"the best arriving, not more", noLayer, 1, 10e6, 1},
		{"a 300 kbit/s path holds the lowest layer", 2, 2, 300_000, 0},
		{"the chosen layer is kept at 75 % of its bitrate", 2, 2, 1_900_000, 2},
		{"and left below", 2, 2, 1_800_000, 1},
		{"a higher layer needs its whole bitrate", 1, 2, 2_400_000, 1},
		{"and takes it", 1, 2, 2_500_000, 2},
		{"paused below half the lowest layer", 0, 2, 70_000, noLayer},
		{"kept between half and 75 %", 0, 2, 80_000, 0},
		{"a pause lasts until the lowest layer fits whole", noLayer, 2, 140_000, noLayer},
		{"and ends when it does", noLayer, 2, 150_000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a allocator
			a.lastEst = tc.estimate
			a.nextProbe = time.Now().Add(time.Hour) // no probe here
			got, _ := a.decide(allocation{now: time.Now(), estimate: tc.estimate, best: tc.best, chosen: tc.chosen, need: need3}, &fixedDelivery{})
			if got != tc.want {
				t.Errorf("layer %d, want %d", got, tc.want)
			}
		})
	}
}

// TestProbeDecision: below the best layer a settled subscription probes
// for the next one with padding up to its bitrate; the feedback decides:
// queueing or loss stop the probe at once and back off (2, 4, 4, 4 s); a
// clear path proves a budget that moves the layer up and holds until the
// estimate falls.
func TestProbeDecision(t *testing.T) {
	var a allocator
	fb := &fixedDelivery{}
	now := time.Unix(1000, 0)
	in := func() allocation {
		return allocation{now: now, estimate: 300_000, best: 2, chosen: 0, settled: true, need: need3}
	}
	target, pad := a.decide(in(), fb)
	if target != 0 || a.probe == nil || a.probe.to != 1 {
		t.Fatalf("target %d, probe %+v: want layer 0 and a probe for layer 1", target, a.probe)
	}
	if want := need3[1]*probeHeadroom - need3[0]; pad != want {
		t.Errorf("padding %.0f bit/s, want %.0f (the next layer's bitrate and headroom, less the current)", pad, want)
	}

	// A queue builds up: the probe stops at the next tick, and the next
	// ones wait longer each time.
	var waits []time.Duration
	for range 4 {
		start := a.probe.start
		now = now.Add(selectionInterval)
		fb.d = delivery{Packets: 30, DelayGrowth: 60 * time.Millisecond}
		if _, pad := a.decide(in(), fb); a.probe != nil || pad != 0 {
			t.Fatalf("probe %+v, padding %.0f after the delay grew", a.probe, pad)
		}
		fb.d = delivery{}
		for a.probe == nil {
			now = now.Add(selectionInterval)
			a.decide(in(), fb)
		}
		waits = append(waits, a.probe.start.Sub(start).Round(time.Second))
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("probes %v apart, want %v", waits, want)
		}
	}
	if a.probeFailures != 4 || a.probes != 5 {
		t.Errorf("%d probes, %d failed; want 5 and 4", a.probes, a.probeFailures)
	}

	// Loss stops it too.
	start := a.probe.start
	now = now.Add(selectionInterval)
	fb.d = delivery{Packets: 30, Lost: 6}
	if a.decide(in(), fb); a.probe != nil {
		t.Fatal("a probe losing 20 % went on")
	}
	// While the path loses, no probe: it is congested.
	for range 40 {
		now = now.Add(selectionInterval)
		if a.decide(in(), fb); a.probe != nil {
			t.Fatal("a probe started on a path losing 20 %")
		}
	}
	fb.d = delivery{}
	lossEnded := now
	for a.probe == nil {
		now = now.Add(selectionInterval)
		a.decide(in(), fb)
	}
	if d := a.probe.start.Sub(lossEnded); d < probeBackoffMax-time.Second {
		t.Errorf("next probe %v after the loss ended (%v after the failed one), want the %v backoff", d, a.probe.start.Sub(start), probeBackoffMax)
	}

	// The path carries the probe for its duration: layer 1, then the
	// backoff is back to its start and the next probe, for layer 2, waits
	// only for the switch to settle.
	fb.d = delivery{Packets: 60, SentRate: 560_000, DeliveredRate: 550_000}
	for a.probe != nil {
		now = now.Add(selectionInterval)
		target, _ = a.decide(in(), fb)
	}
	if target != 1 || a.floor != need3[1]*probeHeadroom {
		t.Fatalf("after a clear probe: layer %d, floor %.0f; want 1 and %.0f", target, a.floor, need3[1]*probeHeadroom)
	}
	next := in()
	next.chosen = 1
	now = now.Add(probeSettle)
	next.now = now
	a.decide(next, fb)
	if a.probe == nil || a.probe.to != 2 {
		t.Fatalf("no probe for layer 2 %v after reaching layer 1: %+v", probeSettle, a.probe)
	}
	// A probe that delivers much less than it sends fails at its end.
	fb.d = delivery{Packets: 60, SentRate: 2_750_000, DeliveredRate: 1_000_000}
	for a.probe != nil {
		now = now.Add(selectionInterval)
		next.now = now
		target, _ = a.decide(next, fb)
	}
	if target != 1 || a.probeFailures != 6 {
		t.Fatalf("layer %d, %d failures after a probe delivered 36 %%", target, a.probeFailures)
	}

	// The estimate falls (congestion): what the probe proved is dropped.
	next.estimate = 200_000
	if target, _ = a.decide(next, fb); target != 0 || a.floor != 0 {
		t.Errorf("after the estimate fell: layer %d, floor %.0f; want 0 and none", target, a.floor)
	}
}

// TestProbePadding: a probing down track sends padding-only packets after
// each frame, numbered after it, and the media after them continues the
// subscriber's numbering, VP8 picture ids included; NACKs of padding get
// padding, NACKs of media the media, before and after the padding.
func TestProbePadding(t *testing.T) {
	fw, src := newSimulcastForwarder(3)
	dt, w := bindTestDownTrack(fw)
	dt.setTarget(1)
	src[1].frame(true, 3)
	dt.mu.Lock()
	dt.padRate = 1_000_000
	dt.mu.Unlock()
	for range 4 {
		time.Sleep(30 * time.Millisecond)
		src[1].frame(false, 3)
	}
	var media []rtp.Packet
	padding := 0
	for i, p := range w.pkts {
		if i > 0 && p.SequenceNumber != w.pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, p.SequenceNumber, w.pkts[i-1].SequenceNumber)
		}
		if p.Padding {
			if len(p.Payload) != paddingPacketBytes || p.Payload[paddingPacketBytes-1] != paddingPacketBytes || p.Marker {
				t.Fatalf("padding packet %d: %d bytes, count %d", i, len(p.Payload), p.Payload[len(p.Payload)-1])
			}
			if !w.pkts[i-1].Padding && !w.pkts[i-1].Marker {
				t.Fatalf("padding at %d inside a frame", i)
			}
			padding++
			continue
		}
		media = append(media, p)
	}
	// ~30 ms at 1 Mbit/s after each of the last 3 frames: about 14 each.
	if padding < 20 || padding > 80 {
		t.Errorf("%d padding packets, want about 40", padding)
	}
	if got := fw.stats.PaddingPackets.Load(); got != uint64(padding) {
		t.Errorf("PaddingPackets %d, want %d", got, padding)
	}
	if runs := checkContinuity(t, renumber(media)); len(runs) != 1 || runs[0] != 1 {
		t.Errorf("media runs %v, want layer 1 only", runs)
	}

	// NACKs: the first frame's last packet, a padding packet, the last
	// frame's first packet.
	var padSeq uint16
	for _, p := range w.pkts {
		if p.Padding {
			padSeq = p.SequenceNumber
			break
		}
	}
	firstFrameLast, lastFrameFirst := media[2], media[len(media)-3]
	sent := len(w.pkts)
	dt.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{firstFrameLast.SequenceNumber, padSeq, lastFrameFirst.SequenceNumber})}})
	resent := w.pkts[sent:]
	if len(resent) != 3 {
		t.Fatalf("%d packets resent, want 3", len(resent))
	}
	for i, want := range []rtp.Packet{firstFrameLast, {Header: rtp.Header{SequenceNumber: padSeq, Padding: true}}, lastFrameFirst} {
		got := resent[i]
		if got.SequenceNumber != want.SequenceNumber || got.Padding != want.Padding || !want.Padding && string(got.Payload) != string(want.Payload) {
			t.Errorf("resent %d: seq %d padding %v payload %x; want seq %d padding %v payload %x", i, got.SequenceNumber, got.Padding, got.Payload, want.SequenceNumber, want.Padding, want.Payload)
		}
	}
}

// renumber gives packets consecutive sequence numbers from the first one's
// (padding removed between them), for checkContinuity.
func renumber(pkts []rtp.Packet) []rtp.Packet {
	out := make([]rtp.Packet, len(pkts))
	for i, p := range pkts {
		p.SequenceNumber = pkts[0].SequenceNumber + uint16(i)
		out[i] = p
	}
	return out
}

// TestFeedbackGuardsTheEstimate: a path whose feedback shows loss, or
// delivery below what was sent, is congested before GCC's estimate says
// so: the layer falls to what it delivers, without the keep margin; and
// once congested, only a probe moves the layer up, however GCC's estimate
// grows.
func TestFeedbackGuardsTheEstimate(t *testing.T) {
	now := time.Unix(2000, 0)
	var a allocator
	a.lastEst = 10e6
	fb := &fixedDelivery{d: delivery{Packets: 100, Lost: 20, SentRate: 900_000, DeliveredRate: 290_000}}
	in := allocation{now: now, estimate: 10e6, best: 2, chosen: 2, settled: true, need: need3}
	if target, _ := a.decide(in, fb); target != 0 {
		t.Errorf("layer %d on a path delivering 290 of 900 kbit/s with 20 %% loss, want 0", target)
	}
	if a.probe != nil {
		t.Error("a probe started on a congested path")
	}
	// The loss is over; GCC's estimate is high again, but nothing proved
	// the path: no move up without a probe.
	fb.d = delivery{}
	for range 4 {
		now = now.Add(selectionInterval)
		in.now, in.chosen = now, 0
		if target, _ := a.decide(in, fb); target != 0 {
			t.Fatalf("layer %d on GCC's estimate alone after a congestion, want 0 until a probe", target)
		}
	}
}
