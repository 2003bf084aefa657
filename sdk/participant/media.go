package participant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// PublishOptions describe what a participant publishes.
type PublishOptions struct {
	Audio bool
	Video bool
	// VideoCodec is the MIME type of the video track (default VP8).
	VideoCodec string
	// Simulcast sends the video as len(SimulcastLayers) encodings, as
	// openvidu-browser does with videoSimulcast (VP8 only).
	Simulcast bool
}

// Publisher is the participant's published stream.
type Publisher struct {
	StreamID string
	mu       sync.Mutex
	pc       *webrtc.PeerConnection
	audio    *webrtc.TrackLocalStaticRTP
	// video holds the video track, or one track per simulcast encoding
	// (rids SimulcastLayers, lowest first).
	video []*webrtc.TrackLocalStaticRTP
	// rid is how simulcast packets name their encoding (the negotiated
	// mid and rid header extensions), replaced at each negotiation.
	rid  atomic.Pointer[ridExtensions]
	sent atomic.Uint64
	// renegotiation serialises reconnections of this stream.
	renegotiation sync.Mutex
	recovering    atomic.Bool
	steps         *Steps
	// keyframeWanted[i] is set when a keyframe request (PLI, FIR) for
	// video[i] arrived: SendSynthetic's next frame of it is a keyframe.
	keyframeWanted []atomic.Bool
}

// Steps are the publication's first negotiation: StepGather,
// StepPublishVideo, StepICE, StepConnected.
func (pub *Publisher) Steps() *Steps { return pub.steps }

// Publish negotiates a publisher peer connection (publishVideo) and waits
// until it connects.
func (p *Participant) Publish(ctx context.Context, opts PublishOptions) (*Publisher, error) {
	if opts.VideoCodec == "" {
		opts.VideoCodec = webrtc.MimeTypeVP8
	}
	steps := newSteps()
	pc, err := p.api.NewPeerConnection(p.peerConfig())
	if err != nil {
		return nil, err
	}
	pub := &Publisher{pc: pc, steps: steps}
	if opts.Audio {
		pub.audio, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "chorus")
	}
	if opts.Video {
		video := webrtc.RTPCodecCapability{MimeType: opts.VideoCodec, ClockRate: 90000}
		if !opts.Simulcast {
			tr, _ := webrtc.NewTrackLocalStaticRTP(video, "video", "chorus")
			pub.video = append(pub.video, tr)
		}
		for _, rid := range SimulcastLayers {
			if opts.Simulcast {
				tr, _ := webrtc.NewTrackLocalStaticRTP(video, "video", "chorus", webrtc.WithRTPStreamID(rid))
				pub.video = append(pub.video, tr)
			}
		}
	}
	pub.keyframeWanted = make([]atomic.Bool, len(pub.video))
	if err := pub.addTracks(pc); err != nil {
		_ = pc.Close()
		return nil, err
	}
	p.sendCandidates(pc, p.ConnectionID())
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	sdp, err := gather(ctx, pc, offer)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	steps.mark(StepGather)
	var res struct {
		SDPAnswer string `json:"sdpAnswer"`
		ID        string `json:"id"`
	}
	err = p.call(ctx, "publishVideo", map[string]any{
		"sdpOffer": sdp, "doLoopback": false, "hasAudio": opts.Audio, "hasVideo": opts.Video,
		"audioActive": opts.Audio, "videoActive": opts.Video, "typeOfVideo": "CAMERA", "frameRate": 30,
		"videoDimensions": `{"width":640,"height":360}`,
	}, &res)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("publishVideo: %w", err)
	}
	steps.mark(StepPublishVideo)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDPAnswer}); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("apply answer: %w", err)
	}
	pub.StreamID = res.ID
	pub.negotiated(pc)
	p.mu.Lock()
	p.pubs = append(p.pubs, pub)
	p.mu.Unlock()
	p.watchPublisher(pub, pc)
	if err := waitConnected(ctx, pc); err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	steps.mark(StepConnected)
	return pub, nil
}

