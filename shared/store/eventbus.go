package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/redis/go-redis/v9"
)

// The event bus: OpenVidu's CDR/webhook events, delivered at least once.
//
//	P:{sid}:ev        stream: the session's events, appended in the same
//	                  transaction as the change that caused them
//	P:{sid}:evlease   string: the master delivering the session's events (leased)
//	P:{cluster}:ev    stream: cluster events (media nodes, autoscaling, crashes)
//	P:{cluster}:evlease
//	P:evstreams       set: sessions whose stream may hold events (added before
//	                  the session exists, removed once its stream is drained
//	                  and the session gone)
//	P:deadletter      stream: events whose delivery failed until the deadline
//	P:evwake          pub/sub: "stream <sid> got events"
//	P:evtail          pub/sub: every event as emitted, for live tails
//
// A stream holds only undelivered events (delivered ones are deleted), capped
// at Config.EventsMaxLen entries: a backlog larger than that (no master able
// to deliver for a long time) loses its oldest events.
// Each stream has one consumer group, "delivery". A master delivers a stream
// only while it holds the stream's lease, so a session's events are delivered
// in order; a master that takes over a lease first re-delivers what the
// previous holder read but did not acknowledge (XAUTOCLAIM).

// ClusterStream is the pseudo session id of the cluster events' stream.
const ClusterStream protocol.SessionID = "cluster"

const deliveryGroup = "delivery"

func (s keyspace) eventsKey(sid protocol.SessionID) string {
	return s.prefix + ":{" + string(sid) + "}:ev"
}
func (s keyspace) eventLeaseKey(sid protocol.SessionID) string {
	return s.prefix + ":{" + string(sid) + "}:evlease"
}
func (s keyspace) eventStreamsKey() string  { return s.prefix + ":evstreams" }
func (s keyspace) deadLetterKey() string    { return s.prefix + ":deadletter" }
func (s keyspace) eventWakeChannel() string { return s.prefix + ":evwake" }

// StoredEvent is an event as the bus stores it: its unique id, name and the
// JSON body its webhook receives.
type StoredEvent struct {
	// StreamID is the entry's id in its stream ("" outside a stream).
	StreamID string
	ID       string
	Name     string
	Body     []byte
}

func eventValues(e StoredEvent) []any { return []any{"id", e.ID, "n", e.Name, "b", string(e.Body)} }

func parseEvent(m redis.XMessage) StoredEvent {
	id, _ := m.Values["id"].(string)
	name, _ := m.Values["n"].(string)
	body, _ := m.Values["b"].(string)
	return StoredEvent{StreamID: m.ID, ID: id, Name: name, Body: []byte(body)}
}

// Emit queues an event of the session, written with the transaction.
func (tx *Tx) Emit(e StoredEvent) { tx.events = append(tx.events, e) }

// EmitCluster appends a cluster event (not tied to a session).
func (s *EventBus) EmitCluster(ctx context.Context, e StoredEvent) error {
	if err := s.rdb.XAdd(ctx, s.eventArgs(ClusterStream, e)).Err(); err != nil {
		return fmt.Errorf("emit %s: %w", e.Name, err)
	}
	pipe := s.rdb.Pipeline()
	s.publishEvents(ctx, pipe, ClusterStream, []StoredEvent{e})
	_, _ = pipe.Exec(ctx)
	return nil
}

func (s *EventBus) eventArgs(sid protocol.SessionID, e StoredEvent) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: s.eventsKey(sid), MaxLen: s.eventsMaxLen, Approx: true, Values: eventValues(e)}
}

// RegisterEventStream makes a session's event stream discoverable by the
// masters that deliver events; it must precede the session's first event.
func (s *EventBus) RegisterEventStream(ctx context.Context, sid protocol.SessionID) error {
	return s.rdb.SAdd(ctx, s.eventStreamsKey(), sid).Err()
}

// EventStreams returns the streams that may hold events: every registered
// session's, and the cluster's.
func (s *EventBus) EventStreams(ctx context.Context) ([]protocol.SessionID, error) {
	ids, err := s.rdb.SMembers(ctx, s.eventStreamsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list event streams: %w", err)
	}
	out := make([]protocol.SessionID, 0, len(ids)+1)
	for _, id := range ids {
		out = append(out, protocol.SessionID(id))
	}
	return append(out, ClusterStream), nil
}

// SubscribeEventWakes delivers the ids of streams that just got events.
func (s *EventBus) SubscribeEventWakes(ctx context.Context) <-chan protocol.SessionID {
	return subscribe(ctx, s.rdb, s.eventWakeChannel(), 256, func(payload string) (protocol.SessionID, bool) {
		return protocol.SessionID(payload), true
	})
}

// AcquireEventLease makes holder the deliverer of a stream for ttl, or
// extends its lease; it reports whether holder holds it.
func (s *EventBus) AcquireEventLease(ctx context.Context, sid protocol.SessionID, holder protocol.MasterID, ttl time.Duration) (bool, error) {
	key := s.eventLeaseKey(sid)
	ok, err := s.rdb.SetNX(ctx, key, holder, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", sid, err)
	}
	if ok {
		return true, nil
	}
	// Extend only our own lease (compare-and-expire in one script).
	res, err := extendLease.Run(ctx, s.rdb, []string{key}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", sid, err)
	}
	return res == 1, nil
}

