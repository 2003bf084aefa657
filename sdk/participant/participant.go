// Package participant is a Go OpenVidu participant: it joins a session with a
// token, publishes and subscribes over pion WebRTC, and speaks the same
// JSON-RPC as openvidu-browser 2.32 (mediaServer "mediasoup": the server
// offers subscriptions). Chorus's tests and load tester use it; it works
// against any OpenVidu 2 deployment speaking that dialect.
//
//	p, err := participant.Join(ctx, participant.Config{Token: token})
//	pub, err := p.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
//	go pub.SendSynthetic(ctx, participant.DefaultVideo)
//	sub, err := p.Subscribe(ctx, streamID)
//	fmt.Println(sub.Stats())
package participant

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Config configures a participant.
type Config struct {
	// Token is the OpenVidu token: ws(s)://host[:port]?sessionId=...&token=tok_...
	Token string
	// ServerURL, when set (ws(s)://host[:port]), is dialed instead of the
	// token's scheme and host: a client that reaches the cluster by another
	// address than its public one (a recorder inside the cluster's network).
	ServerURL string
	// TLSConfig configures wss:// connections (nil: the system's roots).
	TLSConfig *tls.Config
	// Metadata is the client data (openvidu-browser's connect(token, metadata)).
	Metadata string
	// LoopbackOnly restricts ICE to loopback addresses (tests on one machine).
	LoopbackOnly bool
	// NetworkTypes are the transports ICE may use (pion's
	// SettingEngine.SetNetworkTypes); default UDP4 only. TCP4 alone is a
	// client whose network blocks UDP: it reaches media nodes' passive
	// ICE-TCP candidates (RFC 6544) with active TCP connections.
	NetworkTypes []webrtc.NetworkType
	// PingInterval is the heartbeat interval (openvidu-browser: 5 s).
	PingInterval time.Duration
	// NoResume turns off the resumption after a broken WebSocket (by default
	// the participant reconnects and sends "connect", as openvidu-browser).
	NoResume bool
	// NoMediaRecovery turns off the re-establishment of streams whose ICE
	// failed (see Recovery).
	NoMediaRecovery bool
	// ICEDisconnectedTimeout and ICEFailedTimeout are how long ICE waits
	// without hearing from the media node before it calls the connection
	// disconnected, then failed (and media recovery starts); defaults 1.5 s
	// and 1 s, with a keepalive every 500 ms, so a dead media node is
	// noticed within about 2.5 s.
	ICEDisconnectedTimeout time.Duration
	ICEFailedTimeout       time.Duration
	// RelayOnly makes every peer connection use relayed candidates only
	// (iceTransportPolicy "relay"), through the TURN servers of joinRoom's
	// customIceServers, as a browser whose network lets only TURN out.
	// Such a participant nominates the first relayed pair that works: pion
	// otherwise holds a relayed pair back for 2 s after checks start
	// (its relay acceptance wait, in case a direct pair comes up), which
	// every negotiation, hence every media recovery, would pay for nothing.
	RelayOnly bool
	Logger    *slog.Logger
}

// Resumption records one WebSocket break and its outcome.
type Resumption struct {
	Lost    time.Time // when the socket broke
	Resumed time.Time // when "connect" succeeded; zero if the session was lost
	Err     error     // why resuming failed
}

// Event is a notification from the server.
type Event struct {
	Method string
	Params json.RawMessage
	At     time.Time
}

// Participant is a joined participant.
type Participant struct {
	cfg       Config
	api       *webrtc.API
	sessionID string
	wsURL     string
	join      protocol.JoinRoomResult
	bg        context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	rpcMu       sync.Mutex
	rpc         *rpcConn
	closing     bool
	resumptions []Resumption

	mu      sync.Mutex
	streams map[string]protocol.Stream // remote streams by id
	events  []Event
	waiters []chan struct{}
	pubs    []*Publisher
	subs    map[string]*Subscription

	recoveries []Recovery
	steps      *Steps
}

