package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

func errNotJoined() *protocol.RPCError {
	return &protocol.RPCError{Code: protocol.CodeTransport,
		Message: "No connection found for participant. Method 'Session.connect()' must be the first operation called in any session"}
}

// errTryAgainLater closes the socket instead of answering, so the client
// reconnects and retries.
var errTryAgainLater = errors.New("cluster state unavailable: try again")

// handle runs one request and returns its result (a JSON object) or error.
func (sk *socket) handle(ctx context.Context, req *protocol.Request) (any, error) {
	switch req.Method {
	case "joinRoom":
		sk.authenticating.Add(1)
		defer sk.authenticating.Add(-1)
		return sk.joinRoom(ctx, req.Params)
	case "connect":
		sk.authenticating.Add(1)
		defer sk.authenticating.Add(-1)
		return sk.connect(ctx, req.Params)
	case "sessionStatus":
		return sk.sessionStatus(ctx, req.Params) // its own check: see there
	}
	// Every other method needs a participant, as in openvidu-server
	// (RpcHandler.handleRequest refuses any method before joinRoom): an
	// unauthenticated socket learns nothing, not even which methods exist.
	sk.mu.Lock()
	sid, cid, joined := sk.sid, sk.cid, sk.joined
	sk.mu.Unlock()
	if !joined {
		return nil, errNotJoined()
	}
	switch req.Method {
	case "applyFilter", "removeFilter", "execFilterMethod", "addFilterEventListener", "removeFilterEventListener":
		return nil, &protocol.RPCError{Code: protocol.CodeServiceNotEnabled, Message: "Filters are not supported by this server"}
	case "subscribeToSpeechToText", "unsubscribeFromSpeechToText":
		return nil, &protocol.RPCError{Code: protocol.CodeServiceNotEnabled, Message: "Speech to text is not supported by this server"}
	}
	handler, ok := participantMethodFor(req.Method)
	if !ok {
		return nil, &protocol.RPCError{Code: protocol.CodeMethodNotFound, Message: "Method not found: " + req.Method}
	}
	return handler(sk, ctx, participant{sid: sid, cid: cid}, req.Params)
}

type participant struct {
	sid protocol.SessionID
	cid protocol.ConnectionID
}

type participantMethod func(sk *socket, ctx context.Context, p participant, params json.RawMessage) (any, error)

// participantMethodFor returns the handler of a joined participant's method.
func participantMethodFor(name string) (participantMethod, bool) {
	switch name {
	case "echo", "videoData":
		return func(*socket, context.Context, participant, json.RawMessage) (any, error) {
			return map[string]any{}, nil
		}, true
	case "publishVideo":
		return (*socket).publishVideo, true
	case "prepareReceiveVideoFrom":
		return (*socket).prepareReceiveVideoFrom, true
	case "receiveVideoFrom":
		return (*socket).receiveVideoFrom, true
	case "reconnectStream":
		return (*socket).reconnectStream, true
	case "onIceCandidate":
		return (*socket).onIceCandidate, true
	case "unpublishVideo":
		return (*socket).unpublishVideo, true
	case "unsubscribeFromVideo":
		return (*socket).unsubscribeFromVideo, true
	case "leaveRoom":
		return (*socket).leaveRoom, true
	case "sendMessage":
		return (*socket).sendMessage, true
	case "forceDisconnect":
		return (*socket).forceDisconnect, true
	case "forceUnpublish":
		return (*socket).forceUnpublish, true
	case "streamPropertyChanged":
		return (*socket).streamPropertyChanged, true
	}
	return nil, false
}

func (sk *socket) joinRoom(ctx context.Context, raw json.RawMessage) (any, error) {
	sk.mu.Lock()
	joined := sk.joined
	sk.mu.Unlock()
	if joined {
		return nil, &protocol.RPCError{Code: protocol.CodeUserGeneric, Message: "This connection already joined a session"}
	}
	p, rerr := protocol.DecodeJoinRoom(raw)
	if rerr != nil {
		return nil, rerr
	}
	res, err := sk.srv.cfg.Sessions.Join(ctx, session.JoinRequest{
		SessionID: protocol.SessionID(p.Session), Token: p.Token, Metadata: p.Metadata, Platform: p.Platform, IP: sk.ip,
		Features: p.Features, Secret: p.Secret, ServerSecret: sk.srv.secret,
	})
	if err != nil {
		return nil, err
	}
	c := res.Conn
	sk.mu.Lock()
	sk.sid, sk.cid, sk.rpcID, sk.joined = res.Session.ID, c.ID, c.RPCSessionID, true
	sk.mu.Unlock()
	sk.srv.register(sk, res.Session.ID, c.ID)

	result := protocol.JoinRoomResult{
		ID: string(c.ID), FinalUserID: string(c.ID), CreatedAt: c.ActiveAt, Metadata: session.Metadata(c),
		Value: []protocol.RemoteConnection{}, Session: string(res.Session.ID), SessionID: c.RPCSessionID,
		Version: protocol.Version, MediaServer: protocol.MediaServer, VideoSimulcast: sk.srv.cfg.VideoSimulcast,
		Life: res.Session.Life, Record: c.Record, Role: c.Role, CustomIceServers: sk.srv.cfg.Sessions.ICEServers(c, time.Now()),
	}
	for _, o := range res.Others {
		result.Value = append(result.Value, session.RenderRemote(o, true))
	}
	return afterReply{value: result, run: func() { sk.startDelivery(res.Session.ID, c.ID) }}, nil
}

