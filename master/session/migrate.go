package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Session migration moves a session from a media node that crashed (or is
// draining) to another one, without the application doing anything. The
// server cannot push a browser to re-publish, so migration uses the paths
// openvidu-browser already has (Stream.ts, Session.ts):
//
//  1. MigrateSession re-pins the session and marks every endpoint that was on
//     the old node "migrating": streams stay published for everybody.
//  2. A publisher whose peer connection broke re-publishes by itself: echo,
//     then reconnectStream with a new offer (after its ICE failed, or stayed
//     disconnected for 4 s). ReconnectPublisher creates the endpoint on the
//     new node under the same stream id (a request that finds the old node
//     unreachable before the crash is declared is held, not failed).
//  3. Then every subscriber of that stream gets forciblyReconnectSubscriber
//     with an offer from the new node, and answers with reconnectStream.
//  4. A subscriber that reconnects by itself before its publisher is back
//     (prepareReceiveVideoFrom with reconnect) is held until then.
//
// Clients of the Go SDK follow the same paths. NudgePublishers shortens step 2
// for browsers; after a crash, clients that announced
// protocol.FeatureReconnectPublisher (the Go SDK) are told to take it at once
// (protocol.NotifyReconnectPublisher).

// nodeServeFreshness is how recent a node's heartbeat must be for requests
// to be sent to it; an older one may be dead and not yet declared so.
const nodeServeFreshness = 2 * time.Second

// holdStep is how often a held request looks again.
const holdStep = 100 * time.Millisecond

// nodeServes reports whether the media node takes requests for the sessions
// it hosts: known, not declared crashed, running or draining, and
// heartbeating.
func (s *Service) nodeServes(ctx context.Context, id protocol.NodeID) bool {
	n, err := s.store.MediaNode(ctx, id)
	if err != nil {
		return false
	}
	return !n.Crashed() && (n.Status == protocol.NodeRunning || n.Status == protocol.NodeWaitingIdle) &&
		n.Fresh(time.Now(), nodeServeFreshness)
}

// holdOn waits a step of a held request, or fails when ctx ends.
func holdOn(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return &Error{Kind: NotMovedInTime, cause: ctx.Err(),
			Message: "The media node of this stream is unavailable and the stream was not moved in time"}
	case <-time.After(holdStep):
		return nil
	}
}

// unreachable reports whether err means the media node could not be
// reached (as opposed to refusing the request).
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var me *mediaapi.Error
	if errors.As(err, &me) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind == NoMediaNode
	}
	return true
}

