package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Media nodes live in the cluster's slot ({cluster}), with the cluster event
// stream, so a status change and its mediaNodeStatusChanged event commit in
// one transaction:
//
//	P:{cluster}:medianodes           set: ids of the nodes the cluster knows (records)
//	P:{cluster}:media:<id>           hash: the record, owned by the cluster (status, lifecycle)
//	P:{cluster}:media:<id>:hb        hash: the node's own report (load, liveness, address); expires
//	P:{cluster}:media:<id>:sessions  set: ids of the sessions pinned to the node
//	P:{cluster}:media:<id>:gone      string: start time of a node instance the cluster terminated
//	P:{cluster}:mediaseen            zset: id -> last heartbeat (Unix ms), records or not
//	P:{cluster}:nodesver             counter bumped by every record change (optimistic locking)
//	P:{cluster}:controller           string: the master holding the controller lease
//	P:{cluster}:autoscaling          hash: the autoscaler's memory (last decision)
//
// The cluster (the controller and the REST API, through UpdateMediaNodes) owns
// records; the node owns what its heartbeat writes. Splitting the two keeps
// heartbeats from ever overwriting a status, and from conflicting with the
// cluster's transactions. A node that heartbeats without a record registered
// itself and waits to be adopted.

func (s keyspace) mediaNodesKey() string { return s.prefix + ":{cluster}:medianodes" }
func (s keyspace) mediaNodeKey(id protocol.NodeID) string {
	return s.prefix + ":{cluster}:media:" + string(id)
}
func (s keyspace) mediaHeartbeatKey(id protocol.NodeID) string {
	return s.prefix + ":{cluster}:media:" + string(id) + ":hb"
}
func (s keyspace) nodeSessionsKey(id protocol.NodeID) string {
	return s.prefix + ":{cluster}:media:" + string(id) + ":sessions"
}
func (s keyspace) nodeGoneKey(id protocol.NodeID) string {
	return s.prefix + ":{cluster}:media:" + string(id) + ":gone"
}
func (s keyspace) mediaSeenKey() string    { return s.prefix + ":{cluster}:mediaseen" }
func (s keyspace) nodesVersionKey() string { return s.prefix + ":{cluster}:nodesver" }
func (s keyspace) controllerKey() string   { return s.prefix + ":{cluster}:controller" }
func (s keyspace) autoscalingKey() string  { return s.prefix + ":{cluster}:autoscaling" }

// heartbeatTTL is how long a node's report outlives its last heartbeat.
const heartbeatTTL = time.Minute

// goneTTL is how long the cluster remembers a node instance it terminated.
const goneTTL = 24 * time.Hour

// MediaNodeInfo is a media node as the cluster knows it: its record joined
// with its latest heartbeat.
type MediaNodeInfo struct {
	ID            protocol.NodeID
	EnvironmentID string // process id, container id, or what the operator gave
	URI           string // internal API URL masters use
	IP            string // announced media IP
	Status        string // OpenVidu's: launching, running, ... ("" for a node not adopted yet)
	Provider      string // who launched it: static (itself or the operator), process, docker
	LaunchingTime int64  // Unix ms
	ConnectedAt   int64  // Unix ms of its first heartbeat after launching (OpenVidu's connectionTime)
	// Instance is the StartedAt of the node process the record was
	// connected to: another value in a heartbeat means the node restarted
	// and lost its peer connections.
	Instance int64
	// CrashedAt is when the node was declared crashed (0 if it was not, or
	// it recovered); DisconnectedAt is its last sign of life before that.
	CrashedAt      int64
	DisconnectedAt int64
	// Drain is how a node leaving the cluster gives up its sessions: "" (it
	// waits for them to end, or closes them when terminating) or "migrate".
	Drain string

	// From the node's heartbeat (zero if it never reported or the report
	// expired).
	Load        float64 // CPU load of the node's process, 0-100
	StartedAt   int64   // Unix ms when the node process started
	HeartbeatAt int64   // Unix ms
	ReportedURI string
	ReportedIP  string
	// ICEUDPPort and ICETCPPort are the ports of the node's ICE candidates
	// on ReportedIP: UDP, and passive ICE-TCP (RFC 6544; 0 when off).
	ICEUDPPort int
	ICETCPPort int
}

// Fresh reports whether the node's last heartbeat is younger than maxAge.
func (n MediaNodeInfo) Fresh(now time.Time, maxAge time.Duration) bool {
	return n.HeartbeatAt != 0 && now.UnixMilli()-n.HeartbeatAt <= maxAge.Milliseconds()
}

