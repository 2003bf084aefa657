package session

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// PublishRequest is a participant's publishVideo.
type PublishRequest struct {
	SDPOffer     string
	MediaOptions store.MediaOptions
}

// Published is publishVideo's (and a publisher's reconnectStream's) result.
type Published struct {
	StreamID  protocol.StreamID
	CreatedAt int64
	SDPAnswer string
}

// participantNotFound is the error for a request from a participant the
// session no longer has (evicted meanwhile).
func participantNotFound(sid protocol.SessionID, cid protocol.ConnectionID) *Error {
	return newError(ConnectionNotFound, "Participant %s not found in session %s", cid, sid)
}

// loadParticipant reads session sid outside a transaction and returns it
// with participant cid, or participantNotFound when the session or an active
// participant cid is gone.
func (s *Service) loadParticipant(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) (*store.Snapshot, *store.Connection, error) {
	snap, err := s.store.Load(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, participantNotFound(sid, cid)
	}
	if err != nil {
		return nil, nil, err
	}
	c := snap.Conns[cid]
	if c == nil || !c.Active() {
		return nil, nil, participantNotFound(sid, cid)
	}
	return snap, c, nil
}

// activeParticipant is loadParticipant inside a transaction.
func activeParticipant(tx *store.Tx, sid protocol.SessionID, cid protocol.ConnectionID) (*store.Connection, error) {
	if tx.Session == nil {
		return nil, participantNotFound(sid, cid)
	}
	c := tx.Conns[cid]
	if c == nil || !c.Active() {
		return nil, participantNotFound(sid, cid)
	}
	return c, nil
}

// streamTypeCode is the TYPE3 part of a stream id: the first three letters of
// typeOfVideo, or MIC for an audio-only stream.
func streamTypeCode(m store.MediaOptions) string {
	if !m.HasVideo {
		return "MIC"
	}
	if m.TypeOfVideo == "" {
		return "CAM"
	}
	return m.TypeOfVideo
}

// Publish creates the participant's publisher endpoint on the session's media
// node from its SDP offer and tells the other participants
// (participantPublished) once the node answered.
func (s *Service) Publish(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, req PublishRequest) (*Published, error) {
	streamID := protocol.NewStreamID(streamTypeCode(req.MediaOptions), cid)
	now := store.NowMillis()
	var (
		node  protocol.NodeID
		codec string
	)
	var stale []endpointRef
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		stale = nil
		c, err := activeParticipant(tx, sid, cid)
		if err != nil {
			return err
		}
		if !protocol.CanPublish(c.Role) {
			return newError(Unauthorized, "Unable to publish video. The user does not have a valid token")
		}
		if p := c.Publisher; p != nil {
			if p.Live() {
				return newError(AlreadyPublishing, "User %s is already publishing in session %s", cid, sid)
			}
			stale = []endpointRef{{p.Node, string(p.StreamID)}} // a publishVideo that died half-way
		}
		node, codec = tx.Session.MediaNodeID, tx.Session.Properties.ForcedVideoCodecResolved
		c.Publisher = &store.Publisher{StreamID: streamID, CreatedAt: now, MediaOptions: req.MediaOptions, Node: node, State: store.EndpointCreating}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(stale) > 0 {
		s.releaseEndpoints(ctx, sid, stale)
	}
	if codec == "" {
		codec = ResolveCodec("", s.cfg.ForcedVideoCodec)
	}
	mc, err := s.mediaClient(ctx, node)
	var answer mediaapi.SDPAnswer
	if err == nil {
		answer, err = mc.Publish(ctx, mediaapi.PublishRequest{SessionID: string(sid), StreamID: string(streamID), ConnectionID: string(cid), SDPOffer: req.SDPOffer, VideoCodec: codec})
	}
	if err != nil {
		s.rollbackPublisher(ctx, sid, cid, streamID, node)
		return nil, publishError(err, cid, codec)
	}
	startRecording := false
	err = s.update(ctx, sid, func(tx *store.Tx) error {
		c, err := activeParticipant(tx, sid, cid)
		if err != nil {
			return err
		}
		if c.Publisher == nil || c.Publisher.StreamID != streamID {
			return participantNotFound(sid, cid) // unpublished or replaced meanwhile
		}
		startRecording = firstPublication(tx, c)
		c.Publisher.State = store.EndpointReady
		emit(tx, events.NewWebrtcConnectionCreated(tx.Session, outbound(c)))
		return tx.NotifyParticipants(cid, protocol.NotifyParticipantPublished, RenderRemote(c, true))
	})
	if err != nil {
		bctx, cancel := background(ctx)
		defer cancel()
		s.releaseEndpoints(bctx, sid, []endpointRef{{node, string(streamID)}})
		return nil, err
	}
	if startRecording {
		s.startAlwaysRecording(ctx, sid)
	}
	return &Published{StreamID: streamID, CreatedAt: now, SDPAnswer: answer.SDPAnswer}, nil
}

