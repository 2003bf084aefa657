// Package sfu is Chorus's selective forwarding unit: pion peer connections, one
// per published stream and one per subscription (OpenVidu 2's model), with
// RTP forwarded from each publisher to its subscribers without transcoding.
// VP8, H.264 and Opus are forwarded; subscribers' keyframe requests go to the
// publisher, their NACKs are answered from a per-track retransmission buffer.
package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

// Errors returned by the SFU. The node's API maps them to HTTP statuses.
var (
	ErrBadSDP          = errors.New("invalid SDP")
	ErrCodecNotOffered = errors.New("the offer does not include the session's codec")
	ErrEndpointExists  = errors.New("endpoint already exists")
	ErrUnknownEndpoint = errors.New("unknown endpoint")
	ErrUnknownStream   = errors.New("unknown stream")
	ErrClosed          = errors.New("sfu closed")
)

// Config configures an SFU.
type Config struct {
	Engine EngineConfig
	// RetransmissionBuffer is the number of packets kept per video track (a
	// power of two).
	RetransmissionBuffer int
	// CapUnusedLayers caps each simulcast publisher to the layers its
	// subscribers need (layerCap).
	CapUnusedLayers bool
	// GatherTimeout bounds ICE gathering (instant with a UDP mux).
	GatherTimeout time.Duration
	Logger        *slog.Logger
}

// SFU owns every peer connection of a media node.
type SFU struct {
	cfg   Config
	eng   *engine
	log   *slog.Logger
	stats Stats

	mu       sync.Mutex
	closed   bool
	sessions map[string]*room
	// lingering are peer connections released with their consent revoked
	// (no longer in any room), kept open for revokedLinger so that their
	// clients' next connectivity check meets the refusal: a browser that
	// gets the node's DTLS close_notify first stops checking, and only
	// notices the silence 5-7 s later.
	lingering map[*webrtc.PeerConnection]struct{}
}

// revokedLinger is how long a peer connection released with its consent
// revoked stays open: longer than a browser's interval between consent
// checks on a working connection (2.5 s in Chrome).
const revokedLinger = 4 * time.Second

// room holds one session's endpoints.
type room struct {
	publishers  map[string]*publisher  // by stream id
	subscribers map[string]*subscriber // by endpoint id
}

type publisher struct {
	streamID     string
	sessionID    string
	connectionID string // "" when the master did not say
	video        webrtc.RTPCodecParameters
	pc           *webrtc.PeerConnection
	forwarders   map[webrtc.RTPCodecType]*forwarder
	// uplink follows pc's receiver reports; level is the connection's
	// network quality level at the last NetworkQuality call (-1: none).
	uplink *uplinkMeter
	level  int
}

type subscriber struct {
	id           string
	sessionID    string
	streamID     string
	connectionID string // the subscribing connection; "" when the master did not say
	pc           *webrtc.PeerConnection
	downTracks   []*downTrack
}