// Crashed reports whether the node is declared crashed.
func (n MediaNodeInfo) Crashed() bool { return n.CrashedAt != 0 }

func (n MediaNodeInfo) recordFields() []any {
	return []any{"id", n.ID, "environmentId", n.EnvironmentID, "uri", n.URI, "ip", n.IP, "status", n.Status,
		"provider", n.Provider, "launchingTime", n.LaunchingTime, "connectedAt", n.ConnectedAt, "instance", n.Instance,
		"crashedAt", n.CrashedAt, "disconnectedAt", n.DisconnectedAt, "drain", n.Drain}
}

func parseInt(h map[string]string, k string) int64 {
	v, _ := strconv.ParseInt(h[k], 10, 64)
	return v
}

func parseMediaNode(rec, hb map[string]string) MediaNodeInfo {
	load, _ := strconv.ParseFloat(hb["load"], 64)
	return MediaNodeInfo{
		ID: protocol.NodeID(rec["id"]), EnvironmentID: rec["environmentId"], URI: rec["uri"], IP: rec["ip"], Status: rec["status"],
		Provider: rec["provider"], LaunchingTime: parseInt(rec, "launchingTime"), ConnectedAt: parseInt(rec, "connectedAt"),
		Instance: parseInt(rec, "instance"), CrashedAt: parseInt(rec, "crashedAt"), DisconnectedAt: parseInt(rec, "disconnectedAt"),
		Drain: rec["drain"],
		Load:  load, StartedAt: parseInt(hb, "startedAt"), HeartbeatAt: parseInt(hb, "heartbeatAt"),
		ReportedURI: hb["uri"], ReportedIP: hb["ip"],
		ICEUDPPort: int(parseInt(hb, "udpPort")), ICETCPPort: int(parseInt(hb, "tcpPort")),
	}
}

// MediaNodeHeartbeat is what a node reports about itself every second.
type MediaNodeHeartbeat struct {
	ID        protocol.NodeID
	URI       string
	IP        string
	Load      float64
	StartedAt int64 // Unix ms: identifies the node process
	// ICEUDPPort and ICETCPPort are the ports of its ICE candidates on IP
	// (0: none of that kind); TURN servers allow relaying to them.
	ICEUDPPort int
	ICETCPPort int
}

// NodeStanding is how the cluster sees a node, as its heartbeat learns it.
type NodeStanding struct {
	// Status is the record's status ("" if the cluster has no record: the
	// node waits to be adopted, or Redis lost the record).
	Status string
	// Crashed: the cluster declared the node crashed; its sessions moved
	// away or were closed, so its peer connections must go.
	Crashed bool
	// Gone: the cluster terminated this node instance; it must close every
	// peer connection and stop. The heartbeat was not recorded.
	Gone bool
}

// heartbeatScript records a heartbeat unless the cluster terminated this very
// node instance, and returns the record's status and crash mark.
//
//	KEYS: hb, seen, record, gone
//	ARGV: id, uri, ip, load, startedAt, now, hbTTLms, udpPort, tcpPort
var heartbeatScript = redis.NewScript(`
if redis.call('GET', KEYS[4]) == ARGV[5] then return {'gone', ''} end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'uri', ARGV[2], 'ip', ARGV[3], 'load', ARGV[4], 'startedAt', ARGV[5], 'heartbeatAt', ARGV[6],
  'udpPort', ARGV[8], 'tcpPort', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
local st = redis.call('HMGET', KEYS[3], 'status', 'crashedAt')
return {st[1] or '', st[2] or ''}
`)

// HeartbeatMediaNode records a node's heartbeat and tells the node how the
// cluster sees it.
func (s *NodeRegistry) HeartbeatMediaNode(ctx context.Context, hb MediaNodeHeartbeat) (NodeStanding, error) {
	keys := []string{s.mediaHeartbeatKey(hb.ID), s.mediaSeenKey(), s.mediaNodeKey(hb.ID), s.nodeGoneKey(hb.ID)}
	res, err := heartbeatScript.Run(ctx, s.rdb, keys, hb.ID, hb.URI, hb.IP, strconv.FormatFloat(hb.Load, 'f', 2, 64),
		hb.StartedAt, time.Now().UnixMilli(), heartbeatTTL.Milliseconds(), hb.ICEUDPPort, hb.ICETCPPort).StringSlice()
	if err != nil {
		return NodeStanding{}, fmt.Errorf("heartbeat of media node %s: %w", hb.ID, err)
	}
	if len(res) != 2 {
		return NodeStanding{}, fmt.Errorf("heartbeat of media node %s: unexpected reply %q", hb.ID, res)
	}
	if res[0] == "gone" {
		return NodeStanding{Gone: true}, nil
	}
	crashed, _ := strconv.ParseInt(res[1], 10, 64)
	return NodeStanding{Status: res[0], Crashed: crashed != 0}, nil
}