// rollbackPublisher undoes a failed publishVideo: the record goes, and the
// endpoint is released in case the node made it before failing to answer.
func (s *Service) rollbackPublisher(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, streamID protocol.StreamID, node protocol.NodeID) {
	ctx, cancel := background(ctx)
	defer cancel()
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		if c := tx.Conns[cid]; c != nil && c.Publisher != nil && c.Publisher.StreamID == streamID {
			c.Publisher = nil
		}
		return nil
	})
	if err != nil {
		s.log.Warn("roll back publisher", "session", sid, "stream", streamID, "err", err)
	}
	s.releaseEndpoints(ctx, sid, []endpointRef{{node, string(streamID)}})
}

func publishError(err error, cid protocol.ConnectionID, codec string) error {
	var me *mediaapi.Error
	if errors.As(err, &me) {
		switch me.Code {
		case mediaapi.CodeCodecNotOffered:
			return &Error{Kind: CodecNotFound, cause: err,
				Message: "Error forcing codec: '" + codec + "' not found in the SDP offer of publisher " + string(cid)}
		case mediaapi.CodeBadSDP:
			return &Error{Kind: BadSDP, cause: err,
				Message: "Error generating SDP response for publishing user " + string(cid)}
		}
	}
	return err
}

// ReconnectPublisher gives a publisher a new peer connection for the same
// stream (reconnectStream from the stream's owner). On the same node the
// subscribers keep their endpoints and nobody is notified. A stream whose
// node crashed or is draining was moved to another node (migrating): the
// endpoint is created there and every subscriber is moved to it with
// forciblyReconnectSubscriber.
//
// openvidu-browser never retries a failed reconnection, so a request that
// finds the stream's node unreachable (dead, but not yet declared crashed)
// is held until the stream has been moved, within ctx.
//
// The role is checked again, as publishVideo checks it: a participant that
// PATCH .../connection demoted to SUBSCRIBER since it published gets
// Unauthorized and keeps no new peer connection.
func (s *Service) ReconnectPublisher(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, streamID protocol.StreamID, offer string) (*Published, error) {
	for {
		snap, c, err := s.loadParticipant(ctx, sid, cid)
		if err != nil {
			return nil, err
		}
		p := c.Publisher
		if p == nil || p.StreamID != streamID || !p.Live() {
			return nil, newError(StreamNotFound, "Stream '%s' does not exist in Session '%s'", streamID, sid)
		}
		if !protocol.CanPublish(c.Role) {
			return nil, newError(Unauthorized, "Unable to publish video. The user does not have a valid token")
		}
		if !s.nodeServes(ctx, p.Node) {
			if err := holdOn(ctx); err != nil {
				return nil, err
			}
			continue
		}
		codec := snap.Session.Properties.ForcedVideoCodecResolved
		mc, err := s.mediaClient(ctx, p.Node)
		var answer mediaapi.SDPAnswer
		if err == nil {
			answer, err = mc.Publish(ctx, mediaapi.PublishRequest{SessionID: string(sid), StreamID: string(streamID), ConnectionID: string(cid), SDPOffer: offer, VideoCodec: codec, Reconnect: true})
		}
		if unreachable(err) {
			if err := holdOn(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, publishError(err, cid, codec)
		}
		if p.State == store.EndpointMigrating {
			s.publisherMoved(ctx, sid, cid, streamID, p.Node)
		}
		return &Published{StreamID: streamID, CreatedAt: p.CreatedAt, SDPAnswer: answer.SDPAnswer}, nil
	}
}

// resolveSender finds the publishing connection a subscription request names:
// by stream id, or by connection id as openvidu-server also accepts.
func resolveSender(conns map[protocol.ConnectionID]*store.Connection, sender string) *store.Connection {
	if c := streamOwner(conns, protocol.StreamID(sender)); c != nil {
		return c
	}
	if c := conns[senderConnectionID(sender)]; c != nil && c.Active() {
		return c
	}
	return nil
}

// senderConnectionID is the connection a sender names: the owner of a
// stream id, or the connection id itself.
func senderConnectionID(sender string) protocol.ConnectionID {
	if id := protocol.ConnectionOfStream(protocol.StreamID(sender)); id != "" {
		return id
	}
	return protocol.ConnectionID(sender)
}

// forcedAnswerWindow is how long a forced subscriber reconnection's offer
// waits for its answer before the client's own reconnection may replace it.
const forcedAnswerWindow = 3 * time.Second

// PrepareSubscribe creates a subscriber endpoint for the sender's stream and
// returns the node's SDP offer (prepareReceiveVideoFrom). An existing
// subscription to the same stream is replaced (a subscriber's reconnection).
//
// A new subscription to a stream being moved to another node is held until
// its publisher is back (openvidu-browser never retries a failed
// subscription), within ctx; a subscriber's own reconnection to such a
// stream is refused at once, since the server offers it a new peer
// connection when the publisher is back (forciblyReconnectSubscriber). A
// request that finds the stream's node unreachable, not yet declared
// crashed, is held. A subscription the server is already moving (its offer
// sent, answer pending) refuses the client's own reconnection for
// forcedAnswerWindow: the client then completes the server's offer instead.
func (s *Service) PrepareSubscribe(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, sender string) (string, error) {
	now := store.NowMillis()
	var (
		streamID protocol.StreamID
		ownerID  protocol.ConnectionID
	)
	var replace, reconnecting bool
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		c, err := activeParticipant(tx, sid, cid)
		if err != nil {
			return err
		}
		owner := resolveSender(tx.Conns, sender)
		if owner == nil {
			return newError(ConnectionNotFound, "User '%s not found in session '%s'", senderConnectionID(sender), sid)
		}
		if owner.Publisher == nil || !owner.Publisher.Live() {
			return newError(StreamNotFound, "User '%s not streaming media in session '%s'", owner.ID, sid)
		}
		ownerID, streamID = owner.ID, owner.Publisher.StreamID
		if c.Subscriptions == nil {
			c.Subscriptions = map[protocol.StreamID]*store.Subscription{}
		}
		// A subscription the server is reconnecting (forced) is left to
		// that offer for forcedAnswerWindow: openvidu-browser answers it
		// once its own reconnection fails, and would tear down the peer
		// connection of a reconnection that succeeded to answer it. Past
		// the window it is taken over: the client may never answer (its
		// socket broke while the answer was in flight), and its own request
		// is the fresher intent; a late answer to the forced offer is then
		// refused (CompleteSubscribe).
		cur := c.Subscriptions[streamID]
		if cur != nil && cur.State == store.EndpointForced && now-cur.CreatedAt < forcedAnswerWindow.Milliseconds() {
			return newError(Superseded, "The server is moving the subscription of '%s' to '%s': answer its forciblyReconnectSubscriber offer", cid, streamID)
		}
		replace = cur != nil
		reconnecting = cur != nil && cur.Live()
		state := store.EndpointCreating
		if reconnecting {
			state = store.EndpointReconnecting
		}
		c.Subscriptions[streamID] = &store.Subscription{StreamID: streamID, CreatedAt: now, Node: owner.Publisher.Node, State: state}
		return nil
	})
	if err != nil {
		return "", err
	}
	endpoint := store.SubscriberEndpointID(cid, streamID)
	for {
		node, moving, err := s.subscriptionTarget(ctx, sid, cid, streamID, now)
		if err != nil {
			s.rollbackSubscription(ctx, sid, cid, streamID, now, "")
			return "", err
		}
		if moving && reconnecting {
			// The server moves this subscription itself once its publisher
			// is back (forciblyReconnectSubscriber). Holding the client's
			// request would only hold its socket too: a pending request
			// keeps the nudges off it, and its own stream, broken too,
			// would wait for openvidu-browser's 4 s timer.
			s.rollbackSubscription(ctx, sid, cid, streamID, now, "")
			return "", newError(StreamMoving, "Stream '%s' is moving to another media node: the server offers the subscription again once it is there", streamID)
		}
		if node == "" { // the stream is moving (a new subscription waits), or its node is briefly unreachable
			if err := holdOn(ctx); err != nil {
				s.rollbackSubscription(ctx, sid, cid, streamID, now, "")
				return "", err
			}
			continue
		}
		mc, err := s.mediaClient(ctx, node)
		var offer mediaapi.SDPOffer
		if err == nil {
			offer, err = mc.Subscribe(ctx, mediaapi.SubscribeRequest{SessionID: string(sid), EndpointID: endpoint, StreamID: string(streamID), ConnectionID: string(cid), Reconnect: replace})
		}
		if unreachable(err) {
			if err := holdOn(ctx); err != nil {
				s.rollbackSubscription(ctx, sid, cid, streamID, now, "")
				return "", err
			}
			continue
		}
		if err != nil {
			s.rollbackSubscription(ctx, sid, cid, streamID, now, node)
			var me *mediaapi.Error
			if errors.As(err, &me) {
				return "", &Error{Kind: OfferFailed, cause: err,
					Message: "Unable to generate SDP offer when subscribing '" + string(cid) + "' to '" + string(ownerID) + "'"}
			}
			return "", err
		}
		return offer.SDPOffer, nil
	}
}