// New returns an SFU using the given UDP socket for all media, and the
// given TCP listener, if any, for ICE-TCP (see EngineConfig).
func New(cfg Config) (*SFU, error) {
	if cfg.RetransmissionBuffer == 0 {
		cfg.RetransmissionBuffer = 512
	}
	if cfg.GatherTimeout == 0 {
		cfg.GatherTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Engine.LoggerFactory == nil {
		cfg.Engine.LoggerFactory = SlogFactory{Logger: cfg.Logger}
	}
	eng, err := newEngine(cfg.Engine)
	if err != nil {
		return nil, err
	}
	return &SFU{cfg: cfg, eng: eng, log: cfg.Logger, sessions: map[string]*room{},
		lingering: map[*webrtc.PeerConnection]struct{}{}}, nil
}

// Stats returns the SFU's counters.
func (s *SFU) Stats() *Stats { return &s.stats }

func (s *SFU) roomLocked(sid string) *room {
	r := s.sessions[sid]
	if r == nil {
		r = &room{publishers: map[string]*publisher{}, subscribers: map[string]*subscriber{}}
		s.sessions[sid] = r
	}
	return r
}

// Publish creates a publisher endpoint from the browser's offer and returns
// the answer. With req.Reconnect, an existing endpoint of the same stream
// gets a new peer connection and its subscribers keep receiving.
func (s *SFU) Publish(ctx context.Context, req mediaapi.PublishRequest) (string, error) {
	video, err := videoCodec(req.VideoCodec)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	kinds, rids, err := offeredKinds(req.SDPOffer, video)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", ErrClosed
	}
	pub := s.roomLocked(req.SessionID).publishers[req.StreamID]
	if pub != nil && !req.Reconnect {
		s.mu.Unlock()
		return "", ErrEndpointExists
	}
	if pub == nil {
		pub = &publisher{streamID: req.StreamID, sessionID: req.SessionID, connectionID: req.ConnectionID, video: video,
			forwarders: map[webrtc.RTPCodecType]*forwarder{}, level: -1}
	}
	for _, kind := range kinds {
		if pub.forwarders[kind] == nil {
			codec := opusCodec
			if kind == webrtc.RTPCodecTypeVideo {
				codec = pub.video
			}
			pub.forwarders[kind] = newForwarder(kind, codec, req.StreamID, s.cfg.RetransmissionBuffer, &s.stats, s.log)
		}
	}
	forwarders := pub.forwarders
	layerOf := layerOrder(rids)
	if fw := forwarders[webrtc.RTPCodecTypeVideo]; fw != nil {
		fw.setLayers(len(layerOf))
	}
	s.mu.Unlock()

	uplink := newUplinkMeter()
	capped := s.cfg.CapUnusedLayers && len(layerOf) > 1
	api, err := s.eng.publisherAPI(pub.video, &reportTap{m: uplink}, capped)
	if err != nil {
		return "", err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", fmt.Errorf("create peer connection: %w", err)
	}
	pc.OnTrack(func(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		go drainRTCP(recv, remote.RID())
		fw := forwarders[remote.Kind()]
		if fw == nil {
			return
		}
		layer := 0
		if rid := remote.RID(); rid != "" {
			var ok bool
			if layer, ok = layerOf[rid]; !ok {
				s.log.Debug("simulcast encoding not forwarded", "stream", req.StreamID, "rid", rid)
				return
			}
		}
		fw.attach(pc, remote, layer)
	})
	// A simulcast publisher is capped to the layers its subscribers need
	// while this peer connection lives (layerCap).
	var stopCap chan struct{}
	if fw := forwarders[webrtc.RTPCodecTypeVideo]; fw != nil && capped {
		stopCap = make(chan struct{})
	}
	s.watchState(pc, "publisher", req.StreamID, stopCap)
	answer, err := s.negotiateAnswer(ctx, pc, req.SDPOffer)
	if err != nil {
		_ = pc.Close()
		return "", err
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = pc.Close()
		return "", ErrClosed
	}
	r := s.roomLocked(req.SessionID)
	if cur := r.publishers[req.StreamID]; cur != nil && cur != pub {
		// Released and re-created concurrently: keep the newer one.
		s.mu.Unlock()
		_ = pc.Close()
		return "", ErrEndpointExists
	}
	old := pub.pc
	pub.pc, pub.uplink = pc, uplink
	r.publishers[req.StreamID] = pub
	s.mu.Unlock()
	if stopCap != nil {
		go forwarders[webrtc.RTPCodecTypeVideo].runLayerCap(pc, stopCap)
	}
	if old != nil {
		_ = old.Close()
	}
	return answer, nil
}

func (s *SFU) negotiateAnswer(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: create answer: %w", ErrBadSDP, err)
	}
	if err := s.setLocalAndGather(ctx, pc, answer); err != nil {
		return "", err
	}
	return pc.LocalDescription().SDP, nil
}

