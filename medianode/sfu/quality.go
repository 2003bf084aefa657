package sfu

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/medianode/netquality"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

// uplinkMeter follows a publisher's uplink through the receiver reports
// this node sends the publisher (pion's report interceptor computes them
// from the packets received: RFC 3550 section 6.4.2): the latest block of
// each of the peer connection's incoming SSRCs, and the one at the last
// sample, so that a sample covers the packets since the previous one.
// Reading what the node already reports costs nothing per packet.
type uplinkMeter struct {
	mu    sync.Mutex
	ssrcs map[uint32]*ssrcReports
}

// ssrcReports is what the receiver reports said of one incoming SSRC.
type ssrcReports struct {
	clockRate uint32
	audio     bool
	reported  bool
	// Of the latest report: cumulative packets lost, extended highest
	// sequence number received, interarrival jitter in timestamp units.
	lost, highest, jitter uint32
	// Cumulative lost and highest sequence number at the last sample.
	sampled                   bool
	sampledLost, sampledHighs uint32
}

func newUplinkMeter() *uplinkMeter { return &uplinkMeter{ssrcs: map[uint32]*ssrcReports{}} }

// minExpected is how many packets an SSRC must have been expected to
// carry since the last sample for its loss to count: a loss ratio over a
// handful of packets says little.
const minExpected = 20

// sample returns the uplink's loss since the previous sample (the worst
// SSRC's: audio is never retransmitted, so its ratio is the link's, where
// video's hides what NACKs repaired) and its jitter (audio's when there is
// audio: video frames span several packets sent at once, which inflates
// their jitter). ok is false when no SSRC was reported on enough packets.
func (m *uplinkMeter) sample() (loss float64, jitter time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var audioJitter, videoJitter time.Duration
	hasAudio := false
	for _, r := range m.ssrcs {
		if !r.reported {
			continue
		}
		if r.clockRate > 0 {
			j := time.Duration(float64(r.jitter) / float64(r.clockRate) * float64(time.Second))
			if r.audio {
				audioJitter, hasAudio = max(audioJitter, j), true
			} else {
				videoJitter = max(videoJitter, j)
			}
		}
		if r.sampled {
			expected := int64(r.highest) - int64(r.sampledHighs)
			if expected >= 0 && expected < minExpected {
				continue // keep the older reference: the next sample covers both
			}
			if expected >= minExpected {
				lost := min(max(int64(r.lost)-int64(r.sampledLost), 0), expected)
				loss = max(loss, float64(lost)/float64(expected))
				ok = true
			}
		}
		r.sampled, r.sampledLost, r.sampledHighs = true, r.lost, r.highest
	}
	if hasAudio {
		return loss, audioJitter, ok
	}
	return loss, videoJitter, ok
}

func (m *uplinkMeter) track(ssrc, clockRate uint32, audio bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ssrcs[ssrc] = &ssrcReports{clockRate: clockRate, audio: audio}
}

func (m *uplinkMeter) forget(ssrc uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ssrcs, ssrc)
}

func (m *uplinkMeter) observe(blocks []rtcp.ReceptionReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blocks {
		if r := m.ssrcs[b.SSRC]; r != nil {
			r.reported, r.lost, r.highest, r.jitter = true, b.TotalLost, b.LastSequenceNumber, b.Jitter
		}
	}
}

// reportTap is an interceptor that shows an uplinkMeter the publisher's
// incoming streams and the receiver reports written to it. It must come
// before pion's report interceptor in the registry, so that the reports
// that interceptor writes go through the tap.
type reportTap struct {
	interceptor.NoOp
	m *uplinkMeter
}

// NewInterceptor makes reportTap its own factory: one meter per peer connection.
func (t *reportTap) NewInterceptor(string) (interceptor.Interceptor, error) { return t, nil }

func (t *reportTap) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	t.m.track(info.SSRC, info.ClockRate, strings.HasPrefix(strings.ToLower(info.MimeType), "audio/"))
	return reader
}

func (t *reportTap) UnbindRemoteStream(info *interceptor.StreamInfo) { t.m.forget(info.SSRC) }

func (t *reportTap) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, attrs interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if rr, ok := p.(*rtcp.ReceiverReport); ok {
				t.m.observe(rr.Reports)
			}
		}
		return writer.Write(pkts, attrs)
	})
}

// rttMeter keeps the latest round-trip time a subscriber's receiver
// reports gave for one down track (RFC 3550 section 6.4.1: arrival time
// minus the LSR and DLSR fields, in 1/65536 s; the LSR is the middle of
// the NTP time of this node's sender report, written by pion's sender
// interceptor from the wall clock).
type rttMeter struct{ rtt atomic.Int64 } // nanoseconds, 0: none yet

func (m *rttMeter) observe(ssrc uint32, blocks []rtcp.ReceptionReport, now time.Time) {
	for _, b := range blocks {
		if b.SSRC != ssrc || b.LastSenderReport == 0 {
			continue
		}
		rtt := ntpMiddle(now) - b.LastSenderReport - b.Delay
		if rtt >= 1<<31 { // before the report was sent: clocks or a bogus block
			continue
		}
		m.rtt.Store(int64(time.Duration(rtt) * time.Second / 65536))
	}
}