// subscriptionTarget returns the node where the subscription (made at
// createdAt) must be created: its stream's node, once the stream is not
// moving and the node serves ("" otherwise; moving says the stream is being
// moved to another node). It records the node in the subscription.
func (s *Service) subscriptionTarget(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, streamID protocol.StreamID, createdAt int64) (node protocol.NodeID, moving bool, err error) {
	err = s.update(ctx, sid, func(tx *store.Tx) error {
		node, moving = "", false
		c, err := activeParticipant(tx, sid, cid)
		if err != nil {
			return err
		}
		sub := c.Subscriptions[streamID]
		if sub == nil || sub.CreatedAt != createdAt {
			return newError(Superseded, "The subscription of '%s' to '%s' was replaced meanwhile", cid, streamID)
		}
		owner := streamOwner(tx.Conns, streamID)
		if owner == nil || owner.Publisher == nil || !owner.Publisher.Live() {
			return newError(StreamNotFound, "Stream '%s' does not exist in Session '%s'", streamID, sid)
		}
		if owner.Publisher.State == store.EndpointMigrating {
			moving = true
			return nil
		}
		node = owner.Publisher.Node
		sub.Node = node
		if sub.Live() {
			// The client's own renegotiation claims the subscription: a
			// migration may have marked it for the server to move
			// (forciblyReconnectSubscriber), which must not now offer a
			// second peer connection for the same endpoint.
			sub.State = store.EndpointReconnecting
		}
		return nil
	})
	if err != nil || node == "" {
		return "", moving, err
	}
	if !s.nodeServes(ctx, node) {
		return "", false, nil
	}
	return node, false, nil
}