func (s *SFU) setLocalAndGather(ctx context.Context, pc *webrtc.PeerConnection, desc webrtc.SessionDescription) error {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return fmt.Errorf("set local description: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.GatherTimeout)
	defer cancel()
	select {
	case <-gathered:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ICE gathering: %w", ctx.Err())
	}
}

// Subscribe creates a subscriber endpoint for a published stream and returns
// the node's offer; Answer completes it. With req.Reconnect an existing
// endpoint of the same id is replaced.
func (s *SFU) Subscribe(ctx context.Context, req mediaapi.SubscribeRequest) (string, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", ErrClosed
	}
	r := s.roomLocked(req.SessionID)
	pub := r.publishers[req.StreamID]
	if pub == nil {
		s.mu.Unlock()
		return "", ErrUnknownStream
	}
	if r.subscribers[req.EndpointID] != nil && !req.Reconnect {
		s.mu.Unlock()
		return "", ErrEndpointExists
	}
	forwarders := make([]*forwarder, 0, 2)
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if fw := pub.forwarders[kind]; fw != nil {
			forwarders = append(forwarders, fw)
		}
	}
	video := pub.video
	s.mu.Unlock()

	// A subscription to simulcast video estimates its bandwidth, to
	// choose the layer (see downTrack).
	var bwe *subscriberBWE
	for _, fw := range forwarders {
		if fw.kind == webrtc.RTPCodecTypeVideo && fw.simulcast.Load() {
			var err error
			if bwe, err = newSubscriberBWE(s.eng.logs); err != nil {
				return "", err
			}
		}
	}
	api, err := s.eng.subscriberAPI(video, bwe)
	if err == nil {
		var pc *webrtc.PeerConnection
		if pc, err = api.NewPeerConnection(webrtc.Configuration{}); err == nil {
			return s.subscribe(ctx, req, pc, forwarders, bwe) // the peer connection closes bwe
		}
		err = fmt.Errorf("create peer connection: %w", err)
	}
	if bwe != nil {
		_ = bwe.Close()
	}
	return "", err
}

// subscribe completes Subscribe once the subscriber's peer connection
// exists: it closes pc on failure.
func (s *SFU) subscribe(ctx context.Context, req mediaapi.SubscribeRequest, pc *webrtc.PeerConnection, forwarders []*forwarder, bwe *subscriberBWE) (string, error) {
	sub := &subscriber{id: req.EndpointID, sessionID: req.SessionID, streamID: req.StreamID, connectionID: req.ConnectionID, pc: pc}
	for _, fw := range forwarders {
		var dtBWE *subscriberBWE
		if fw.kind == webrtc.RTPCodecTypeVideo {
			dtBWE = bwe
		}
		dt := newDownTrack(fw, &s.stats, dtBWE)
		tr, err := pc.AddTransceiverFromTrack(dt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = pc.Close()
			return "", fmt.Errorf("add %s track: %w", fw.kind, err)
		}
		sub.downTracks = append(sub.downTracks, dt)
		go readSenderRTCP(tr.Sender(), dt)
	}
	s.watchState(pc, "subscriber", req.EndpointID, nil)
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		_ = pc.Close()
		return "", fmt.Errorf("create offer: %w", err)
	}
	if err := s.setLocalAndGather(ctx, pc, offer); err != nil {
		_ = pc.Close()
		return "", err
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = pc.Close()
		return "", ErrClosed
	}
	r := s.roomLocked(req.SessionID)
	if r.publishers[req.StreamID] == nil { // the publisher left meanwhile
		s.mu.Unlock()
		_ = pc.Close()
		return "", ErrUnknownStream
	}
	old := r.subscribers[req.EndpointID]
	r.subscribers[req.EndpointID] = sub
	s.mu.Unlock()
	if old != nil {
		_ = old.pc.Close()
	}
	return pc.LocalDescription().SDP, nil
}

// Answer applies a subscriber's SDP answer.
func (s *SFU) Answer(ctx context.Context, sessionID, endpointID, sdp string) error {
	s.mu.Lock()
	var sub *subscriber
	if r := s.sessions[sessionID]; r != nil {
		sub = r.subscribers[endpointID]
	}
	s.mu.Unlock()
	if sub == nil {
		return ErrUnknownEndpoint
	}
	if err := sub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	return nil
}

// AddICECandidate adds a client's candidate to an endpoint's peer connection.
// (The node is ICE-lite: remote candidates are optional, the browser's
// connectivity checks reveal its address.)
func (s *SFU) AddICECandidate(sessionID, endpointID string, c mediaapi.ICECandidate) error {
	pc := s.peerConnection(sessionID, endpointID)
	if pc == nil {
		return ErrUnknownEndpoint
	}
	if c.Candidate == "" {
		return nil // end-of-candidates
	}
	err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
	if err != nil {
		return fmt.Errorf("%w: candidate: %w", ErrBadSDP, err)
	}
	return nil
}

