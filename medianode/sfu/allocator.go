package sfu

import "time"

// How a simulcast subscription's layer follows its bandwidth estimate
// (allocator). The margins keep it from oscillating: a layer is taken when
// the budget covers its whole bitrate, kept while the budget covers
// keepRatio of it, and the video pauses below pauseRatio of the lowest
// layer (audio keeps flowing).
const (
	keepRatio  = 0.75
	pauseRatio = 0.5
	// probeHeadroom is how much more than the next layer's bitrate a probe
	// sends in all (media plus padding).
	probeHeadroom = 1.1
	// probeDuration is how long a probe runs before it is judged a
	// success; its first probeWarmup is not judged (the path's queues
	// are still filling, the feedback is still on its way).
	probeDuration = 1 * time.Second
	probeWarmup   = 300 * time.Millisecond
	// A probe fails as soon as the feedback shows the path queueing
	// (probeMaxDelayGrowth more one-way delay than at its start) or losing
	// (probeMaxLoss), or delivering less than probeMinDelivered of what was
	// sent.
	probeMaxDelayGrowth = 40 * time.Millisecond
	probeMaxLoss        = 0.1
	probeMinDelivered   = 0.85
	// After a failed probe the next one waits, from probeBackoffMin
	// doubling to probeBackoffMax; after a success the next layer's probe
	// waits probeSettle, for the switch and the estimator to follow.
	probeBackoffMin = 2 * time.Second
	// congestionWindow is the feedback that guards the estimate: a path
	// that lost more than congestionLoss of it, or delivered less than
	// probeMinDelivered of what was sent, is congested.
	congestionWindow = time.Second
	congestionLoss   = 0.05
	// probeDrain is how long after a probe its packets may still be
	// queued on the path: they do not count against it.
	probeDrain      = 500 * time.Millisecond
	probeBackoffMax = 4 * time.Second
	probeSettle     = 1 * time.Second
	// demandMargin is how much more than a layer's bitrate GCC's estimate
	// must be for the subscription to need that layer without a probe
	// (layerCap).
	demandMargin = 1.25
)

// nominalBitrates are the bitrates assumed for layers not yet measured,
// lowest first, for 1, 2 or 3 layers: Chrome's simulcast defaults for
// 1280x720 (320x180 at 150 kbit/s, 640x360 at 500 kbit/s, 1280x720 at
// 2.5 Mbit/s).
var nominalBitrates = [maxLayers][maxLayers]float64{
	{2_500_000},
	{500_000, 2_500_000},
	{150_000, 500_000, 2_500_000},
}

// deliveryWindows is what the allocator reads of the subscriber's
// feedback (a deliveryMeter).
type deliveryWindows interface {
	window(from, to time.Time) delivery
}

// allocator chooses a simulcast subscription's layer within its bandwidth
// estimate, and probes before moving up.
//
// GCC's estimate falls as soon as the path congests, but it never rises
// above 1.5 times what the subscriber receives (draft-ietf-rmcat-gcc-02
// section 5.5): a subscription on a low layer cannot learn from it alone
// that a higher one would fit. So, like libwebrtc's and LiveKit's probing,
// the down track pads its stream up to the next layer's bitrate for
// probeDuration, and the subscriber's feedback (deliveryMeter) tells
// whether the path carried it without queueing or loss. A probe that did
// proves a budget (floor) that holds until the estimate falls; one that
// did not is stopped at once and retried after a backoff.
//
// It is used by one goroutine at a time (the down track's selection).
type allocator struct {
	floor     float64 // bits per second a probe proved; 0: none
	lastEst   float64
	backoff   time.Duration
	nextProbe time.Time
	probe     *probe
	probeEnd  time.Time // when the last probe ended
	verdict   delivery  // the feedback the last probe was judged on, for the logs
	// congestedOnce is set at the first congestion seen: from then on
	// only probes move the layer up.
	congestedOnce bool
	// demand is the highest layer the subscription may take, whether or
	// not the publisher sends it (noLayer: none): what the publisher is
	// asked to keep sending (layerCap). It is the top layer until a probe
	// fails; then the best one the budget holds, and at least the one
	// below the layer that probe was for.
	demand int
	// refuted is set when a probe fails, for the layer it was for
	// (refutedLayer), and cleared when one for that layer or a higher one
	// succeeds.
	refuted      bool
	refutedLayer int
	// Probes and ProbeFailures count the probes started and failed.
	probes, probeFailures int
}

