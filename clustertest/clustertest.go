// Package clustertest runs a real Chorus cluster inside a test process: a
// redis-server, media nodes, masters and optionally the proxy, each with its
// real Run loop on loopback ports. It is test infrastructure (roles do not
// import it); the multi-process tests in e2e/ use `chorus dev` instead.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/master"
	"github.com/chorus-rtc/chorus/medianode"
	"github.com/chorus-rtc/chorus/proxy"
	"github.com/chorus-rtc/chorus/recorder/render"
	"github.com/chorus-rtc/chorus/recorder/worker"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/redistest"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Options size the cluster.
type Options struct {
	Masters    int
	MediaNodes int
	Proxy      bool
	// Proxies runs that many proxies side by side (they share only Redis and
	// the masters); Proxy alone means one.
	Proxies int
	// ReconnectGrace overrides the masters' grace period (default 2 s).
	ReconnectGrace time.Duration
	// Configure, if set, adjusts the configuration before the nodes start.
	Configure func(*config.Config)
	// Redis, if set, is the cluster's Redis deployment (a Sentinel group,
	// say); by default a throwaway redis-server is started.
	Redis *config.Redis
	// Recorders runs that many recording workers (recorder/worker, FFmpeg
	// on PATH) and turns recording on in the masters, with a recording
	// path in the test's temporary directory.
	Recorders int
}

