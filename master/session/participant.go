package session

import (
	"context"
	"crypto/subtle"
	"errors"
	"time"

	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/credential"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// JoinRequest is a joinRoom as the signaling layer hands it over.
type JoinRequest struct {
	SessionID protocol.SessionID
	Token     string
	Metadata  string
	Platform  string
	IP        string
	// Features are the Chorus extensions the client announced.
	Features []string
	// Secret is joinRoom's "secret": when it is the OpenVidu secret
	// (ServerSecret) the participant joins without a token, with a
	// connection of its own whose role is SUBSCRIBER, as openvidu-server 2
	// gives its "insecure" participants (RpcHandler.joinRoom).
	Secret       string
	ServerSecret credential.Secret
}

// JoinResult is what joinRoom answers.
type JoinResult struct {
	Session *store.Session
	Conn    *store.Connection
	Others  []*store.Connection // active participants, with their streams
}

// Join turns a pending connection into an active participant: the token is
// consumed, the session is pinned to a media node if it was not yet, and the
// other participants are told (participantJoined). The participant's
// WebSocket is owned by this master.
func (s *Service) Join(ctx context.Context, req JoinRequest) (*JoinResult, error) {
	sid := req.SessionID
	insecure := req.ServerSecret.Matches(req.Secret)
	tokenID, ok := ParseToken(req.Token, sid)
	if !ok && !insecure {
		return nil, newError(Unauthorized, "Unable to join session %s. Token %s is not valid", sid, req.Token)
	}
	if limit := s.cfg.Limits.MetadataBytes; limit > 0 && len(req.Metadata) > limit {
		return nil, newError(MetadataTooLarge, "Unable to join session %s. The metadata received from the client-side has an invalid format: %d bytes, more than the %d allowed",
			sid, len(req.Metadata), limit)
	}
	snap, err := s.store.Load(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, newError(SessionNotFound, "Unable to join session. Session %s cannot be found", sid)
	}
	if err != nil {
		return nil, err
	}
	node := snap.Session.MediaNodeID
	if node == "" {
		if node, err = s.placeSession(ctx, ""); errors.Is(err, errNoNode) {
			return nil, &Error{Kind: NoCapacity, cause: err,
				Message: "There is no available Media Node where to initialize session '" + string(sid) + "'"}
		}
		if err != nil {
			return nil, err
		}
	}
	now := store.NowMillis()
	rpcID := s.newRPCSessionID(sid)
	newConnID := protocol.NewConnectionID()
	var res *JoinResult
	pinned := false
	err = s.update(ctx, sid, func(tx *store.Tx) error {
		res, pinned = nil, false
		if tx.Session == nil {
			return newError(SessionNotFound, "Unable to join session. Session %s cannot be found", sid)
		}
		var c *store.Connection
		if insecure {
			tok := protocol.NewToken()
			c = &store.Connection{ID: newConnID, SessionID: sid, Type: "WEBRTC", CreatedAt: now, TokenID: tok,
				Token: s.TokenURL(sid, tok), Role: protocol.RoleSubscriber, Record: true}
			tx.Conns[c.ID] = c
		} else {
			for _, cand := range tx.Conns {
				if cand.TokenID == tokenID {
					c = cand
					break
				}
			}
			if c == nil || c.Active() {
				return newError(Unauthorized, "Unable to join session %s. Token %s is not valid", sid, req.Token)
			}
		}
		if limit := s.cfg.Limits.ParticipantsPerSession; limit > 0 && len(activeConns(tx.SortedConns())) >= limit {
			return newError(SessionFull, "Unable to join session %s. It has reached its limit of %d participants", sid, limit)
		}
		if tx.Session.MediaNodeID == "" {
			tx.Session.MediaNodeID, pinned = node, true
		}
		if tx.Session.ActivatedAt == 0 {
			tx.Session.ActivatedAt = now
		}
		c.Status, c.ActiveAt = store.StatusActive, now
		c.ClientData, c.Platform, c.IP, c.Location = req.Metadata, req.Platform, req.IP, "unknown"
		c.Features = req.Features
		c.RPCSessionID, c.Master, c.DisconnectedAt = rpcID, s.cfg.Incarnation.ID(), 0
		others := []*store.Connection{}
		for _, o := range participants(tx.SortedConns()) {
			if o.ID != c.ID {
				others = append(others, o)
			}
		}
		if !c.Recorder {
			emit(tx, events.NewParticipantJoined(tx.Session, c))
			if err := tx.NotifyParticipants(c.ID, protocol.NotifyParticipantJoined, RenderRemote(c, false)); err != nil {
				return err
			}
		}
		res = &JoinResult{Session: tx.Session, Conn: c, Others: others}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if pinned {
		if err := s.store.PinSession(ctx, res.Session.MediaNodeID, sid); err != nil {
			s.log.Warn("pin session", "session", sid, "err", err)
		}
	}
	if err := s.store.AddMasterConnection(ctx, s.cfg.Incarnation.ID(), sid, res.Conn.ID); err != nil {
		s.log.Warn("index connection", "session", sid, "connection", res.Conn.ID, "err", err)
	}
	return res, nil
}

// Reattach binds a participant whose WebSocket broke to this master's new
// WebSocket ("connect" with the JSON-RPC session id of joinRoom). Endpoints
// that requests cut off by the break left half-built are released.
func (s *Service) Reattach(ctx context.Context, sid protocol.SessionID, rpcSessionID string) (*store.Connection, error) {
	reconnErr := &Error{Kind: ReconnectionFailed, Message: protocol.CodeReconnectionErrorString}
	if rpcSessionID == "" {
		return nil, reconnErr
	}
	var conn *store.Connection
	var rollback []endpointRef
	var previous protocol.MasterID
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		conn, rollback, previous = nil, nil, ""
		if tx.Session == nil {
			return reconnErr
		}
		for _, c := range tx.Conns {
			if c.Active() && subtle.ConstantTimeCompare([]byte(c.RPCSessionID), []byte(rpcSessionID)) == 1 {
				conn = c
				break
			}
		}
		if conn == nil {
			return reconnErr
		}
		previous = conn.Master
		conn.Master, conn.DisconnectedAt = s.cfg.Incarnation.ID(), 0
		if p := conn.Publisher; p != nil && p.State == store.EndpointCreating {
			rollback = append(rollback, endpointRef{p.Node, string(p.StreamID)})
			conn.Publisher = nil
		}
		for id, sub := range conn.Subscriptions {
			if sub.State == store.EndpointCreating {
				rollback = append(rollback, endpointRef{sub.Node, store.SubscriberEndpointID(conn.ID, id)})
				delete(conn.Subscriptions, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.store.CancelEviction(ctx, sid, conn.ID); err != nil {
		s.log.Warn("cancel eviction", "session", sid, "connection", conn.ID, "err", err)
	}
	if previous != "" && previous != conn.Master {
		// Its old master held its socket until now: that master's socket
		// probably died with it, so check it at once.
		_ = s.store.RemoveMasterConnection(ctx, previous, sid, conn.ID)
		if f := s.suspect.Load(); f != nil {
			(*f)(previous)
		}
	}
	if err := s.store.AddMasterConnection(ctx, s.cfg.Incarnation.ID(), sid, conn.ID); err != nil {
		s.log.Warn("index connection", "session", sid, "connection", conn.ID, "err", err)
	}
	if len(rollback) > 0 {
		bctx, cancel := background(ctx)
		defer cancel()
		s.releaseEndpoints(bctx, sid, rollback)
	}
	return conn, nil
}

// Detach records that this master lost a participant's WebSocket without a
// leaveRoom: the participant is evicted (networkDisconnect) unless it
// reconnects within the grace period.
func (s *Service) Detach(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) error {
	return s.detach(ctx, sid, cid, s.cfg.Incarnation.ID())
}

// DetachFromMaster is Detach on behalf of a master that died.
func (s *Service) DetachFromMaster(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, master protocol.MasterID) error {
	return s.detach(ctx, sid, cid, master)
}

func (s *Service) detach(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, master protocol.MasterID) error {
	now := time.Now()
	detached := false
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		detached = false
		if tx.Session == nil {
			return nil
		}
		c := tx.Conns[cid]
		if c == nil || !c.Active() || c.Master != master {
			return nil // gone, or already taken over by another master
		}
		c.Master, c.DisconnectedAt, detached = "", now.UnixMilli(), true
		return nil
	})
	if err != nil {
		return err
	}
	_ = s.store.RemoveMasterConnection(ctx, master, sid, cid)
	if detached {
		return s.store.ScheduleEviction(ctx, sid, cid, now.Add(s.cfg.ReconnectGrace))
	}
	return nil
}

// Leave removes a participant that left by itself (leaveRoom): the others
// get participantLeft with reason disconnect.
func (s *Service) Leave(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) error {
	return s.removeActive(ctx, sid, cid, protocol.ReasonDisconnect, false, nil)
}

// EvictDisconnected evicts a participant whose WebSocket has been gone for
// longer than the grace period (reason networkDisconnect). It does nothing
// if the participant came back or left meanwhile; among masters racing to
// evict the same participant exactly one succeeds.
func (s *Service) EvictDisconnected(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) error {
	deadline := time.Now().Add(-s.cfg.ReconnectGrace).UnixMilli()
	still := func(c *store.Connection) bool {
		return c.Master == "" && c.DisconnectedAt != 0 && c.DisconnectedAt <= deadline
	}
	err := s.removeActive(ctx, sid, cid, protocol.ReasonNetworkDisconnect, true, still)
	if IsKind(err, SessionNotFound, ConnectionNotFound) {
		return nil
	}
	return err
}

// ForceDisconnect evicts target on behalf of moderator (forceDisconnect).
func (s *Service) ForceDisconnect(ctx context.Context, sid protocol.SessionID, moderator, target protocol.ConnectionID) error {
	return s.removeActive(ctx, sid, target, protocol.ReasonForceDisconnectByUser, true, nil, moderator)
}

// removeActive removes an active participant. cond, if set, must hold for the
// participant at transaction time. by, if given, is a participant that must
// be a moderator.
func (s *Service) removeActive(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, reason string, notifyEvicted bool, cond func(*store.Connection) bool, by ...protocol.ConnectionID) error {
	var removed *store.Connection
	var closed *closedSession
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		removed, closed = nil, nil
		if tx.Session == nil {
			return newError(SessionNotFound, "Session %s not found", sid)
		}
		if len(by) > 0 {
			if m := tx.Conns[by[0]]; m == nil || m.Role != protocol.RoleModerator {
				return newError(Unauthorized, "Unable to force disconnect. The user does not have a valid token")
			}
		}
		c := tx.Conns[cid]
		if c == nil || !c.Active() {
			if len(by) > 0 {
				return newError(ConnectionNotFound, "Connection not found when calling 'forceDisconnect'")
			}
			return newError(ConnectionNotFound, "Participant %s not found in session %s", cid, sid)
		}
		if cond != nil && !cond(c) {
			return nil
		}
		var err error
		removed, closed, err = removeParticipant(tx, c, reason, notifyEvicted)
		return err
	})
	if err != nil {
		return err
	}
	if removed != nil {
		s.afterRemoval(ctx, sid, removed, closed)
	}
	return nil
}

// evictOverflowing evicts a participant whose outbox holds more than
// Limits.OutboxBytes (queued bytes): a reader that slow, or gone, would make
// Redis hold everything sent to it. Its queue is dropped in the same
// transaction; it gets only its participantEvicted (reason
// forceDisconnectByServer), the others participantLeft and
// participantEvicted. A participant gone meanwhile is left alone.
func (s *Service) evictOverflowing(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, queued int64) {
	var removed *store.Connection
	var closed *closedSession
	err := s.store.Update(ctx, sid, func(tx *store.Tx) error {
		removed, closed = nil, nil
		c := tx.Conns[cid]
		if tx.Session == nil || c == nil || !c.Active() {
			return nil
		}
		tx.ResetOutbox(cid)
		var err error
		removed, closed, err = removeParticipant(tx, c, protocol.ReasonForceDisconnectByServer, true)
		return err
	})
	if err != nil {
		s.log.Warn("evict a participant whose outbox overflowed", "session", sid, "connection", cid, "queued", queued, "err", err)
		return
	}
	if removed != nil {
		s.log.Warn("evicted a participant whose outbox overflowed: it reads its notifications too slowly",
			"session", sid, "connection", cid, "queued", queued, "limit", s.cfg.Limits.OutboxBytes)
		s.afterRemoval(ctx, sid, removed, closed)
	}
}

// SessionStatus answers sessionStatus: the session's life, or the life it
// had when it closed. A session the cluster never heard of (its state was
// lost) answers 0, which openvidu-browser reads as a crash (nodeCrashed).
func (s *Service) SessionStatus(ctx context.Context, sid protocol.SessionID) (int, error) {
	life, _, err := s.store.SessionLife(ctx, sid)
	return life, err
}