// rollbackSubscription undoes a failed prepareReceiveVideoFrom. A new
// subscription goes; a live one whose reconnection failed stays, to be moved
// by the server (forciblyReconnectSubscriber), since openvidu-browser never
// retries its own reconnection.
func (s *Service) rollbackSubscription(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, streamID protocol.StreamID, createdAt int64, node protocol.NodeID) {
	ctx, cancel := background(ctx)
	defer cancel()
	kept := false
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		kept = false
		if c := tx.Conns[cid]; c != nil {
			if sub := c.Subscriptions[streamID]; sub != nil && sub.CreatedAt == createdAt {
				if sub.Live() {
					sub.State, kept = store.EndpointMigrating, true
				} else {
					delete(c.Subscriptions, streamID)
				}
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("roll back subscription", "session", sid, "stream", streamID, "err", err)
	}
	s.releaseEndpoints(ctx, sid, []endpointRef{{node, store.SubscriberEndpointID(cid, streamID)}})
	if kept {
		s.forceResubscribe(ctx, sid, cid, streamID, false)
	}
}

// CompleteSubscribe applies the subscriber's SDP answer to the endpoint that
// PrepareSubscribe made (receiveVideoFrom with sdpAnswer, or reconnectStream
// with sdpString from a subscriber). forced says the answer is to the
// server's offer (reconnectStream's forciblyReconnect): an answer to an offer
// that the other side's negotiation replaced meanwhile is refused without
// touching the endpoint, whose peer connection now belongs to that one.
func (s *Service) CompleteSubscribe(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, sender, answer string, forced bool) error {
	snap, c, err := s.loadParticipant(ctx, sid, cid)
	if err != nil {
		return err
	}
	owner := resolveSender(snap.Conns, sender)
	if owner == nil || owner.Publisher == nil {
		return newError(StreamNotFound, "Stream '%s' does not exist in Session '%s'", sender, sid)
	}
	streamID := owner.Publisher.StreamID
	sub := c.Subscriptions[streamID]
	if sub == nil {
		return newError(ConnectionNotFound, "No subscription of %s to %s: call prepareReceiveVideoFrom first", cid, streamID)
	}
	if forced != (sub.State == store.EndpointForced) {
		return newError(Superseded, "The offer answered for the subscription of '%s' to '%s' was replaced meanwhile", cid, streamID)
	}
	mc, err := s.mediaClient(ctx, sub.Node)
	if err != nil {
		return err
	}
	if err := mc.Answer(ctx, string(sid), store.SubscriberEndpointID(cid, streamID), answer); err != nil {
		if sub.State == store.EndpointForced {
			// The answer came for a server offer the endpoint no longer
			// has: offer the subscriber a fresh one.
			s.log.Info("stale answer to a forced reconnection: offering again", "session", sid, "subscriber", cid, "stream", streamID, "err", err)
			s.forceResubscribe(ctx, sid, cid, streamID, true)
		}
		var me *mediaapi.Error
		if errors.As(err, &me) {
			return &Error{Kind: BadSDP, cause: err,
				Message: "Unable to generate SDP answer when subscribing '" + string(cid) + "' to '" + string(owner.ID) + "'"}
		}
		return err
	}
	return s.update(ctx, sid, func(tx *store.Tx) error {
		if c := tx.Conns[cid]; c != nil {
			if cur := c.Subscriptions[streamID]; cur != nil && cur.CreatedAt == sub.CreatedAt && cur.State != store.EndpointReady {
				if cur.State == store.EndpointCreating && !c.Recorder {
					emit(tx, events.NewWebrtcConnectionCreated(tx.Session, inbound(c, cur, streamOwner(tx.Conns, streamID))))
				}
				cur.State = store.EndpointReady
			}
		}
		return nil
	})
}

// Unsubscribe ends the participant's subscription to the stream of the
// sender connection (unsubscribeFromVideo).
func (s *Service) Unsubscribe(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, sender string) error {
	var released []endpointRef
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		released = nil
		c, err := activeParticipant(tx, sid, cid)
		if err != nil {
			return err
		}
		for streamID, sub := range c.Subscriptions {
			if string(streamID) == sender || protocol.ConnectionOfStream(streamID) == protocol.ConnectionID(sender) {
				if sub.Live() && !c.Recorder {
					emit(tx, events.NewWebrtcConnectionDestroyed(tx.Session, inbound(c, sub, streamOwner(tx.Conns, streamID)), store.NowMillis(), protocol.ReasonUnsubscribe))
				}
				delete(c.Subscriptions, streamID)
				released = append(released, endpointRef{sub.Node, store.SubscriberEndpointID(cid, streamID)})
			}
		}
		if len(released) == 0 {
			return newError(ConnectionNotFound, "User %s not found in session %s", sender, sid)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.releaseEndpoints(ctx, sid, released)
	return nil
}

// Unpublish stops the participant's stream (unpublishVideo): the others get
// participantUnpublished with reason unpublish.
func (s *Service) Unpublish(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) error {
	var released []endpointRef
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		c, err := activeParticipant(tx, sid, cid)
		if err != nil {
			return err
		}
		if c.Publisher == nil {
			return newError(StreamNotFound, "Participant '%s' is not streaming media", cid)
		}
		released, err = unpublish(tx, c, protocol.ReasonUnpublish, false)
		return err
	})
	if err != nil {
		return err
	}
	s.releaseEndpoints(ctx, sid, released)
	return nil
}

