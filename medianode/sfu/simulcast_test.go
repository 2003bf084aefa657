package sfu

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

// vp8Packet is a VP8 payload with a full descriptor (15-bit picture id,
// TL0PICIDX, TID), the frame's first packet when start, a keyframe (with
// its size header) when key; tag marks the payload's origin.
func vp8Packet(start, key bool, pic uint16, tl0 uint8, tag byte) []byte {
	b := []byte{0x80, 0xe0, 0, 0, tl0, 0x20}
	if start {
		b[0] |= 0x10
	}
	binary.BigEndian.PutUint16(b[2:], 0x8000|pic)
	if key {
		// frame tag (P bit clear), start code, 320x180
		b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00)
	} else if start {
		b = append(b, 0x11, 0x02, 0x00)
	}
	return append(b, tag)
}

// recordingWriter keeps what a down track writes.
type recordingWriter struct{ pkts []rtp.Packet }

func (w *recordingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.pkts = append(w.pkts, rtp.Packet{Header: *h, Payload: bytes.Clone(payload)})
	return h.MarshalSize() + len(payload), nil
}
func (w *recordingWriter) Write(b []byte) (int, error) { return len(b), nil }

// simulcastSource feeds one layer of a forwarder as its read loop would.
type simulcastSource struct {
	fw    *forwarder
	layer int
	gen   uint32
	seq   uint16
	ts    uint32
	pic   uint16
	tl0   uint8
}

// frame sends one frame of n packets (a keyframe when key).
func (s *simulcastSource) frame(key bool, n int) {
	s.pic = (s.pic + 1) & 0x7fff
	s.tl0++
	s.ts += 3000
	for i := range n {
		s.seq++
		payload := vp8Packet(i == 0, key && i == 0, s.pic, s.tl0, byte(s.layer))
		raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: 100 + uint32(s.layer), Marker: i == n-1}, Payload: payload}).Marshal()
		var h rtp.Header
		s.fw.receive(&h, raw, s.layer, s.gen)
	}
}

func newSimulcastForwarder(layers int) (*forwarder, []*simulcastSource) {
	codec := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	fw := newForwarder(webrtc.RTPCodecTypeVideo, codec, "str_CAM_sim", 512, &Stats{}, slog.New(slog.DiscardHandler))
	fw.setLayers(layers)
	var srcs []*simulcastSource
	for i := range layers {
		// Each encoding numbers its packets and pictures from its own
		// random start, as a browser's do.
		srcs = append(srcs, &simulcastSource{fw: fw, layer: i, gen: fw.generation.Add(1), seq: uint16(1000 * (i + 7)), ts: uint32(77777 * (i + 1)), pic: uint16(3000 * (i + 1)), tl0: uint8(50 * i)})
	}
	return fw, srcs
}

func bindTestDownTrack(fw *forwarder) (*downTrack, *recordingWriter) {
	w := &recordingWriter{}
	dt := newDownTrack(fw, fw.stats, nil)
	dt.writer, dt.ssrc, dt.pt = w, 4242, 100
	dt.bound.Store(true)
	fw.addDownTrack(dt)
	return dt, w
}

// checkContinuity fails unless pkts number consecutively and their VP8
// picture ids never go back; it returns the layers (payload tags) seen in
// order, one entry per run.
func checkContinuity(t *testing.T, pkts []rtp.Packet) []byte {
	t.Helper()
	var runs []byte
	for i, p := range pkts {
		tag := p.Payload[len(p.Payload)-1]
		if len(runs) == 0 || runs[len(runs)-1] != tag {
			runs = append(runs, tag)
		}
		if p.SSRC != 4242 || p.PayloadType != 100 {
			t.Fatalf("packet %d: SSRC %d PT %d, want the subscriber's 4242/100", i, p.SSRC, p.PayloadType)
		}
		if i == 0 {
			continue
		}
		prev := pkts[i-1]
		if p.SequenceNumber != prev.SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, p.SequenceNumber, prev.SequenceNumber)
		}
		if d := p.Timestamp - prev.Timestamp; d > 90000 {
			t.Fatalf("packet %d: timestamp %d after %d (went back or jumped)", i, p.Timestamp, prev.Timestamp)
		}
		dp, _ := parseVP8Descriptor(p.Payload)
		dq, _ := parseVP8Descriptor(prev.Payload)
		if step := (dp.pictureID - dq.pictureID) & 0x7fff; step > 1 {
			t.Fatalf("packet %d: picture id %d after %d", i, dp.pictureID, dq.pictureID)
		}
		if step := dp.tl0 - dq.tl0; step > 1 {
			t.Fatalf("packet %d: TL0PICIDX %d after %d", i, dp.tl0, dq.tl0)
		}
	}
	return runs
}