// WaitMediaNodes waits until n media nodes are running (adopted by the
// masters' controller).
func (c *Cluster) WaitMediaNodes(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		nodes, err := c.Store.MediaNodes(context.Background())
		running := 0
		for _, node := range nodes {
			if node.AcceptsSessions(time.Now()) {
				running++
			}
		}
		if err == nil && running >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d media nodes running after 20 s (%v)", running, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Secret is the cluster's OpenVidu secret.
const Secret = "MY_SECRET"

// ClusterSecret is the cluster's internal secret (masters and media nodes):
// a value of its own, so that a media node needing the OpenVidu secret
// would fail the tests.
const ClusterSecret = "TEST_CLUSTER_SECRET"

// Cluster is a running in-process cluster.
type Cluster struct {
	Redis      *redistest.Server // nil with Options.Redis
	RDB        redis.UniversalClient
	Store      *store.Store
	MasterURLs []string
	ProxyURL   string   // the first proxy's
	ProxyURLs  []string // every proxy's
	// PublicURL is what tokens carry: the proxy's, else the first master's
	// ("" without either: a cluster of media nodes driven by the test).
	PublicURL string
	// MediaNodeURLs are the media nodes' internal API URLs, media_1 first.
	MediaNodeURLs []string

	mu      sync.Mutex
	stops   map[string]func()
	nodeIDs []string
}

// Start runs a cluster until the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	if opts.ReconnectGrace == 0 {
		opts.ReconnectGrace = 2 * time.Second
	}
	c := &Cluster{stops: map[string]func(){}}
	var redisCfg config.Redis
	if opts.Redis != nil {
		redisCfg = *opts.Redis
	} else {
		// With a password, as a deployment should have: every role's
		// connections (pub/sub included) authenticate.
		c.Redis = redistest.StartWith(t, redistest.Options{Password: "clustertest-redis-password"})
		redisCfg = c.Redis.Config()
	}
	rdb, err := store.NewClient(redisCfg)
	if err != nil {
		t.Fatal(err)
	}
	c.RDB = rdb
	t.Cleanup(func() { _ = c.RDB.Close() })
	c.Store = store.New(store.Config{Redis: c.RDB, ClusterID: "test"})
	log := slog.New(slog.NewTextHandler(logOutput(), &slog.HandlerOptions{Level: slog.LevelWarn}))

	base, err := config.Load(nil, config.RoleMaster, nil)
	if err != nil {
		t.Fatal(err)
	}
	base.ClusterID, base.Secret, base.ClusterSecret = "test", Secret, ClusterSecret
	base.Redis = redisCfg
	base.Master.ReconnectGrace = opts.ReconnectGrace
	base.Master.HeartbeatInterval = 200 * time.Millisecond
	base.Master.RedisRecoveryGrace = 300 * time.Millisecond
	base.Proxy.HealthInterval = 100 * time.Millisecond
	if opts.Recorders > 0 {
		base.Recording.Enabled, base.Recording.Path = true, t.TempDir()
	}
	if opts.Configure != nil {
		opts.Configure(base)
	}

	masterPorts := make([]int, opts.Masters)
	for i := range masterPorts {
		masterPorts[i] = freePort(t)
		c.MasterURLs = append(c.MasterURLs, fmt.Sprintf("http://127.0.0.1:%d", masterPorts[i]))
	}
	if opts.Proxy && opts.Proxies == 0 {
		opts.Proxies = 1
	}
	var proxyPorts []int
	for i := 0; i < opts.Proxies; i++ {
		proxyPorts = append(proxyPorts, freePort(t))
		c.ProxyURLs = append(c.ProxyURLs, fmt.Sprintf("http://127.0.0.1:%d", proxyPorts[i]))
	}
	if len(proxyPorts) > 0 {
		c.ProxyURL = c.ProxyURLs[0]
		c.PublicURL = fmt.Sprintf("ws://127.0.0.1:%d", proxyPorts[0])
	} else if len(masterPorts) > 0 {
		c.PublicURL = fmt.Sprintf("ws://127.0.0.1:%d", masterPorts[0])
	}

	for i := 0; i < opts.MediaNodes; i++ {
		cfg := *base
		cfg.Secret = "" // media nodes never see the OpenVidu secret
		cfg.Media.ID = fmt.Sprintf("media_%d", i+1)
		port := freePort(t)
		cfg.Media.Listen = fmt.Sprintf("127.0.0.1:%d", port)
		cfg.Media.InternalURL = "http://" + cfg.Media.Listen
		cfg.Media.BindIP, cfg.Media.UDPPort = "127.0.0.1", 0
		if cfg.Media.TCPPort > 0 {
			// ICE-TCP on an ephemeral port; Configure's -1 keeps it off.
			cfg.Media.TCPPort = 0
		}
		cfg.Media.HeartbeatInterval = 200 * time.Millisecond
		n, err := medianode.New(medianode.Config{Cluster: &cfg, Redis: c.RDB, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		c.run(t, cfg.Media.ID, n.Run)
		waitHTTP(t, cfg.Media.InternalURL+"/chorus/health")
		c.MediaNodeURLs = append(c.MediaNodeURLs, cfg.Media.InternalURL)
	}
	for i, port := range masterPorts {
		cfg := *base
		cfg.Master.ID = fmt.Sprintf("master_%d", i+1)
		cfg.Master.Listen = fmt.Sprintf("127.0.0.1:%d", port)
		cfg.Master.InternalURL = c.MasterURLs[i]
		cfg.Master.PublicURL = c.PublicURL
		m, err := master.New(context.Background(), master.Config{Cluster: &cfg, Redis: c.RDB, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		c.run(t, cfg.Master.ID, m.Run)
		waitHTTP(t, c.MasterURLs[i]+"/chorus/health")
	}
	if opts.Masters > 0 && base.MediaNodes.AutoAdopt {
		c.WaitMediaNodes(t, opts.MediaNodes)
	}
	for i := 0; i < opts.Recorders; i++ {
		r, err := render.New(render.Config{})
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("recorder_%d", i+1)
		w, err := worker.New(worker.Config{Store: c.Store, Renderer: r, ID: id, Path: base.Recording.Path,
			WorkDir: filepath.Join(base.Recording.Path, ".work"), LoopbackOnly: true, Logger: log.With("recorder", id)})
		if err != nil {
			t.Fatal(err)
		}
		c.run(t, id, func(ctx context.Context) error {
			if err := w.Run(ctx); !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
	}
	for i, port := range proxyPorts {
		cfg := *base
		cfg.Proxy.Listen = fmt.Sprintf("127.0.0.1:%d", port)
		p, err := proxy.New(proxy.Config{Cluster: &cfg, Redis: c.RDB, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		id := "proxy"
		if i > 0 {
			id = fmt.Sprintf("proxy_%d", i+1)
		}
		c.run(t, id, p.Run)
		waitHTTP(t, c.ProxyURLs[i]+"/chorus/health")
	}
	return c
}

// run starts a node's Run loop; Stop(id) or the end of the test stops it.
func (c *Cluster) run(t testing.TB, id string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: %v", id, err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("%s did not stop within 20s", id)
			}
		})
	}
	c.mu.Lock()
	c.stops[id] = stop
	c.nodeIDs = append(c.nodeIDs, id)
	c.mu.Unlock()
	t.Cleanup(stop)
}

// Stop stops one node (gracefully) by id: master_1, media_2, proxy.
func (c *Cluster) Stop(id string) {
	c.mu.Lock()
	stop := c.stops[id]
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Keys returns every Redis key of the cluster except the registry's, for
// leak checks.
func (c *Cluster) Keys(t testing.TB) []string {
	t.Helper()
	keys, err := c.RDB.Keys(context.Background(), "chorus:test:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		rest := strings.TrimPrefix(k, "chorus:test:")
		switch {
		case rest == "sessions" || rest == "evict":
		case strings.HasPrefix(rest, "{masters}"):
		case strings.HasSuffix(rest, ":tomb") || strings.HasPrefix(rest, "{cluster}"):
		case strings.HasPrefix(rest, "idem:") && c.RDB.PTTL(context.Background(), k).Val() > 0: // expires by itself
		default:
			out = append(out, k)
		}
	}
	return out
}

// AssertNoLeftovers waits until the cluster holds no session key (sessions,
// connections, outboxes, undelivered events) and its media nodes no peer
// connection, and fails the test if that does not happen within 15 s.
func (c *Cluster) AssertNoLeftovers(t testing.TB) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		keys := c.Keys(t)
		endpoints := 0
		nodes, err := c.Store.MediaNodes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			list, err := mediaapi.NewClient(client, n.URI, ClusterSecret).Endpoints(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			endpoints += len(list.Endpoints)
		}
		if len(keys) == 0 && endpoints == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leftovers: keys %v, %d endpoints on media nodes", keys, endpoints)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func waitHTTP(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logOutput is stderr with CHORUS_TEST_LOGS=1, else nothing.
func logOutput() io.Writer {
	if os.Getenv("CHORUS_TEST_LOGS") != "" {
		return os.Stderr
	}
	return io.Discard
}