func (s *SFU) peerConnection(sessionID, endpointID string) *webrtc.PeerConnection {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.sessions[sessionID]
	if r == nil {
		return nil
	}
	if p := r.publishers[endpointID]; p != nil {
		return p.pc
	}
	if sub := r.subscribers[endpointID]; sub != nil {
		return sub.pc
	}
	return nil
}

// Release closes an endpoint. Releasing a publisher also releases every
// subscriber of its stream. Unknown endpoints are ignored.
func (s *SFU) Release(sessionID, endpointID string) {
	var toClose []*webrtc.PeerConnection
	s.mu.Lock()
	if r := s.sessions[sessionID]; r != nil {
		if p := r.publishers[endpointID]; p != nil {
			delete(r.publishers, endpointID)
			toClose = append(toClose, p.pc)
			for id, sub := range r.subscribers {
				if sub.streamID == endpointID {
					delete(r.subscribers, id)
					toClose = append(toClose, sub.pc)
				}
			}
		}
		if sub := r.subscribers[endpointID]; sub != nil {
			delete(r.subscribers, endpointID)
			toClose = append(toClose, sub.pc)
		}
		if len(r.publishers) == 0 && len(r.subscribers) == 0 {
			delete(s.sessions, sessionID)
		}
	}
	s.mu.Unlock()
	closeAll(toClose)
}

// ReleaseSession closes every endpoint of a session. With revokeConsent
// (the session moved to another node while its clients still use this
// one), their connectivity checks are refused so that they notice at once
// (see consentGate), and the peer connections close revokedLinger later.
func (s *SFU) ReleaseSession(sessionID string, revokeConsent bool) {
	s.mu.Lock()
	r := s.sessions[sessionID]
	delete(s.sessions, sessionID)
	s.mu.Unlock()
	if r == nil {
		return
	}
	if revokeConsent {
		s.revokeConsent(r.peerConnections())
		return
	}
	closeAll(r.peerConnections())
}

// revokeConsent has the node refuse the connectivity checks of peer
// connections no room holds any more (consentGate), and closes them
// revokedLinger later (or at Close). They stay open meanwhile: a closed
// one would close its ICE-TCP connections, and a browser keeps a closed
// TCP pair "connected" for 5 s in case it reconnects, where a refused
// check fails the pair at once; Go clients, which ignore the refusal,
// keep their media until they moved.
func (s *SFU) revokeConsent(pcs []*webrtc.PeerConnection) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		closeAll(pcs)
		return
	}
	for _, pc := range pcs {
		s.lingering[pc] = struct{}{}
	}
	s.mu.Unlock()
	for _, pc := range pcs {
		params, err := pc.SCTP().Transport().ICETransport().GetLocalParameters()
		if err != nil {
			continue // not negotiated: nothing checks it
		}
		ufrag := params.UsernameFragment
		s.eng.gate.revoke(ufrag, params.Password, func() {
			s.log.Debug("connectivity check refused: the peer connection moved away", "ufrag", ufrag)
		})
	}
	time.AfterFunc(revokedLinger, func() { s.closeLingering(pcs) })
}

// closeLingering closes those of pcs that still linger.
func (s *SFU) closeLingering(pcs []*webrtc.PeerConnection) {
	s.mu.Lock()
	var toClose []*webrtc.PeerConnection
	for _, pc := range pcs {
		if _, ok := s.lingering[pc]; ok {
			delete(s.lingering, pc)
			toClose = append(toClose, pc)
		}
	}
	s.mu.Unlock()
	closeAll(toClose)
}