// connect resumes a participant after a WebSocket reconnection: params
// {sessionId: <JSON-RPC session id from joinRoom>, reconnect: true}; the
// OpenVidu session is the ?sessionId= of the socket's URL.
func (sk *socket) connect(ctx context.Context, raw json.RawMessage) (any, error) {
	var p struct {
		SessionID string `json:"sessionId"`
	}
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	reconnErr := &protocol.RPCError{Code: protocol.CodeReconnectionError, Message: protocol.CodeReconnectionErrorString}
	sk.mu.Lock()
	joined := sk.joined
	sk.mu.Unlock()
	if joined || sk.urlSID == "" || p.SessionID == "" {
		return nil, reconnErr
	}
	attach := sk.srv.attachLock(protocol.SessionID(sk.urlSID)) // until registered: see Server.attach
	attach.Lock()
	defer attach.Unlock()
	c, err := sk.srv.cfg.Sessions.Reattach(ctx, protocol.SessionID(sk.urlSID), p.SessionID)
	if err != nil {
		if session.IsKind(err, session.ReconnectionFailed) {
			if sk.srv.cfg.Sessions.VerifyRPCSessionID(protocol.SessionID(sk.urlSID), p.SessionID) {
				// A former participant of the URL's session (evicted, or
				// the session lost): openvidu-browser asks sessionStatus
				// next to tell a network disconnection from a crash.
				sk.mu.Lock()
				sk.statusOf = protocol.SessionID(sk.urlSID)
				sk.mu.Unlock()
			}
			return nil, reconnErr
		}
		if session.AsError(err).Kind == session.Unavailable {
			// The cluster state is unreachable: an error here would make
			// openvidu-browser give up (it asks sessionStatus, then waits
			// forever); a closed socket makes it try again.
			return nil, errTryAgainLater
		}
		return nil, err
	}
	sk.mu.Lock()
	sk.sid, sk.cid, sk.rpcID, sk.joined = c.SessionID, c.ID, c.RPCSessionID, true
	sk.mu.Unlock()
	sk.srv.register(sk, c.SessionID, c.ID)
	result := map[string]any{"value": "reconnection successful", "sessionId": c.RPCSessionID}
	return afterReply{value: result, run: func() { sk.startDelivery(c.SessionID, c.ID) }}, nil
}

// sessionStatus answers {life} of the socket's own session: the one it
// joined, or, after a failed connect, the one its JSON-RPC session id proves
// it was a participant of (openvidu-browser's reconnection asks it there,
// OpenVidu.reconnectWebsocketThroughRpcConnectMethod). Any other socket or
// session is refused, so that nobody learns which sessions exist.
func (sk *socket) sessionStatus(ctx context.Context, raw json.RawMessage) (any, error) {
	var p struct {
		SessionID string `json:"sessionId"`
	}
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.SessionID == "" {
		return nil, protocol.MissingParam("sessionStatus", "sessionId")
	}
	sk.mu.Lock()
	own := sk.statusOf
	if sk.joined {
		own = sk.sid
	}
	sk.mu.Unlock()
	if own == "" {
		return nil, errNotJoined()
	}
	if protocol.SessionID(p.SessionID) != own {
		return nil, &protocol.RPCError{Code: protocol.CodeUserUnauthorized,
			Message: "Unable to get the status of session " + p.SessionID + ": this connection is not a participant of it"}
	}
	life, err := sk.srv.cfg.Sessions.SessionStatus(ctx, protocol.SessionID(p.SessionID))
	if err != nil {
		return nil, err
	}
	return map[string]any{"life": life}, nil
}

