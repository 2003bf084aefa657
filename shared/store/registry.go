package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Registry keys (P is the cluster prefix):
//
//	P:masters             set: ids of registered masters
//	P:master:<id>         hash: MasterInfo, expires unless refreshed by heartbeats
//	P:mconns:<id>         set: "<sid> <cid>" whose WebSocket that master holds
//	P:medianodes          set: ids of registered media nodes
//	P:media:<id>          hash: MediaNodeInfo, expires unless refreshed by heartbeats
//	P:media:<id>:sessions set: ids of the sessions pinned to that node

func (s *Store) mastersKey() string              { return s.prefix + ":masters" }
func (s *Store) masterKey(id string) string      { return s.prefix + ":master:" + id }
func (s *Store) masterConnsKey(id string) string { return s.prefix + ":mconns:" + id }
func (s *Store) mediaNodesKey() string           { return s.prefix + ":medianodes" }
func (s *Store) mediaNodeKey(id string) string   { return s.prefix + ":media:" + id }
func (s *Store) nodeSessionsKey(id string) string {
	return s.prefix + ":media:" + id + ":sessions"
}

// MasterInfo is a master's registration.
type MasterInfo struct {
	ID          string
	InternalURL string
	StartedAt   int64 // Unix ms
	Draining    bool
}

// RegisterMaster writes (or refreshes) a master's registration with the given
// time to live. A master calls it every heartbeat interval.
func (s *Store) RegisterMaster(ctx context.Context, m MasterInfo, ttl time.Duration) error {
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, s.masterKey(m.ID),
		"id", m.ID, "internalUrl", m.InternalURL,
		"startedAt", m.StartedAt, "draining", strconv.FormatBool(m.Draining))
	pipe.PExpire(ctx, s.masterKey(m.ID), ttl)
	pipe.SAdd(ctx, s.mastersKey(), m.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("register master %s: %w", m.ID, err)
	}
	return nil
}

// DeregisterMaster removes a master's registration (on graceful shutdown).
func (s *Store) DeregisterMaster(ctx context.Context, id string) error {
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, s.masterKey(id))
	pipe.SRem(ctx, s.mastersKey(), id)
	_, err := pipe.Exec(ctx)
	return err
}

// Masters returns the registered masters that are alive and the ids of those
// whose registration expired (dead masters not yet cleaned up).
func (s *Store) Masters(ctx context.Context) (alive []MasterInfo, dead []string, err error) {
	ids, err := s.rdb.SMembers(ctx, s.mastersKey()).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("list masters: %w", err)
	}
	sort.Strings(ids)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.masterKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("read masters: %w", err)
	}
	for i, id := range ids {
		h := cmds[i].Val()
		if len(h) == 0 {
			dead = append(dead, id)
			continue
		}
		started, _ := strconv.ParseInt(h["startedAt"], 10, 64)
		alive = append(alive, MasterInfo{ID: id, InternalURL: h["internalUrl"], StartedAt: started, Draining: h["draining"] == "true"})
	}
	return alive, dead, nil
}

// MasterAlive reports whether a master's registration is current.
func (s *Store) MasterAlive(ctx context.Context, id string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.masterKey(id)).Result()
	return n == 1, err
}

// ForgetMaster drops a dead master from the registry set.
func (s *Store) ForgetMaster(ctx context.Context, id string) error {
	return s.rdb.SRem(ctx, s.mastersKey(), id).Err()
}

// AddMasterConnection records that master holds the WebSocket of connection cid.
func (s *Store) AddMasterConnection(ctx context.Context, master, sid, cid string) error {
	return s.rdb.SAdd(ctx, s.masterConnsKey(master), sid+" "+cid).Err()
}

// RemoveMasterConnection forgets that master holds connection cid's WebSocket.
func (s *Store) RemoveMasterConnection(ctx context.Context, master, sid, cid string) error {
	return s.rdb.SRem(ctx, s.masterConnsKey(master), sid+" "+cid).Err()
}

