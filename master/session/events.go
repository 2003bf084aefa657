package session

import (
	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// emit queues an event with the transaction.
func emit(tx *store.Tx, e events.Event) { tx.Emit(e.Stored()) }

// outbound describes a connection's publisher endpoint.
func outbound(c *store.Connection) events.WebrtcConnection {
	p := c.Publisher
	return events.WebrtcConnection{StreamID: p.StreamID, ConnectionID: c.ID, Direction: events.Outbound,
		CreatedAt: p.CreatedAt, Media: p.MediaOptions}
}

// inbound describes subscriber's endpoint receiving owner's stream.
func inbound(subscriber *store.Connection, sub *store.Subscription, owner *store.Connection) events.WebrtcConnection {
	w := events.WebrtcConnection{StreamID: sub.StreamID, ConnectionID: subscriber.ID, Direction: events.Inbound,
		ReceivingFrom: protocol.ConnectionOfStream(sub.StreamID), CreatedAt: sub.CreatedAt}
	if owner != nil && owner.Publisher != nil {
		w.ReceivingFrom, w.Media = owner.ID, owner.Publisher.MediaOptions
	}
	return w
}

// emitSubscriptionsTo emits webrtcConnectionDestroyed for every ready
// subscription to owner's stream (before they are removed).
func emitSubscriptionsTo(tx *store.Tx, owner *store.Connection, now int64, reason string) {
	if owner.Publisher == nil {
		return
	}
	for _, c := range tx.SortedConns() {
		if sub := c.Subscriptions[owner.Publisher.StreamID]; sub != nil && sub.Live() && !c.Recorder {
			emit(tx, events.NewWebrtcConnectionDestroyed(tx.Session, inbound(c, sub, owner), now, reason))
		}
	}
}

// emitParticipantGone emits what a participant's departure ends, in
// openvidu-server's order: the others' subscriptions to it, its own
// subscriptions, its publisher, then participantLeft.
func emitParticipantGone(tx *store.Tx, c *store.Connection, now int64, reason string) {
	if c.Recorder {
		return // hidden: none of its events were emitted
	}
	emitSubscriptionsTo(tx, c, now, reason)
	for _, sub := range sortedSubscriptions(c) {
		if sub.Live() {
			emit(tx, events.NewWebrtcConnectionDestroyed(tx.Session, inbound(c, sub, streamOwner(tx.Conns, sub.StreamID)), now, reason))
		}
	}
	if c.Publisher != nil && c.Publisher.Live() {
		emit(tx, events.NewWebrtcConnectionDestroyed(tx.Session, outbound(c), now, reason))
	}
	emit(tx, events.NewParticipantLeft(tx.Session, c, now, reason))
}