type probe struct {
	start  time.Time
	from   int     // the layer forwarded meanwhile (noLayer: paused)
	to     int     // the layer probed for
	target float64 // bits per second sent in all during the probe
}

// allocation is what the allocator sees on a tick.
type allocation struct {
	now      time.Time
	estimate float64 // GCC's, bits per second
	// best is the layer the liveness rules would forward (the best one
	// arriving, a higher one only once stable); noLayer when none arrives.
	best int
	// top is the track's highest layer, and allowed the highest one the
	// node leaves the publisher to send (layerCap; top when uncapped).
	top, allowed int
	// chosen is the layer chosen so far (noLayer: none, or paused), and
	// settled whether it is the one forwarded (its keyframe came).
	chosen  int
	settled bool
	// need is each layer's bitrate (measured, else nominal).
	need [maxLayers]float64
}

// decide returns the layer to forward and the padding to send meanwhile,
// in bits per second (0: none).
func (a *allocator) decide(in allocation, fb deliveryWindows) (target int, padRate float64) {
	if a.backoff == 0 {
		a.backoff = probeBackoffMin
	}
	congested, failing := in.estimate < a.lastEst*0.95, false
	a.lastEst = in.estimate
	if a.probe != nil {
		a.judge(in.now, fb)
	}
	// The feedback of the last second guards the estimate: a path that
	// loses or delivers less than was sent is congested whatever GCC
	// says yet, and holds no more than it delivers.
	// A probe's own traffic does not count: its verdict is the probe's.
	budget := in.estimate
	var recent delivery
	if a.probe == nil {
		recent = fb.window(later(in.now.Add(-congestionWindow), a.probeEnd.Add(probeDrain)), in.now)
	}
	if recent.Packets >= 20 && (recent.LossRatio() > congestionLoss || recent.DeliveredRate < probeMinDelivered*recent.SentRate) {
		congested, failing = true, true
		budget = min(budget, recent.DeliveredRate)
	}
	if congested {
		// What a probe proved no longer holds, and the next probe waits
		// for the path to drain.
		a.floor, a.congestedOnce = 0, true
		if a.probe == nil {
			a.nextProbe = later(a.nextProbe, in.now.Add(a.backoff))
		}
	}
	// Once the path has congested, only a probe moves the layer up: GCC's
	// estimate also grows while it sees a probe's padding, and a layer
	// taken on it alone stalled the subscriber when the path had not
	// changed.
	up := max(budget, a.floor)
	if a.congestedOnce {
		up = a.floor
	}
	budget = max(budget, a.floor)
	keep := keepRatio
	if failing {
		keep = 1 // no margin for a layer the path is already failing
	}
	target = a.fit(in, budget, up, keep)
	// The demand errs high: a too high one only leaves the publisher
	// uncapped, while a too low one holds back a layer this subscription
	// could take, for every subscriber, until a probe finds the room and
	// the publisher's encoder comes back (seconds). A dip in the estimate
	// or a passing congestion is no proof that the path cannot hold a
	// layer (they come with CPU load too); a failed probe is. So the
	// demand stays at the top layer until a probe fails, and then does not
	// fall below the layer under the one refuted. Above that it may follow
	// GCC's estimate where the layer may not, with demandMargin to spare,
	// so that the estimate's growth between two failed probes does not
	// lift the cap.
	all := in
	all.best = max(in.top, in.best)
	a.demand = all.best
	if a.refuted {
		a.demand = max(a.fit(all, budget, max(up, budget/demandMargin), keep), a.refutedLayer-1)
	}
	proven := a.fit(all, budget, up, keep) // what the layer may move up to
	if p := a.probe; p != nil && (target != p.from || !a.probeable(in, p.to)) {
		a.probe = nil // moved meanwhile, or the layer probed for stopped
	}
	// A probe looks for the layer above the one forwarded, unless the
	// budget already holds it, when the publisher sends it or when the
	// node's cap holds it back: a success lifts the cap (the demand
	// rises).
	if next := target + 1; a.probe == nil && in.settled && in.best != noLayer && proven < next && a.probeable(in, next) && !in.now.Before(a.nextProbe) {
		a.probes++
		a.probe = &probe{start: in.now, from: target, to: next, target: in.need[next] * probeHeadroom}
	}
	if p := a.probe; p != nil {
		padRate = p.target
		if p.from != noLayer {
			padRate -= in.need[p.from]
		}
		padRate = max(padRate, 0)
	}
	return target, padRate
}

