// Package store keeps Chorus's cluster state in Redis.
//
// Layout (P is "chorus:<clusterId>"; {sid} is a Redis Cluster hash tag, so
// every key of one session lives in one slot and no command or script spans
// two sessions):
//
//	P:{sid}             hash: "session" -> Session JSON, "c:<cid>" -> Connection JSON
//	P:{sid}:ob:<cid>    stream: the connection's outbox of JSON-RPC notifications
//	P:{sid}:obb:<cid>   integer: bytes queued in that outbox (method and params
//	                    of each entry; see Tx.OutboxBytes)
//	P:{sid}:tomb        string: the life of a closed session (expires after an hour)
//	P:sessions          zset: session id -> createdAt (ms), the listing index
//	P:evict             zset: "<sid> <cid>" -> eviction deadline (ms)
//	P:wake:<master>     pub/sub channel: "<sid> <cid>" when that outbox grew
//	P:{sid}:rec:<rid>   string: Recording JSON (recordings.go)
//	P:recordings        zset: recording id -> createdAt (ms), the listing index
//	P:recjobs           set: recordings a recorder must work on
//	P:{sid}:rec:<rid>:lease  string: the recorder holding the job
//
// A session changes only through Update: an optimistic transaction (WATCH on
// the session hash, MULTI/EXEC) that writes the new state and appends the
// notifications it causes to the participants' outboxes atomically, so every
// participant sees every change exactly once and in the order it happened.
// Registry keys (masters, media nodes) are described in registry.go.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/redis/go-redis/v9"
)

// Errors returned by the store.
var (
	ErrSessionExists = errors.New("session already exists")
	ErrNotFound      = errors.New("not found")
	ErrContention    = errors.New("session changed concurrently too many times")
)

// Store is the Redis-backed state of one cluster, by concern: the sessions
// (and their participants' outboxes and evictions), the event bus, the
// masters' registry and the media nodes' registry. Each concern is its own
// type over the same keyspace, so a role holds only the ones it uses (the
// proxy a MasterRegistry, a media node a NodeRegistry); a master uses them
// all, through Store.
type Store struct {
	*Sessions
	*EventBus
	*MasterRegistry
	*NodeRegistry
}

// keyspace is what every concern shares: the client and the key prefix.
type keyspace struct {
	rdb    redis.UniversalClient
	prefix string
	// onConflict is told of each transaction WATCH made retry.
	onConflict func(tx string)
}

func (k keyspace) conflict(tx string) {
	if k.onConflict != nil {
		k.onConflict(tx)
	}
}

// Sessions keeps sessions, their connections, outboxes and evictions. Its
// transactions (Update) append the events they cause through the EventBus,
// in the same MULTI/EXEC.
type Sessions struct {
	keyspace
	events *EventBus
}

// EventBus keeps the per-session event streams, their delivery leases and
// the dead letters (eventbus.go).
type EventBus struct {
	keyspace
	eventsMaxLen     int64
	deadLetterMaxLen int64
}

// MasterRegistry keeps the masters' registrations, the connections each
// holds and the crash marks (registry.go).
type MasterRegistry struct{ keyspace }

// NodeRegistry keeps the media nodes' records and heartbeats, the sessions
// pinned to each, the controller lease and the autoscaler's state
// (medianodes.go). Its transactions emit node events through the EventBus.
type NodeRegistry struct {
	keyspace
	events *EventBus
}

// Config configures a Store.
type Config struct {
	Redis     redis.UniversalClient
	ClusterID string
	// EventsMaxLen caps each event stream's backlog (default 100000).
	EventsMaxLen int64
	// DeadLetterMaxLen caps the dead-letter stream (default 100000).
	DeadLetterMaxLen int64
	// OnConflict, if set, is told of each optimistic transaction that
	// another client's write made retry, by kind: session, media_nodes,
	// event_stream (for metrics).
	OnConflict func(tx string)
}