// ForceUnpublishByUser unpublishes someone's stream on behalf of a moderator.
func (s *Service) ForceUnpublishByUser(ctx context.Context, sid protocol.SessionID, moderator protocol.ConnectionID, streamID protocol.StreamID) error {
	var released []endpointRef
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		m, err := activeParticipant(tx, sid, moderator)
		if err != nil {
			return err
		}
		if m.Role != protocol.RoleModerator {
			return newError(Unauthorized, "Unable to force unpublish. The user does not have a valid token")
		}
		owner := streamOwner(tx.Conns, streamID)
		if owner == nil {
			return newError(StreamNotFound, "Stream '%s' does not exist in Session '%s'", streamID, sid)
		}
		released, err = unpublish(tx, owner, protocol.ReasonForceUnpublishByUser, true)
		return err
	})
	if err != nil {
		return err
	}
	s.releaseEndpoints(ctx, sid, released)
	return nil
}

// ICECandidate is a client's trickled candidate.
type ICECandidate struct {
	Candidate     string
	SDPMid        *string
	SDPMLineIndex *uint16
}

// AddICECandidate passes a client's candidate to the endpoint it belongs to:
// endpointName is the participant's own id for its publisher, the publisher's
// id for a subscription. Candidates for an endpoint the node does not know
// (yet) are dropped: the node is ICE-lite and learns the browser's address
// from its connectivity checks.
func (s *Service) AddICECandidate(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, endpointName string, cand ICECandidate) error {
	snap, c, err := s.loadParticipant(ctx, sid, cid)
	if err != nil {
		return err
	}
	var (
		endpoint string
		node     protocol.NodeID
	)
	if protocol.ConnectionID(endpointName) == cid {
		if c.Publisher == nil {
			return nil
		}
		endpoint, node = string(c.Publisher.StreamID), c.Publisher.Node
	} else {
		owner := snap.Conns[protocol.ConnectionID(endpointName)]
		if owner == nil || owner.Publisher == nil || c.Subscriptions[owner.Publisher.StreamID] == nil {
			return nil
		}
		endpoint, node = store.SubscriberEndpointID(cid, owner.Publisher.StreamID), c.Subscriptions[owner.Publisher.StreamID].Node
	}
	mc, err := s.mediaClient(ctx, node)
	if err == nil {
		err = mc.AddICECandidate(ctx, endpoint, mediaapi.ICECandidate{SessionID: string(sid), Candidate: cand.Candidate, SDPMid: cand.SDPMid, SDPMLineIndex: cand.SDPMLineIndex})
	}
	if err != nil && ctx.Err() == nil {
		s.log.Debug("ICE candidate not applied", "session", sid, "endpoint", endpoint, "err", err)
	}
	return nil
}

