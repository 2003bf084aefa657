// Package redistest starts throwaway redis-server processes for tests: a
// real Redis on a free loopback port, without persistence, stopped when the
// test ends; optionally with a password, ACL users and TLS (certificates
// made by MakeCerts), and Sentinel groups with AUTH.
package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/config"
)

// Server is a running redis-server process.
type Server struct {
	Addr string
	opts Options
	cmd  *exec.Cmd
	dir  string
}

// Options configures a redis-server. The zero value is a plain Redis
// without authentication.
type Options struct {
	// Password is the default user's password (requirepass); it also
	// authenticates a replica to its primary (masterauth).
	Password string
	// Users are ACL users besides the default one.
	Users []User
	// TLS, when set, makes the server speak TLS only (tls-port; the plain
	// port is off), with these files (see MakeCerts).
	TLS *Certs
	// RequireClientCert makes the server refuse TLS clients without a
	// certificate signed by TLS.CAFile (tls-auth-clients).
	RequireClientCert bool
	// Args are extra redis-server arguments.
	Args []string
}

// User is a Redis ACL user, enabled, with Password.
type User struct {
	Name, Password string
	// Rules are its ACL rules; empty: every command on every key and
	// channel ("~*", "&*", "+@all").
	Rules []string
}

// RequireEnv names the environment variable that turns a missing
// redis-server from a skip into a failure. `make test` and `make test-quick`
// set it, so CI never passes by skipping; a plain `go test ./...` on a
// machine without Redis skips these tests with a message saying why.
const RequireEnv = "CHORUS_TEST_REQUIRE_DEPS"

// requireRedis skips (or fails, with RequireEnv) a test on a machine
// without redis-server, and returns its path.
func requireRedis(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("redistest: redis-server is not in PATH (apt-get install redis-server; %s is set)", RequireEnv)
		}
		t.Skipf("redistest: redis-server is not in PATH: install it (apt-get install redis-server) or run `make test-quick`, which does")
	}
	return bin
}

// Start runs redis-server from PATH on a free port and waits until it answers
// PING. The server is killed when t ends. Without redis-server in PATH the
// test is skipped, or fails when RequireEnv is set.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options: a password, ACL users, TLS.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	requireRedis(t)
	s, err := startProcess(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartProcess starts a plain redis-server with its working files in dir.
// The caller must call Stop.
func StartProcess(dir string) (*Server, error) {
	return startProcess(dir, Options{})
}

func startProcess(dir string, opts Options) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return startOnPort(dir, opts, port)
}

func startOnPort(dir string, opts Options, port int) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found in PATH (apt-get install redis-server): %w", err)
	}
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}
	if opts.TLS != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", opts.TLS.ServerCertFile, "--tls-key-file", opts.TLS.ServerKeyFile,
			"--tls-ca-cert-file", opts.TLS.CAFile, "--tls-replication", "yes",
			"--tls-auth-clients", map[bool]string{true: "yes", false: "no"}[opts.RequireClientCert])
	} else {
		args = append(args, "--port", strconv.Itoa(port))
	}
	if opts.Password != "" {
		args = append(args, "--requirepass", opts.Password, "--masterauth", opts.Password)
	}
	for _, u := range opts.Users {
		rules := u.Rules
		if len(rules) == 0 {
			rules = []string{"~*", "&*", "+@all"}
		}
		args = append(append(args, "--user", u.Name, "on", ">"+u.Password), rules...)
	}
	args = append(args, opts.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), opts: opts, cmd: cmd, dir: dir}
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Stop()
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		return nil, fmt.Errorf("%w; its log:\n%s", err, log)
	}
	return s, nil
}

// clientOptions are go-redis options that reach the server as its default
// user (with the client certificate under TLS).
func (s *Server) clientOptions() *redis.Options {
	o := &redis.Options{Addr: s.Addr, Password: s.opts.Password}
	if s.opts.TLS != nil {
		cfg, err := s.opts.TLS.ClientTLS()
		if err == nil {
			o.TLSConfig = cfg
		}
	}
	return o
}

