package capture

import (
	"time"
)

// rtpClock unwraps a track's 32-bit RTP timestamps and maps them to wall-clock
// time. The mapping is the smallest (arrival - RTP time) seen: network delay
// only ever adds to a packet's arrival, so the fastest packet gives the best
// estimate of when its media was captured (sender clock drift aside).
type rtpClock struct {
	rate    int64 // Hz
	started bool
	ref     int64 // extended timestamp of the first packet seen
	max     int64 // highest extended timestamp seen
	// offset is min(arrival - RTP time since ref), in Unix nanoseconds.
	offset int64
}

// extend returns ts unwrapped near the highest timestamp seen, without
// observing it.
func (c *rtpClock) extend(ts uint32) int64 {
	if !c.started {
		return int64(ts)
	}
	return c.max + int64(int32(ts-uint32(c.max)))
}

// observe records that a packet with timestamp ts arrived at at and returns
// ts unwrapped.
func (c *rtpClock) observe(ts uint32, at time.Time) int64 {
	if !c.started {
		c.started = true
		c.ref, c.max = int64(ts), int64(ts)
		c.offset = at.UnixNano()
		return c.ref
	}
	ext := c.extend(ts)
	if ext > c.max {
		c.max = ext
	}
	if off := at.UnixNano() - c.nanos(ext-c.ref); off < c.offset {
		c.offset = off
	}
	return ext
}

// wallMillis is the wall-clock time of extended timestamp ext, in Unix ms.
func (c *rtpClock) wallMillis(ext int64) int64 {
	ns := c.offset + c.nanos(ext-c.ref)
	return floorDiv(ns, int64(time.Millisecond))
}

// nanos converts RTP ticks to nanoseconds without overflowing for long
// recordings.
func (c *rtpClock) nanos(ticks int64) int64 {
	return ticks/c.rate*int64(time.Second) + ticks%c.rate*int64(time.Second)/c.rate
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