// Join connects to the token's cluster and joins its session.
func Join(ctx context.Context, cfg Config) (*Participant, error) {
	u, err := url.Parse(cfg.Token)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return nil, fmt.Errorf("participant: token %q is not a ws(s):// URL", cfg.Token)
	}
	sid := u.Query().Get("sessionId")
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ICEDisconnectedTimeout == 0 {
		cfg.ICEDisconnectedTimeout = 1500 * time.Millisecond
	}
	if cfg.ICEFailedTimeout == 0 {
		cfg.ICEFailedTimeout = time.Second
	}
	p := &Participant{cfg: cfg, sessionID: sid, streams: map[string]protocol.Stream{}, subs: map[string]*Subscription{}, steps: newSteps()}
	p.api, err = newAPI(cfg)
	if err != nil {
		return nil, err
	}
	base := u.Scheme + "://" + u.Host
	if cfg.ServerURL != "" {
		su, err := url.Parse(cfg.ServerURL)
		if err != nil || (su.Scheme != "ws" && su.Scheme != "wss") || su.Host == "" {
			return nil, fmt.Errorf("participant: server URL %q is not a ws(s)://host URL", cfg.ServerURL)
		}
		base = su.Scheme + "://" + su.Host
	}
	p.wsURL = base + "/openvidu?sessionId=" + url.QueryEscape(sid)
	p.bg, p.cancel = context.WithCancel(context.Background())
	rpc, err := dialRPC(ctx, p.wsURL, p.cfg.TLSConfig, p.onNotification, p.onLost)
	if err != nil {
		p.cancel()
		return nil, err
	}
	p.setRPC(rpc)
	p.steps.mark(StepWebSocket)
	params := map[string]any{
		"token": cfg.Token, "session": sid, "platform": "Chorus Go participant", "sdkVersion": "2.32.2",
		"metadata": cfg.Metadata, "secret": "", "recorder": false, "stt": false,
		"chorusFeatures": []string{protocol.FeatureReconnectPublisher},
	}
	if err := p.call(ctx, "joinRoom", params, &p.join); err != nil {
		p.Close()
		return nil, fmt.Errorf("joinRoom: %w", err)
	}
	p.steps.mark(StepJoinRoom)
	p.mu.Lock()
	for _, rc := range p.join.Value {
		for _, s := range rc.Streams {
			p.streams[s.ID] = s
		}
	}
	p.mu.Unlock()
	return p, nil
}

func newAPI(cfg Config) (*webrtc.API, error) {
	var se webrtc.SettingEngine
	networks := cfg.NetworkTypes
	if len(networks) == 0 {
		networks = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	}
	se.SetNetworkTypes(networks)
	se.SetICETimeouts(cfg.ICEDisconnectedTimeout, cfg.ICEFailedTimeout, 500*time.Millisecond)
	if cfg.RelayOnly {
		// Media nodes are ICE-lite: the participant is always the
		// controlling agent, the one whose wait this is.
		se.SetRelayAcceptanceMinWait(0)
	}
	// The cheapest SRTP profile first, as media nodes do (load tests decrypt
	// every packet they receive).
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	if cfg.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	// Simulcast publishers name their encodings (PublishOptions.Simulcast).
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, err
	}
	// Like a browser, the participant sends transport-wide congestion
	// control feedback for what it receives: media nodes estimate the
	// bandwidth of simulcast subscriptions from it.
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir)), nil
}

// peerConfig is the configuration of every peer connection: the STUN/TURN
// servers joinRoom's customIceServers name (as openvidu-browser's
// Session.processJoinRoomResponse reads them: url, username, credential),
// and the transport policy.
func (p *Participant) peerConfig() webrtc.Configuration {
	var cfg webrtc.Configuration
	if p.cfg.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	var servers []struct {
		URL        string `json:"url"`
		Username   string `json:"username"`
		Credential string `json:"credential"`
	}
	if len(p.join.CustomIceServers) > 0 {
		if err := json.Unmarshal(p.join.CustomIceServers, &servers); err != nil {
			p.cfg.Logger.Warn("customIceServers ignored", "err", err)
		}
	}
	for _, s := range servers {
		srv := webrtc.ICEServer{URLs: []string{s.URL}}
		if s.Username != "" {
			srv.Username, srv.Credential = s.Username, s.Credential
		}
		cfg.ICEServers = append(cfg.ICEServers, srv)
	}
	return cfg
}

// ICEServers are the STUN/TURN servers the participant's peer connections
// use (from joinRoom's customIceServers).
func (p *Participant) ICEServers() []webrtc.ICEServer { return p.peerConfig().ICEServers }

