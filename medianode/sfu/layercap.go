package sfu

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// The publisher side of simulcast. A browser encodes and sends every
// encoding its own bandwidth estimate holds, needed or not; openvidu-browser
// 2.32 has no message by which the server could turn an encoding off
// (LiveKit's clients do: its "dynacast"). What a browser does heed is a
// receiver estimated maximum bitrate (REMB, draft-alvestrand-rmcat-remb):
// libwebrtc caps its send-side estimate at it, even with transport-wide
// congestion control, and its simulcast allocator then drops the
// encodings the cap cannot hold, highest first. So when no subscriber has
// needed the upper layers for capHold, the node sends the publisher a REMB
// that holds the layers in use and not the next one; the browser spends
// its uplink (and its encoder) on those. As soon as a subscriber needs
// more (a new one, or a probe that found room), the cap is lifted.
const (
	// capInterval is how often the demand is read.
	capInterval = 500 * time.Millisecond
	// capHold is how long the demand must stay below a layer before the
	// publisher is told to stop it: a subscriber's estimate dips and
	// recovers, and a layer turned back on takes the browser seconds.
	capHold = 5 * time.Second
	// capHeadroom is the REMB's margin over the bitrates of the layers
	// kept. libwebrtc enables a layer when its estimate covers the lower
	// layers' targets plus the layer's minimum bitrate (for 1280x720 in
	// three layers: 150 + 500 + 600 kbit/s), so 1.15 times what the kept
	// layers send keeps them whole and leaves the next one off.
	capHeadroom = 1.15
	// capMinBitrate is the least REMB sent (bits per second).
	capMinBitrate = 50_000
	// uncappedBitrate is the REMB that lifts a cap: above any browser's
	// maximum send bitrate, so its own estimate rules again.
	uncappedBitrate = 100_000_000
	// capResend is how often a REMB is repeated (RTCP is not reliable),
	// and capLiftRepeats how many times a lift is.
	capResend      = time.Second
	capLiftRepeats = 3
)

// layerCap decides, from the subscribers' demand, the highest layer a
// simulcast publisher is left to send and the REMB that tells it. It is
// used by one goroutine (forwarder.runLayerCap).
type layerCap struct {
	allowed int // the highest layer the publisher is left to send
	// lowSince is when the demand fell below allowed (zero: it has not),
	// and lowMax the highest demand since.
	lowSince time.Time
	lowMax   int
	rate     float64 // the REMB of the current cap (0: none)
	lastREMB time.Time
	lifts    int // lifting REMBs still to repeat
}

func newLayerCap(top int) *layerCap { return &layerCap{allowed: top} }

// next takes the subscribers' demand at now (the highest layer any of
// them needs; noLayer when none subscribes) and returns the REMB to send
// in bits per second, 0 when none is due. need is each layer's bitrate
// (layerNeeds), top the track's highest layer. The lowest layer is always
// kept, so that a new subscriber sees video at once.
func (c *layerCap) next(now time.Time, demand, top int, need [maxLayers]float64) float64 {
	demand = min(max(demand, 0), top)
	prev := c.allowed
	switch {
	case demand >= c.allowed:
		c.allowed, c.lowSince = demand, time.Time{}
	case c.lowSince.IsZero():
		c.lowSince, c.lowMax = now, demand
	default:
		c.lowMax = max(c.lowMax, demand)
		if now.Sub(c.lowSince) >= capHold {
			c.allowed, c.lowSince = c.lowMax, time.Time{}
		}
	}
	if c.allowed >= top {
		if c.rate > 0 { // lifted
			c.rate, c.lifts = 0, capLiftRepeats
		}
		if c.lifts > 0 && (prev < top || now.Sub(c.lastREMB) >= capResend) {
			c.lifts--
			c.lastREMB = now
			return uncappedBitrate
		}
		return 0
	}
	rate := c.rate
	if c.allowed != prev || rate == 0 {
		rate = 0
		for i := 0; i <= c.allowed; i++ {
			rate += need[i]
		}
		rate = max(rate*capHeadroom, capMinBitrate)
	}
	// The cap is set from the kept layers' bitrates when it changes, and
	// stays: the browser gives the highest kept layer what is left, so a
	// cap that followed their bitrates would climb until the next layer
	// turned on again.
	changed := rate != c.rate
	c.rate, c.lifts = rate, 0
	if changed || now.Sub(c.lastREMB) >= capResend {
		c.lastREMB = now
		return rate
	}
	return 0
}

// demand is the highest layer the forwarder's subscribers need (noLayer:
// none subscribes).
func (f *forwarder) demand() int {
	d := noLayer
	for _, dt := range *f.downTracks.Load() {
		d = max(d, int(dt.demand.Load()))
	}
	return d
}

// runLayerCap caps what the publisher's peer connection pc sends of this
// simulcast track to the layers its subscribers need (layerCap), until
// stop is closed.
func (f *forwarder) runLayerCap(pc *webrtc.PeerConnection, stop <-chan struct{}) {
	tick := time.NewTicker(capInterval)
	defer tick.Stop()
	top := int(f.layerCount.Load()) - 1
	c := newLayerCap(top)
	defer func() {
		f.stats.LayersCapped.Add(-int64(top - c.allowed))
		f.allowed.Store(maxLayers - 1)
	}()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			need, measured := f.needs(now)
			prev := c.allowed
			rate := c.next(now, f.demand(), top, need)
			f.allowed.Store(int32(c.allowed))
			if c.allowed != prev {
				f.stats.LayersCapped.Add(int64(prev - c.allowed))
				f.log.Debug("simulcast publisher cap", "stream", f.streamID, "from", prev, "to", c.allowed, "remb", c.rate, "need", measured)
			}
			if rate > 0 {
				f.sendREMB(pc, rate)
			}
		}
	}
}

// sendREMB sends the publisher's peer connection pc a REMB of bitrate
// bits per second for the track's layers it sends.
func (f *forwarder) sendREMB(pc *webrtc.PeerConnection, bitrate float64) {
	var ssrcs []uint32
	for i := range int(f.layerCount.Load()) {
		if src := f.layers[i].source.Load(); src != nil && src.pc == pc {
			ssrcs = append(ssrcs, uint32(src.ssrc))
		}
	}
	if len(ssrcs) == 0 {
		return
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(bitrate), SSRCs: ssrcs}}); err == nil {
		f.stats.PublisherREMBs.Add(1)
	}
}