// ForgetMediaNodeHeartbeat removes a node's report (a node shutting down).
func (s *NodeRegistry) ForgetMediaNodeHeartbeat(ctx context.Context, id protocol.NodeID) error {
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, s.mediaHeartbeatKey(id))
	pipe.ZRem(ctx, s.mediaSeenKey(), id)
	_, err := pipe.Exec(ctx)
	return err
}

// readNodes reads records (and their heartbeats) by id, in id order; ids
// without a record are skipped.
func (s *NodeRegistry) readNodes(ctx context.Context, r redis.Cmdable, ids []protocol.NodeID) ([]MediaNodeInfo, error) {
	ids = slices.Sorted(slices.Values(ids))
	pipe := r.Pipeline()
	recs := make([]*redis.MapStringStringCmd, len(ids))
	hbs := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		recs[i] = pipe.HGetAll(ctx, s.mediaNodeKey(id))
		hbs[i] = pipe.HGetAll(ctx, s.mediaHeartbeatKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read media nodes: %w", err)
	}
	out := make([]MediaNodeInfo, 0, len(ids))
	for i := range ids {
		if rec := recs[i].Val(); len(rec) > 0 {
			out = append(out, parseMediaNode(rec, hbs[i].Val()))
		}
	}
	return out, nil
}

// MediaNodes returns every node the cluster has a record of, sorted by id.
func (s *NodeRegistry) MediaNodes(ctx context.Context) ([]MediaNodeInfo, error) {
	ids, err := s.rdb.SMembers(ctx, s.mediaNodesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list media nodes: %w", err)
	}
	return s.readNodes(ctx, s.rdb, idsOf[protocol.NodeID](ids))
}

// MediaNode returns one node's record, or ErrNotFound.
func (s *NodeRegistry) MediaNode(ctx context.Context, id protocol.NodeID) (MediaNodeInfo, error) {
	nodes, err := s.readNodes(ctx, s.rdb, []protocol.NodeID{id})
	if err != nil {
		return MediaNodeInfo{}, err
	}
	if len(nodes) == 0 {
		return MediaNodeInfo{}, ErrNotFound
	}
	return nodes[0], nil
}