// New returns a Store over an existing Redis client (the caller owns and closes it).
func New(cfg Config) *Store {
	if cfg.EventsMaxLen <= 0 {
		cfg.EventsMaxLen = 100000
	}
	if cfg.DeadLetterMaxLen <= 0 {
		cfg.DeadLetterMaxLen = 100000
	}
	ks := keyspace{rdb: cfg.Redis, prefix: "chorus:" + cfg.ClusterID, onConflict: cfg.OnConflict}
	bus := &EventBus{keyspace: ks, eventsMaxLen: cfg.EventsMaxLen, deadLetterMaxLen: cfg.DeadLetterMaxLen}
	return &Store{
		Sessions:       &Sessions{keyspace: ks, events: bus},
		EventBus:       bus,
		MasterRegistry: &MasterRegistry{keyspace: ks},
		NodeRegistry:   &NodeRegistry{keyspace: ks, events: bus},
	}
}

// Redis is the client every concern uses (the caller of New owns it).
func (s *Store) Redis() redis.UniversalClient { return s.Sessions.rdb }

// Prefix is the namespace of every key of this cluster: "chorus:<clusterId>".
func (s *Store) Prefix() string { return s.Sessions.prefix }

// NewMasterRegistry returns the masters' registry alone (what the proxy
// needs to discover masters).
func NewMasterRegistry(cfg Config) *MasterRegistry { return New(cfg).MasterRegistry }

// NewEventBus returns the event bus alone (what follows events live needs).
func NewEventBus(cfg Config) *EventBus { return New(cfg).EventBus }

// NewNodeRegistry returns the media nodes' registry alone (what a media node
// needs to announce itself).
func NewNodeRegistry(cfg Config) *NodeRegistry { return New(cfg).NodeRegistry }

// Redis exposes the underlying client to packages that add their own keys
// under Prefix (registry, events).
func (s keyspace) Redis() redis.UniversalClient { return s.rdb }

// Prefix is the namespace of every key of this cluster: "chorus:<clusterId>".
func (s keyspace) Prefix() string { return s.prefix }

func (s keyspace) sessionKey(sid protocol.SessionID) string {
	return s.prefix + ":{" + string(sid) + "}"
}
func (s keyspace) outboxKey(sid protocol.SessionID, cid protocol.ConnectionID) string {
	return s.prefix + ":{" + string(sid) + "}:ob:" + string(cid)
}
func (s keyspace) outboxBytesKey(sid protocol.SessionID, cid protocol.ConnectionID) string {
	return s.prefix + ":{" + string(sid) + "}:obb:" + string(cid)
}
func (s keyspace) tombKey(sid protocol.SessionID) string {
	return s.prefix + ":{" + string(sid) + "}:tomb"
}
func (s keyspace) sessionsKey() string { return s.prefix + ":sessions" }
func (s keyspace) evictKey() string    { return s.prefix + ":evict" }
func (s keyspace) wakeChannel(master protocol.MasterID) string {
	return s.prefix + ":wake:" + string(master)
}

const (
	fieldSession = "session"
	connPrefix   = "c:"
	// outboxMaxLen bounds an outbox whose participant never reads it.
	outboxMaxLen = 10000
	maxAttempts  = 50
	// removedOutboxTTL is how long the outbox of a removed connection lives
	// for its master to deliver the last notifications (participantEvicted).
	removedOutboxTTL = time.Minute
	// tombstoneTTL is how long a closed session's life is remembered.
	tombstoneTTL = time.Hour
)

// connField is the session hash field of connection cid.
func connField(cid protocol.ConnectionID) string { return connPrefix + string(cid) }

// idsOf types identifiers read from Redis.
func idsOf[T ~string](raw []string) []T {
	out := make([]T, len(raw))
	for i, r := range raw {
		out[i] = T(r)
	}
	return out
}

// NowMillis is the time in Unix milliseconds, OpenVidu's timestamp unit.
func NowMillis() int64 { return time.Now().UnixMilli() }

