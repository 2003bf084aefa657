package session

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// CreateSession stores a new session with normalised properties (see the REST
// layer). It answers 409 when customSessionId is taken, 400 when the requested
// media node does not accept sessions (unknown, not running). With an idempotency key (the Idempotency-Key header),
// a retry of the same request gets the session the first attempt made (200).
func (s *Service) CreateSession(ctx context.Context, props store.SessionProperties, idempotencyKey string) (*store.Snapshot, error) {
	if props.ForcedVideoCodec == "" {
		props.ForcedVideoCodec = s.cfg.ForcedVideoCodec
	}
	props.ForcedVideoCodecResolved = ResolveCodec(props.ForcedVideoCodec, s.cfg.ForcedVideoCodec)
	id := protocol.SessionID(props.CustomSessionID)
	if id == "" {
		id = protocol.NewSessionID()
	}
	// A generated id is bound to the idempotency key before anything else:
	// a retry reuses it, and finds the session if the first attempt made it.
	// (A custom id needs no key: its retry answers 409, which clients read
	// as "it exists".)
	if idempotencyKey != "" && props.CustomSessionID == "" {
		reserved, err := s.store.ReserveSessionID(ctx, idempotencyKey, id)
		if err != nil {
			return nil, err
		}
		if reserved != id {
			id = reserved
			if snap, err := s.store.Load(ctx, id); err == nil {
				return snap, nil
			}
		}
	}
	sess := &store.Session{ID: id, CreatedAt: store.NowMillis(), Properties: props, Life: 1}
	if n := protocol.NodeID(props.MediaNodeRequested); n != "" {
		node, err := s.store.MediaNode(ctx, n)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if err != nil || !node.AcceptsSessions(time.Now()) {
			return nil, &Error{Kind: NodeRefusesSessions, Message: "Media Node " + string(n) + " does not allow initializing new Sessions"}
		}
		sess.MediaNodeID = n
	}
	if err := s.store.CreateSession(ctx, sess, events.NewSessionCreated(sess).Stored()); err != nil {
		if errors.Is(err, store.ErrSessionExists) {
			return nil, &Error{Kind: SessionExists, Message: "Session " + string(id) + " already exists"}
		}
		return nil, err
	}
	if sess.MediaNodeID != "" {
		// Counted on its node from now on, as OpenVidu counts a session
		// created for a node before anybody joins it.
		if err := s.store.PinSession(ctx, sess.MediaNodeID, sess.ID); err != nil {
			return nil, err
		}
	}
	return &store.Snapshot{Session: sess, Conns: map[protocol.ConnectionID]*store.Connection{}}, nil
}

// ResolveCodec maps a session's forcedVideoCodec to the codec its media
// node forwards: VP8 or H264 (MEDIA_SERVER_PREFERRED and NONE mean the
// cluster default; Chorus never transcodes, so VP9 is not offered).
func ResolveCodec(forced, clusterDefault string) string {
	switch forced {
	case "VP8", "H264":
		return forced
	}
	if clusterDefault == "H264" {
		return "H264"
	}
	return "VP8"
}

// GetSession returns a session, or a 404 Error.
func (s *Service) GetSession(ctx context.Context, sid protocol.SessionID) (*store.Snapshot, error) {
	snap, err := s.store.Load(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Error{Kind: SessionNotFound, Message: "Session " + string(sid) + " not found"}
	}
	return snap, err
}

// ListSessions returns every session.
func (s *Service) ListSessions(ctx context.Context) ([]*store.Snapshot, error) {
	ids, err := s.store.ListSessionIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*store.Snapshot, 0, len(ids))
	for _, id := range ids {
		snap, err := s.store.Load(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // closed meanwhile, or an index entry the GC will drop
		}
		if err != nil {
			return nil, err
		}
		out = append(out, snap)
	}
	return out, nil
}

// CloseSession closes a session (DELETE /sessions/{id}): every participant is
// evicted with the reason, the media node releases the session.
func (s *Service) CloseSession(ctx context.Context, sid protocol.SessionID, reason string) error {
	_, err := s.closeSessionIf(ctx, sid, reason, nil)
	return err
}