// JoinSteps are Join's steps: StepWebSocket, StepJoinRoom.
func (p *Participant) JoinSteps() *Steps { return p.steps }

// ConnectionID is the participant's connection id.
func (p *Participant) ConnectionID() string { return p.join.ID }

// SessionID is the OpenVidu session id.
func (p *Participant) SessionID() string { return p.sessionID }

// JoinResult is the server's joinRoom answer.
func (p *Participant) JoinResult() protocol.JoinRoomResult { return p.join }

// Call sends any JSON-RPC request (for tests of the protocol itself).
func (p *Participant) Call(ctx context.Context, method string, params, out any) error {
	return p.call(ctx, method, params, out)
}

func (p *Participant) call(ctx context.Context, method string, params, out any) error {
	p.rpcMu.Lock()
	rpc := p.rpc
	p.rpcMu.Unlock()
	return rpc.call(ctx, method, params, out)
}

// setRPC makes rpc the participant's socket and starts its heartbeat.
func (p *Participant) setRPC(rpc *rpcConn) bool {
	p.rpcMu.Lock()
	if p.closing {
		p.rpcMu.Unlock()
		rpc.close()
		return false
	}
	p.rpc = rpc
	p.wg.Add(1)
	p.rpcMu.Unlock()
	go func() { defer p.wg.Done(); rpc.pingLoop(p.bg, p.cfg.PingInterval) }()
	return true
}

// onLost resumes the participant after its socket broke, as openvidu-browser
// does: reconnect to the same URL with reconnect=true (through the proxy,
// to any master) and send "connect" with the JSON-RPC session id of joinRoom.
// The peer connections are untouched.
func (p *Participant) onLost(lost *rpcConn) {
	p.rpcMu.Lock()
	if p.closing || p.rpc != lost || p.cfg.NoResume || p.join.SessionID == "" {
		p.rpcMu.Unlock()
		return
	}
	p.wg.Add(1) // under rpcMu: Close cannot be waiting yet
	p.rpcMu.Unlock()
	go func() {
		defer p.wg.Done()
		p.resume(Resumption{Lost: time.Now()})
	}()
}

func (p *Participant) resume(r Resumption) {
	wait := 100 * time.Millisecond
	for {
		p.rpcMu.Lock()
		closing := p.closing
		p.rpcMu.Unlock()
		if closing {
			return
		}
		ctx, cancel := context.WithTimeout(p.bg, 5*time.Second)
		rpc, err := dialRPC(ctx, p.wsURL+"&reconnect=true", p.cfg.TLSConfig, p.onNotification, p.onLost)
		if err == nil {
			err = rpc.call(ctx, "connect", map[string]any{"sessionId": p.join.SessionID, "reconnect": true}, nil)
			var rerr *protocol.RPCError
			if errors.As(err, &rerr) && rerr.Code == protocol.CodeReconnectionError {
				cancel()
				rpc.close()
				r.Err = fmt.Errorf("the session no longer knows this participant: %w", err)
				p.recordResumption(r)
				return
			}
			if err != nil {
				rpc.close()
			}
		}
		cancel()
		if err == nil {
			if !p.setRPC(rpc) {
				return
			}
			r.Resumed = time.Now()
			p.recordResumption(r)
			p.cfg.Logger.Debug("participant resumed", "connection", p.join.ID, "after", r.Resumed.Sub(r.Lost))
			p.reconnectBrokenStreams()
			return
		}
		select {
		case <-p.bg.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func (p *Participant) recordResumption(r Resumption) {
	p.rpcMu.Lock()
	p.resumptions = append(p.resumptions, r)
	p.rpcMu.Unlock()
	p.mu.Lock()
	for _, w := range p.waiters {
		close(w)
	}
	p.waiters = nil
	p.mu.Unlock()
}

// Resumptions returns the socket breaks so far and how each ended.
func (p *Participant) Resumptions() []Resumption {
	p.rpcMu.Lock()
	defer p.rpcMu.Unlock()
	return append([]Resumption(nil), p.resumptions...)
}

func (p *Participant) onNotification(method string, params json.RawMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, Event{Method: method, Params: params, At: time.Now()})
	switch method {
	case protocol.NotifyParticipantPublished:
		var rc protocol.RemoteConnection
		if json.Unmarshal(params, &rc) == nil {
			for _, s := range rc.Streams {
				p.streams[s.ID] = s
			}
		}
	case protocol.NotifyForciblyReconnect:
		p.onForcedReconnect(params)
	case protocol.NotifyReconnectPublisher:
		p.onReconnectPublisher(params)
	case protocol.NotifyParticipantUnpublished, protocol.NotifyParticipantLeft:
		var cr protocol.ConnectionReason
		if json.Unmarshal(params, &cr) == nil {
			for id := range p.streams {
				if string(protocol.ConnectionOfStream(protocol.StreamID(id))) == cr.ConnectionID {
					delete(p.streams, id)
				}
			}
		}
	}
	for _, w := range p.waiters {
		close(w)
	}
	p.waiters = nil
}

// Events returns the notifications received so far.
func (p *Participant) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// RemoteStreams returns the ids of the other participants' published streams.
func (p *Participant) RemoteStreams() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.streams))
	for id := range p.streams {
		out = append(out, id)
	}
	return out
}