// WaitLingering waits until every peer connection released with its
// consent revoked is closed (revokedLinger at most) or ctx ends: a node
// stopping after a drain keeps refusing its former clients' checks until
// they noticed.
func (s *SFU) WaitLingering(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.lingering)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// CloseAll closes every endpoint; the SFU keeps accepting new ones.
func (s *SFU) CloseAll() {
	s.mu.Lock()
	var toClose []*webrtc.PeerConnection
	for _, r := range s.sessions {
		toClose = append(toClose, r.peerConnections()...)
	}
	s.sessions = map[string]*room{}
	s.mu.Unlock()
	closeAll(toClose)
	if err := s.eng.close(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Warn("close the ICE-TCP port", "err", err)
	}
}

// Close closes every endpoint and the ICE-TCP port (waiting for its
// connections' goroutines); the SFU accepts no new endpoints.
func (s *SFU) Close() {
	s.mu.Lock()
	s.closed = true
	var toClose []*webrtc.PeerConnection
	for _, r := range s.sessions {
		toClose = append(toClose, r.peerConnections()...)
	}
	for pc := range s.lingering {
		toClose = append(toClose, pc)
	}
	s.sessions = map[string]*room{}
	s.lingering = map[*webrtc.PeerConnection]struct{}{}
	s.mu.Unlock()
	closeAll(toClose)
	if err := s.eng.close(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Warn("close the ICE-TCP port", "err", err)
	}
}

func (r *room) peerConnections() []*webrtc.PeerConnection {
	var out []*webrtc.PeerConnection
	for _, p := range r.publishers {
		out = append(out, p.pc)
	}
	for _, sub := range r.subscribers {
		out = append(out, sub.pc)
	}
	return out
}

// Endpoints lists every endpoint, sorted by session and id.
func (s *SFU) Endpoints() []mediaapi.Endpoint {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mediaapi.Endpoint
	for sid, r := range s.sessions {
		for id, p := range r.publishers {
			e := mediaapi.Endpoint{ID: id, SessionID: sid, Kind: "publisher", StreamID: id, State: p.pc.ConnectionState().String()}
			if fw := p.forwarders[webrtc.RTPCodecTypeVideo]; fw != nil && fw.simulcast.Load() {
				e.Layers = fw.layerStates(now)
			}
			out = append(out, e)
		}
		for id, sub := range r.subscribers {
			e := mediaapi.Endpoint{ID: id, SessionID: sid, Kind: "subscriber", StreamID: sub.streamID, State: sub.pc.ConnectionState().String()}
			for _, dt := range sub.downTracks {
				if dt.fw.kind == webrtc.RTPCodecTypeVideo && dt.fw.simulcast.Load() {
					layer := dt.layer()
					e.Layer = &layer
				}
			}
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].SessionID != out[j].SessionID {
			return out[i].SessionID < out[j].SessionID
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Counts returns the number of sessions and of endpoints.
func (s *SFU) Counts() (sessions, endpoints int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.sessions {
		endpoints += len(r.publishers) + len(r.subscribers)
	}
	return len(s.sessions), endpoints
}

// watchState logs pc's state changes, and closes closed (if not nil) when
// pc closes.
func (s *SFU) watchState(pc *webrtc.PeerConnection, kind, id string, closed chan struct{}) {
	var once sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("peer connection state", "kind", kind, "endpoint", id, "state", st.String())
		if st == webrtc.PeerConnectionStateClosed && closed != nil {
			once.Do(func() { close(closed) })
		}
	})
}

func closeAll(pcs []*webrtc.PeerConnection) {
	for _, pc := range pcs {
		if pc != nil {
			_ = pc.Close()
		}
	}
}

// drainRTCP reads a receiver's incoming RTCP so pion's interceptors see it
// (sender reports feed the receiver reports), of the simulcast encoding
// rid if not ""; it ends when the peer connection closes.
func drainRTCP(recv *webrtc.RTPReceiver, rid string) {
	buf := make([]byte, maxPacketSize)
	for {
		var err error
		if rid == "" {
			_, _, err = recv.Read(buf)
		} else {
			_, _, err = recv.ReadSimulcast(buf, rid)
		}
		if err != nil {
			return
		}
	}
}

// readSenderRTCP handles a subscriber's feedback for one down track until the
// peer connection closes.
func readSenderRTCP(sender *webrtc.RTPSender, dt *downTrack) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		dt.handleRTCP(pkts)
	}
}
