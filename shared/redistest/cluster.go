package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/rediscluster"
)

// Cluster is a real Redis Cluster of redis-server processes on loopback:
// ClusterOptions.Primaries primaries, each with one replica, made by
// `redis-cli --cluster create`, with a node timeout short enough for a test
// to see a replica promoted within a few seconds of its primary's death.
type Cluster struct {
	// Nodes are the processes, primaries first as created (roles change
	// after a failover: PrimaryFor says who serves a key now).
	Nodes []*Server
}

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Primaries is the number of primaries (default 3); each gets a replica.
	Primaries int
	// NodeTimeout is cluster-node-timeout (default 1 s).
	NodeTimeout time.Duration
}

// StartCluster starts a Redis Cluster of 3 primaries and 3 replicas and
// waits until every node reports cluster_state:ok and every replica is in
// sync. The processes are killed when t ends. Without redis-server in PATH
// the test is skipped, or fails when RequireEnv is set.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterOptions{})
}

// StartClusterWith is StartCluster with options.
func StartClusterWith(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	requireRedis(t)
	c, err := StartClusterProcesses(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// BackendEnv names the environment variable that runs a package's Redis
// tests on one Redis Cluster (StartClusterProcesses in its TestMain) when it
// is "cluster"; `make test-quick` runs the store's tests both ways.
const BackendEnv = "CHORUS_TEST_REDIS"

// StartClusterProcesses starts a cluster with its nodes' files under dir,
// for a TestMain that shares one cluster among a package's tests. The
// caller must call Stop.
func StartClusterProcesses(dir string, opts ClusterOptions) (*Cluster, error) {
	if opts.Primaries <= 0 {
		opts.Primaries = 3
	}
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = time.Second
	}
	c := &Cluster{}
	for i := range 2 * opts.Primaries {
		ndir := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			c.Stop()
			return nil, err
		}
		// The cluster bus port is chosen too: its default (port + 10000)
		// could fall in the kernel's ephemeral range.
		bus, err := FreePort()
		if err != nil {
			c.Stop()
			return nil, err
		}
		s, err := startProcess(ndir, Options{Args: rediscluster.NodeArgs(ndir, bus, opts.NodeTimeout)})
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rediscluster.Create(ctx, c.Addrs(), 1); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Addrs are every node's address (a client needs only one; go-redis learns
// the rest from it).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Config is Chorus's Redis configuration for the cluster: every node's
// address (several addresses make a Cluster client).
func (c *Cluster) Config() config.Redis {
	return config.Redis{Addrs: c.Addrs(), Timeout: 2 * time.Second}
}

// Client returns a go-redis Cluster client, closed when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// PrimaryFor returns the node serving key's slot as its primary.
func (c *Cluster) PrimaryFor(ctx context.Context, key string) (*Server, error) {
	addr, err := rediscluster.PrimaryOf(ctx, c.Addrs(), key)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("redistest: %s serves %q but is not one of the cluster's nodes", addr, key)
}

// WaitHealthy waits until the cluster serves every slot again with every
// live replica in sync (after a failover, say).
func (c *Cluster) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	return rediscluster.WaitHealthy(ctx, c.Addrs(), timeout)
}

// WaitReplicated waits until every live replica has acknowledged every
// write its primary made so far (replication is asynchronous: a primary
// killed before that takes the last writes along).
func (c *Cluster) WaitReplicated(ctx context.Context, timeout time.Duration) error {
	return rediscluster.WaitReplicated(ctx, c.Addrs(), timeout)
}

// Stop kills every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}