// closeSessionIf closes a session as CloseSession does if cond (nil:
// always) holds within the closing transaction, and reports whether it
// closed it.
func (s *Service) closeSessionIf(ctx context.Context, sid protocol.SessionID, reason string, cond func(tx *store.Tx) bool) (bool, error) {
	var closed *store.Session
	var evicted []*store.Connection
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		closed, evicted = nil, nil
		if tx.Session == nil {
			return &Error{Kind: SessionNotFound, Message: "Session " + string(sid) + " not found"}
		}
		if cond != nil && !cond(tx) {
			return nil
		}
		closed = tx.Session
		now := store.NowMillis()
		remaining := activeConns(tx.SortedConns())
		for len(remaining) > 0 {
			victim := remaining[0]
			remaining = remaining[1:]
			emitParticipantGone(tx, victim, now, reason)
			dropParticipant(tx, victim)
			if err := evictNotify(tx, victim, remaining, reason); err != nil {
				return err
			}
			evicted = append(evicted, victim)
		}
		emit(tx, events.NewSessionDestroyed(tx.Session, now, reason))
		tx.DeleteSession()
		return nil
	})
	if err != nil || closed == nil {
		return false, err
	}
	s.afterSessionClosed(ctx, closed, evicted)
	return true, nil
}

// evictNotify queues the notifications of one eviction: participantLeft to
// the remaining participants, then participantEvicted to them and to the
// victim (whose client leaves on it), as openvidu-server sends them. A victim
// without a WebSocket is not told: nobody would read it.
func evictNotify(tx *store.Tx, victim *store.Connection, remaining []*store.Connection, reason string) error {
	params := protocol.ConnectionReason{ConnectionID: string(victim.ID), Reason: reason}
	for _, c := range remaining {
		if err := tx.NotifyDeparture(c, victim, protocol.NotifyParticipantLeft, params); err != nil {
			return err
		}
	}
	for _, c := range remaining {
		if err := tx.NotifyDeparture(c, victim, protocol.NotifyParticipantEvicted, params); err != nil {
			return err
		}
	}
	if victim.Master == "" {
		return nil
	}
	return tx.Notify(victim.ID, protocol.NotifyParticipantEvicted, params)
}

// afterSessionClosed releases what a closed session held outside its keys.
func (s *Service) afterSessionClosed(ctx context.Context, sess *store.Session, conns []*store.Connection) {
	ctx, cancel := background(ctx)
	defer cancel()
	for _, c := range conns {
		_ = s.store.CancelEviction(ctx, sess.ID, c.ID)
		if c.Master != "" {
			_ = s.store.RemoveMasterConnection(ctx, c.Master, sess.ID, c.ID)
		}
	}
	if err := s.store.UnindexSession(ctx, sess.ID); err != nil {
		s.log.Warn("unindex session", "session", sess.ID, "err", err)
	}
	// An event stream already drained goes now; one with events left goes
	// when its deliverer drains it.
	if _, err := s.store.ForgetDrainedStream(ctx, sess.ID); err != nil {
		s.log.Warn("forget event stream", "session", sess.ID, "err", err)
	}
	if sess.MediaNodeID == "" {
		return
	}
	_ = s.store.UnpinSession(ctx, sess.MediaNodeID, sess.ID)
	mc, err := s.mediaClient(ctx, sess.MediaNodeID)
	if err == nil {
		err = mc.ReleaseSession(ctx, string(sess.ID))
	}
	if err != nil {
		s.log.Warn("release session on media node", "session", sess.ID, "node", sess.MediaNodeID, "err", err)
	}
}

// ConnectionProperties are the properties of POST /sessions/{id}/connection
// after validation.
type ConnectionProperties struct {
	Type             string
	Data             string
	Record           bool
	Role             string
	KurentoOptions   json.RawMessage
	CustomIceServers json.RawMessage
}