// TakeMasterConnections atomically reads and deletes the set of connections a
// (dead) master held, so exactly one caller handles them.
func (s *Store) TakeMasterConnections(ctx context.Context, master string) ([]Wake, error) {
	pipe := s.rdb.TxPipeline()
	members := pipe.SMembers(ctx, s.masterConnsKey(master))
	pipe.Del(ctx, s.masterConnsKey(master))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("take connections of master %s: %w", master, err)
	}
	var out []Wake
	for _, m := range members.Val() {
		var w Wake
		if _, err := fmt.Sscanf(m, "%s %s", &w.SessionID, &w.ConnectionID); err == nil {
			out = append(out, w)
		}
	}
	return out, nil
}

// MediaNodeInfo is a media node's registration and its last reported load.
type MediaNodeInfo struct {
	ID            string
	EnvironmentID string
	URI           string // internal API URL masters use
	IP            string // announced media IP
	Status        string
	Load          float64 // CPU load of the node's own process, 0-100
	StartedAt     int64   // Unix ms
	HeartbeatAt   int64   // Unix ms
}

// RegisterMediaNode writes (or refreshes) a node's registration and load.
func (s *Store) RegisterMediaNode(ctx context.Context, n MediaNodeInfo, ttl time.Duration) error {
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, s.mediaNodeKey(n.ID),
		"id", n.ID, "environmentId", n.EnvironmentID, "uri", n.URI, "ip", n.IP,
		"status", n.Status, "load", strconv.FormatFloat(n.Load, 'f', 2, 64),
		"startedAt", n.StartedAt, "heartbeatAt", n.HeartbeatAt)
	pipe.PExpire(ctx, s.mediaNodeKey(n.ID), ttl)
	pipe.SAdd(ctx, s.mediaNodesKey(), n.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("register media node %s: %w", n.ID, err)
	}
	return nil
}

// DeregisterMediaNode removes a node's registration (on graceful shutdown).
func (s *Store) DeregisterMediaNode(ctx context.Context, id string) error {
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, s.mediaNodeKey(id), s.nodeSessionsKey(id))
	pipe.SRem(ctx, s.mediaNodesKey(), id)
	_, err := pipe.Exec(ctx)
	return err
}

// MediaNodes returns every registered media node, sorted by id. Registrations
// that expired are dropped from the set on the way.
func (s *Store) MediaNodes(ctx context.Context) ([]MediaNodeInfo, error) {
	ids, err := s.rdb.SMembers(ctx, s.mediaNodesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list media nodes: %w", err)
	}
	sort.Strings(ids)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.mediaNodeKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read media nodes: %w", err)
	}
	var out []MediaNodeInfo
	for i, id := range ids {
		h := cmds[i].Val()
		if len(h) == 0 {
			_ = s.rdb.SRem(ctx, s.mediaNodesKey(), id).Err()
			continue
		}
		out = append(out, parseMediaNode(h))
	}
	return out, nil
}

// MediaNode returns one node's registration, or ErrNotFound.
func (s *Store) MediaNode(ctx context.Context, id string) (MediaNodeInfo, error) {
	h, err := s.rdb.HGetAll(ctx, s.mediaNodeKey(id)).Result()
	if err != nil {
		return MediaNodeInfo{}, fmt.Errorf("read media node %s: %w", id, err)
	}
	if len(h) == 0 {
		return MediaNodeInfo{}, ErrNotFound
	}
	return parseMediaNode(h), nil
}

func parseMediaNode(h map[string]string) MediaNodeInfo {
	load, _ := strconv.ParseFloat(h["load"], 64)
	started, _ := strconv.ParseInt(h["startedAt"], 10, 64)
	hb, _ := strconv.ParseInt(h["heartbeatAt"], 10, 64)
	return MediaNodeInfo{
		ID: h["id"], EnvironmentID: h["environmentId"], URI: h["uri"], IP: h["ip"],
		Status: h["status"], Load: load, StartedAt: started, HeartbeatAt: hb,
	}
}

// PinSession records that session sid runs on media node id.
func (s *Store) PinSession(ctx context.Context, node, sid string) error {
	return s.rdb.SAdd(ctx, s.nodeSessionsKey(node), sid).Err()
}