// Ping checks that Redis answers.
func (s *Sessions) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// ConnectionsExist reports, for each (session, connection), whether the
// connection is still in the cluster state.
func (s *Sessions) ConnectionsExist(ctx context.Context, conns []Wake) (map[Wake]bool, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(conns))
	for i, c := range conns {
		cmds[i] = pipe.HExists(ctx, s.sessionKey(c.SessionID), connField(c.ConnectionID))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("check connections: %w", err)
	}
	out := make(map[Wake]bool, len(conns))
	for i, c := range conns {
		out[c] = cmds[i].Val()
	}
	return out, nil
}

// CreateSession stores a new session, with the events its creation causes,
// in one transaction. It returns ErrSessionExists when the id is taken.
func (s *Sessions) CreateSession(ctx context.Context, sess *Session, events ...StoredEvent) error {
	// Index first: an index entry without a session is dropped by the garbage
	// collector, whereas a session missing from the index would never be
	// listed, and a stream missing from the registry never delivered.
	pipe := s.rdb.Pipeline()
	pipe.ZAdd(ctx, s.sessionsKey(), redis.Z{Score: float64(sess.CreatedAt), Member: sess.ID})
	pipe.SAdd(ctx, s.eventStreamsKey(), sess.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("index session: %w", err)
	}
	return s.Update(ctx, sess.ID, func(tx *Tx) error {
		if tx.Session != nil {
			return ErrSessionExists
		}
		tx.Session = sess
		tx.events = append([]StoredEvent(nil), events...)
		return nil
	})
}

// Snapshot is a consistent read of one session.
type Snapshot struct {
	Session *Session
	Conns   map[protocol.ConnectionID]*Connection
}

// Load reads a session and its connections. It returns ErrNotFound when the
// session does not exist.
func (s *Sessions) Load(ctx context.Context, sid protocol.SessionID) (*Snapshot, error) {
	raw, err := s.rdb.HGetAll(ctx, s.sessionKey(sid)).Result()
	if err != nil {
		return nil, fmt.Errorf("load session %s: %w", sid, err)
	}
	snap, err := decodeSnapshot(raw)
	if err != nil {
		return nil, fmt.Errorf("decode session %s: %w", sid, err)
	}
	if snap.Session == nil {
		return nil, ErrNotFound
	}
	return snap, nil
}

func decodeSnapshot(raw map[string]string) (*Snapshot, error) {
	snap := &Snapshot{Conns: make(map[protocol.ConnectionID]*Connection)}
	for field, val := range raw {
		switch {
		case field == fieldSession:
			snap.Session = new(Session)
			if err := json.Unmarshal([]byte(val), snap.Session); err != nil {
				return nil, err
			}
		case strings.HasPrefix(field, connPrefix):
			c := new(Connection)
			if err := json.Unmarshal([]byte(val), c); err != nil {
				return nil, err
			}
			snap.Conns[c.ID] = c
		}
	}
	return snap, nil
}

// SessionLife returns the life of a session, or of a session that closed
// within the last hour; found is false when neither exists.
func (s *Sessions) SessionLife(ctx context.Context, sid protocol.SessionID) (life int, found bool, err error) {
	snap, err := s.Load(ctx, sid)
	if err == nil {
		return snap.Session.Life, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return 0, false, err
	}
	life, err = s.rdb.Get(ctx, s.tombKey(sid)).Int()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read tombstone of %s: %w", sid, err)
	}
	return life, true, nil
}