// TestLayerSwitchesAtKeyframes: a down track starts on its target layer's
// first keyframe, keeps forwarding the current layer until the new
// target's keyframe, then only that; sequence numbers, timestamps, VP8
// picture ids and TL0PICIDX continue across every switch, a pause and a
// publisher's reconnection; NACKs are answered from the layer each packet
// was sent from, with the ids the subscriber saw, from the keyframe the
// current layer started at on.
func TestLayerSwitchesAtKeyframes(t *testing.T) {
	fw, src := newSimulcastForwarder(3)
	dt, w := bindTestDownTrack(fw)
	if dt.layer() != noLayer {
		t.Fatalf("a new simulcast down track forwards layer %d", dt.layer())
	}
	dt.setTarget(2)
	all := func(key bool) {
		for _, s := range src {
			s.frame(key, 3)
		}
	}
	all(false) // no keyframe yet: nothing to start from
	if len(w.pkts) != 0 {
		t.Fatalf("%d packets forwarded before a keyframe of the target layer", len(w.pkts))
	}
	src[0].frame(true, 2) // another layer's keyframe
	all(false)
	if len(w.pkts) != 0 {
		t.Fatalf("%d packets forwarded from a layer not targeted", len(w.pkts))
	}
	src[2].frame(true, 4)
	all(false)
	if dt.layer() != 2 || len(w.pkts) != 7 {
		t.Fatalf("layer %d, %d packets; want layer 2's keyframe and frame (7)", dt.layer(), len(w.pkts))
	}

	// Down to layer 0: layer 2 keeps flowing until layer 0's keyframe.
	dt.setTarget(0)
	all(false)
	if dt.layer() != 2 || len(w.pkts) != 10 {
		t.Fatalf("switched before a keyframe: layer %d, %d packets", dt.layer(), len(w.pkts))
	}
	src[1].frame(true, 2) // not the target
	src[0].frame(true, 2)
	all(false)
	if dt.layer() != 0 {
		t.Fatalf("layer %d after layer 0's keyframe", dt.layer())
	}
	sentBeforeUp := len(w.pkts)

	// Up to layer 1, then a pause and a resume on layer 1 again.
	dt.setTarget(1)
	src[1].frame(true, 3)
	all(false)
	dt.setTarget(noLayer)
	all(false)
	all(true)
	paused := len(w.pkts)
	if dt.layer() != noLayer {
		t.Fatalf("paused down track on layer %d", dt.layer())
	}
	dt.setTarget(1)
	src[1].frame(false, 2)
	src[1].frame(true, 2)

	// The publisher reconnects: layer 1 has a new source numbering
	// afresh; the subscriber's numbering goes on.
	src[1].gen, src[1].seq, src[1].pic, src[1].ts = fw.generation.Add(1), 9, 17, 5
	src[1].frame(true, 2)
	src[1].frame(false, 2)

	runs := checkContinuity(t, w.pkts)
	if want := []byte{2, 0, 1}; !bytes.Equal(runs, want) {
		t.Errorf("layers forwarded in order %v, want %v", runs, want)
	}
	if got := dt.switches.Load(); got != 3 {
		t.Errorf("%d switches counted, want 3 (2 to 0, 0 to 1, resumed on 1)", got)
	}
	if len(w.pkts) != paused+6 || sentBeforeUp >= paused {
		t.Errorf("%d packets, %d at the pause: want 6 more after it", len(w.pkts), paused)
	}

	// NACKs of packets sent before the keyframe the current layer
	// started at go unanswered: the subscriber's decoder no longer needs
	// them (and after a downswitch for congestion, resending the higher
	// layer's losses would prolong it).
	for _, i := range []int{1, 11, sentBeforeUp + 1, paused - 1} {
		n := len(w.pkts)
		if dt.retransmit([]uint16{w.pkts[i].SequenceNumber}); len(w.pkts) != n {
			t.Errorf("NACK of packet %d (seq %d), before the current layer's keyframe, answered", i, w.pkts[i].SequenceNumber)
			w.pkts = w.pkts[:n]
		}
	}
	// Since: answered from the layer's buffer with the subscriber's
	// numbering and picture ids, across the publisher's reconnection.
	for _, i := range []int{paused, paused + 1, len(w.pkts) - 1} {
		want := w.pkts[i]
		n := len(w.pkts)
		dt.retransmit([]uint16{want.SequenceNumber})
		if len(w.pkts) != n+1 {
			t.Fatalf("NACK of packet %d (seq %d) not answered", i, want.SequenceNumber)
		}
		got := w.pkts[n]
		if got.SequenceNumber != want.SequenceNumber || got.Timestamp != want.Timestamp || !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("NACK of packet %d: resent seq %d ts %d payload %x; sent seq %d ts %d payload %x",
				i, got.SequenceNumber, got.Timestamp, got.Payload, want.SequenceNumber, want.Timestamp, want.Payload)
		}
		w.pkts = w.pkts[:n]
	}
}

