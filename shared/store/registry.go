package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/redis/go-redis/v9"
)

// Registry keys (P is the cluster prefix). They share one Redis Cluster hash
// tag, {masters}, so that the scripts and transactions that span a master's
// registration, its listing and its crash flag run in one slot:
//
//	P:{masters}:ids             set: ids of registered masters
//	P:{masters}:m:<id>          hash: MasterInfo, expires unless refreshed by heartbeats
//	P:{masters}:epoch:<id>      counter: the id's incarnations
//	P:{masters}:conns:<id>      set: "<sid> <cid>" whose WebSocket that master holds
//	P:{masters}:crashed:<inc>   string: when the incarnation was declared crashed (1 h)
//	P:{masters}:crashed         zset: incarnations declared crashed in the last hour
//
// Media nodes live in the cluster's slot: see medianodes.go.

func (s keyspace) mastersKey() string { return s.prefix + ":{masters}:ids" }
func (s keyspace) masterKey(id protocol.MasterID) string {
	return s.prefix + ":{masters}:m:" + string(id)
}
func (s keyspace) masterEpochKey(id protocol.MasterID) string {
	return s.prefix + ":{masters}:epoch:" + string(id)
}
func (s keyspace) masterConnsKey(id protocol.MasterID) string {
	return s.prefix + ":{masters}:conns:" + string(id)
}

// MasterInfo is a master's registration.
type MasterInfo struct {
	ID          protocol.MasterID
	InternalURL string
	StartedAt   int64 // Unix ms
	Draining    bool
}

// RegisterMaster writes (or refreshes) a master's registration with the given
// time to live. A master calls it every heartbeat interval.
func (s *MasterRegistry) RegisterMaster(ctx context.Context, m MasterInfo, ttl time.Duration) error {
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
func (s *MasterRegistry) DeregisterMaster(ctx context.Context, id protocol.MasterID) error {
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, s.masterKey(id))
	pipe.SRem(ctx, s.mastersKey(), id)
	_, err := pipe.Exec(ctx)
	return err
}

// Masters returns the registered masters that are alive and the ids of those
// whose registration expired (dead masters not yet cleaned up).
func (s *MasterRegistry) Masters(ctx context.Context) (alive []MasterInfo, dead []protocol.MasterID, err error) {
	raw, err := s.rdb.SMembers(ctx, s.mastersKey()).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("list masters: %w", err)
	}
	sort.Strings(raw)
	ids := idsOf[protocol.MasterID](raw)
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
func (s *MasterRegistry) MasterAlive(ctx context.Context, id protocol.MasterID) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.masterKey(id)).Result()
	return n == 1, err
}

// ForgetMaster drops a dead master from the registry set.
func (s *MasterRegistry) ForgetMaster(ctx context.Context, id protocol.MasterID) error {
	return s.rdb.SRem(ctx, s.mastersKey(), id).Err()
}

// AddMasterConnection records that master holds the WebSocket of connection cid.
func (s *MasterRegistry) AddMasterConnection(ctx context.Context, master protocol.MasterID, sid protocol.SessionID, cid protocol.ConnectionID) error {
	return s.rdb.SAdd(ctx, s.masterConnsKey(master), Wake{sid, cid}.member()).Err()
}

// RemoveMasterConnection forgets that master holds connection cid's WebSocket.
func (s *MasterRegistry) RemoveMasterConnection(ctx context.Context, master protocol.MasterID, sid protocol.SessionID, cid protocol.ConnectionID) error {
	return s.rdb.SRem(ctx, s.masterConnsKey(master), Wake{sid, cid}.member()).Err()
}

// TakeMasterConnections atomically reads and deletes the set of connections a
// (dead) master held, so exactly one caller handles them.
func (s *MasterRegistry) TakeMasterConnections(ctx context.Context, master protocol.MasterID) ([]Wake, error) {
	pipe := s.rdb.TxPipeline()
	members := pipe.SMembers(ctx, s.masterConnsKey(master))
	pipe.Del(ctx, s.masterConnsKey(master))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("take connections of master %s: %w", master, err)
	}
	return parseWakes(members.Val()), nil
}

// NextMasterEpoch returns a new epoch for a master id (1, 2, ...): a master
// takes one at start and whenever it must come back as a new node.
func (s *MasterRegistry) NextMasterEpoch(ctx context.Context, id protocol.MasterID) (int64, error) {
	key := s.masterEpochKey(id)
	pipe := s.rdb.TxPipeline()
	n := pipe.Incr(ctx, key)
	pipe.Expire(ctx, key, 30*24*time.Hour)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("next epoch of %s: %w", id, err)
	}
	return n.Val(), nil
}

func (s keyspace) crashedKey(inc protocol.MasterID) string {
	return s.prefix + ":{masters}:crashed:" + string(inc)
}
func (s keyspace) crashedMastersKey() string { return s.prefix + ":{masters}:crashed" }

// crashedMemory is how long a crashed master stays flagged (and listed by
// GET /openvidu/api/health).
const crashedMemory = time.Hour

// FlagMasterCrashed marks a master incarnation crashed; only the first caller
// gets true, so what follows a crash (nodeCrashed) happens once.
func (s *MasterRegistry) FlagMasterCrashed(ctx context.Context, inc protocol.MasterID, at time.Time) (bool, error) {
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

// flagExpiredMaster flags a master crashed only while it is listed without a
// registration (expired), atomically: a master that deregistered (a graceful
// shutdown) between a listing and this call is left alone.
// KEYS: masters set, master hash, crashed flag; ARGV: id, at (ms), TTL (ms).
var flagExpiredMaster = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
`)

// FlagExpiredMasterCrashed is FlagMasterCrashed for a master whose
// registration expired: it flags it only if it is still listed and its
// registration is still gone, so a master that deregistered meanwhile is
// never declared crashed. Only the first caller gets true.
func (s *MasterRegistry) FlagExpiredMasterCrashed(ctx context.Context, inc protocol.MasterID, at time.Time) (bool, error) {
	won, err := flagExpiredMaster.Run(ctx, s.rdb, []string{s.mastersKey(), s.masterKey(inc), s.crashedKey(inc)},
		inc, at.UnixMilli(), crashedMemory.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("flag expired %s crashed: %w", inc, err)
	}
	if won == 1 {
		pipe := s.rdb.Pipeline()
		pipe.ZAdd(ctx, s.crashedMastersKey(), redis.Z{Score: float64(at.UnixMilli()), Member: inc})
		pipe.ZRemRangeByScore(ctx, s.crashedMastersKey(), "-inf", fmt.Sprint(at.Add(-crashedMemory).UnixMilli()))
		if _, err := pipe.Exec(ctx); err != nil {
			return true, fmt.Errorf("flag expired %s crashed: %w", inc, err)
		}
	}
	return won == 1, nil
}

// MasterCrashed reports whether an incarnation was declared crashed.
func (s *MasterRegistry) MasterCrashed(ctx context.Context, inc protocol.MasterID) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.crashedKey(inc)).Result()
	return n == 1, err
}

// CrashedMasters lists the incarnations declared crashed in the last hour.
func (s *MasterRegistry) CrashedMasters(ctx context.Context) ([]string, error) {
	return s.rdb.ZRange(ctx, s.crashedMastersKey(), 0, -1).Result()
}

// MasterConnections lists the connections a master holds, without taking them.
func (s *MasterRegistry) MasterConnections(ctx context.Context, master protocol.MasterID) ([]Wake, error) {
	members, err := s.rdb.SMembers(ctx, s.masterConnsKey(master)).Result()
	if err != nil {
		return nil, err
	}
	return parseWakes(members), nil
}