// CreateConnection adds a pending connection (a token) to a session. With an
// idempotency key, a retry returns the connection the first attempt made:
// the key is recorded in the same transaction as the connection.
func (s *Service) CreateConnection(ctx context.Context, sid protocol.SessionID, p ConnectionProperties, idempotencyKey string) (*store.Snapshot, *store.Connection, error) {
	if limit := s.cfg.Limits.MetadataBytes; limit > 0 && len(p.Data) > limit {
		return nil, nil, newError(MetadataTooLarge, "\"data\" is %d bytes long, more than the %d allowed", len(p.Data), limit)
	}
	tokenID := protocol.NewToken()
	c := &store.Connection{
		ID: protocol.NewConnectionID(), SessionID: sid, Type: p.Type, Status: store.StatusPending,
		CreatedAt: store.NowMillis(), TokenID: tokenID, Token: s.TokenURL(sid, tokenID),
		Role: p.Role, Record: p.Record, ServerData: p.Data,
		KurentoOptions: p.KurentoOptions, CustomIceServers: p.CustomIceServers,
	}
	var snap *store.Snapshot
	var made *store.Connection
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		if tx.Session == nil {
			return &Error{Kind: SessionNotFound, Message: "Session " + string(sid) + " not found"}
		}
		snap, made = &store.Snapshot{Session: tx.Session, Conns: tx.Conns}, c
		if idempotencyKey == "" {
			tx.Conns[c.ID] = c
			return nil
		}
		now := store.NowMillis()
		for k, call := range tx.Session.Idempotency {
			if now-call.At > store.IdempotencyTTL.Milliseconds() {
				delete(tx.Session.Idempotency, k)
			}
		}
		if call, ok := tx.Session.Idempotency[idempotencyKey]; ok {
			if prev := tx.Conns[call.ConnectionID]; prev != nil {
				made = prev // a retry: nothing to create
				return nil
			}
		}
		if tx.Session.Idempotency == nil {
			tx.Session.Idempotency = map[string]store.IdempotentCall{}
		}
		tx.Session.Idempotency[idempotencyKey] = store.IdempotentCall{ConnectionID: c.ID, At: now}
		tx.Conns[c.ID] = c
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return snap, made, nil
}

// GetConnection returns one connection. As openvidu-server, an unknown
// session is a 400 and an unknown connection a 404.
func (s *Service) GetConnection(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) (*store.Snapshot, *store.Connection, error) {
	snap, err := s.store.Load(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, &Error{Kind: SessionNotFound, Message: "Session " + string(sid) + " not found"}
	}
	if err != nil {
		return nil, nil, err
	}
	c := snap.Conns[cid]
	if c == nil {
		return nil, nil, &Error{Kind: ConnectionNotFound, Message: "Connection " + string(cid) + " not found"}
	}
	return snap, c, nil
}

// DeleteConnection revokes a pending connection's token or evicts an active
// participant with reason forceDisconnectByServer (DELETE .../connection/{cid}).
func (s *Service) DeleteConnection(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) error {
	var evicted *store.Connection
	var closed *closedSession
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		evicted, closed = nil, nil
		if tx.Session == nil {
			return &Error{Kind: SessionNotFound, Message: "Session " + string(sid) + " not found"}
		}
		c := tx.Conns[cid]
		if c == nil {
			return &Error{Kind: ConnectionNotFound, Message: "Connection " + string(cid) + " not found"}
		}
		if !c.Active() {
			delete(tx.Conns, cid)
			return nil
		}
		var err error
		evicted, closed, err = removeParticipant(tx, c, protocol.ReasonForceDisconnectByServer, true)
		return err
	})
	if err != nil {
		return err
	}
	if evicted != nil {
		s.afterRemoval(ctx, sid, evicted, closed)
	}
	return nil
}

// UpdateConnection changes a connection's role and/or record flag (PATCH
// .../connection/{cid}, OpenVidu Pro). An active participant is told about
// each property that changed with connectionPropertyChanged.
func (s *Service) UpdateConnection(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, role *string, record *bool) (*store.Snapshot, *store.Connection, error) {
	var snap *store.Snapshot
	var updated *store.Connection
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		if tx.Session == nil {
			return &Error{Kind: SessionNotFound, Message: "Session " + string(sid) + " not found"}
		}
		c := tx.Conns[cid]
		if c == nil {
			return &Error{Kind: ConnectionNotFound, Message: "Connection " + string(cid) + " not found"}
		}
		if role != nil && *role != c.Role {
			c.Role = *role
			if c.Active() {
				if err := tx.Notify(cid, protocol.NotifyConnectionPropertyChange, protocol.ConnectionPropertyChangedNotification{Property: "role", NewValue: *role}); err != nil {
					return err
				}
			}
		}
		if record != nil && *record != c.Record {
			c.Record = *record
			if c.Active() {
				v := "false"
				if *record {
					v = "true"
				}
				if err := tx.Notify(cid, protocol.NotifyConnectionPropertyChange, protocol.ConnectionPropertyChangedNotification{Property: "record", NewValue: v}); err != nil {
					return err
				}
			}
		}
		snap, updated = &store.Snapshot{Session: tx.Session, Conns: tx.Conns}, c
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return snap, updated, nil
}