// ListSessionIDs returns the ids of every session in the index, oldest first.
func (s *Sessions) ListSessionIDs(ctx context.Context) ([]protocol.SessionID, error) {
	ids, err := s.rdb.ZRange(ctx, s.sessionsKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return idsOf[protocol.SessionID](ids), nil
}

// IdempotencyTTL is how long an Idempotency-Key is honoured.
const IdempotencyTTL = 10 * time.Minute

// ReserveSessionID binds an Idempotency-Key of POST /sessions to a session
// id: the first caller's candidate wins and every retry gets the same id.
func (s *Sessions) ReserveSessionID(ctx context.Context, key string, candidate protocol.SessionID) (protocol.SessionID, error) {
	id, err := s.reserveID(ctx, "idem:"+key, string(candidate))
	return protocol.SessionID(id), err
}

// ReserveMediaNodeID binds an Idempotency-Key of POST /media-nodes to the id
// of the node it launches.
func (s *NodeRegistry) ReserveMediaNodeID(ctx context.Context, key string, candidate protocol.NodeID) (protocol.NodeID, error) {
	id, err := s.reserveID(ctx, "idem:media:"+key, string(candidate))
	return protocol.NodeID(id), err
}

func (s keyspace) reserveID(ctx context.Context, suffix, candidate string) (string, error) {
	k := s.prefix + ":" + suffix
	ok, err := s.rdb.SetNX(ctx, k, candidate, IdempotencyTTL).Result()
	if err != nil {
		return "", fmt.Errorf("reserve id: %w", err)
	}
	if ok {
		return candidate, nil
	}
	id, err := s.rdb.Get(ctx, k).Result()
	if err != nil {
		return "", fmt.Errorf("reserved id: %w", err)
	}
	return id, nil
}

// SessionIndexedAt returns when a session id was added to the listing index.
func (s *Sessions) SessionIndexedAt(ctx context.Context, sid protocol.SessionID) (time.Time, bool) {
	score, err := s.rdb.ZScore(ctx, s.sessionsKey(), string(sid)).Result()
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(score)), true
}

// UnindexSession removes a session id from the listing index (used when the
// session itself is already gone).
func (s *Sessions) UnindexSession(ctx context.Context, sid protocol.SessionID) error {
	return s.rdb.ZRem(ctx, s.sessionsKey(), sid).Err()
}

// Notification is one JSON-RPC notification queued for a participant.
type Notification struct {
	ConnectionID protocol.ConnectionID
	Method       string
	Params       json.RawMessage
	// Hold marks another participant's departure that may be the
	// recipient's own client leaving with several connections (see
	// NotifyDeparture): delivery may hold it back.
	Hold bool
}

// Tx is a session being changed inside Update. The callback mutates Session
// and Conns (adding, changing or deleting entries) and queues notifications;
// Update writes exactly what changed.
type Tx struct {
	Session *Session
	Conns   map[protocol.ConnectionID]*Connection

	sid           protocol.SessionID
	rawSession    string
	rawConns      map[protocol.ConnectionID]string
	loadedConns   map[protocol.ConnectionID]*Connection // copies as loaded: removed connections still get their wakes
	deleteSession bool
	notifications []Notification
	resetOutboxes map[protocol.ConnectionID]bool
	events        []StoredEvent
	afterCommit   []func(context.Context)

	queued      map[protocol.ConnectionID]*redis.IntCmd // bytes queued once committed
	outboxBytes map[protocol.ConnectionID]int64
	// Recording is the recording UpdateRecording loaded (nil: none with that
	// id); the callback may change it, set it or set it to nil (deleted).
	Recording    *Recording
	recordingID  string
	rawRecording string
}

// ResetOutbox drops what is queued for connection cid before this
// transaction's notifications are appended (a participant evicted for not
// reading its outbox gets only its participantEvicted).
func (tx *Tx) ResetOutbox(cid protocol.ConnectionID) {
	if tx.resetOutboxes == nil {
		tx.resetOutboxes = map[protocol.ConnectionID]bool{}
	}
	tx.resetOutboxes[cid] = true
}

// OutboxBytes returns, once the transaction has committed (in AfterCommit
// functions), the bytes queued in the outbox of every connection it
// notified, this transaction's notifications included. A connection whose
// participant is slow to read, or absent, accumulates bytes there until its
// deliverer acknowledges them (AckOutbox).
func (tx *Tx) OutboxBytes() map[protocol.ConnectionID]int64 { return tx.outboxBytes }