// UnadoptedMediaNodes returns the nodes that heartbeat (within maxAge) but
// that the cluster has no record of, sorted by id. Reports older than
// heartbeatTTL are pruned on the way.
func (s *NodeRegistry) UnadoptedMediaNodes(ctx context.Context, maxAge time.Duration) ([]MediaNodeInfo, error) {
	now := time.Now()
	_ = s.rdb.ZRemRangeByScore(ctx, s.mediaSeenKey(), "-inf", strconv.FormatInt(now.Add(-heartbeatTTL).UnixMilli(), 10)).Err()
	seen, err := s.rdb.ZRangeByScore(ctx, s.mediaSeenKey(), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Add(-maxAge).UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("list heartbeating media nodes: %w", err)
	}
	slices.Sort(seen)
	seenIDs := idsOf[protocol.NodeID](seen)
	pipe := s.rdb.Pipeline()
	known := make([]*redis.IntCmd, len(seen))
	hbs := make([]*redis.MapStringStringCmd, len(seen))
	for i, id := range seenIDs {
		known[i] = pipe.Exists(ctx, s.mediaNodeKey(id))
		hbs[i] = pipe.HGetAll(ctx, s.mediaHeartbeatKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read heartbeating media nodes: %w", err)
	}
	var out []MediaNodeInfo
	for i, id := range seen {
		hb := hbs[i].Val()
		if known[i].Val() == 1 || len(hb) == 0 {
			continue
		}
		n := parseMediaNode(map[string]string{"id": id}, hb)
		n.URI, n.IP = n.ReportedURI, n.ReportedIP
		out = append(out, n)
	}
	return out, nil
}

// ErrNotLeader is returned by UpdateMediaNodes when the caller required the
// controller lease and does not hold it (any more).
var ErrNotLeader = errors.New("this master does not hold the controller lease")

// NodesTx is the view of UpdateMediaNodes' callback: every record, to read
// and change, and the events the change causes.
type NodesTx struct {
	// Nodes are the records by id; the callback changes them in place, adds
	// new ones (Create) and removes some (Remove).
	Nodes map[protocol.NodeID]*MediaNodeInfo
	// Sessions counts the sessions pinned to each node (read-only: pinning
	// a session during the transaction makes it retry).
	Sessions map[protocol.NodeID]int64
	// Autoscaling is the autoscaler's memory; the callback may change it.
	Autoscaling AutoscalingMemory

	orig        map[protocol.NodeID]MediaNodeInfo
	origScaling AutoscalingMemory
	removed     map[protocol.NodeID]bool
	events      []StoredEvent
}

// AutoscalingMemory is what the autoscaler keeps between rounds.
type AutoscalingMemory struct {
	// LastDecisionAt is when it last changed the cluster (Unix ms).
	LastDecisionAt int64
	// Decisions counts its decisions.
	Decisions int64
}

// Sorted returns the records sorted by id.
func (t *NodesTx) Sorted() []*MediaNodeInfo {
	out := slices.Collect(maps.Values(t.Nodes))
	slices.SortFunc(out, func(a, b *MediaNodeInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Create adds a record.
func (t *NodesTx) Create(n MediaNodeInfo) *MediaNodeInfo {
	p := &n
	t.Nodes[n.ID] = p
	delete(t.removed, n.ID)
	return p
}

// Remove deletes a record (a terminated node): its heartbeat report and
// session set go with it, and the node instance that reported last is
// remembered as gone, so that it stops if it is still alive.
func (t *NodesTx) Remove(id protocol.NodeID) {
	if _, ok := t.Nodes[id]; ok {
		t.removed[id] = true
		delete(t.Nodes, id)
	}
}

// Emit appends an event to the cluster stream with the change.
func (t *NodesTx) Emit(e StoredEvent) { t.events = append(t.events, e) }

// UpdateMediaNodes changes node records atomically with the events the
// change causes: it reads every record, calls fn, and writes what fn changed
// (WATCH on the records' version, MULTI/EXEC), retrying on contention. With
// a non-empty leader, the change is made only while leader holds the
// controller lease (else ErrNotLeader), so a controller that lost its lease
// cannot act twice. An error from fn is returned untouched, writing nothing.
func (s *NodeRegistry) UpdateMediaNodes(ctx context.Context, leader protocol.MasterID, fn func(tx *NodesTx) error) error {
	watch := []string{s.nodesVersionKey(), s.autoscalingKey()}
	if leader != "" {
		watch = append(watch, s.controllerKey())
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var t *NodesTx
		err := watchRetried(ctx, s.rdb, func(rtx *redis.Tx) error {
			if leader != "" {
				holder, err := rtx.Get(ctx, s.controllerKey()).Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				if holder != string(leader) {
					return ErrNotLeader
				}
			}
			raw, err := rtx.SMembers(ctx, s.mediaNodesKey()).Result()
			if err != nil {
				return err
			}
			ids := idsOf[protocol.NodeID](raw)
			sessionKeys := make([]string, len(ids))
			for i, id := range ids {
				sessionKeys[i] = s.nodeSessionsKey(id)
			}
			if len(ids) > 0 {
				if err := rtx.Watch(ctx, sessionKeys...).Err(); err != nil {
					return err
				}
			}
			nodes, err := s.readNodes(ctx, rtx, ids)
			if err != nil {
				return err
			}
			counts := map[protocol.NodeID]int64{}
			for i, id := range ids {
				if counts[id], err = rtx.SCard(ctx, sessionKeys[i]).Result(); err != nil {
					return err
				}
			}
			as, err := rtx.HGetAll(ctx, s.autoscalingKey()).Result()
			if err != nil {
				return err
			}
			t = &NodesTx{Nodes: map[protocol.NodeID]*MediaNodeInfo{}, Sessions: counts, orig: map[protocol.NodeID]MediaNodeInfo{}, removed: map[protocol.NodeID]bool{}}
			t.Autoscaling = AutoscalingMemory{LastDecisionAt: parseInt(as, "lastDecisionAt"), Decisions: parseInt(as, "decisions")}
			t.origScaling = t.Autoscaling
			for _, n := range nodes {
				t.Nodes[n.ID], t.orig[n.ID] = &n, n
			}
			if err := fn(t); err != nil {
				return err
			}
			_, err = rtx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				changed := t.Autoscaling != t.origScaling
				for id := range t.removed {
					if _, existed := t.orig[id]; !existed {
						continue
					}
					o := t.orig[id]
					p.Del(ctx, s.mediaNodeKey(id), s.nodeSessionsKey(id), s.mediaHeartbeatKey(id))
					p.SRem(ctx, s.mediaNodesKey(), id)
					p.ZRem(ctx, s.mediaSeenKey(), id)
					inst := o.StartedAt
					if inst == 0 {
						inst = o.Instance
					}
					if inst != 0 {
						p.Set(ctx, s.nodeGoneKey(id), inst, goneTTL)
					}
					changed = true
				}
				for id, n := range t.Nodes {
					if o, ok := t.orig[id]; ok && sameRecord(o, *n) {
						continue
					}
					p.HSet(ctx, s.mediaNodeKey(id), n.recordFields()...)
					p.SAdd(ctx, s.mediaNodesKey(), id)
					changed = true
				}
				if t.Autoscaling != t.origScaling {
					p.HSet(ctx, s.autoscalingKey(), "lastDecisionAt", t.Autoscaling.LastDecisionAt, "decisions", t.Autoscaling.Decisions)
				}
				for _, e := range t.events {
					p.XAdd(ctx, s.events.eventArgs(ClusterStream, e))
				}
				if changed {
					p.Incr(ctx, s.nodesVersionKey())
				}
				return nil
			})
			return err
		}, watch...)
		if errors.Is(err, redis.TxFailedErr) {
			s.conflict("media_nodes")
			continue
		}
		if err != nil {
			return err
		}
		if len(t.events) > 0 {
			pipe := s.rdb.Pipeline()
			s.events.publishEvents(ctx, pipe, ClusterStream, t.events)
			_, _ = pipe.Exec(ctx)
		}
		return nil
	}
	return fmt.Errorf("update media nodes: %w", ErrContention)
}

// sameRecord compares the cluster-owned fields of two records.
func sameRecord(a, b MediaNodeInfo) bool {
	return slices.Equal(a.recordFields(), b.recordFields())
}

// PinSession records that session sid runs on media node id.
func (s *NodeRegistry) PinSession(ctx context.Context, node protocol.NodeID, sid protocol.SessionID) error {
	return s.rdb.SAdd(ctx, s.nodeSessionsKey(node), sid).Err()
}

// UnpinSession forgets that session sid runs on media node id.
func (s *NodeRegistry) UnpinSession(ctx context.Context, node protocol.NodeID, sid protocol.SessionID) error {
	return s.rdb.SRem(ctx, s.nodeSessionsKey(node), sid).Err()
}

// NodeSessionCounts returns how many sessions each node hosts.
func (s *NodeRegistry) NodeSessionCounts(ctx context.Context, ids []protocol.NodeID) (map[protocol.NodeID]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make(map[protocol.NodeID]*redis.IntCmd, len(ids))
	for _, id := range ids {
		cmds[id] = pipe.SCard(ctx, s.nodeSessionsKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("count node sessions: %w", err)
	}
	out := make(map[protocol.NodeID]int64, len(ids))
	for id, c := range cmds {
		out[id] = c.Val()
	}
	return out, nil
}

// NodeSessions returns the ids of the sessions pinned to a node, sorted.
func (s *NodeRegistry) NodeSessions(ctx context.Context, node protocol.NodeID) ([]protocol.SessionID, error) {
	ids, err := s.rdb.SMembers(ctx, s.nodeSessionsKey(node)).Result()
	if err != nil {
		return nil, fmt.Errorf("sessions of media node %s: %w", node, err)
	}
	slices.Sort(ids)
	return idsOf[protocol.SessionID](ids), nil
}

// AcquireControllerLease makes holder the cluster controller for ttl, or
// extends its lease; it reports whether holder holds it.
func (s *NodeRegistry) AcquireControllerLease(ctx context.Context, holder protocol.MasterID, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.controllerKey(), holder, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("controller lease: %w", err)
	}
	if ok {
		return true, nil
	}
	res, err := extendLease.Run(ctx, s.rdb, []string{s.controllerKey()}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("controller lease: %w", err)
	}
	return res == 1, nil
}

// ReleaseControllerLease gives up the lease if holder holds it.
func (s *NodeRegistry) ReleaseControllerLease(ctx context.Context, holder protocol.MasterID) error {
	return releaseLease.Run(ctx, s.rdb, []string{s.controllerKey()}, holder).Err()
}

// ControllerHolder returns who holds the controller lease ("" if nobody).
func (s *NodeRegistry) ControllerHolder(ctx context.Context) (string, error) {
	v, err := s.rdb.Get(ctx, s.controllerKey()).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// NodeFreshness is how recent a node's heartbeat must be for the node to get
// new sessions.
const NodeFreshness = 3 * time.Second

// AcceptsSessions reports whether new sessions may be placed on the node:
// it is running (OpenVidu's rule), not declared crashed, and heartbeating.
func (n MediaNodeInfo) AcceptsSessions(now time.Time) bool {
	return n.Status == protocol.NodeRunning && !n.Crashed() && n.Fresh(now, NodeFreshness)
}