// addTracks adds the publisher's tracks to pc, send-only: audio, then the
// video with its simulcast encodings.
func (pub *Publisher) addTracks(pc *webrtc.PeerConnection) error {
	if pub.audio != nil {
		if _, err := pc.AddTransceiverFromTrack(pub.audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			return err
		}
	}
	if len(pub.video) > 0 {
		tc, err := pc.AddTransceiverFromTrack(pub.video[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return err
		}
		for _, tr := range pub.video[1:] {
			if err := tc.Sender().AddEncoding(tr); err != nil {
				return fmt.Errorf("simulcast encoding %s: %w", tr.RID(), err)
			}
		}
	}
	return nil
}

// ridExtensions are the negotiated header extensions that name a
// simulcast packet's encoding (RFC 8852), and the video's mid.
type ridExtensions struct {
	midID, ridID uint8
	mid          string
}

// negotiated records, once pc's answer is applied, how simulcast packets
// name their encoding on it (pion's track writers do not add the mid and
// rid header extensions: a simulcast sender must).
//
// It also starts reading the video sender's feedback, per encoding, until
// pc closes: keyframe requests make SendSynthetic's next frame a keyframe,
// as a browser's encoder does.
func (pub *Publisher) negotiated(pc *webrtc.PeerConnection) {
	var ext ridExtensions
	for _, tc := range pc.GetTransceivers() {
		if tc.Sender() == nil || tc.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		pub.readFeedback(tc.Sender())
		if len(pub.video) < 2 {
			return
		}
		ext.mid = tc.Mid()
		for _, h := range tc.Sender().GetParameters().HeaderExtensions {
			switch h.URI {
			case sdp.SDESMidURI:
				ext.midID = uint8(h.ID)
			case sdp.SDESRTPStreamIDURI:
				ext.ridID = uint8(h.ID)
			}
		}
	}
	pub.rid.Store(&ext)
}

// readFeedback reads sender's RTCP, one goroutine per encoding (pion's
// interceptors see it that way too), until its peer connection closes, and
// marks the encodings whose keyframe was asked for.
func (pub *Publisher) readFeedback(sender *webrtc.RTPSender) {
	for i, tr := range pub.video {
		rid := tr.RID()
		go func() {
			for {
				var pkts []rtcp.Packet
				var err error
				if rid == "" {
					pkts, _, err = sender.ReadRTCP()
				} else {
					pkts, _, err = sender.ReadSimulcastRTCP(rid)
				}
				if err != nil {
					return // the peer connection closed
				}
				for _, pkt := range pkts {
					switch pkt.(type) {
					case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
						pub.keyframeWanted[i].Store(true)
					}
				}
			}
		}()
	}
}

// SendSynthetic sends synthetic media until ctx ends: video frames of the
// profile's size (a keyframe five times larger every two seconds, split into
// packets of at most 1100 bytes; with simulcast, one such stream per
// encoding, of prof.Layers()) and 20 ms Opus-sized audio packets. The
// payloads are not decodable: they exercise forwarding, not codecs (VP8
// payloads say which frames are keyframes, and their size).
func (pub *Publisher) SendSynthetic(ctx context.Context, prof VideoProfile) {
	var wg sync.WaitGroup
	profiles := []VideoProfile{prof}
	if len(pub.video) > 1 {
		profiles = prof.Layers()
	}
	for i, tr := range pub.video {
		wg.Add(1)
		go func() { defer wg.Done(); pub.sendVideo(ctx, tr, profiles[i], &pub.keyframeWanted[i]) }()
	}
	if pub.audio != nil {
		wg.Add(1)
		go func() { defer wg.Done(); pub.sendAudio(ctx) }()
	}
	wg.Wait()
}

// sendVideo sends track's frames; a keyframe every two seconds, and at
// once when keyframeWanted is set (a new group of pictures starts).
func (pub *Publisher) sendVideo(ctx context.Context, track *webrtc.TrackLocalStaticRTP, prof VideoProfile, keyframeWanted *atomic.Bool) {
	seq, ts := uint16(rand.UintN(1<<16)), rand.Uint32()
	payload := make([]byte, maxVideoPayload)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
	rid := []byte(track.RID())
	t := time.NewTicker(time.Second / time.Duration(prof.FPS))
	defer t.Stop()
	for frame := 0; ; frame++ {
		if keyframeWanted.Swap(false) {
			frame = 0
		}
		sizes := prof.FramePayloads(frame)
		for i, n := range sizes {
			prof.vp8Payload(payload[:n], frame, i)
			pkt.SequenceNumber, pkt.Timestamp, pkt.Marker = seq, ts, i == len(sizes)-1
			pkt.Payload = payload[:n]
			if ext := pub.rid.Load(); len(rid) > 0 && ext != nil {
				pkt.Extension, pkt.Extensions = false, pkt.Extensions[:0]
				_ = pkt.SetExtension(ext.midID, []byte(ext.mid))
				_ = pkt.SetExtension(ext.ridID, rid)
			}
			if err := track.WriteRTP(pkt); err != nil {
				return
			}
			seq++
			pub.sent.Add(1)
		}
		ts += uint32(90000 / prof.FPS)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (pub *Publisher) sendAudio(ctx context.Context) {
	seq, ts := uint16(rand.UintN(1<<16)), rand.Uint32()
	payload := make([]byte, AudioPacketBytes)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		payload[0] = 0xfc // an Opus TOC byte
		if err := pub.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: payload}); err != nil {
			return
		}
		seq++
		ts += 960
		pub.sent.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CandidatePair is the ICE candidate pair the publisher's current peer
// connection uses (an error before ICE selected one).
func (pub *Publisher) CandidatePair() (*webrtc.ICECandidatePair, error) {
	return selectedPair(pub.current())
}

// Sent is the number of RTP packets sent.
func (pub *Publisher) Sent() uint64 { return pub.sent.Load() }

// Reconnect replaces the publisher's peer connection with a new one for the
// same stream (reconnectStream), as openvidu-browser does after an ICE
// failure: the tracks move to the new connection, the old one is closed.
func (p *Participant) Reconnect(ctx context.Context, pub *Publisher) error {
	pub.renegotiation.Lock()
	defer pub.renegotiation.Unlock()
	pc, err := p.api.NewPeerConnection(p.peerConfig())
	if err != nil {
		return err
	}
	if err := pub.addTracks(pc); err != nil {
		_ = pc.Close()
		return err
	}
	p.sendCandidates(pc, p.ConnectionID())
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		_ = pc.Close()
		return err
	}
	sdp, err := gather(ctx, pc, offer)
	if err != nil {
		_ = pc.Close()
		return err
	}
	var res struct {
		SDPAnswer string `json:"sdpAnswer"`
		ID        string `json:"id"`
	}
	if err := p.call(ctx, "reconnectStream", map[string]any{"stream": pub.StreamID, "sdpString": sdp}, &res); err != nil {
		_ = pc.Close()
		return err
	}
	if res.ID != pub.StreamID {
		_ = pc.Close()
		return fmt.Errorf("reconnectStream changed the stream id from %s to %s", pub.StreamID, res.ID)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDPAnswer}); err != nil {
		_ = pc.Close()
		return err
	}
	pub.negotiated(pc)
	old := pub.swap(pc)
	_ = old.Close()
	p.watchPublisher(pub, pc)
	return waitConnected(ctx, pc)
}

