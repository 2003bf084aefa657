package sfu

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// keyframeInterval is the least time between two keyframe requests sent to a
// publisher, whatever the number of subscribers asking.
const keyframeInterval = 500 * time.Millisecond

// forwarder fans one published track out to its subscribers' down tracks. It
// outlives the publisher's peer connection: a publisher that reconnects
// (reconnectStream) attaches a new source, and subscribers keep receiving with
// continuous sequence numbers and timestamps (see downTrack.write).
type forwarder struct {
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecParameters
	streamID string
	rtx      *rtxBuffer // nil for audio: Opus is not retransmitted
	stats    *Stats
	log      *slog.Logger

	// downTracks is replaced, never mutated, so the read loop iterates it
	// without locking.
	mu         sync.Mutex
	downTracks atomic.Pointer[[]*downTrack]

	generation atomic.Uint32 // incremented by each attach
	source     atomic.Pointer[trackSource]
	lastPLI    atomic.Int64 // Unix ns of the last keyframe request
}

type trackSource struct {
	pc   *webrtc.PeerConnection
	ssrc webrtc.SSRC
}

func newForwarder(kind webrtc.RTPCodecType, codec webrtc.RTPCodecParameters, streamID string, rtxSize int, stats *Stats, log *slog.Logger) *forwarder {
	f := &forwarder{kind: kind, codec: codec, streamID: streamID, stats: stats, log: log}
	if kind == webrtc.RTPCodecTypeVideo {
		f.rtx = newRTXBuffer(rtxSize)
	}
	empty := []*downTrack{}
	f.downTracks.Store(&empty)
	return f
}

// attach makes remote the forwarder's source and forwards its packets until
// the remote track ends or another source is attached. It is called from
// pion's OnTrack; the read loop's goroutine ends when pc closes.
func (f *forwarder) attach(pc *webrtc.PeerConnection, remote *webrtc.TrackRemote) {
	gen := f.generation.Add(1)
	f.source.Store(&trackSource{pc: pc, ssrc: remote.SSRC()})
	f.lastPLI.Store(0)
	f.requestKeyframe() // subscribers already bound need one from the new source
	go f.readLoop(remote, gen)
}

func (f *forwarder) readLoop(remote *webrtc.TrackRemote, gen uint32) {
	buf := make([]byte, maxPacketSize)
	var h rtp.Header
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				f.log.Debug("published track ended", "stream", f.streamID, "kind", f.kind, "err", err)
			}
			return
		}
		if f.generation.Load() != gen {
			return // a newer source took over (publisher reconnection)
		}
		hlen, err := h.Unmarshal(buf[:n])
		if err != nil {
			f.stats.MalformedPackets.Add(1)
			continue
		}
		f.stats.ReceivedPackets.Add(1)
		f.stats.ReceivedBytes.Add(uint64(n))
		if f.rtx != nil {
			f.rtx.put(h.SequenceNumber, buf[:n])
		}
		f.fanOut(&h, buf[hlen:n], gen)
	}
}

// fanOut writes one received packet to every subscriber, and counts what
// was forwarded once per packet rather than once per subscriber: the two
// shared atomic counters, updated per subscriber, took 8-9 ns of the 107 ns
// each forwarded packet cost in BenchmarkForwardPacket (BENCHMARKS.md,
// "Metrics overhead").
func (f *forwarder) fanOut(h *rtp.Header, payload []byte, gen uint32) {
	var packets, bytes uint64
	for _, dt := range *f.downTracks.Load() {
		if n := dt.write(h, payload, gen); n > 0 {
			packets++
			bytes += uint64(n)
		}
	}
	if packets > 0 {
		f.stats.ForwardedPackets.Add(packets)
		f.stats.ForwardedBytes.Add(bytes)
	}
}

// requestKeyframe asks the publisher for a keyframe (PLI), at most once per
// keyframeInterval.
func (f *forwarder) requestKeyframe() {
	if f.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	src := f.source.Load()
	if src == nil {
		return
	}
	now := time.Now().UnixNano()
	last := f.lastPLI.Load()
	if now-last < int64(keyframeInterval) || !f.lastPLI.CompareAndSwap(last, now) {
		return
	}
	err := src.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(src.ssrc)}})
	if err == nil {
		f.stats.KeyframeRequests.Add(1)
	}
}

func (f *forwarder) addDownTrack(dt *downTrack) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.downTracks.Load()
	next := make([]*downTrack, 0, len(old)+1)
	next = append(next, old...)
	next = append(next, dt)
	f.downTracks.Store(&next)
}

func (f *forwarder) removeDownTrack(dt *downTrack) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.downTracks.Load()
	next := make([]*downTrack, 0, len(old))
	for _, d := range old {
		if d != dt {
			next = append(next, d)
		}
	}
	f.downTracks.Store(&next)
}