func (s *Server) waitReady(timeout time.Duration) error {
	c := redis.NewClient(s.clientOptions())
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

// Client returns a client for the server as its default user, closed when
// t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(s.clientOptions())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Config is Chorus's Redis configuration for the server as its default
// user: its address, password and, under TLS, CA and client certificate.
func (s *Server) Config() config.Redis {
	c := config.Redis{Addrs: []string{s.Addr}, Password: s.opts.Password, Timeout: 2 * time.Second}
	if t := s.opts.TLS; t != nil {
		c.TLS = config.RedisTLS{Enabled: true, CAFile: t.CAFile, CertFile: t.ClientCertFile, KeyFile: t.ClientKeyFile}
	}
	return c
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// FreePort returns a TCP port free on 127.0.0.1 for the caller to bind
// soon after. It picks at random below Linux's ephemeral range (32768+):
// a port the kernel hands out for ":0" is also what it hands out as the
// source port of the next outgoing connection, so between this check and
// the caller's bind another test's connection could take it ("address
// already in use", seen in CI). Falls back to the kernel's choice.
func FreePort() (int, error) {
	for range 50 {
		port := 20000 + rand.IntN(12000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			_ = l.Close()
			return port, nil
		}
	}
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
	return StartWith(t, Options{Args: args})
}

// Kill kills the server abruptly (SIGKILL), as a crash would.
func (s *Server) Kill() { s.Stop() }

// Restart starts a new, empty server on the address of s, which must have
// been stopped (Kill), with the same options, and waits until it answers.
// s then stands for the new process.
func (s *Server) Restart() error {
	_, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	restarted, err := startOnPort(s.dir, s.opts, n)
	if err != nil {
		return err
	}
	s.cmd = restarted.cmd
	return nil
}

// SentinelGroup is a Redis primary with one replica watched by one sentinel
// (quorum 1), with a fast failover for tests.
type SentinelGroup struct {
	Primary    *Server
	Replica    *Server
	Sentinel   string // the sentinel's address
	MasterName string
	// Password is the primary's and the replica's (SentinelOptions).
	Password string
	// SentinelPassword is the sentinel's own (SentinelOptions).
	SentinelPassword string
}

// SentinelOptions configures StartSentinelGroupWith.
type SentinelOptions struct {
	// Password protects the primary and the replica (requirepass and
	// masterauth); the sentinel monitors them with it (auth-pass).
	Password string
	// SentinelPassword protects the sentinel itself (its requirepass).
	SentinelPassword string
}

// StartSentinelGroup starts the group and waits until the replica is in sync
// and the sentinel knows both.
func StartSentinelGroup(t testing.TB) *SentinelGroup {
	t.Helper()
	return StartSentinelGroupWith(t, SentinelOptions{})
}

// StartSentinelGroupWith is StartSentinelGroup with passwords.
func StartSentinelGroupWith(t testing.TB, opts SentinelOptions) *SentinelGroup {
	t.Helper()
	primary := StartWith(t, Options{Password: opts.Password})
	host, port, _ := net.SplitHostPort(primary.Addr)
	replica := StartWith(t, Options{Password: opts.Password, Args: []string{"--replicaof", host, port}})
	g := &SentinelGroup{Primary: primary, Replica: replica, MasterName: "chorus",
		Password: opts.Password, SentinelPassword: opts.SentinelPassword}

	sport, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	lines := []string{
		fmt.Sprintf("port %d", sport), "bind 127.0.0.1", "dir " + dir,
		fmt.Sprintf("sentinel monitor %s %s %s 1", g.MasterName, host, port),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", g.MasterName),
		fmt.Sprintf("sentinel failover-timeout %s 5000", g.MasterName),
		fmt.Sprintf("sentinel parallel-syncs %s 1", g.MasterName),
	}
	if opts.Password != "" {
		lines = append(lines, fmt.Sprintf("sentinel auth-pass %s %s", g.MasterName, opts.Password))
	}
	if opts.SentinelPassword != "" {
		lines = append(lines, "requirepass "+opts.SentinelPassword)
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := requireRedis(t)
	cmd := exec.Command(bin, conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	g.Sentinel = fmt.Sprintf("127.0.0.1:%d", sport)

	ctx := context.Background()
	rc := replica.Client(t)
	sc := g.sentinelClient()
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

func (g *SentinelGroup) sentinelClient() *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: g.Sentinel, Password: g.SentinelPassword})
}

// Config is Chorus's Redis configuration for the group: the sentinel, the
// master name and both passwords.
func (g *SentinelGroup) Config() config.Redis {
	return config.Redis{Addrs: []string{g.Sentinel}, SentinelMasterName: g.MasterName, Password: g.Password,
		SentinelPassword: g.SentinelPassword, Timeout: 2 * time.Second}
}

// CurrentPrimary asks the sentinel for the primary's address.
func (g *SentinelGroup) CurrentPrimary(ctx context.Context) (string, error) {
	sc := g.sentinelClient()
	defer sc.Close()
	addr, err := sc.GetMasterAddrByName(ctx, g.MasterName).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}

// ClientTLS is a client TLS configuration trusting the certificates' CA and
// presenting the client certificate.
func (c *Certs) ClientTLS() (*tls.Config, error) {
	pool, err := c.pool()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
	if err != nil {
		return nil, fmt.Errorf("redistest: client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