// Notify queues a notification for one connection. It is appended to the
// connection's outbox in the same transaction as the state change.
func (tx *Tx) Notify(connectionID protocol.ConnectionID, method string, params any) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("encode %s notification: %w", method, err)
	}
	tx.notifications = append(tx.notifications, Notification{ConnectionID: connectionID, Method: method, Params: raw})
	return nil
}

// NotifyDeparture queues, for recipient, the notification of another
// connection's departure (participantLeft, participantEvicted), marked Hold
// when the two may be one client's connections (Connection.SameClient).
func (tx *Tx) NotifyDeparture(recipient, gone *Connection, method string, params any) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("encode %s notification: %w", method, err)
	}
	tx.notifications = append(tx.notifications, Notification{ConnectionID: recipient.ID, Method: method, Params: raw, Hold: recipient.SameClient(gone)})
	return nil
}

// NotifyParticipants queues a notification for every active participant
// except the one whose id is except ("" for none).
func (tx *Tx) NotifyParticipants(except protocol.ConnectionID, method string, params any) error {
	for _, c := range tx.SortedConns() {
		if c.Active() && c.ID != except {
			if err := tx.Notify(c.ID, method, params); err != nil {
				return err
			}
		}
	}
	return nil
}

// SortedConns returns the connections ordered by creation time, then id.
func (tx *Tx) SortedConns() []*Connection { return sortConns(tx.Conns) }

// SortedConns returns the snapshot's connections ordered by creation time, then id.
func (s *Snapshot) SortedConns() []*Connection { return sortConns(s.Conns) }

// DeleteSession removes the session, its connections and their outboxes.
func (tx *Tx) DeleteSession() { tx.deleteSession = true }

// AfterCommit runs f once the transaction has committed (for keys outside the
// session's slot, such as indexes; f must tolerate running after a crash
// left the index stale, which the garbage collector repairs).
func (tx *Tx) AfterCommit(f func(context.Context)) { tx.afterCommit = append(tx.afterCommit, f) }

// Update runs fn on the current state of session sid and commits the changes
// it makes atomically with the notifications it queues. fn may run several
// times (on concurrent modification) and must have no side effects besides
// mutating tx. If the session does not exist, fn sees tx.Session == nil.
// Errors from fn are returned as they are, and nothing is written.
func (s *Sessions) Update(ctx context.Context, sid protocol.SessionID, fn func(tx *Tx) error) error {
	return s.update(ctx, sid, "", fn)
}

