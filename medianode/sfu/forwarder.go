package sfu

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

// keyframeInterval is the least time between two keyframe requests sent to a
// publisher for one layer, whatever the number of subscribers asking.
const keyframeInterval = 500 * time.Millisecond

// forwarder fans one published track out to its subscribers' down tracks. It
// outlives the publisher's peer connection: a publisher that reconnects
// (reconnectStream) attaches a new source, and subscribers keep receiving with
// continuous sequence numbers and timestamps (see downTrack.write).
//
// A simulcast video track has up to maxLayers sources, one per encoding
// (RTP stream id), indexed by quality: 0 is the lowest. Each down track
// forwards one of them at a time (see downTrack). Any other track has one,
// layer 0.
type forwarder struct {
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecParameters
	streamID string
	stats    *Stats
	log      *slog.Logger

	// downTracks is replaced, never mutated, so the read loop iterates it
	// without locking.
	mu         sync.Mutex
	downTracks atomic.Pointer[[]*downTrack]

	generation atomic.Uint32 // incremented by each attach, whatever the layer
	// simulcast is whether the publisher's last offer sent several
	// encodings of this track; layers beyond layerCount are not used.
	simulcast  atomic.Bool
	layerCount atomic.Int32
	layers     [maxLayers]layer
	// allowed is the highest layer the node leaves the publisher to send
	// (runLayerCap; maxLayers-1 when uncapped).
	allowed atomic.Int32

	// rateMu guards the layers' bitrate samples (layerStates).
	rateMu sync.Mutex
	rates  [maxLayers]rateSample
}

// rateSample is a layer's bitrate over its last sampling period, and
// over the last liveSamples periods it was live throughout (live, a ring).
type rateSample struct {
	at       time.Time
	bytes    uint64
	bitrate  int
	live     [liveSamples]int
	liveNext int
}

// liveSamples is how many of a layer's live bitrate samples (rateWindow
// each) are kept: a layer counts as live up to layerTimeout after its last
// packet, so the last samples of a layer that stopped are partly silent;
// the highest of the last liveSamples is its bitrate.
const liveSamples = 4

func (r *rateSample) lastLive() int {
	return slices.Max(r.live[:])
}

// rateWindow is the least period a layer's bitrate is measured over.
const rateWindow = time.Second

// layer is one encoding of a published track as the node receives it.
type layer struct {
	source  atomic.Pointer[trackSource]
	rtx     *rtxBuffer // nil for audio: Opus is not retransmitted
	lastPLI atomic.Int64
	// bytes received, the Unix ns of the last packet (liveness) and of the
	// first packet after a silence of layerTimeout or more (stability):
	// selection reads them on its ticks.
	bytes      atomic.Uint64
	lastPacket atomic.Int64
	liveSince  atomic.Int64
	// newest is the source generation (high 32 bits) and newest sequence
	// number (low 16) received: a retransmission, or padding, does not
	// make a stopped layer live.
	newest atomic.Uint64
	// width and height of the last keyframe (VP8; 0 when unknown).
	width, height atomic.Uint32
}

type trackSource struct {
	pc   *webrtc.PeerConnection
	ssrc webrtc.SSRC
	gen  uint32
}

func newForwarder(kind webrtc.RTPCodecType, codec webrtc.RTPCodecParameters, streamID string, rtxSize int, stats *Stats, log *slog.Logger) *forwarder {
	f := &forwarder{kind: kind, codec: codec, streamID: streamID, stats: stats, log: log}
	if kind == webrtc.RTPCodecTypeVideo {
		for i := range f.layers {
			f.layers[i].rtx = newRTXBuffer(rtxSize)
		}
	}
	f.layerCount.Store(1)
	f.allowed.Store(maxLayers - 1)
	empty := []*downTrack{}
	f.downTracks.Store(&empty)
	return f
}

// setLayers records how many encodings the publisher's offer sends (1
// without simulcast), before its tracks attach.
func (f *forwarder) setLayers(n int) {
	n = min(max(n, 1), maxLayers)
	f.layerCount.Store(int32(n))
	f.simulcast.Store(n > 1)
}

// attach makes remote the source of layer i and forwards its packets until
// the remote track ends or another source is attached to that layer. It is
// called from pion's OnTrack; the read loop's goroutine ends when pc closes.
func (f *forwarder) attach(pc *webrtc.PeerConnection, remote *webrtc.TrackRemote, i int) {
	gen := f.generation.Add(1)
	l := &f.layers[i]
	l.source.Store(&trackSource{pc: pc, ssrc: remote.SSRC(), gen: gen})
	l.lastPLI.Store(0)
	f.requestKeyframe(i) // subscribers already bound need one from the new source
	go f.readLoop(remote, i, gen)
}

func (f *forwarder) readLoop(remote *webrtc.TrackRemote, i int, gen uint32) {
	l := &f.layers[i]
	buf := make([]byte, maxPacketSize)
	var h rtp.Header
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				f.log.Debug("published track ended", "stream", f.streamID, "kind", f.kind, "layer", i, "err", err)
			}
			return
		}
		if src := l.source.Load(); src == nil || src.gen != gen {
			return // a newer source took over (publisher reconnection)
		}
		f.receive(&h, buf[:n], i, gen)
	}
}

