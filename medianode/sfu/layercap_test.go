package sfu

import (
	"testing"
	"time"
)

// TestLayerCap: the layers a publisher is left to send follow the
// subscribers' demand, down only after capHold, up at once, with a REMB
// for the layers kept (repeated every capResend, steady while the same
// layers are kept) and a lifting one when all are needed again.
func TestLayerCap(t *testing.T) {
	type step struct {
		at      time.Duration // since the start
		demand  int
		need    [maxLayers]float64
		allowed int
		remb    float64 // the REMB sent (0: none)
	}
	capped1 := (need3[0] + need3[1]) * capHeadroom
	capped0 := need3[0] * capHeadroom
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"every layer needed: nothing sent", []step{
			{0, 2, need3, 2, 0},
			{10 * time.Second, 2, need3, 2, 0},
		}},
		{"a layer unneeded for capHold is capped, then lifted at once", []step{
			{0, 1, need3, 2, 0},
			{capHold - time.Millisecond, 1, need3, 2, 0},
			{capHold, 1, need3, 1, capped1},
			{capHold + capInterval, 1, need3, 1, 0},
			{capHold + capResend, 1, need3, 1, capped1},
			{capHold + capResend + capInterval, 2, need3, 2, uncappedBitrate},
			{capHold + capResend + 2*capInterval, 2, need3, 2, 0},
			{capHold + 2*capResend + capInterval, 2, need3, 2, uncappedBitrate},
			{capHold + 3*capResend + capInterval, 2, need3, 2, uncappedBitrate},
			{capHold + 4*capResend + capInterval, 2, need3, 2, 0},
		}},
		{"the cap keeps what the demand needed at most during the hold", []step{
			{0, 0, need3, 2, 0},
			{time.Second, 1, need3, 2, 0},
			{capHold, 0, need3, 1, capped1},
			{capHold + capInterval, 0, need3, 1, 0},
			{2*capHold + capInterval, 0, need3, 0, capped0},
		}},
		{"no subscriber keeps the lowest layer", []step{
			{0, noLayer, need3, 2, 0},
			{capHold, noLayer, need3, 0, capped0},
		}},
		{"a dip shorter than capHold caps nothing", []step{
			{0, 0, need3, 2, 0},
			{capHold / 2, 2, need3, 2, 0},
			{capHold, 0, need3, 2, 0},
		}},
		{"the cap does not climb with the kept layers' bitrates", []step{
			{0, 1, need3, 2, 0},
			{capHold, 1, need3, 1, capped1},
			{capHold + capResend, 1, [maxLayers]float64{200_000, 700_000, 2_500_000}, 1, capped1},
		}},
		{"a cap is never below capMinBitrate", []step{
			{0, 0, [maxLayers]float64{10_000, 20_000, 30_000}, 2, 0},
			{capHold, 0, [maxLayers]float64{10_000, 20_000, 30_000}, 0, capMinBitrate},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newLayerCap(2)
			start := time.Unix(3000, 0)
			for i, s := range tc.steps {
				remb := c.next(start.Add(s.at), s.demand, 2, s.need)
				if c.allowed != s.allowed || remb != s.remb {
					t.Fatalf("step %d (%v, demand %d): allowed %d, REMB %.0f; want %d, %.0f", i, s.at, s.demand, c.allowed, remb, s.allowed, s.remb)
				}
			}
		})
	}
}