// update is Update; with recordingID, tx.Recording is that recording of the
// session (nil if it does not exist), watched and written with the session.
func (s *Sessions) update(ctx context.Context, sid protocol.SessionID, recordingID string, fn func(tx *Tx) error) error {
	key := s.sessionKey(sid)
	keys := []string{key}
	if recordingID != "" {
		keys = append(keys, s.recordingKey(sid, recordingID))
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var tx *Tx
		err := watchRetried(ctx, s.rdb, func(rtx *redis.Tx) error {
			raw, err := rtx.HGetAll(ctx, key).Result()
			if err != nil {
				return fmt.Errorf("load session %s: %w", sid, err)
			}
			snap, err := decodeSnapshot(raw)
			if err != nil {
				return fmt.Errorf("decode session %s: %w", sid, err)
			}
			tx = &Tx{Session: snap.Session, Conns: snap.Conns, sid: sid, rawSession: raw[fieldSession],
				rawConns: map[protocol.ConnectionID]string{}, loadedConns: map[protocol.ConnectionID]*Connection{}}
			for cid, c := range snap.Conns {
				tx.rawConns[cid] = raw[connField(cid)]
				copied := *c
				tx.loadedConns[cid] = &copied
			}
			if recordingID != "" {
				if err := s.loadRecordingInto(ctx, rtx, tx, recordingID); err != nil {
					return err
				}
			}
			if err := fn(tx); err != nil {
				return err
			}
			_, err = rtx.TxPipelined(ctx, func(p redis.Pipeliner) error { return s.apply(ctx, p, tx) })
			return err
		}, keys...)
		if errors.Is(err, redis.TxFailedErr) {
			s.conflict("session")
			time.Sleep(time.Duration(rand.IntN(5*(attempt+1))) * time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		s.afterCommit(ctx, tx)
		return nil
	}
	return fmt.Errorf("update session %s: %w", sid, ErrContention)
}

func (s *Sessions) apply(ctx context.Context, p redis.Pipeliner, tx *Tx) error {
	key := s.sessionKey(tx.sid)
	notified := map[protocol.ConnectionID]bool{}
	for _, n := range tx.notifications {
		notified[n.ConnectionID] = true
	}
	// removed are the connections this transaction deletes. Their outboxes go
	// too, except those that just received a notification (an evicted
	// participant must still read its participantEvicted): those expire.
	removed := map[protocol.ConnectionID]bool{}
	if tx.deleteSession {
		p.Del(ctx, key)
		if tx.Session != nil {
			// A tombstone keeps the session's life for clients that come back
			// after it closed (sessionStatus).
			p.Set(ctx, s.tombKey(tx.sid), tx.Session.Life, tombstoneTTL)
		}
		for cid := range tx.rawConns {
			removed[cid] = true
		}
		for cid := range tx.Conns {
			removed[cid] = true
		}
	} else {
		if tx.Session != nil {
			raw, err := json.Marshal(tx.Session)
			if err != nil {
				return fmt.Errorf("encode session: %w", err)
			}
			if string(raw) != tx.rawSession {
				p.HSet(ctx, key, fieldSession, raw)
			}
		}
		for cid, c := range tx.Conns {
			raw, err := json.Marshal(c)
			if err != nil {
				return fmt.Errorf("encode connection %s: %w", cid, err)
			}
			if string(raw) != tx.rawConns[cid] {
				p.HSet(ctx, key, connField(cid), raw)
			}
		}
		for cid := range tx.rawConns {
			if _, ok := tx.Conns[cid]; !ok {
				p.HDel(ctx, key, connField(cid))
				removed[cid] = true
			}
		}
	}
	for cid := range removed {
		if !notified[cid] {
			p.Del(ctx, s.outboxKey(tx.sid, cid), s.outboxBytesKey(tx.sid, cid))
		}
	}
	for cid := range tx.resetOutboxes {
		p.Del(ctx, s.outboxKey(tx.sid, cid), s.outboxBytesKey(tx.sid, cid))
	}
	tx.queued = map[protocol.ConnectionID]*redis.IntCmd{}
	for _, n := range tx.notifications {
		_, current := tx.Conns[n.ConnectionID]
		_, loaded := tx.rawConns[n.ConnectionID]
		if !current && !loaded {
			continue // not a connection of this session
		}
		values := []any{"m", n.Method, "p", string(n.Params)}
		if n.Hold {
			values = append(values, "h", "1")
		}
		p.XAdd(ctx, &redis.XAddArgs{
			Stream: s.outboxKey(tx.sid, n.ConnectionID),
			MaxLen: outboxMaxLen,
			Approx: true,
			Values: values,
		})
		tx.queued[n.ConnectionID] = p.IncrBy(ctx, s.outboxBytesKey(tx.sid, n.ConnectionID), entrySize(n.Method, n.Params))
	}
	for cid := range removed {
		if notified[cid] {
			p.PExpire(ctx, s.outboxKey(tx.sid, cid), removedOutboxTTL)
			p.PExpire(ctx, s.outboxBytesKey(tx.sid, cid), removedOutboxTTL)
		}
	}
	for _, e := range tx.events {
		p.XAdd(ctx, s.events.eventArgs(tx.sid, e))
	}
	return s.applyRecording(ctx, p, tx)
}

// entrySize is what one outbox entry counts towards its outbox's bytes.
func entrySize(method string, params []byte) int64 { return int64(len(method) + len(params)) }

func (s *Sessions) afterCommit(ctx context.Context, tx *Tx) {
	tx.outboxBytes = make(map[protocol.ConnectionID]int64, len(tx.queued))
	for cid, cmd := range tx.queued {
		tx.outboxBytes[cid] = cmd.Val()
	}
	// Wake the masters holding the recipients' WebSockets. Pub/sub may lose a
	// message; masters also poll their outboxes, so a lost wake only delays.
	woken := map[protocol.ConnectionID]bool{}
	pipe := s.rdb.Pipeline()
	for _, n := range tx.notifications {
		c, ok := tx.Conns[n.ConnectionID]
		if !ok {
			c, ok = tx.loadedConns[n.ConnectionID]
		}
		if !ok || c.Master == "" || woken[n.ConnectionID] {
			continue
		}
		woken[n.ConnectionID] = true
		pipe.Publish(ctx, s.wakeChannel(c.Master), Wake{tx.sid, n.ConnectionID}.member())
	}
	s.events.publishEvents(ctx, pipe, tx.sid, tx.events)
	if len(woken) > 0 || len(tx.events) > 0 {
		_, _ = pipe.Exec(ctx)
	}
	for _, f := range tx.afterCommit {
		f(ctx)
	}
}

// OutboxEntry is one queued notification.
type OutboxEntry struct {
	ID     string
	Method string
	Params json.RawMessage
	// Hold: see Notification.Hold.
	Hold bool
}

// ReadOutbox returns up to count queued notifications of a connection, oldest first.
func (s *Sessions) ReadOutbox(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, count int64) ([]OutboxEntry, error) {
	msgs, err := s.rdb.XRangeN(ctx, s.outboxKey(sid, cid), "-", "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("read outbox %s/%s: %w", sid, cid, err)
	}
	out := make([]OutboxEntry, 0, len(msgs))
	for _, m := range msgs {
		method, _ := m.Values["m"].(string)
		params, _ := m.Values["p"].(string)
		hold, _ := m.Values["h"].(string)
		out = append(out, OutboxEntry{ID: m.ID, Method: method, Params: json.RawMessage(params), Hold: hold == "1"})
	}
	return out, nil
}

// Size is what the entry counts towards its outbox's bytes (Tx.OutboxBytes).
func (e OutboxEntry) Size() int64 { return entrySize(e.Method, e.Params) }

// AckOutbox drops the delivered notifications, read by ReadOutbox in order:
// every entry up to and including the last one, whose bytes no longer count
// towards the outbox's (an emptied outbox counts none, whatever the count
// said: entries dropped by the outbox's length cap were never acknowledged).
func (s *Sessions) AckOutbox(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, delivered []OutboxEntry) error {
	if len(delivered) == 0 {
		return nil
	}
	next, err := nextStreamID(delivered[len(delivered)-1].ID)
	if err != nil {
		return err
	}
	var size int64
	for _, e := range delivered {
		size += e.Size()
	}
	keys := []string{s.outboxKey(sid, cid), s.outboxBytesKey(sid, cid)}
	if err := ackOutbox.Run(ctx, s.rdb, keys, next, size).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("ack outbox %s/%s: %w", sid, cid, err)
	}
	return nil
}

// ackOutbox trims an outbox (KEYS[1]) below ARGV[1] and takes ARGV[2] bytes
// off its count (KEYS[2]), which it deletes once the outbox is empty.
var ackOutbox = redis.NewScript(`
redis.call("XTRIM", KEYS[1], "MINID", ARGV[1])
if redis.call("XLEN", KEYS[1]) == 0 then
  redis.call("DEL", KEYS[2])
  return 0
end
local left = redis.call("DECRBY", KEYS[2], ARGV[2])
if left < 0 then
  redis.call("SET", KEYS[2], 0, "KEEPTTL")
  return 0
end
return left`)

// DeleteOutbox removes a connection's outbox (once its participant is gone).
func (s *Sessions) DeleteOutbox(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) error {
	return s.rdb.Del(ctx, s.outboxKey(sid, cid), s.outboxBytesKey(sid, cid)).Err()
}

func nextStreamID(id string) (string, error) {
	ms, seq, ok := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return "", fmt.Errorf("malformed stream id %q", id)
	}
	return ms + "-" + strconv.FormatUint(n+1, 10), nil
}