// current returns the publisher's peer connection.
func (pub *Publisher) current() *webrtc.PeerConnection {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	return pub.pc
}

func (pub *Publisher) swap(pc *webrtc.PeerConnection) *webrtc.PeerConnection {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	old := pub.pc
	pub.pc = pc
	return old
}

func (pub *Publisher) close() {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	_ = pub.pc.Close()
}

// Subscription receives one remote stream and counts what arrives, across
// the peer connections that reconnections give it.
type Subscription struct {
	StreamID string

	mu        sync.Mutex
	pc        *webrtc.PeerConnection
	stats     SubscriptionStats
	last      map[webrtc.RTPCodecType]time.Time
	seqs      map[webrtc.RTPCodecType]uint16
	onPacket  PacketHandler
	videoSSRC atomic.Uint32
	// renegotiation serialises the subscription's own reconnections and the
	// server's (forciblyReconnectSubscriber).
	renegotiation sync.Mutex
	recovering    atomic.Bool
	steps         *Steps
}

// Steps are the subscription's first negotiation: StepPrepare, StepGather,
// StepReceiveVideo, StepICE, StepConnected (its first packet is in Stats).
func (s *Subscription) Steps() *Steps { return s.steps }

// SubscriptionStats count the packets of a subscription.
type SubscriptionStats struct {
	AudioPackets uint64
	VideoPackets uint64
	Bytes        uint64
	// Lost counts sequence-number gaps (packets never seen), both kinds.
	Lost uint64
	// FirstPacket is when the first packet arrived.
	FirstPacket time.Time
	// LastPacket is when the latest packet arrived.
	LastPacket time.Time
	// MaxGap is the longest time between two consecutive video packets (or
	// audio packets when there is no video).
	MaxGap time.Duration
	// Width is what the last VP8 keyframe received announced (0: none
	// yet): the simulcast layer a media node forwards this subscription.
	Width int
}