// probeable reports whether a probe for layer may run: the publisher
// sends it (in.best) or the node's cap holds it back (above in.allowed).
func (a *allocator) probeable(in allocation, layer int) bool {
	return layer <= in.best || layer > in.allowed && layer <= in.top
}

// fit is the best layer up to in.best that the budget holds: the chosen
// one and those below it at keep of their bitrate, those above when the
// budget up holds their whole bitrate; noLayer (pause) below pauseRatio of the lowest, and
// until the budget holds the whole lowest layer again.
func (a *allocator) fit(in allocation, budget, up, keep float64) int {
	if in.best == noLayer {
		return noLayer
	}
	for i := in.best; i >= 0; i-- {
		if in.chosen != noLayer && i <= in.chosen {
			if budget >= in.need[i]*keep {
				return i
			}
		} else if up >= in.need[i] {
			return i
		}
	}
	if in.chosen != noLayer && budget >= in.need[0]*pauseRatio {
		return 0
	}
	return noLayer // paused: a probe resumes it
}

// judge ends the running probe when the feedback has a verdict.
func (a *allocator) judge(now time.Time, fb deliveryWindows) {
	p := a.probe
	elapsed := now.Sub(p.start)
	defer func() {
		if a.probe == nil {
			a.probeEnd = now
		}
	}()
	fail := func() {
		a.refuted, a.refutedLayer = true, p.to
		a.probe, a.probeFailures = nil, a.probeFailures+1
		a.nextProbe = now.Add(a.backoff)
		a.backoff = min(2*a.backoff, probeBackoffMax)
	}
	w := fb.window(p.start, now)
	a.verdict = w
	if w.Packets >= 10 && (w.DelayGrowth > probeMaxDelayGrowth || w.LossRatio() > probeMaxLoss) {
		fail()
		return
	}
	if early := fb.window(p.start.Add(probeWarmup), now); early.Packets >= 20 && early.DeliveredRate < probeMinDelivered*early.SentRate {
		fail()
		return
	}
	if elapsed < probeDuration {
		return
	}
	full := fb.window(p.start.Add(probeWarmup), p.start.Add(probeDuration))
	a.verdict = full
	switch {
	case full.Packets >= 20 && full.DeliveredRate < probeMinDelivered*full.SentRate:
		fail()
	case full.Packets >= 20 && full.SentRate >= 0.8*p.target:
		a.probe, a.floor = nil, max(a.floor, p.target)
		if p.to >= a.refutedLayer {
			a.refuted = false
		}
		a.backoff, a.nextProbe = probeBackoffMin, now.Add(probeSettle)
	case elapsed >= 2*probeDuration:
		// Not enough was sent or reported to tell (the publisher's
		// frames came late, the feedback stopped): try again later.
		a.probe, a.nextProbe = nil, now.Add(a.backoff)
	}
}

// layerNeeds returns each layer's bitrate as measured, or nominal where
// not measured yet.
func layerNeeds(measured []int) (need [maxLayers]float64) {
	n := min(len(measured), maxLayers)
	if n == 0 {
		return need
	}
	for i := range n {
		need[i] = nominalBitrates[n-1][i]
		if measured[i] > 0 {
			need[i] = float64(measured[i])
		}
	}
	return need
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
