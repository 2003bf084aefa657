// Package rediscluster forms a Redis Cluster out of redis-server processes
// on this machine, for `chorus dev --redis-cluster` and tests: the
// arguments each node needs, `redis-cli --cluster create`, and a health
// check that waits until the cluster serves every slot with every replica
// in sync (https://redis.io/docs/management/scaling/).
package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// NodeArgs are the redis-server arguments that make a process a cluster
// node keeping its cluster state in dir/nodes.conf. busPort is its cluster
// bus port, chosen by the caller because the default (the client port +
// 10000) may fall in the kernel's ephemeral range. nodeTimeout is
// cluster-node-timeout: how long a primary may be unreachable before a
// replica takes over.
func NodeArgs(dir string, busPort int, nodeTimeout time.Duration) []string {
	return []string{"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10),
		"--cluster-port", strconv.Itoa(busPort),
		// A replica takes over however long ago it last heard from its
		// primary: with one replica per primary, no other can.
		"--cluster-replica-validity-factor", "0",
		// The other slots keep serving while one primary's slots wait for
		// its replica (the default refuses every command meanwhile).
		"--cluster-require-full-coverage", "no",
		// A replica's first full sync starts at once rather than after
		// the default 5 s wait for other replicas to share it.
		"--repl-diskless-sync-delay", "0"}
}

// Create forms a cluster of the running nodes at addrs (redis-cli from
// PATH), with replicas replicas per primary: the first len/(1+replicas)
// addresses become primaries, sharing the 16384 slots, and waits until it
// is healthy (WaitHealthy).
func Create(ctx context.Context, addrs []string, replicas int) error {
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	return WaitHealthy(ctx, addrs, 30*time.Second)
}

// WaitHealthy waits until every node at addrs that answers says
// cluster_state:ok with all 16384 slots served, and every replica's link to
// its primary is up; nodes that refuse connections (dead) are skipped, but
// at least one must answer. It gives up after timeout with what was wrong.
func WaitHealthy(ctx context.Context, addrs []string, timeout time.Duration) error {
	return waitFor(ctx, timeout, 100*time.Millisecond, "redis cluster not healthy", func(ctx context.Context) string {
		return health(ctx, addrs)
	})
}

// waitFor calls problem every pause until it says nothing is wrong (""),
// or gives up after timeout with what, and what was last wrong.
func waitFor(ctx context.Context, timeout, pause time.Duration, what string, problem func(context.Context) string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		p := problem(ctx)
		if p == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s after %s: %s", what, timeout, p)
		case <-time.After(pause):
		}
	}
}

// nodeClient is a client of the one node at addr that fails fast: no
// retry, a second to connect.
func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
}

// health is "" for a healthy cluster, else what is wrong.
func health(ctx context.Context, addrs []string) string {
	alive := 0
	for _, addr := range addrs {
		c := nodeClient(addr)
		info, err := c.ClusterInfo(ctx).Result()
		var repl string
		if err == nil {
			repl, err = c.Info(ctx, "replication").Result()
		}
		_ = c.Close()
		if err != nil {
			if isRefused(err) {
				continue
			}
			return addr + ": " + err.Error()
		}
		alive++
		switch {
		case !strings.Contains(info, "cluster_state:ok"), !strings.Contains(info, "cluster_slots_ok:16384"):
			return addr + ": " + strings.Join(strings.Fields(info), " ")
		case strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up"):
			return addr + ": replica not in sync with its primary"
		case strings.Contains(repl, "role:master") && replicaNotOnline(repl):
			// After a full sync the replica says its link is up before its
			// primary streams it the writes made meanwhile: a primary
			// killed then would take them along.
			return addr + ": a replica is not online yet on its primary"
		}
	}
	if alive == 0 {
		return "no node answers"
	}
	return ""
}

// WaitReplicated waits until the replicas of every live primary at addrs
// have acknowledged its whole replication stream (each replica's offset,
// as the primary reports it, equals the primary's), or timeout passes.
func WaitReplicated(ctx context.Context, addrs []string, timeout time.Duration) error {
	return waitFor(ctx, timeout, 20*time.Millisecond, "replicas still behind", func(ctx context.Context) string {
		for _, addr := range addrs {
			c := nodeClient(addr)
			info, err := c.Info(ctx, "replication").Result()
			_ = c.Close()
			if err != nil || !strings.Contains(info, "role:master") {
				continue // dead, or a replica
			}
			if lag := replicaLag(info); lag != "" {
				return addr + ": " + lag
			}
		}
		return ""
	})
}

// replicaLag describes the first replica behind its primary in the
// primary's INFO replication, or is "".
func replicaLag(info string) string {
	var master string
	for _, line := range strings.Fields(info) {
		if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
			master = v
		}
	}
	for _, line := range strings.Fields(info) {
		if !strings.HasPrefix(line, "slave") || !strings.Contains(line, ":ip=") {
			continue
		}
		for _, kv := range strings.Split(line, ",") {
			if v, ok := strings.CutPrefix(kv, "offset="); ok && v != master {
				return fmt.Sprintf("replica at offset %s of %s", v, master)
			}
		}
	}
	return ""
}

// replicaNotOnline reports whether a primary's INFO replication lists a
// replica in another state than online (wait_bgsave, send_bulk).
func replicaNotOnline(info string) bool {
	for _, line := range strings.Fields(info) {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, ":ip=") && !strings.Contains(line, ",state=online,") {
			return true
		}
	}
	return false
}

func isRefused(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection refused") || errors.Is(err, context.DeadlineExceeded))
}

// PrimaryOf returns the address of the primary serving key's slot, asking
// the nodes at addrs in turn (the first that answers).
func PrimaryOf(ctx context.Context, addrs []string, key string) (string, error) {
	var last error
	for _, addr := range addrs {
		c := nodeClient(addr)
		slot, err := c.ClusterKeySlot(ctx, key).Result()
		var shards []redis.ClusterShard
		if err == nil {
			shards, err = c.ClusterShards(ctx).Result()
		}
		_ = c.Close()
		if err != nil {
			last = err
			continue
		}
		if p := primaryOf(shards, slot); p != "" {
			return p, nil
		}
		return "", fmt.Errorf("no primary serves slot %d of %q", slot, key)
	}
	return "", fmt.Errorf("no cluster node answers: %w", last)
}

// ServedBy reports, for each key, whether the primary at addr serves its
// slot now (asking that primary).
func ServedBy(ctx context.Context, addr string, keys []string) ([]bool, error) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	pipe := c.Pipeline()
	slots := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		slots[i] = pipe.ClusterKeySlot(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := make([]bool, len(keys))
	for i, s := range slots {
		out[i] = primaryOf(shards, s.Val()) == addr
	}
	return out, nil
}

// primaryOf is the address ("ip:port") of the online primary of the shard
// serving slot, or "".
func primaryOf(shards []redis.ClusterShard, slot int64) string {
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if slot < r.Start || slot > r.End {
				continue
			}
			for _, n := range sh.Nodes {
				if n.Role == "master" && n.Health == "online" {
					return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
				}
			}
		}
	}
	return ""
}
