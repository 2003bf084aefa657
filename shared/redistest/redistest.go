// Package redistest starts a throwaway redis-server for tests: a real Redis on
// a free loopback port, without persistence, stopped when the test ends.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server process.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
}

// RequireEnv names the environment variable that turns a missing
// redis-server from a skip into a failure. `make test` and `make test-quick`
// set it, so CI never passes by skipping; a plain `go test ./...` on a
// machine without Redis skips these tests with a message saying why.
const RequireEnv = "CHORUS_TEST_REQUIRE_DEPS"

// Start runs redis-server from PATH on a free port and waits until it answers
// PING. The server is killed when t ends. Without redis-server in PATH the
// test is skipped, or fails when RequireEnv is set.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("redistest: redis-server is not in PATH (apt-get install redis-server; %s is set)", RequireEnv)
		}
		t.Skipf("redistest: redis-server is not in PATH: install it (apt-get install redis-server) or run `make test-quick`, which does")
	}
	s, err := StartProcess(t.TempDir())
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartProcess starts redis-server with its working files in dir. The caller
// must call Stop.
func StartProcess(dir string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found in PATH (apt-get install redis-server): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
	)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir}
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready after %s: %w", s.Addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Client returns a client for the server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartWithArgs is Start with extra redis-server arguments (for replicas).
func StartWithArgs(t testing.TB, args ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found: %v", err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}, args...)
	cmd := exec.Command(bin, all...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir}
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Stop()
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Kill kills the server abruptly (SIGKILL), as a crash would.
func (s *Server) Kill() { s.Stop() }

// SentinelGroup is a Redis primary with one replica watched by one sentinel
// (quorum 1), with a fast failover for tests.
type SentinelGroup struct {
	Primary    *Server
	Replica    *Server
	Sentinel   string // the sentinel's address
	MasterName string
}

// StartSentinelGroup starts the group and waits until the replica is in sync
// and the sentinel knows both.
func StartSentinelGroup(t testing.TB) *SentinelGroup {
	t.Helper()
	primary := Start(t)
	host, port, _ := net.SplitHostPort(primary.Addr)
	replica := StartWithArgs(t, "--replicaof", host, port)
	g := &SentinelGroup{Primary: primary, Replica: replica, MasterName: "chorus"}

	sport, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\n"+
		"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
		sport, dir, g.MasterName, host, port, g.MasterName, g.MasterName, g.MasterName)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, _ := exec.LookPath("redis-server")
	cmd := exec.Command(bin, conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	g.Sentinel = fmt.Sprintf("127.0.0.1:%d", sport)

	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	sc := redis.NewSentinelClient(&redis.Options{Addr: g.Sentinel})
	defer sc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, _ := rc.Info(ctx, "replication").Result()
		replicas, _ := sc.Replicas(ctx, g.MasterName).Result()
		if strings.Contains(info, "master_link_status:up") && len(replicas) == 1 {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel group not ready: %s / %v", info, replicas)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CurrentPrimary asks the sentinel for the primary's address.
func (g *SentinelGroup) CurrentPrimary(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: g.Sentinel})
	defer sc.Close()
	addr, err := sc.GetMasterAddrByName(ctx, g.MasterName).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}