// Signal sends a signal to participants (POST /signal, and sendMessage from a
// participant when from is set). An empty to means everybody, the sender
// included. An unknown recipient fails the whole signal.
func (s *Service) Signal(ctx context.Context, sid protocol.SessionID, to []string, typ, data *string, from string) error {
	fromREST := from == ""
	if limit := s.cfg.Limits.SignalDataBytes; limit > 0 {
		size := 0
		if typ != nil {
			size += len(*typ)
		}
		if data != nil {
			size += len(*data)
		}
		if size > limit {
			return newError(SignalTooLarge, "Signal too large: its data and type take %d bytes, more than the %d allowed", size, limit)
		}
	}
	return s.update(ctx, sid, func(tx *store.Tx) error {
		if tx.Session == nil {
			return &Error{Kind: SessionNotFound, Message: "Session " + string(sid) + " not found"}
		}
		if fromREST && tx.Session.ActivatedAt == 0 {
			return &Error{Kind: SessionEmpty, Message: "Session " + string(sid) + " has no participants"}
		}
		recipients := make([]protocol.ConnectionID, 0, len(to))
		for _, r := range to {
			recipients = append(recipients, protocol.ConnectionID(r))
		}
		if len(recipients) == 0 {
			for _, c := range activeConns(tx.SortedConns()) {
				recipients = append(recipients, c.ID)
			}
		}
		for _, r := range recipients {
			if c := tx.Conns[r]; c == nil || !c.Active() {
				if fromREST {
					return &Error{Kind: InvalidRecipients, Message: `"to" array has no valid connection identifiers`}
				}
				return &Error{Kind: InvalidRecipients, Message: `Signal "to" field invalid format: some connectionId does not exist in this session`}
			}
		}
		msg := protocol.SignalNotification{Data: data, Type: typ, From: from}
		seen := map[protocol.ConnectionID]bool{}
		var sent []protocol.ConnectionID
		for _, r := range recipients {
			if seen[r] {
				continue
			}
			seen[r] = true
			sent = append(sent, r)
			if err := tx.Notify(r, protocol.NotifySendMessage, msg); err != nil {
				return err
			}
		}
		emit(tx, events.NewSignalSent(tx.Session, store.NowMillis(), from, sent, typ, data))
		return nil
	})
}

// ForceUnpublish unpublishes a stream on behalf of the server (DELETE
// .../stream/{streamId}: reason forceUnpublishByServer) or a moderator
// (forceUnpublish: forceUnpublishByUser). Every participant, owner included,
// gets participantUnpublished.
func (s *Service) ForceUnpublish(ctx context.Context, sid protocol.SessionID, streamID protocol.StreamID, reason string) error {
	var released []endpointRef
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		released = nil
		if tx.Session == nil {
			return &Error{Kind: SessionNotFound, Message: "Session " + string(sid) + " not found"}
		}
		if tx.Session.ActivatedAt == 0 {
			return &Error{Kind: SessionInactive, Message: "Session " + string(sid) + " is not active"}
		}
		owner := streamOwner(tx.Conns, streamID)
		if owner == nil {
			return &Error{Kind: StreamNotFound, Message: "Stream '" + string(streamID) + "' does not exist in Session '" + string(sid) + "'"}
		}
		var err error
		released, err = unpublish(tx, owner, reason, true)
		return err
	})
	if err != nil {
		return err
	}
	ctx, cancel := background(ctx)
	defer cancel()
	s.releaseEndpoints(ctx, sid, released)
	return nil
}

// streamOwner returns the connection publishing streamID, or nil.
func streamOwner(conns map[protocol.ConnectionID]*store.Connection, streamID protocol.StreamID) *store.Connection {
	if c := conns[protocol.ConnectionOfStream(streamID)]; c != nil && c.Publisher != nil && c.Publisher.StreamID == streamID {
		return c
	}
	for _, c := range conns {
		if c.Publisher != nil && c.Publisher.StreamID == streamID {
			return c
		}
	}
	return nil
}