// StreamPropertyChanged records a change of the participant's published
// stream (audioActive, videoActive, videoDimensions, ...) and tells the
// others; newValue is forwarded as the JSON text of what the client sent.
func (s *Service) StreamPropertyChanged(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, property string, newValue json.RawMessage, reason string) error {
	return s.update(ctx, sid, func(tx *store.Tx) error {
		c, err := activeParticipant(tx, sid, cid)
		if err != nil {
			return err
		}
		p := c.Publisher
		if p == nil {
			return newError(StreamNotFound, "Participant '%s' is not streaming media", cid)
		}
		switch property {
		case "audioActive":
			_ = json.Unmarshal(newValue, &p.MediaOptions.AudioActive)
		case "videoActive":
			_ = json.Unmarshal(newValue, &p.MediaOptions.VideoActive)
		case "videoDimensions":
			var dims string
			if json.Unmarshal(newValue, &dims) == nil && strings.HasPrefix(dims, "{") {
				p.MediaOptions.VideoDimensions = dims
			}
		}
		if !p.Live() {
			return nil
		}
		return tx.NotifyParticipants(cid, protocol.NotifyStreamPropertyChanged, protocol.StreamPropertyChangedNotification{
			ConnectionID: string(cid), StreamID: string(p.StreamID), Property: property, NewValue: string(newValue), Reason: reason,
		})
	})
}