func (sk *socket) publishVideo(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p protocol.PublishVideoParams
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	switch {
	case p.SDPOffer == nil:
		return nil, protocol.MissingParam("publishVideo", "sdpOffer")
	case p.HasAudio == nil:
		return nil, protocol.MissingParam("publishVideo", "hasAudio")
	case p.HasVideo == nil:
		return nil, protocol.MissingParam("publishVideo", "hasVideo")
	}
	opts := store.MediaOptions{
		HasAudio: *p.HasAudio, HasVideo: *p.HasVideo, AudioActive: derefOr(p.AudioActive, *p.HasAudio),
		VideoActive: derefOr(p.VideoActive, *p.HasVideo), FrameRate: -1,
	}
	if opts.HasVideo {
		opts.TypeOfVideo = p.TypeOfVideo
		if opts.TypeOfVideo == "" {
			opts.TypeOfVideo = "CAMERA"
		}
		if p.FrameRate != nil {
			opts.FrameRate = int(*p.FrameRate)
		}
		if strings.HasPrefix(p.VideoDimensions, "{") {
			opts.VideoDimensions = p.VideoDimensions
		}
	}
	if len(p.Filter) > 0 && string(p.Filter) != "null" {
		opts.Filter = p.Filter // recorded and reported, never applied (no server filters)
	}
	pub, err := sk.srv.cfg.Sessions.Publish(ctx, pt.sid, pt.cid, session.PublishRequest{SDPOffer: *p.SDPOffer, MediaOptions: opts})
	if err != nil {
		return nil, err
	}
	return map[string]any{"sdpAnswer": pub.SDPAnswer, "id": pub.StreamID, "createdAt": pub.CreatedAt}, nil
}

func derefOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func (sk *socket) prepareReceiveVideoFrom(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p protocol.ReceiveVideoParams
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Sender == nil {
		return nil, protocol.MissingParam("prepareReceiveVideoFrom", "sender")
	}
	offer, err := sk.srv.cfg.Sessions.PrepareSubscribe(ctx, pt.sid, pt.cid, *p.Sender)
	if err != nil {
		return nil, err
	}
	return map[string]any{"sdpOffer": offer}, nil
}