// TestSelectionFollowsLiveLayers: a simulcast down track targets the best
// layer arriving, moves down when it stops (a browser drops an encoding
// its uplink cannot carry) and back up when it returns.
func TestSelectionFollowsLiveLayers(t *testing.T) {
	fw, src := newSimulcastForwarder(3)
	dt, _ := bindTestDownTrack(fw)
	now := time.Now()
	for _, s := range src {
		s.frame(true, 1)
	}
	dt.selectLayer(now)
	if dt.target != 2 {
		t.Fatalf("target %d with every layer live, want 2", dt.target)
	}
	fw.layers[2].lastPacket.Store(now.Add(-2 * layerTimeout).UnixNano())
	dt.selectLayer(now)
	if dt.target != 1 {
		t.Fatalf("target %d with layer 2 silent, want 1", dt.target)
	}
	src[1].frame(true, 1)
	if dt.layer() != 1 {
		t.Fatalf("layer %d after layer 1's keyframe", dt.layer())
	}
	for i := range src {
		fw.layers[i].lastPacket.Store(now.Add(-2 * layerTimeout).UnixNano())
	}
	dt.selectLayer(now)
	if dt.target != 1 {
		t.Fatalf("target %d when nothing arrives, want the last one kept (1)", dt.target)
	}
	fw.layers[1].lastPacket.Store(now.UnixNano())
	fw.layers[2].lastPacket.Store(now.UnixNano())
	fw.layers[2].liveSince.Store(now.Add(-layerStable / 2).UnixNano())
	dt.selectLayer(now)
	if dt.target != 1 {
		t.Fatalf("target %d with layer 2 back for less than %v, want 1", dt.target, layerStable)
	}
	fw.layers[2].liveSince.Store(now.Add(-layerStable).UnixNano())
	dt.selectLayer(now)
	if dt.target != 2 {
		t.Fatalf("target %d with layer 2 back for %v, want 2", dt.target, layerStable)
	}
	states := fw.layerStates(now)
	if len(states) != 3 || states[0].Width != 320 || states[0].Height != 180 || states[0].Active || !states[2].Active {
		t.Errorf("layer states %+v", states)
	}
}

func TestLayerOrder(t *testing.T) {
	for _, tc := range []struct {
		rids []string
		want map[string]int
	}{
		{[]string{"rdiv4", "rdiv2", "rdiv1"}, map[string]int{"rdiv4": 0, "rdiv2": 1, "rdiv1": 2}},
		{[]string{"rdiv1", "rdiv2"}, map[string]int{"rdiv2": 0, "rdiv1": 1}},
		{[]string{"f", "q", "h"}, map[string]int{"q": 0, "h": 1, "f": 2}},
		{[]string{"lo", "mid", "hi"}, map[string]int{"lo": 0, "mid": 1, "hi": 2}},
		{[]string{"a", "b", "c", "d"}, map[string]int{"a": 0, "b": 1, "c": 2}},
		{nil, map[string]int{}},
	} {
		got := layerOrder(tc.rids)
		if len(got) != len(tc.want) {
			t.Errorf("layerOrder(%v) = %v, want %v", tc.rids, got, tc.want)
			continue
		}
		for rid, l := range tc.want {
			if got[rid] != l {
				t.Errorf("layerOrder(%v) = %v, want %v", tc.rids, got, tc.want)
			}
		}
	}
}