// UnpinSession forgets that session sid runs on media node id.
func (s *Store) UnpinSession(ctx context.Context, node, sid string) error {
	return s.rdb.SRem(ctx, s.nodeSessionsKey(node), sid).Err()
}

// NodeSessionCounts returns how many sessions each node hosts.
func (s *Store) NodeSessionCounts(ctx context.Context, ids []string) (map[string]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make(map[string]*redis.IntCmd, len(ids))
	for _, id := range ids {
		cmds[id] = pipe.SCard(ctx, s.nodeSessionsKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("count node sessions: %w", err)
	}
	out := make(map[string]int64, len(ids))
	for id, c := range cmds {
		out[id] = c.Val()
	}
	return out, nil
}

// NodeSessions returns the ids of the sessions pinned to a node.
func (s *Store) NodeSessions(ctx context.Context, node string) ([]string, error) {
	return s.rdb.SMembers(ctx, s.nodeSessionsKey(node)).Result()
}

// RefreshNodeSessions extends the lifetime of a node's session set together
// with its registration.
func (s *Store) RefreshNodeSessions(ctx context.Context, node string, ttl time.Duration) error {
	return s.rdb.PExpire(ctx, s.nodeSessionsKey(node), ttl).Err()
}

// NextMasterEpoch returns a new epoch for a master id (1, 2, ...): a master
// takes one at start and whenever it must come back as a new node.
func (s *Store) NextMasterEpoch(ctx context.Context, id string) (int64, error) {
	key := s.prefix + ":master:" + id + ":epoch"
	pipe := s.rdb.TxPipeline()
	n := pipe.Incr(ctx, key)
	pipe.Expire(ctx, key, 30*24*time.Hour)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("next epoch of %s: %w", id, err)
	}
	return n.Val(), nil
}

func (s *Store) crashedKey(inc string) string { return s.prefix + ":crashed:" + inc }
func (s *Store) crashedMastersKey() string    { return s.prefix + ":crashedmasters" }

// crashedMemory is how long a crashed master stays flagged (and listed by
// GET /openvidu/api/health).
const crashedMemory = time.Hour

// FlagMasterCrashed marks a master incarnation crashed; only the first caller
// gets true, so what follows a crash (nodeCrashed) happens once.
func (s *Store) FlagMasterCrashed(ctx context.Context, inc string, at time.Time) (bool, error) {
	won, err := s.rdb.SetNX(ctx, s.crashedKey(inc), at.UnixMilli(), crashedMemory).Result()
	if err != nil {
		return false, fmt.Errorf("flag %s crashed: %w", inc, err)
	}
	if won {
		pipe := s.rdb.Pipeline()
		pipe.ZAdd(ctx, s.crashedMastersKey(), redis.Z{Score: float64(at.UnixMilli()), Member: inc})
		pipe.ZRemRangeByScore(ctx, s.crashedMastersKey(), "-inf", fmt.Sprint(at.Add(-crashedMemory).UnixMilli()))
		pipe.Del(ctx, s.masterKey(inc)) // proxies and peers stop seeing it at once
		if _, err := pipe.Exec(ctx); err != nil {
			return true, fmt.Errorf("flag %s crashed: %w", inc, err)
		}
	}
	return won, nil
}

// MasterCrashed reports whether an incarnation was declared crashed.
func (s *Store) MasterCrashed(ctx context.Context, inc string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.crashedKey(inc)).Result()
	return n == 1, err
}

// CrashedMasters lists the incarnations declared crashed in the last hour.
func (s *Store) CrashedMasters(ctx context.Context) ([]string, error) {
	return s.rdb.ZRange(ctx, s.crashedMastersKey(), 0, -1).Result()
}

// MasterConnections lists the connections a master holds, without taking them.
func (s *Store) MasterConnections(ctx context.Context, master string) ([]Wake, error) {
	members, err := s.rdb.SMembers(ctx, s.masterConnsKey(master)).Result()
	if err != nil {
		return nil, err
	}
	var out []Wake
	for _, m := range members {
		if sid, cid, ok := strings.Cut(m, " "); ok {
			out = append(out, Wake{SessionID: sid, ConnectionID: cid})
		}
	}
	return out, nil
}