func (sk *socket) receiveVideoFrom(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p protocol.ReceiveVideoParams
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Sender == nil {
		return nil, protocol.MissingParam("receiveVideoFrom", "sender")
	}
	if p.SDPAnswer == nil {
		if p.SDPOffer != nil {
			return nil, &protocol.RPCError{Code: protocol.CodeMediaSDP,
				Message: "Client-offered subscriptions are not supported: mediaServer is mediasoup, use prepareReceiveVideoFrom"}
		}
		return nil, protocol.MissingParam("receiveVideoFrom", "sdpAnswer")
	}
	if err := sk.srv.cfg.Sessions.CompleteSubscribe(ctx, pt.sid, pt.cid, *p.Sender, *p.SDPAnswer, false); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

// reconnectStream re-negotiates one of the participant's peer connections: its
// publisher (stream is its own stream id; sdpString is a new offer) or a
// subscription (sdpString answers the offer of prepareReceiveVideoFrom with
// reconnect, or of forciblyReconnectSubscriber).
func (sk *socket) reconnectStream(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p protocol.ReconnectStreamParams
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Stream == nil {
		return nil, protocol.MissingParam("reconnectStream", "stream")
	}
	sdp := p.SDPString
	if sdp == nil {
		sdp = p.SDPOffer
	}
	if sdp == nil {
		return nil, protocol.MissingParam("reconnectStream", "sdpString")
	}
	if protocol.ConnectionOfStream(protocol.StreamID(*p.Stream)) == pt.cid {
		pub, err := sk.srv.cfg.Sessions.ReconnectPublisher(ctx, pt.sid, pt.cid, protocol.StreamID(*p.Stream), *sdp)
		if err != nil {
			return nil, err
		}
		return map[string]any{"sdpAnswer": pub.SDPAnswer, "id": pub.StreamID, "createdAt": pub.CreatedAt}, nil
	}
	if p.SDPString == nil {
		return nil, &protocol.RPCError{Code: protocol.CodeMediaSDP,
			Message: "Client-offered subscriptions are not supported: mediaServer is mediasoup, use prepareReceiveVideoFrom"}
	}
	if p.ForciblyReconnect {
		sk.forcedOfferAnswered()
	}
	if err := sk.srv.cfg.Sessions.CompleteSubscribe(ctx, pt.sid, pt.cid, *p.Stream, *p.SDPString, p.ForciblyReconnect); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (sk *socket) onIceCandidate(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p protocol.OnIceCandidateParams
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.EndpointName == nil {
		return nil, protocol.MissingParam("onIceCandidate", "endpointName")
	}
	if p.Candidate == nil {
		return nil, protocol.MissingParam("onIceCandidate", "candidate")
	}
	err := sk.srv.cfg.Sessions.AddICECandidate(ctx, pt.sid, pt.cid, *p.EndpointName,
		session.ICECandidate{Candidate: *p.Candidate, SDPMid: p.SDPMid, SDPMLineIndex: p.SDPMLineIndex})
	if err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (sk *socket) unpublishVideo(ctx context.Context, pt participant, _ json.RawMessage) (any, error) {
	if err := sk.srv.cfg.Sessions.Unpublish(ctx, pt.sid, pt.cid); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (sk *socket) unsubscribeFromVideo(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p protocol.ReceiveVideoParams
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Sender == nil {
		return nil, protocol.MissingParam("unsubscribeFromVideo", "sender")
	}
	if err := sk.srv.cfg.Sessions.Unsubscribe(ctx, pt.sid, pt.cid, *p.Sender); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

// leaveRoom removes the participant. Notifications stop before the leave
// commits, so none reaches the client after the answer; they resume only if
// the participant is still there (the leave failed for another reason than
// its being gone already, evicted meanwhile, say).
func (sk *socket) leaveRoom(ctx context.Context, pt participant, _ json.RawMessage) (any, error) {
	sk.stopNotifications()
	if err := sk.srv.cfg.Sessions.Leave(ctx, pt.sid, pt.cid); err != nil {
		if !session.IsKind(err, session.SessionNotFound, session.ConnectionNotFound) {
			sk.resumeNotifications()
			return nil, err
		}
		// Gone already (evicted): what was queued for it is never sent.
		if derr := sk.srv.cfg.Store.DeleteOutbox(ctx, pt.sid, pt.cid); derr != nil {
			sk.srv.log.Warn("delete outbox", "session", pt.sid, "connection", pt.cid, "err", derr)
		}
		return nil, err
	}
	sk.mu.Lock()
	sk.gone = true
	sk.mu.Unlock()
	return map[string]any{}, nil
}

func (sk *socket) sendMessage(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	if sk.signals != nil && !sk.signals.Allow() {
		return nil, &protocol.RPCError{Code: protocol.CodeGeneric,
			Message: fmt.Sprintf("Too many signals: at most %d per second may be sent on this connection", sk.srv.cfg.Limits.SignalsPerSecond)}
	}
	var p struct {
		Message *string `json:"message"`
	}
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Message == nil {
		return nil, protocol.MissingParam("sendMessage", "message")
	}
	var msg protocol.SignalMessage
	if err := json.Unmarshal([]byte(*p.Message), &msg); err != nil {
		return nil, &protocol.RPCError{Code: protocol.CodeSignalFormatInvalid,
			Message: "Provided signal object '" + *p.Message + "' has not a valid JSON format"}
	}
	to := make([]string, 0, len(msg.To))
	for _, t := range msg.To {
		if t == nil {
			return nil, &protocol.RPCError{Code: protocol.CodeSignalToInvalid, Message: `Signal "to" field invalid format: null`}
		}
		to = append(to, *t)
	}
	if err := sk.srv.cfg.Sessions.Signal(ctx, pt.sid, to, msg.Type, msg.Data, string(pt.cid)); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (sk *socket) forceDisconnect(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p struct {
		ConnectionID *string `json:"connectionId"`
	}
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.ConnectionID == nil {
		return nil, protocol.MissingParam("forceDisconnect", "connectionId")
	}
	if err := sk.srv.cfg.Sessions.ForceDisconnect(ctx, pt.sid, pt.cid, protocol.ConnectionID(*p.ConnectionID)); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (sk *socket) forceUnpublish(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p struct {
		StreamID *string `json:"streamId"`
	}
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.StreamID == nil {
		return nil, protocol.MissingParam("forceUnpublish", "streamId")
	}
	if err := sk.srv.cfg.Sessions.ForceUnpublishByUser(ctx, pt.sid, pt.cid, protocol.StreamID(*p.StreamID)); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (sk *socket) streamPropertyChanged(ctx context.Context, pt participant, raw json.RawMessage) (any, error) {
	var p protocol.StreamPropertyChangedParams
	if err := protocol.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Property == nil {
		return nil, protocol.MissingParam("streamPropertyChanged", "property")
	}
	if len(p.NewValue) == 0 {
		return nil, protocol.MissingParam("streamPropertyChanged", "newValue")
	}
	if err := sk.srv.cfg.Sessions.StreamPropertyChanged(ctx, pt.sid, pt.cid, *p.Property, p.NewValue, p.Reason); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

// MethodLabel is a request's method as metrics name it: OpenVidu's
// methods as they are, any other name "other" (a client chooses the
// name: it must not choose the metrics' series).
func MethodLabel(method string) string {
	switch method {
	case "joinRoom", "connect", "sessionStatus", "ping",
		"applyFilter", "removeFilter", "execFilterMethod", "addFilterEventListener", "removeFilterEventListener",
		"subscribeToSpeechToText", "unsubscribeFromSpeechToText":
		return method
	}
	if _, ok := participantMethodFor(method); ok {
		return method
	}
	return "other"
}

// observe reports one handled request to Config.OnRequest.
func (s *Server) observe(method string, err error, took time.Duration) {
	if s.cfg.OnRequest != nil {
		s.cfg.OnRequest(MethodLabel(method), err != nil, took)
	}
}
