// Package netquality rates a participant's network link from 0 to 5, the
// level of OpenVidu Pro's network quality API (networkQualityLevelChanged;
// ../shared/openvidu-docs/more/network-quality.md): 5 excellent, 4 good, 3
// non optimal, 2 poor, 1 bad, 0 broken (disconnected).
//
// The rating is an estimate of the mean opinion score of a call over the
// link, from the simplified E-model of ITU-T G.107 that VoIP monitors use
// (the same family of formula as LiveKit's connection quality):
//
//	effective latency  d = RTT/2 + 2*jitter + 10 ms
//	R = 93.2 - d/40            (d < 160 ms)
//	R = 93.2 - (d - 120)/10    (otherwise)
//	R = R - 2.5 * loss%        (clamped to 0..100)
//	MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)
//
// and the level is the band the score falls in: 4.2 and above is 5, 3.8 is
// 4, 3.3 is 3, 2.6 is 2, anything lower 1, capped by the bandwidth the
// participant's browser estimates for what it receives (Cap). Loss dominates on
// real links: with a 20 ms RTT and 5 ms jitter, up to about 3 % loss is 5,
// 5 % is 4, 10 % is 3, 15 % is 2 and 20 % or more is 1. A level only
// changes once the score has left its band by Hysteresis, so that a link
// whose score sits on a boundary does not make a level flap between two
// values at every measurement.
package netquality

import "time"

// Sample is what a media node measured of one link over an interval.
type Sample struct {
	// Connected is false once the link is broken (ICE disconnected or
	// failed): the level is then 0 whatever the rest says.
	Connected bool
	// Loss is the fraction of packets lost, 0 to 1.
	Loss float64
	// Jitter is the interarrival jitter (RFC 3550 section 6.4.1).
	Jitter time.Duration
	// RTT is the round-trip time; 0 when unknown (it is then left out).
	RTT time.Duration
	// Headroom is the available bandwidth the participant's browser
	// estimates for the video it receives (its REMB) when that estimate
	// fell below what it is sent (congestion), divided by that bitrate;
	// 0 when unknown or not congested. The level is then capped (Cap).
	Headroom float64
}

// Cap is the highest level a headroom allows: a link whose receiver
// estimates less bandwidth than it is sent is congested, whatever its loss
// says yet. A receiver's estimate (REMB) grows only up to about 1.5 times
// what it receives, so a headroom of 1 or more says nothing about spare
// capacity: only a shortfall lowers the level.
//
//	headroom >= 0.85 (or unknown): 5
//	0.5 to 0.85: 3 (non optimal: the stream exceeds the link)
//	below 0.5:   2 (poor: less than half of it fits)
func Cap(headroom float64) int {
	switch {
	case headroom <= 0 || headroom >= 0.85:
		return 5
	case headroom >= 0.5:
		return 3
	}
	return 2
}

// bands are the lowest scores of levels 5, 4, 3 and 2; anything lower, on
// a connected link, is level 1.
var bands = [4]float64{4.2, 3.8, 3.3, 2.6}

// Hysteresis is how far, in MOS, a score must leave the band of the
// current level before the level changes.
const Hysteresis = 0.1

// MOS is the sample's estimated mean opinion score, 1 to 4.5.
func MOS(s Sample) float64 {
	d := float64(s.RTT)/2 + 2*float64(s.Jitter) + float64(10*time.Millisecond)
	dms := d / float64(time.Millisecond)
	r := 93.2 - dms/40
	if dms >= 160 {
		r = 93.2 - (dms-120)/10
	}
	r -= 2.5 * 100 * min(max(s.Loss, 0), 1)
	r = min(max(r, 0), 100)
	return 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
}

// Level is the level of a score with no history.
func Level(mos float64) int {
	for i, low := range bands {
		if mos >= low {
			return 5 - i
		}
	}
	return 1
}

// Next is the level after a sample, given the current one (0 to 5; -1 for
// none yet): a disconnected link is 0, a first sample gets its band, and a
// later one changes the level only when its score is Hysteresis beyond the
// current level's band; the level is then capped by the headroom (Cap).
func Next(current int, s Sample) int {
	if !s.Connected {
		return 0
	}
	return min(next(current, MOS(s)), Cap(s.Headroom))
}

func next(current int, mos float64) int {
	next := Level(mos)
	if current < 1 || next == current {
		return next
	}
	// The band of the current level is [low, high).
	low, high := 0.0, 5.0
	if current >= 2 {
		low = bands[5-current]
	}
	if current <= 4 {
		high = bands[4-current]
	}
	if mos >= low-Hysteresis && mos < high+Hysteresis {
		return current
	}
	return next
}