var extendLease = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

var releaseLease = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`)

// ReleaseEventLease gives up a lease held by holder.
func (s *EventBus) ReleaseEventLease(ctx context.Context, sid protocol.SessionID, holder protocol.MasterID) error {
	return releaseLease.Run(ctx, s.rdb, []string{s.eventLeaseKey(sid)}, holder).Err()
}

// PendingEvents returns the events of a stream to deliver next, for the
// consumer holder that holds the lease: first those read before but not
// acknowledged (by holder, or by a previous holder that died: claimed), then
// new ones. At most count are returned.
func (s *EventBus) PendingEvents(ctx context.Context, sid protocol.SessionID, holder protocol.MasterID, count int64) ([]StoredEvent, error) {
	key := s.eventsKey(sid)
	if err := s.rdb.XGroupCreateMkStream(ctx, key, deliveryGroup, "0").Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return nil, fmt.Errorf("create delivery group of %s: %w", sid, err)
	}
	// Claim everything pending, whoever read it: only the lease holder reads.
	var out []StoredEvent
	start := "0-0"
	for int64(len(out)) < count {
		msgs, next, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: key, Group: deliveryGroup, Consumer: string(holder), MinIdle: 0, Start: start, Count: count,
		}).Result()
		if redis.HasErrorPrefix(err, "NOGROUP") {
			return nil, nil // drained and forgotten meanwhile by the previous holder
		}
		if err != nil {
			return nil, fmt.Errorf("claim pending events of %s: %w", sid, err)
		}
		for _, m := range msgs {
			if len(m.Values) > 0 { // deleted entries come back empty
				out = append(out, parseEvent(m))
			}
		}
		if next == "0-0" || len(msgs) == 0 {
			break
		}
		start = next
	}
	if len(out) > 0 {
		return out, nil
	}
	streams, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: deliveryGroup, Consumer: string(holder), Streams: []string{key, ">"}, Count: count, Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "NOGROUP") {
		return nil, nil // nothing, or drained and forgotten meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", sid, err)
	}
	for _, st := range streams {
		for _, m := range st.Messages {
			out = append(out, parseEvent(m))
		}
	}
	return out, nil
}

// AckEvent marks an event delivered and removes it from its stream.
func (s *EventBus) AckEvent(ctx context.Context, sid protocol.SessionID, streamID string) error {
	pipe := s.rdb.TxPipeline()
	pipe.XAck(ctx, s.eventsKey(sid), deliveryGroup, streamID)
	pipe.XDel(ctx, s.eventsKey(sid), streamID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ack event %s of %s: %w", streamID, sid, err)
	}
	return nil
}

// ForgetDrainedStream deletes a session's event stream and lease once the
// stream is empty (delivered events are deleted as they are acknowledged) and the session no longer exists, and unregisters it. It
// reports whether it did.
func (s *EventBus) ForgetDrainedStream(ctx context.Context, sid protocol.SessionID) (bool, error) {
	if sid == ClusterStream {
		return false, nil
	}
	evKey, sessKey := s.eventsKey(sid), s.sessionKey(sid)
	forgot := false
	err := watchRetried(ctx, s.rdb, func(tx *redis.Tx) error {
		n, err := tx.XLen(ctx, evKey).Result()
		if err != nil {
			return err
		}
		exists, err := tx.Exists(ctx, sessKey).Result()
		if err != nil || n > 0 || exists > 0 {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, evKey, s.eventLeaseKey(sid))
			return nil
		})
		forgot = err == nil
		return err
	}, evKey, sessKey)
	if errors.Is(err, redis.TxFailedErr) {
		s.conflict("event_stream")
		return false, nil // something happened meanwhile: try again later
	}
	if err != nil {
		return false, fmt.Errorf("forget event stream of %s: %w", sid, err)
	}
	if forgot {
		// Unregister only after the stream is gone: a crash in between
		// leaves a registration pointing at nothing, which is harmless.
		if exists, _ := s.rdb.Exists(ctx, sessKey).Result(); exists == 0 {
			_ = s.rdb.SRem(ctx, s.eventStreamsKey(), sid).Err()
		}
	}
	return forgot, nil
}

// DeadLetter is an event that could not be delivered before its deadline.
type DeadLetter struct {
	StoredEvent
	Session  protocol.SessionID
	Error    string
	FailedAt int64 // Unix ms
}

// AddDeadLetter records an event whose delivery failed.
func (s *EventBus) AddDeadLetter(ctx context.Context, d DeadLetter) error {
	vals := append(eventValues(d.StoredEvent), "s", d.Session, "err", d.Error, "at", d.FailedAt)
	return s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.deadLetterKey(), MaxLen: s.deadLetterMaxLen, Approx: true, Values: vals}).Err()
}

// DeadLetters lists the dead-letter stream, oldest first.
func (s *EventBus) DeadLetters(ctx context.Context, count int64) ([]DeadLetter, error) {
	msgs, err := s.rdb.XRangeN(ctx, s.deadLetterKey(), "-", "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		d := DeadLetter{StoredEvent: parseEvent(m)}
		sid, _ := m.Values["s"].(string)
		d.Session = protocol.SessionID(sid)
		d.Error, _ = m.Values["err"].(string)
		if at, ok := m.Values["at"].(string); ok {
			_, _ = fmt.Sscan(at, &d.FailedAt)
		}
		out = append(out, d)
	}
	return out, nil
}

// RemoveDeadLetter deletes one dead letter by its stream id.
func (s *EventBus) RemoveDeadLetter(ctx context.Context, streamID string) error {
	return s.rdb.XDel(ctx, s.deadLetterKey(), streamID).Err()
}

// SubscribeTail follows every event as it is emitted (a live view for
// operators: `chorus events tail`). It is pub/sub, so a subscriber that is
// not listening misses events; the bus itself is the durable copy.
func (s *EventBus) SubscribeTail(ctx context.Context) <-chan StoredEvent {
	return subscribe(ctx, s.rdb, s.tailChannel(), 1024, func(payload string) (StoredEvent, bool) {
		name, body, _ := strings.Cut(payload, " ")
		return StoredEvent{Name: name, Body: []byte(body)}, true
	})
}

func (s keyspace) tailChannel() string { return s.prefix + ":evtail" }

// publishEvents announces committed events: a wake-up for the deliverers and
// the event itself for tails.
func (s *EventBus) publishEvents(ctx context.Context, pipe redis.Pipeliner, sid protocol.SessionID, events []StoredEvent) {
	if len(events) == 0 {
		return
	}
	pipe.Publish(ctx, s.eventWakeChannel(), sid)
	for _, e := range events {
		pipe.Publish(ctx, s.tailChannel(), e.Name+" "+string(e.Body))
	}
}

// EventStreamLengths returns how many undelivered events each stream holds.
func (s *EventBus) EventStreamLengths(ctx context.Context, sids []protocol.SessionID) (map[protocol.SessionID]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make(map[protocol.SessionID]*redis.IntCmd, len(sids))
	for _, sid := range sids {
		cmds[sid] = pipe.XLen(ctx, s.eventsKey(sid))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("measure event streams: %w", err)
	}
	out := make(map[protocol.SessionID]int64, len(sids))
	for sid, c := range cmds {
		out[sid] = c.Val()
	}
	return out, nil
}

// ReplayDeadLetter puts a dead letter back on its stream (same eventId, so
// receivers can tell a replay from a new event) and removes it from the
// dead-letter stream.
func (s *EventBus) ReplayDeadLetter(ctx context.Context, d DeadLetter) error {
	sid := d.Session
	if sid == "" {
		sid = ClusterStream
	}
	if sid != ClusterStream {
		if err := s.RegisterEventStream(ctx, sid); err != nil {
			return fmt.Errorf("replay %s: %w", d.ID, err)
		}
	}
	e := d.StoredEvent
	if err := s.rdb.XAdd(ctx, s.eventArgs(sid, e)).Err(); err != nil {
		return fmt.Errorf("replay %s: %w", d.ID, err)
	}
	if err := s.RemoveDeadLetter(ctx, d.StreamID); err != nil {
		return fmt.Errorf("replay %s: %w", d.ID, err)
	}
	return s.rdb.Publish(ctx, s.eventWakeChannel(), sid).Err()
}

// DeadLetterCount returns how many events the dead-letter stream holds.
func (s *EventBus) DeadLetterCount(ctx context.Context) (int64, error) {
	n, err := s.rdb.XLen(ctx, s.deadLetterKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}

// Backlog returns how many events wait for delivery across every stream
// (EventStreams), and when the oldest of them was emitted (the zero time
// when none waits): stream entry ids start with their Unix ms.
func (s *EventBus) Backlog(ctx context.Context) (undelivered int64, oldest time.Time, err error) {
	sids, err := s.EventStreams(ctx)
	if err != nil {
		return 0, time.Time{}, err
	}
	pipe := s.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(sids))
	firsts := make([]*redis.XMessageSliceCmd, len(sids))
	for i, sid := range sids {
		lens[i] = pipe.XLen(ctx, s.eventsKey(sid))
		firsts[i] = pipe.XRangeN(ctx, s.eventsKey(sid), "-", "+", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, time.Time{}, fmt.Errorf("measure the event backlog: %w", err)
	}
	for i := range sids {
		undelivered += lens[i].Val()
		for _, m := range firsts[i].Val() {
			if at, ok := EntryTime(m.ID); ok && (oldest.IsZero() || at.Before(oldest)) {
				oldest = at
			}
		}
	}
	return undelivered, oldest, nil
}

// EntryTime is when a Redis stream entry (an event, an outbox
// notification) was added: the milliseconds of its id, "<ms>-<seq>".
func EntryTime(id string) (time.Time, bool) {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}, false
	}
	at, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(at), true
}