// PacketHandler receives every RTP packet of a subscription with its
// arrival time, from the track's read goroutine (one per track: audio and
// video concurrently). kind is the track's kind; a new peer connection
// (recovery after a media node crash) starts new sequence numbers and SSRCs.
type PacketHandler func(kind webrtc.RTPCodecType, pkt *rtp.Packet, at time.Time)

// SubscribeOptions tune a subscription.
type SubscribeOptions struct {
	// OnPacket, if set, receives every packet (a recorder's capture).
	OnPacket PacketHandler
}

// Subscribe receives a remote stream: the server offers
// (prepareReceiveVideoFrom), the participant answers (receiveVideoFrom).
func (p *Participant) Subscribe(ctx context.Context, streamID string) (*Subscription, error) {
	return p.SubscribeWith(ctx, streamID, SubscribeOptions{})
}

// RequestKeyframe sends a picture loss indication (RFC 4585 PLI) for the
// subscription's video; the media node forwards it to the publisher. An
// error before any video arrived.
func (s *Subscription) RequestKeyframe() error {
	ssrc := s.videoSSRC.Load()
	if ssrc == 0 {
		return errors.New("no video received yet")
	}
	return s.current().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

// SubscribeWith is Subscribe with options.
func (p *Participant) SubscribeWith(ctx context.Context, streamID string, opts SubscribeOptions) (*Subscription, error) {
	steps := newSteps()
	var prep struct {
		SDPOffer string `json:"sdpOffer"`
	}
	if err := p.call(ctx, "prepareReceiveVideoFrom", map[string]any{"sender": streamID, "reconnect": false}, &prep); err != nil {
		return nil, fmt.Errorf("prepareReceiveVideoFrom: %w", err)
	}
	steps.mark(StepPrepare)
	sub := &Subscription{StreamID: streamID, last: map[webrtc.RTPCodecType]time.Time{}, seqs: map[webrtc.RTPCodecType]uint16{},
		onPacket: opts.OnPacket, steps: steps}
	pc, err := p.answer(ctx, sub, prep.SDPOffer, "receiveVideoFrom", map[string]any{"sender": streamID}, "sdpAnswer")
	if err != nil {
		return nil, err
	}
	sub.pc = pc
	p.mu.Lock()
	p.subs[streamID] = sub
	p.mu.Unlock()
	p.watchSubscription(sub, pc)
	if err := waitConnected(ctx, pc); err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	steps.mark(StepConnected)
	return sub, nil
}

// answer makes a receiving peer connection from a server offer and sends
// its answer with method (params plus the answer under answerKey).
func (p *Participant) answer(ctx context.Context, sub *Subscription, offer, method string, params map[string]any, answerKey string) (*webrtc.PeerConnection, error) {
	pc, err := p.api.NewPeerConnection(p.peerConfig())
	if err != nil {
		return nil, err
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { sub.read(tr) })
	p.sendCandidates(pc, string(protocol.ConnectionOfStream(protocol.StreamID(sub.StreamID))))
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("apply offer: %w", err)
	}
	desc, err := pc.CreateAnswer(nil)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	sdp, err := gather(ctx, pc, desc)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	sub.steps.mark(StepGather)
	params[answerKey] = sdp
	if err := p.call(ctx, method, params, nil); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	sub.steps.mark(StepReceiveVideo)
	return pc, nil
}