// receive handles one packet of layer i's source gen, as read: counts it,
// keeps it for retransmissions, notes a keyframe's size, and forwards it.
func (f *forwarder) receive(h *rtp.Header, raw []byte, i int, gen uint32) {
	hlen, err := h.Unmarshal(raw)
	if err != nil {
		f.stats.MalformedPackets.Add(1)
		return
	}
	l := &f.layers[i]
	f.stats.ReceivedPackets.Add(1)
	f.stats.ReceivedBytes.Add(uint64(len(raw)))
	l.bytes.Add(uint64(len(raw)))
	payload := raw[hlen:]
	// Liveness counts new media only: a browser retransmits the lost
	// packets of an encoding it stopped (NACKs), and pads its probes.
	newest := l.newest.Load()
	if padding := h.Padding && len(payload) > 0 && int(payload[len(payload)-1]) >= len(payload); !padding &&
		(uint32(newest>>32) != gen || seqNewer(h.SequenceNumber, uint16(newest))) {
		l.newest.Store(uint64(gen)<<32 | uint64(h.SequenceNumber))
		now := time.Now().UnixNano()
		if last := l.lastPacket.Swap(now); now-last >= int64(layerTimeout) {
			l.liveSince.Store(now)
		}
	}
	keyframe := false
	if l.rtx != nil {
		l.rtx.put(h.SequenceNumber, raw)
		if keyframe = isKeyframeStart(f.codec.MimeType, payload); keyframe {
			if w, ht, ok := vp8KeyframeSize(f.codec.MimeType, payload); ok {
				l.width.Store(w)
				l.height.Store(ht)
			}
		}
	}
	f.fanOut(h, payload, packetSource{layer: i, gen: gen, keyframe: keyframe})
}

// packetSource says where a received packet comes from: its layer, the
// generation of the layer's source, and whether it starts a keyframe.
type packetSource struct {
	layer    int
	gen      uint32
	keyframe bool
}

// fanOut writes one received packet to every subscriber, and counts what
// was forwarded once per packet rather than once per subscriber: the two
// shared atomic counters, updated per subscriber, took 8-9 ns of the 107 ns
// each forwarded packet cost in BenchmarkForwardPacket (BENCHMARKS.md,
// "Metrics overhead").
func (f *forwarder) fanOut(h *rtp.Header, payload []byte, src packetSource) {
	var packets, bytes uint64
	for _, dt := range *f.downTracks.Load() {
		if n := dt.write(h, payload, src); n > 0 {
			packets++
			bytes += uint64(n)
		}
	}
	if packets > 0 {
		f.stats.ForwardedPackets.Add(packets)
		f.stats.ForwardedBytes.Add(bytes)
	}
}

// requestKeyframe asks the publisher for a keyframe of layer i (PLI), at
// most once per keyframeInterval.
func (f *forwarder) requestKeyframe(i int) {
	if f.kind != webrtc.RTPCodecTypeVideo || i < 0 || i >= maxLayers {
		return
	}
	l := &f.layers[i]
	src := l.source.Load()
	if src == nil {
		return
	}
	now := time.Now().UnixNano()
	last := l.lastPLI.Load()
	if now-last < int64(keyframeInterval) || !l.lastPLI.CompareAndSwap(last, now) {
		return
	}
	err := src.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(src.ssrc)}})
	if err == nil {
		f.stats.KeyframeRequests.Add(1)
	}
}

// live reports which layers received a packet within layerTimeout of now
// (a browser stops sending an encoding its uplink cannot carry), and which
// of those have been arriving for layerStable at least.
func (f *forwarder) live(now time.Time) (live, stable [maxLayers]bool) {
	for i := range int(f.layerCount.Load()) {
		l := &f.layers[i]
		last := l.lastPacket.Load()
		live[i] = last != 0 && now.UnixNano()-last < int64(layerTimeout)
		stable[i] = live[i] && now.UnixNano()-l.liveSince.Load() >= int64(layerStable)
	}
	return live, stable
}

// layerStates returns each layer's bitrate (bits per second over the last
// rateWindow or more), keyframe size and liveness.
func (f *forwarder) layerStates(now time.Time) []mediaapi.Layer {
	live, _ := f.live(now)
	n := int(f.layerCount.Load())
	out := make([]mediaapi.Layer, n)
	f.rateMu.Lock()
	defer f.rateMu.Unlock()
	for i := range n {
		l, r := &f.layers[i], &f.rates[i]
		bytes := l.bytes.Load()
		if elapsed := now.Sub(r.at); r.at.IsZero() || elapsed >= rateWindow {
			if !r.at.IsZero() {
				r.bitrate = int(float64(bytes-r.bytes) * 8 / elapsed.Seconds())
				if live[i] && now.UnixNano()-l.liveSince.Load() >= int64(elapsed) && r.bitrate > 0 {
					r.live[r.liveNext] = r.bitrate
					r.liveNext = (r.liveNext + 1) % liveSamples
				}
			}
			r.at, r.bytes = now, bytes
		}
		out[i] = mediaapi.Layer{Bitrate: r.bitrate, Width: int(l.width.Load()), Height: int(l.height.Load()), Active: live[i]}
	}
	return out
}

// needs returns each layer's bitrate for the allocation of subscribers'
// budgets and the publisher's cap: the highest of its last liveSamples
// (and of the current one while it is live), so that neither the last
// second of a layer that is stopping nor what still trickles in once it
// stopped (retransmissions, padding) passes for its bitrate; nominal when
// never measured (layerNeeds). It also returns the figures, for the logs.
func (f *forwarder) needs(now time.Time) (need [maxLayers]float64, measured []int) {
	states := f.layerStates(now)
	measured = make([]int, len(states))
	f.rateMu.Lock()
	for i, l := range states {
		measured[i] = f.rates[i].lastLive()
		if l.Active {
			measured[i] = max(measured[i], l.Bitrate)
		}
	}
	f.rateMu.Unlock()
	return layerNeeds(measured), measured
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