// Wake tells a master that a connection's outbox has new entries.
type Wake struct {
	SessionID    protocol.SessionID
	ConnectionID protocol.ConnectionID
}

// member is how a Wake is written in Redis sets, sorted sets and pub/sub
// messages: "<sid> <cid>" (neither id holds a space: protocol.ValidID).
func (w Wake) member() string { return string(w.SessionID) + " " + string(w.ConnectionID) }

// parseWake reads a member written by Wake.member.
func parseWake(m string) (Wake, bool) {
	sid, cid, ok := strings.Cut(m, " ")
	return Wake{SessionID: protocol.SessionID(sid), ConnectionID: protocol.ConnectionID(cid)}, ok
}

// parseWakes reads members written by Wake.member, skipping malformed ones.
func parseWakes(members []string) []Wake {
	out := make([]Wake, 0, len(members))
	for _, m := range members {
		if w, ok := parseWake(m); ok {
			out = append(out, w)
		}
	}
	return out
}

// SubscribeWakes delivers the wakes addressed to master until ctx ends. The
// returned channel is closed when the subscription ends.
func (s *Sessions) SubscribeWakes(ctx context.Context, master protocol.MasterID) <-chan Wake {
	return subscribe(ctx, s.rdb, s.wakeChannel(master), 256, parseWake)
}