// swap makes pc the subscription's peer connection and returns the old one.
func (s *Subscription) swap(pc *webrtc.PeerConnection) *webrtc.PeerConnection {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.pc
	s.pc = pc
	s.seqs = map[webrtc.RTPCodecType]uint16{} // another sender numbers its packets afresh
	return old
}

func (s *Subscription) current() *webrtc.PeerConnection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pc
}

func (s *Subscription) read(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var h rtp.Header
	kind := tr.Kind()
	if kind == webrtc.RTPCodecTypeVideo {
		s.videoSSRC.Store(uint32(tr.SSRC()))
	}
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		var hlen int
		if s.onPacket != nil {
			pkt := &rtp.Packet{}
			if err := pkt.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
				continue
			}
			s.onPacket(kind, pkt, now)
			h = pkt.Header
			hlen = n - len(pkt.Payload) - int(pkt.PaddingSize)
		} else if hlen, err = h.Unmarshal(buf[:n]); err != nil {
			continue
		}
		width, keyframe := 0, false
		if kind == webrtc.RTPCodecTypeVideo && hlen < n && buf[hlen]&0x10 != 0 {
			width, keyframe = KeyframeWidth(buf[hlen:n])
		}
		s.mu.Lock()
		st := &s.stats
		if keyframe {
			st.Width = width
		}
		if kind == webrtc.RTPCodecTypeVideo {
			st.VideoPackets++
		} else {
			st.AudioPackets++
		}
		st.Bytes += uint64(n)
		if st.FirstPacket.IsZero() {
			st.FirstPacket = now
		}
		st.LastPacket = now
		if prev, ok := s.last[kind]; ok {
			if gap := now.Sub(prev); gap > st.MaxGap && (kind == webrtc.RTPCodecTypeVideo || st.VideoPackets == 0) {
				st.MaxGap = gap
			}
			if last, ok := s.seqs[kind]; ok {
				if d := h.SequenceNumber - last; d > 1 && d < 0x8000 {
					st.Lost += uint64(d - 1)
				}
			}
		}
		s.last[kind], s.seqs[kind] = now, h.SequenceNumber
		s.mu.Unlock()
	}
}

// CandidatePair is the ICE candidate pair the subscription's current peer
// connection uses (an error before ICE selected one).
func (s *Subscription) CandidatePair() (*webrtc.ICECandidatePair, error) {
	return selectedPair(s.current())
}

func selectedPair(pc *webrtc.PeerConnection) (*webrtc.ICECandidatePair, error) {
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil {
		return nil, fmt.Errorf("selected candidate pair: %w", err)
	}
	if pair == nil {
		return nil, errors.New("no candidate pair selected yet")
	}
	return pair, nil
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Unsubscribe ends the subscription (unsubscribeFromVideo).
func (p *Participant) Unsubscribe(ctx context.Context, sub *Subscription) error {
	p.mu.Lock()
	delete(p.subs, sub.StreamID)
	p.mu.Unlock()
	sub.close()
	return p.call(ctx, "unsubscribeFromVideo", map[string]any{"sender": string(protocol.ConnectionOfStream(protocol.StreamID(sub.StreamID)))}, nil)
}

func (s *Subscription) close() { _ = s.current().Close() }

// MarshalJSON lets stats appear in test logs.
func (s SubscriptionStats) MarshalJSON() ([]byte, error) {
	type alias SubscriptionStats
	return json.Marshal(struct {
		alias
		MaxGapMS int64 `json:"maxGapMs"`
	}{alias(s), s.MaxGap.Milliseconds()})
}