func TestIsKeyframeStart(t *testing.T) {
	for _, tc := range []struct {
		name, mime string
		payload    []byte
		want       bool
	}{
		{"vp8 keyframe", webrtc.MimeTypeVP8, vp8Packet(true, true, 5, 1, 0), true},
		{"vp8 delta frame", webrtc.MimeTypeVP8, vp8Packet(true, false, 5, 1, 0), false},
		{"vp8 keyframe continuation", webrtc.MimeTypeVP8, vp8Packet(false, false, 5, 1, 0), false},
		{"vp8 short descriptor", webrtc.MimeTypeVP8, []byte{0x10, 0x10}, true},
		{"vp8 truncated", webrtc.MimeTypeVP8, []byte{0x90, 0x80}, false},
		{"vp8 empty", webrtc.MimeTypeVP8, nil, false},
		{"h264 idr", webrtc.MimeTypeH264, []byte{0x65, 0x88}, true},
		{"h264 sps", webrtc.MimeTypeH264, []byte{0x67, 0x42}, true},
		{"h264 stap-a sps", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x0a, 0x67, 0x42}, true},
		{"h264 stap-a slice", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x0a, 0x41, 0x42}, false},
		{"h264 fu-a idr start", webrtc.MimeTypeH264, []byte{0x7c, 0x85}, true},
		{"h264 fu-a idr middle", webrtc.MimeTypeH264, []byte{0x7c, 0x05}, false},
		{"h264 slice", webrtc.MimeTypeH264, []byte{0x41, 0x9a}, false},
		{"opus", webrtc.MimeTypeOpus, []byte{0xfc}, false},
	} {
		if got := isKeyframeStart(tc.mime, tc.payload); got != tc.want {
			t.Errorf("%s: isKeyframeStart = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzVP8Descriptor: the descriptor parser never reads past the payload,
// and a rewrite by zero changes nothing while one by any delta changes
// only the picture id and TL0PICIDX.
func FuzzVP8Descriptor(f *testing.F) {
	f.Add(vp8Packet(true, true, 300, 7, 1), uint16(5), uint8(3))
	f.Add([]byte{0x90, 0x80, 0x05, 0x00}, uint16(1), uint8(1))
	f.Add([]byte{0x90, 0x40, 0x05}, uint16(0), uint8(200))
	f.Fuzz(func(t *testing.T, payload []byte, picDelta uint16, tl0Delta uint8) {
		d, ok := parseVP8Descriptor(payload)
		if !ok {
			return
		}
		if d.size > len(payload) {
			t.Fatalf("descriptor of %d bytes in a payload of %d", d.size, len(payload))
		}
		buf := make([]byte, maxPacketSize+len(payload))
		if same := rewriteVP8(buf, payload, d, 0, 0); !bytes.Equal(same, payload) {
			t.Fatalf("rewrite by zero changed %x into %x", payload, same)
		}
		out := rewriteVP8(buf, payload, d, picDelta, tl0Delta)
		e, ok := parseVP8Descriptor(out)
		if !ok || e.size != d.size || !bytes.Equal(out[d.size:], payload[d.size:]) {
			t.Fatalf("rewrite changed the descriptor's shape or the payload: %x into %x", payload, out)
		}
		mask := uint16(0x7fff)
		if d.picBits == 7 {
			mask = 0x7f
		}
		if d.picBits != 0 && e.pictureID != (d.pictureID+picDelta)&mask {
			t.Fatalf("picture id %d + %d rewritten as %d", d.pictureID, picDelta, e.pictureID)
		}
		if d.tl0Offset != 0 && e.tl0 != d.tl0+tl0Delta {
			t.Fatalf("TL0PICIDX %d + %d rewritten as %d", d.tl0, tl0Delta, e.tl0)
		}
	})
}

// simulcastPeer is a pion peer publishing three encodings the way
// openvidu-browser names them (rdiv4, rdiv2, rdiv1).
type simulcastPeer struct {
	pc           *webrtc.PeerConnection
	layers       []*webrtc.TrackLocalStaticRTP
	midID, ridID uint8
	mid          string
	// remb is the last REMB the node sent (bits per second), rembs how
	// many it sent.
	remb, rembs atomic.Uint64
}

// publishSimulcast publishes a simulcast peer's offer on s (reconnect:
// reconnectStream of an existing stream) and applies the node's answer.
func publishSimulcast(t *testing.T, ctx context.Context, s *SFU, sid, stream string, reconnect bool) *simulcastPeer {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	p := &simulcastPeer{pc: pc}
	for _, rid := range []string{"rdiv4", "rdiv2", "rdiv1"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", stream, webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		p.layers = append(p.layers, tr)
	}
	sender, err := pc.AddTrack(p.layers[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range p.layers[1:] {
		if err := sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				if r, ok := pkt.(*rtcp.ReceiverEstimatedMaximumBitrate); ok {
					p.remb.Store(uint64(r.Bitrate))
					p.rembs.Add(1)
				}
			}
		}
	}()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := s.Publish(ctx, mediaapi.PublishRequest{SessionID: sid, StreamID: stream, SDPOffer: gathered(t, pc, offer), VideoCodec: CodecVP8, Reconnect: reconnect})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if !strings.Contains(answer, "a=simulcast:recv") {
		t.Fatalf("the answer does not take simulcast:\n%s", answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	for _, ext := range sender.GetParameters().HeaderExtensions {
		switch ext.URI {
		case sdp.SDESMidURI:
			p.midID = uint8(ext.ID)
		case sdp.SDESRTPStreamIDURI:
			p.ridID = uint8(ext.ID)
		}
	}
	for _, tc := range pc.GetTransceivers() {
		if tc.Sender() == sender {
			p.mid = tc.Mid()
		}
	}
	return p
}

// TestSimulcastPublisher: a pion peer publishes three encodings; the node
// answers with simulcast, forwards a subscriber the best one, lists the
// layers, moves the subscriber down when the best one stops and back up
// when it returns; the publisher reconnects (reconnectStream: new SSRCs,
// sequence numbers and picture ids) and the subscriber goes on. Its
// sequence numbers never jump.
func TestSimulcastPublisher(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := newTestSFU(t)
	const sid, stream = "ses_S", "str_CAM_sim_con_pub"
	var peer atomic.Pointer[simulcastPeer]
	peer.Store(publishSimulcast(t, ctx, s, sid, stream, false))

	var stopped [3]atomic.Bool
	defer sendSimulcast(ctx, &peer, &stopped)()

	sub := subscribe(t, ctx, s, sid, "con_sub_"+stream, stream)
	endpoint := func(id string) mediaapi.Endpoint {
		for _, e := range s.Endpoints() {
			if e.ID == id {
				return e
			}
		}
		return mediaapi.Endpoint{}
	}
	waitFor(t, "the subscriber to receive the best layer", func() bool { return sub.videoTag.Load() == 2 })
	if pub := endpoint(stream); len(pub.Layers) != 3 || !pub.Layers[0].Active || !pub.Layers[2].Active || pub.Layers[0].Width != 320 {
		t.Errorf("publisher endpoint %+v: want 3 active layers, 320 wide at the bottom", pub)
	}
	if e := endpoint("con_sub_" + stream); e.Layer == nil || *e.Layer != 2 {
		t.Errorf("subscriber endpoint %+v: want layer 2", e)
	}

	stopped[2].Store(true)
	start := time.Now()
	waitFor(t, "the subscriber to move to layer 1", func() bool { return sub.videoTag.Load() == 1 })
	t.Logf("moved to layer 1 %v after layer 2 stopped", time.Since(start).Round(time.Millisecond))
	stopped[2].Store(false)
	waitFor(t, "the subscriber to move back to layer 2", func() bool { return sub.videoTag.Load() == 2 })

	// reconnectStream: a new peer connection for the same stream.
	before := sub.video.Load()
	old := peer.Load()
	peer.Store(publishSimulcast(t, ctx, s, sid, stream, true))
	_ = old.pc.Close()
	waitFor(t, "video from the reconnected publisher", func() bool { return sub.video.Load() > before+50 && sub.videoTag.Load() == 2 })

	received := sub.video.Load()
	prev, gaps := -1, 0
	for range received {
		select {
		case seq := <-sub.videoSeqs:
			if prev >= 0 && uint16(prev+1) != seq {
				gaps++
			}
			prev = int(seq)
		default:
		}
	}
	if gaps > 0 {
		t.Errorf("%d jumps in the subscriber's %d sequence numbers across the switches and the reconnection", gaps, received)
	}
}

// sendSimulcast sends the encodings of the peer in peer, except those
// stopped, until the returned function is called: each a frame every
// 20 ms, a keyframe every 10; a new peer starts its own numbering.
func sendSimulcast(ctx context.Context, peer *atomic.Pointer[simulcastPeer], stopped *[3]atomic.Bool) (stop func()) {
	sendCtx, stopSending := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var cur *simulcastPeer
		var srcs []*simulcastSource
		for frame := 0; sendCtx.Err() == nil; frame++ {
			if p := peer.Load(); p != cur {
				cur, srcs = p, nil
				for i := range 3 {
					srcs = append(srcs, &simulcastSource{layer: i, seq: uint16(100*i + frame), pic: uint16(1000*i + frame)})
				}
			}
			for i, tr := range cur.layers {
				if stopped[i].Load() {
					continue
				}
				src := srcs[i]
				src.seq++
				src.pic++
				src.ts += 1800
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: src.seq, Timestamp: src.ts, Marker: true},
					Payload: vp8Packet(true, frame%10 == 0, src.pic, 0, byte(i))}
				_ = pkt.SetExtension(cur.midID, []byte(cur.mid))
				_ = pkt.SetExtension(cur.ridID, []byte(tr.RID()))
				_ = tr.WriteRTP(pkt)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() { stopSending(); wg.Wait() }
}

// TestPublisherLayerCap: a simulcast publisher nobody subscribes to is
// told by REMB, after capHold, to send its lowest layer only; a
// subscriber that needs the best layer lifts the cap at once.
func TestPublisherLayerCap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := newTestSFUWith(t, Config{CapUnusedLayers: true})
	const sid, stream = "ses_C", "str_CAM_cap_con_pub"
	var peer atomic.Pointer[simulcastPeer]
	peer.Store(publishSimulcast(t, ctx, s, sid, stream, false))
	var stopped [3]atomic.Bool
	defer sendSimulcast(ctx, &peer, &stopped)()
	p := peer.Load()

	start := time.Now()
	waitFor(t, "a REMB capping the publisher", func() bool { return p.rembs.Load() > 0 })
	took := time.Since(start)
	if took < capHold-capInterval {
		t.Errorf("capped %v after publishing, before capHold (%v)", took, capHold)
	}
	// The lowest layer's bitrate with headroom, at least capMinBitrate.
	if r := p.remb.Load(); r < capMinBitrate || r > 200_000 {
		t.Errorf("REMB %d bit/s, want the lowest layer's (under 200 kbit/s)", r)
	}
	if n := s.Stats().LayersCapped.Load(); n != 2 {
		t.Errorf("%d layers capped, want 2", n)
	}

	sub := subscribe(t, ctx, s, sid, "con_sub_"+stream, stream)
	waitFor(t, "the cap to be lifted", func() bool { return p.remb.Load() > uncappedBitrate*0.99 }) // REMB rounds to its 18-bit mantissa
	if n := s.Stats().LayersCapped.Load(); n != 0 {
		t.Errorf("%d layers capped with a subscriber needing them all, want 0", n)
	}
	waitFor(t, "the subscriber to receive the best layer", func() bool { return sub.videoTag.Load() == 2 })

	// The publisher leaves: its cap loop ends (goleak) and the gauge is
	// back to 0.
	s.Release(sid, stream)
	waitFor(t, "no layer capped", func() bool { return s.Stats().LayersCapped.Load() == 0 })
}