// subscribe relays the messages of a Redis pub/sub channel, decoded by
// parse (false drops one), to a channel of size buffer until ctx ends or the
// subscription breaks; then the channel closes. A message the consumer has no
// room for is dropped: every consumer also polls, so a wake-up is a hint and
// never blocks the subscription.
func subscribe[T any](ctx context.Context, rdb redis.UniversalClient, channel string, buffer int, parse func(payload string) (T, bool)) <-chan T {
	out := make(chan T, buffer)
	sub := rdb.Subscribe(ctx, channel)
	go func() {
		defer close(out)
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-ch:
				if !ok {
					return
				}
				v, ok := parse(msg.Payload)
				if !ok {
					continue
				}
				select {
				case out <- v:
				default:
				}
			}
		}
	}()
	return out
}

// ScheduleEviction records that connection cid of session sid must be evicted
// at deadline unless its participant reconnects first.
func (s *Sessions) ScheduleEviction(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID, deadline time.Time) error {
	return s.rdb.ZAdd(ctx, s.evictKey(), redis.Z{Score: float64(deadline.UnixMilli()), Member: Wake{sid, cid}.member()}).Err()
}

// CancelEviction forgets a scheduled eviction.
func (s *Sessions) CancelEviction(ctx context.Context, sid protocol.SessionID, cid protocol.ConnectionID) error {
	return s.rdb.ZRem(ctx, s.evictKey(), Wake{sid, cid}.member()).Err()
}

// DueEvictions returns up to limit scheduled evictions whose deadline has passed.
func (s *Sessions) DueEvictions(ctx context.Context, now time.Time, limit int64) ([]Wake, error) {
	members, err := s.rdb.ZRangeByScore(ctx, s.evictKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("due evictions: %w", err)
	}
	out := parseWakes(members)
	return out, nil
}

// IsUnavailable reports whether err means Redis could not be reached or could
// not serve (network errors, timeouts, a closed client, a replica being
// promoted), as opposed to a bug or a logical error. Callers answer 503.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) || redis.IsClusterDownError(err) ||
		redis.IsMasterDownError(err) || redis.IsTryAgainError(err)
}