// MigrateSession moves session sid off media node from, to the best other
// node (medianodes.Sessions). alive says the old node still runs (a drain):
// its endpoints of the session are released, which breaks the clients' peer
// connections so that they reconnect to the new node. A session that no
// longer exists or already left the node is only unpinned from it.
func (s *Service) MigrateSession(ctx context.Context, sid protocol.SessionID, from protocol.NodeID, alive bool) error {
	to, err := s.placeSession(ctx, from)
	if errors.Is(err, errNoNode) {
		// Without a node to move to, a session that is gone or already left
		// the node (a stale pin) is still only unpinned: the controller
		// would otherwise close it although it lives elsewhere, or keep the
		// drained node waiting for it.
		snap, lerr := s.store.Load(ctx, sid)
		if errors.Is(lerr, store.ErrNotFound) || (lerr == nil && snap.Session.MediaNodeID != from) {
			if uerr := s.store.UnpinSession(ctx, from, sid); uerr != nil {
				return fmt.Errorf("unpin session %s from %s: %w", sid, from, uerr)
			}
			return nil
		}
	}
	if err != nil {
		return err
	}
	moved := false
	var nudge []protocol.ConnectionID
	err = s.update(ctx, sid, func(tx *store.Tx) error {
		moved, nudge = false, nil
		if tx.Session == nil || tx.Session.MediaNodeID != from {
			return nil
		}
		moved = true
		tx.Session.MediaNodeID = to
		for _, c := range tx.SortedConns() {
			republish := false
			if p := c.Publisher; p != nil && p.Node == from {
				if p.Live() {
					p.Node, p.State, republish = to, store.EndpointMigrating, true
				} else {
					c.Publisher = nil // a publishVideo in flight to the old node: it fails
				}
			}
			for streamID, sub := range c.Subscriptions {
				if sub.Node != from {
					continue
				}
				if sub.Live() {
					sub.Node, sub.State = to, store.EndpointMigrating
				} else {
					delete(c.Subscriptions, streamID)
				}
			}
			if republish && c.Active() && c.Master != "" {
				nudge = append(nudge, c.ID)
			}
			if republish && !alive && c.Active() && slices.Contains(c.Features, protocol.FeatureReconnectPublisher) {
				// Its client re-publishes when told: no need to wait for its
				// ICE to notice the silence (a drained node tells it itself).
				if err := tx.Notify(c.ID, protocol.NotifyReconnectPublisher, protocol.ReconnectPublisher{
					StreamID: string(c.Publisher.StreamID), Reason: "nodeCrashed"}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate session %s: %w", sid, err)
	}
	if moved {
		if err := s.store.PinSession(ctx, to, sid); err != nil {
			return fmt.Errorf("pin session %s to %s: %w", sid, to, err)
		}
	}
	if err := s.store.UnpinSession(ctx, from, sid); err != nil {
		return fmt.Errorf("unpin session %s from %s: %w", sid, from, err)
	}
	if !moved {
		return nil
	}
	if alive {
		if mc, err := s.mediaClient(ctx, from); err == nil {
			if err := mc.ReleaseMovedSession(ctx, string(sid)); err != nil {
				s.log.Warn("release a migrated session on its old node", "session", sid, "node", from, "err", err)
			}
		}
	}
	s.log.Info("session migrated", "session", sid, "from", from, "to", to, "publishers", len(nudge))
	return nil
}

// NudgePublishers shortens the wait of the session's publishers that must
// re-publish after a migration (medianodes.Sessions): it asks the masters
// holding their WebSockets to close them, every Nudges.Interval,
// Nudges.Count times at most, while some have not re-published: from
// Nudges.Delay after the migration of a drained node's session (silentSince
// zero), from Nudges.CrashDelay after silentSince, when the crashed node
// went silent. openvidu-browser reconnects its WebSocket at once
// and, on resuming, re-establishes every stream whose ICE is not connected
// (Session.reconnectBrokenStreams), without waiting for its own timer (4 s
// after ICE "disconnected"). A close before the browser's ICE noticed the
// loss does nothing but a reconnection, hence several. It returns when done
// or when ctx ends.
func (s *Service) NudgePublishers(ctx context.Context, sid protocol.SessionID, silentSince time.Time) {
	n := s.cfg.Nudges
	if n.Count <= 0 {
		return
	}
	wait := n.Delay
	if !silentSince.IsZero() {
		wait = max(0, time.Until(silentSince.Add(n.CrashDelay)))
	}
	for i := 0; i < n.Count; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = n.Interval
		nudged := 0
		err := s.update(ctx, sid, func(tx *store.Tx) error {
			nudged = 0
			for _, c := range tx.SortedConns() {
				if c.Active() && c.Master != "" && c.Publisher != nil && c.Publisher.State == store.EndpointMigrating {
					if err := tx.Notify(c.ID, protocol.InternalReconnectSocket, protocol.ReconnectSocket{IfMigrating: true}); err != nil {
						return err
					}
					nudged++
				}
			}
			return nil
		})
		if err != nil {
			s.log.Warn("nudge migrated publishers", "session", sid, "err", err)
			return
		}
		if nudged == 0 {
			return
		}
	}
}

// QueueResponse queues a JSON-RPC response frame for a participant whose
// socket closed before the answer was ready (see signaling).
func (s *Service) QueueResponse(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, frame json.RawMessage) {
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		if c := tx.Conns[cid]; c == nil || !c.Active() {
			return nil
		}
		return tx.Notify(cid, protocol.InternalResponse, frame)
	})
	if err != nil {
		s.log.Warn("queue a response", "session", sid, "connection", cid, "err", err)
	}
}

// PublisherMigrating reports whether a participant's stream waits to be
// re-published on another media node.
func (s *Service) PublisherMigrating(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) bool {
	snap, err := s.store.Load(ctx, sid)
	if err != nil {
		return false
	}
	c := snap.Conns[cid]
	return c != nil && c.Publisher != nil && c.Publisher.State == store.EndpointMigrating
}

// CloseNodeSession closes a session hosted by a media node that crashed or
// is removed (medianodes.Sessions); a session that is gone is only unpinned.
func (s *Service) CloseNodeSession(ctx context.Context, sid protocol.SessionID, node protocol.NodeID, reason string) error {
	err := s.CloseSession(ctx, sid, reason)
	if IsKind(err, SessionNotFound) {
		err = nil
	}
	if uerr := s.store.UnpinSession(ctx, node, sid); err == nil && uerr != nil {
		err = uerr
	}
	return err
}

// publisherMoved records that a migrating stream's endpoint now exists on
// node, and moves its subscribers there.
func (s *Service) publisherMoved(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, streamID protocol.StreamID, node protocol.NodeID) {
	var subscribers []protocol.ConnectionID
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		subscribers = nil
		c := tx.Conns[cid]
		if c == nil || c.Publisher == nil || c.Publisher.StreamID != streamID ||
			c.Publisher.State != store.EndpointMigrating || c.Publisher.Node != node {
			return nil
		}
		c.Publisher.State = store.EndpointReady
		for _, o := range tx.SortedConns() {
			if sub := o.Subscriptions[streamID]; sub != nil && sub.State == store.EndpointMigrating {
				subscribers = append(subscribers, o.ID)
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("record a moved publisher", "session", sid, "stream", streamID, "err", err)
		return
	}
	for _, sub := range subscribers {
		s.forceResubscribe(ctx, sid, sub, streamID, false)
	}
}

// forceResubscribe offers subscriber cid a new peer connection for streamID
// on the stream's node (forciblyReconnectSubscriber). It acts on a
// subscription left behind by a migration, or (again) on one whose forced
// offer went stale.
func (s *Service) forceResubscribe(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, streamID protocol.StreamID, again bool) {
	createdAt := store.NowMillis()
	var (
		node    protocol.NodeID
		ownerID protocol.ConnectionID
	)
	err := s.update(ctx, sid, func(tx *store.Tx) error {
		node = ""
		c := tx.Conns[cid]
		if c == nil || !c.Active() {
			return nil
		}
		sub := c.Subscriptions[streamID]
		if sub == nil || !(sub.State == store.EndpointMigrating || (again && sub.State == store.EndpointForced)) {
			return nil
		}
		owner := streamOwner(tx.Conns, streamID)
		if owner == nil || owner.Publisher == nil || owner.Publisher.State != store.EndpointReady {
			return nil
		}
		node, ownerID = owner.Publisher.Node, owner.ID
		sub.Node, sub.State, sub.CreatedAt = node, store.EndpointForced, createdAt
		return nil
	})
	if err != nil || node == "" {
		if err != nil {
			s.log.Warn("force a subscriber to reconnect", "session", sid, "subscriber", cid, "err", err)
		}
		return
	}
	mc, subErr := s.mediaClient(ctx, node)
	var offer mediaapi.SDPOffer
	if subErr == nil {
		offer, subErr = mc.Subscribe(ctx, mediaapi.SubscribeRequest{SessionID: string(sid), EndpointID: store.SubscriberEndpointID(cid, streamID),
			StreamID: string(streamID), ConnectionID: string(cid), Reconnect: true})
	}
	if subErr != nil {
		s.log.Warn("offer a moved stream to a subscriber", "session", sid, "subscriber", cid, "stream", streamID, "err", subErr)
	}
	err = s.update(ctx, sid, func(tx *store.Tx) error {
		c := tx.Conns[cid]
		if c == nil {
			return nil
		}
		sub := c.Subscriptions[streamID]
		if sub == nil || sub.State != store.EndpointForced || sub.CreatedAt != createdAt {
			return nil
		}
		if subErr != nil {
			// Left for the subscriber's own reconnection, which finds the
			// stream in place.
			sub.State = store.EndpointMigrating
			return nil
		}
		return tx.Notify(cid, protocol.NotifyForciblyReconnect,
			protocol.ForciblyReconnectNotification{ConnectionID: string(ownerID), StreamID: string(streamID), SDPOffer: offer.SDPOffer})
	})
	if err != nil {
		s.log.Warn("force a subscriber to reconnect", "session", sid, "subscriber", cid, "stream", streamID, "err", err)
	}
}