// TestDemandAndCappedProbes: a subscription's demand is the top layer
// until a probe fails (a congestion or a dip of the estimate is no proof),
// then the best layer its budget holds, sent or not, and at least the one
// below the refuted layer; while the node's cap holds the next layer back a
// settled subscription probes for it, and a success raises its demand
// (which lifts the cap) without moving it to a layer that is not sent yet.
func TestDemandAndCappedProbes(t *testing.T) {
	now := time.Unix(4000, 0)
	tick := func(in *allocation) {
		now = now.Add(selectionInterval)
		in.now = now
	}
	var a allocator
	fb := &fixedDelivery{}
	// A fresh subscription on a clear path needs the top layer even while
	// only layer 1 arrives.
	in := allocation{now: now, estimate: 10e6, best: 1, chosen: noLayer, top: 2, allowed: 2, need: need3}
	if target, _ := a.decide(in, fb); target != 1 || a.demand != 2 {
		t.Fatalf("layer %d, demand %d; want 1 and 2", target, a.demand)
	}

	// A congestion moves the layer down, not the demand.
	a.lastEst = 10e6
	in.estimate, in.best, in.chosen, in.settled = 600_000, 2, 1, true
	if target, _ := a.decide(in, fb); target != 1 || a.demand != 2 {
		t.Fatalf("after a congestion: layer %d, demand %d; want 1 and 2", target, a.demand)
	}
	// The probe for layer 2 fails: now the demand falls with the layer.
	start := now
	for a.probe == nil {
		tick(&in)
		a.decide(in, fb)
		if now.Sub(start) > time.Minute {
			t.Fatal("no probe for layer 2 in a minute")
		}
	}
	fb.d = delivery{Packets: 60, SentRate: 2_750_000, DeliveredRate: 1_000_000, DelayGrowth: 100 * time.Millisecond}
	for a.probe != nil {
		tick(&in)
		a.decide(in, fb)
	}
	fb.d = delivery{}
	if a.demand != 1 {
		t.Fatalf("after a failed probe for layer 2: demand %d, want 1", a.demand)
	}

	// Layer 2 is capped (not sent): after the backoff, a probe for it.
	in.best, in.allowed = 1, 1
	start = now
	for a.probe == nil {
		tick(&in)
		a.decide(in, fb)
		if now.Sub(start) > time.Minute {
			t.Fatal("no probe for the capped layer in a minute")
		}
	}
	if a.probe.from != 1 || a.probe.to != 2 {
		t.Fatalf("probe %+v, want from 1 to 2", a.probe)
	}
	// Without a cap, a layer the publisher does not send is not probed for.
	b := a
	b.probe = nil
	nocap := in
	nocap.allowed = 2
	if b.decide(nocap, fb); b.probe != nil {
		t.Error("a probe for a layer the publisher stopped on its own")
	}
	// The path carries it: the demand rises to 2, the layer stays 1 until
	// layer 2 arrives.
	fb.d = delivery{Packets: 60, SentRate: 2_750_000, DeliveredRate: 2_740_000}
	var target int
	for a.probe != nil {
		tick(&in)
		target, _ = a.decide(in, fb)
	}
	if target != 1 || a.demand != 2 {
		t.Fatalf("after a clear probe: layer %d, demand %d; want 1 and 2", target, a.demand)
	}
	// No further probe while the demand holds layer 2. The cap lifted,
	// layer 2 is not back yet (the publisher's encoder takes seconds): the
	// demand holds through a dip of the estimate meanwhile.
	for i := range 20 {
		tick(&in)
		if i == 10 {
			in.allowed, in.estimate = 2, 400_000
		}
		if a.decide(in, fb); a.probe != nil {
			t.Fatal("probing again for a layer already proven")
		}
	}
	if a.demand != 2 {
		t.Fatalf("after a dip of the estimate, demand %d; want 2 until a probe fails again", a.demand)
	}
	// Layer 2 arrives: the subscription takes it once a probe shows it
	// fits (the dip reset what the last one proved).
	in.best, in.estimate = 2, 600_000
	for target != 2 {
		tick(&in)
		target, _ = a.decide(in, fb)
		if now.Sub(start) > 2*time.Minute {
			t.Fatal("layer 2 not taken once it arrived on a clear path")
		}
	}

	// A refuted layer: the demand follows GCC's estimate once it holds
	// the top layer with demandMargin to spare.
	c := allocator{refuted: true, refutedLayer: 2}
	c.lastEst = 10e6
	in = allocation{now: now, estimate: 900_000, best: 1, chosen: 1, settled: true, top: 2, allowed: 2, need: need3}
	if c.decide(in, fb); c.demand != 1 {
		t.Fatalf("demand %d after the estimate fell to 900 kbit/s, want 1", c.demand)
	}
	for _, tc := range []struct {
		estimate float64
		demand   int
	}{{need3[2] * demandMargin * 0.99, 1}, {need3[2] * demandMargin, 2}} {
		tick(&in)
		in.estimate, in.best = tc.estimate, 2
		c.probe, c.nextProbe = nil, now.Add(time.Hour)
		if target, _ := c.decide(in, fb); target != 1 || c.demand != tc.demand {
			t.Errorf("estimate %.0f: layer %d, demand %d; want 1 and %d", tc.estimate, target, c.demand, tc.demand)
		}
	}
	// The estimate makes the demand, not the layer: the probe for layer 2
	// still runs.
	c.nextProbe = time.Time{}
	tick(&in)
	if c.decide(in, fb); c.probe == nil || c.probe.to != 2 {
		t.Errorf("probe %+v with the demand at the top layer, want one for layer 2", c.probe)
	}
	// A failed probe for layer 1 from a paused subscription lowers the
	// demand below it, whatever the estimate.
	d := allocator{refuted: true, refutedLayer: 0}
	in = allocation{now: now, estimate: 10_000, best: 2, chosen: noLayer, settled: true, top: 2, allowed: 2, need: need3}
	if d.decide(in, fb); d.demand != noLayer {
		t.Errorf("paused after a failed probe for layer 0: demand %d, want none", d.demand)
	}
}

// TestStoppedLayerNeed: a stopped layer's bitrate, for budgets and caps, is
// the highest of its last live samples, not the silence it stopped in,
// nor what still trickles in once it stopped.
func TestStoppedLayerNeed(t *testing.T) {
	fw, _ := newSimulcastForwarder(3)
	l := &fw.layers[1]
	start := time.Unix(5000, 0)
	l.liveSince.Store(start.UnixNano())
	var bytes uint64
	at := func(sec float64, kbit int, lastPacket time.Duration) [maxLayers]float64 {
		now := start.Add(time.Duration(sec * float64(time.Second)))
		bytes += uint64(kbit * 1000 / 8)
		l.bytes.Store(bytes)
		l.lastPacket.Store(now.Add(-lastPacket).UnixNano())
		need, _ := fw.needs(now)
		return need
	}
	at(0, 0, 0)
	for s := 1; s <= 5; s++ {
		if need := at(float64(s), 300, 0); need[1] != 300_000 {
			t.Fatalf("second %d: live layer 1 needs %.0f, want its 300 kbit/s", s, need[1])
		}
	}
	// It stops: a last second at a trickle, still live (its last packet
	// under layerTimeout ago), then silent.
	if need := at(6, 20, 900*time.Millisecond); need[1] != 300_000 {
		t.Fatalf("stopping layer 1 needs %.0f, want its last live 300 kbit/s", need[1])
	}
	for s := 7; s <= 10; s++ {
		if need := at(float64(s), 5, 2*time.Second); need[1] != 300_000 {
			t.Fatalf("second %d: stopped layer 1 needs %.0f, want its last live 300 kbit/s", s, need[1])
		}
	}
}