// unpublish removes owner's publisher and every subscription to it, queues
// participantUnpublished (to everybody else, and to the owner too when
// notifyOwner), and returns the endpoints to release.
func unpublish(tx *store.Tx, owner *store.Connection, reason string, notifyOwner bool) ([]endpointRef, error) {
	p := owner.Publisher
	if p == nil {
		return nil, nil
	}
	if p.Live() {
		now := store.NowMillis()
		emit(tx, events.NewWebrtcConnectionDestroyed(tx.Session, outbound(owner), now, reason))
		emitSubscriptionsTo(tx, owner, now, reason)
	}
	released := []endpointRef{{p.Node, string(p.StreamID)}}
	owner.Publisher = nil
	for _, c := range tx.Conns {
		if sub := c.Subscriptions[p.StreamID]; sub != nil {
			delete(c.Subscriptions, p.StreamID)
			released = append(released, endpointRef{sub.Node, store.SubscriberEndpointID(c.ID, p.StreamID)})
		}
	}
	if !p.Live() {
		return released, nil // nobody was told it existed
	}
	params := protocol.ConnectionReason{ConnectionID: string(owner.ID), Reason: reason}
	except := owner.ID
	if notifyOwner {
		except = ""
	}
	return released, tx.NotifyParticipants(except, protocol.NotifyParticipantUnpublished, params)
}

// closedSession is a session removeParticipant closed and the recorder
// connections it removed with it (their masters' connection sets and
// evictions must go too).
type closedSession struct {
	session   *store.Session
	recorders []*store.Connection
}

// removeParticipant deletes an active participant from the session within tx:
// subscriptions to its stream go, the others get participantLeft (and
// participantEvicted with notifyEvicted, the victim included). When nobody is
// left the session is deleted (reason lastParticipantLeft), its recorders
// with it, unless it is being recorded: then it stays open with its
// recorder until the recording's automatic stop (autostopRecordings), as
// in OpenVidu. It returns the removed connection and, if closed, the
// session.
func removeParticipant(tx *store.Tx, c *store.Connection, reason string, notifyEvicted bool) (*store.Connection, *closedSession, error) {
	removed := *c
	now := store.NowMillis()
	emitParticipantGone(tx, c, now, reason)
	dropParticipant(tx, c)
	remaining := activeConns(tx.SortedConns())
	switch {
	case c.Recorder:
		// hidden: nobody was told it joined
	case notifyEvicted:
		if err := evictNotify(tx, c, remaining, reason); err != nil {
			return nil, nil, err
		}
	default:
		for _, r := range remaining {
			if err := tx.NotifyDeparture(r, c, protocol.NotifyParticipantLeft, protocol.ConnectionReason{ConnectionID: string(c.ID), Reason: reason}); err != nil {
				return nil, nil, err
			}
		}
	}
	if len(participants(remaining)) > 0 || c.Recorder || tx.Session.Recording != "" {
		return &removed, nil, nil
	}
	// Only recorders remain: they leave with the session.
	closed := &closedSession{session: tx.Session}
	for _, r := range remaining {
		dropParticipant(tx, r)
		closed.recorders = append(closed.recorders, r)
		if err := tx.Notify(r.ID, protocol.NotifyParticipantEvicted, protocol.ConnectionReason{ConnectionID: string(r.ID), Reason: reason}); err != nil {
			return nil, nil, err
		}
	}
	emit(tx, events.NewSessionDestroyed(tx.Session, now, protocol.ReasonLastParticipantLeft))
	tx.DeleteSession()
	return &removed, closed, nil
}

// dropParticipant deletes c and the others' subscriptions to its stream
// (the media node releases a publisher's subscribers with it).
func dropParticipant(tx *store.Tx, c *store.Connection) {
	if p := c.Publisher; p != nil {
		for _, other := range tx.Conns {
			delete(other.Subscriptions, p.StreamID)
		}
	}
	delete(tx.Conns, c.ID)
}

// afterRemoval releases what a removed participant held, and the session's
// resources if it closed.
func (s *Service) afterRemoval(ctx context.Context, sid protocol.SessionID, c *store.Connection, closed *closedSession) {
	ctx, cancel := background(ctx)
	defer cancel()
	_ = s.store.CancelEviction(ctx, sid, c.ID)
	if c.Master != "" {
		_ = s.store.RemoveMasterConnection(ctx, c.Master, sid, c.ID)
	}
	if closed != nil {
		s.afterSessionClosed(ctx, closed.session, closed.recorders)
		return
	}
	s.releaseEndpoints(ctx, sid, endpointsOf(c))
}