// WaitFor waits until cond holds on the participant (checked after each
// notification) or ctx ends.
func (p *Participant) WaitFor(ctx context.Context, cond func(*Participant) bool) error {
	for {
		p.mu.Lock()
		w := make(chan struct{})
		p.waiters = append(p.waiters, w)
		p.mu.Unlock()
		if cond(p) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitForStreams waits until the participant knows n remote streams and
// returns their ids.
func (p *Participant) WaitForStreams(ctx context.Context, n int) ([]string, error) {
	err := p.WaitFor(ctx, func(p *Participant) bool { return len(p.RemoteStreams()) >= n })
	return p.RemoteStreams(), err
}

// Leave sends leaveRoom and closes the participant.
func (p *Participant) Leave(ctx context.Context) error {
	err := p.call(ctx, "leaveRoom", map[string]any{}, nil)
	p.Close()
	return err
}

// Close closes every peer connection and the WebSocket without leaving (the
// server sees a network disconnection).
func (p *Participant) Close() {
	p.mu.Lock()
	pubs, subs := p.pubs, p.subs
	p.pubs, p.subs = nil, map[string]*Subscription{}
	p.mu.Unlock()
	for _, pub := range pubs {
		pub.close()
	}
	for _, s := range subs {
		s.close()
	}
	p.rpcMu.Lock()
	p.closing = true
	rpc := p.rpc
	p.rpcMu.Unlock()
	p.cancel()
	rpc.close()
	p.wg.Wait()
}

// sendCandidates trickles a peer connection's candidates to the server, as
// openvidu-browser does (endpointName is the media owner's connection id).
func (p *Participant) sendCandidates(pc *webrtc.PeerConnection, endpointName string) {
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		init := c.ToJSON()
		params := map[string]any{"endpointName": endpointName, "candidate": init.Candidate, "sdpMid": init.SDPMid, "sdpMLineIndex": init.SDPMLineIndex}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.call(ctx, "onIceCandidate", params, nil); err != nil && !errors.Is(err, ErrClosed) {
			p.cfg.Logger.Debug("send ICE candidate", "err", err)
		}
	})
}

// maxGatherWait bounds how long gather waits for ICE gathering to
// complete. A TURN server that does not answer (a replica that died, still
// in joinRoom's customIceServers) holds the gathering until its allocation
// times out, many seconds; past maxGatherWait the description goes with the
// candidates gathered so far, and those found later trickle
// (sendCandidates), as openvidu-browser's do.
const maxGatherWait = 500 * time.Millisecond

// gather sets desc as the local description and returns its SDP with the
// candidates gathered when gathering completed, or maxGatherWait passed.
func gather(ctx context.Context, pc *webrtc.PeerConnection, desc webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return "", err
	}
	timer := time.NewTimer(maxGatherWait)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// waitConnected waits for the peer connection to connect (ICE and DTLS),
// woken by its state changes (it takes pc's OnConnectionStateChange).
func waitConnected(ctx context.Context, pc *webrtc.PeerConnection) error {
	changed := make(chan struct{}, 1)
	pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	for {
		switch pc.ConnectionState() {
		case webrtc.PeerConnectionStateConnected:
			return nil
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			return fmt.Errorf("peer connection %s", strings.ToLower(pc.ConnectionState().String()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