// rembMeter watches a subscriber's bandwidth estimates (REMB, sent by a
// browser that negotiated goog-remb: draft-alvestrand-rmcat-remb) against
// the bitrate of the video it was sent between two of them. A browser's
// estimate only tracks what it receives (it grows to about 1.5 times that
// and no further), so an estimate below what is sent means little while it
// climbs (the sender just sped up); it means congestion when it falls: the
// estimator lowers it only on overuse, to 0.85 times the rate received,
// unless what it receives fell (a publisher slowed down, after its own
// uplink's loss say): an estimate falling while the rate sent did not is
// congestion. The headroom (netquality.Sample.Headroom) is estimate / rate
// of the latest such estimate below 0.85 times the rate sent, held for a
// while.
type rembMeter struct {
	mu           sync.Mutex
	lastBytes    uint64
	lastAt       time.Time
	lastEstimate float64
	lastRate     float64 // bits/s sent between the two previous estimates
	headroom     float64
	at           time.Time // of headroom
}

// minMeasuredBitrate is the sent bitrate below which no headroom is
// computed (bits/s): a paused or tiny stream says nothing of the link.
const minMeasuredBitrate = 50_000

func (m *rembMeter) observe(estimate float64, sentBytes uint64, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	falling := m.lastEstimate > 0 && estimate < m.lastEstimate
	m.lastEstimate = estimate
	if m.lastAt.IsZero() {
		m.lastBytes, m.lastAt = sentBytes, now
		return
	}
	elapsed := now.Sub(m.lastAt)
	if elapsed < 200*time.Millisecond {
		return // too short to measure a rate: the next estimate will
	}
	rate := float64(sentBytes-m.lastBytes) * 8 / elapsed.Seconds()
	steady := m.lastRate > 0 && rate >= 0.9*m.lastRate
	m.lastBytes, m.lastAt, m.lastRate = sentBytes, now, rate
	if falling && steady && rate >= minMeasuredBitrate && estimate < 0.85*rate {
		m.headroom, m.at = estimate/rate, now
	}
}

// current is the headroom of the latest congestion seen within hold (0:
// none).
func (m *rembMeter) current(now time.Time, hold time.Duration) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at.IsZero() || now.Sub(m.at) > hold {
		return 0
	}
	return m.headroom
}

// ntpMiddle is the middle 32 bits of t's NTP timestamp (16.16 seconds).
func ntpMiddle(t time.Time) uint32 {
	const ntpEpochOffset = 2208988800 // seconds from 1900 to 1970
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return uint32((secs<<32 | frac) >> 16)
}

// headroomHold is how long a congestion seen in a subscriber's estimates
// caps its level: congested links do not lower their estimate at every
// report (browsers send REMB about once a second, and at once on a drop).
const headroomHold = 6 * time.Second

// NetworkQuality rates the link of every connection that publishes on this
// node (OpenVidu Pro's network quality is for publishers only) from what
// happened since the previous call: the publisher's uplink loss and
// jitter, and, if it subscribes to anything, the round-trip time its
// subscriptions' receiver reports give and the worst headroom of their
// bandwidth estimates. A publisher whose ICE is
// disconnected or failed is 0; one still connecting, or whose uplink
// carried too few packets since the last call, is left out. Levels follow
// netquality.Next from each publisher's previous one.
func (s *SFU) NetworkQuality() []mediaapi.ConnectionQuality {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mediaapi.ConnectionQuality
	now := time.Now()
	for sid, r := range s.sessions {
		rtts := map[string][]time.Duration{}
		headroom := map[string]float64{} // the worst of the connection's video subscriptions
		for _, sub := range r.subscribers {
			if sub.connectionID == "" {
				continue
			}
			for _, dt := range sub.downTracks {
				if rtt := dt.rtt.rtt.Load(); rtt > 0 {
					rtts[sub.connectionID] = append(rtts[sub.connectionID], time.Duration(rtt))
				}
				if h := dt.remb.current(now, headroomHold); h > 0 {
					if cur, ok := headroom[sub.connectionID]; !ok || h < cur {
						headroom[sub.connectionID] = h
					}
				}
			}
		}
		for _, p := range r.publishers {
			if p.connectionID == "" || p.pc == nil || p.uplink == nil {
				continue
			}
			sample := netquality.Sample{Connected: true}
			switch p.pc.ICEConnectionState() {
			case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
				loss, jitter, ok := p.uplink.sample()
				if !ok {
					continue
				}
				sample.Loss, sample.Jitter, sample.RTT = loss, jitter, mean(rtts[p.connectionID])
				sample.Headroom = headroom[p.connectionID]
			case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
				sample.Connected = false
			default:
				continue
			}
			prev := p.level
			p.level = netquality.Next(p.level, sample)
			logAt := slog.LevelDebug
			if p.level != prev && prev >= 0 {
				logAt = slog.LevelInfo // a change: what the participant is told, and why
			}
			s.log.Log(context.Background(), logAt, "network quality", "session", sid, "connection", p.connectionID, "level", p.level, "previous", prev,
				"connected", sample.Connected, "loss", sample.Loss, "jitter", sample.Jitter, "rtt", sample.RTT, "headroom", sample.Headroom)
			out = append(out, mediaapi.ConnectionQuality{
				SessionID: sid, ConnectionID: p.connectionID, StreamID: p.streamID, Level: p.level,
				LossPercent: sample.Loss * 100, JitterMS: ms(sample.Jitter), RTTMS: ms(sample.RTT), Headroom: sample.Headroom,
			})
		}
	}
	return out
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
