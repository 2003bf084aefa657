//go:build e2e

// Package e2e tests a real multi-process Chorus cluster (`chorus dev`)
// through its proxy, with the official OpenVidu client packages (Node.js),
// headless Chromium and Go pion participants. Run it with `make test-e2e` (build tag e2e):
// it needs bin/chorus (CHORUS_BIN), redis-server, chromium and web/node_modules.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/devcluster"
)

var (
	chorusBin string
	repoRoot  string
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

// runTests prepares the binary and the npm packages, runs the tests and
// removes what it built; its defers run, unlike TestMain's before os.Exit.
func runTests(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	chorusBin = os.Getenv("CHORUS_BIN")
	if chorusBin == "" {
		dir, err := os.MkdirTemp("", "chorus-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		chorusBin = filepath.Join(dir, "chorus")
		build := exec.Command("go", "build", "-o", chorusBin, "./cmd/chorus")
		build.Dir, build.Stdout, build.Stderr = repoRoot, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build chorus:", err)
			return 1
		}
		defer os.RemoveAll(dir)
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "web", "node_modules", "openvidu-browser")); err != nil {
		fmt.Fprintln(os.Stderr, "web/node_modules is missing: run `make web` (npm ci in web/)")
		return 1
	}
	return m.Run()
}

// devCluster is a running `chorus dev`.
type devCluster struct {
	devcluster.State
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// devOptions are extra flags and environment variables of `chorus dev`.
type devOptions struct {
	Args []string
	Env  []string
	// SingleRedis: the test acts on chorus dev's one redis-server (stops
	// it, restarts it); it is skipped when the tests run on a Redis
	// Cluster.
	SingleRedis bool
}

// redisEnv names the environment variable that runs every test's chorus
// dev on a Redis Cluster (`chorus dev --redis-cluster`) when it is
// "cluster"; `make test-e2e-redis-cluster` runs a set of tests that way.
const redisEnv = "CHORUS_E2E_REDIS"

// redisClient is a client of the cluster's Redis (a Cluster client when
// chorus dev runs a Redis Cluster), closed when the test ends.
func (dc *devCluster) redisClient(t *testing.T) redis.UniversalClient {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(dc.Redis, ",")})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// redisKeys lists the keys matching pattern on every primary of the
// cluster's Redis (KEYS reaches one node only).
func redisKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Keys(ctx, pattern).Result()
	}
	var mu sync.Mutex
	var out []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
		return err
	})
	return out, err
}

// startDev runs `chorus dev` until the test ends and returns its state
// file's content.
func startDev(t *testing.T, opts ...devOptions) *devCluster {
	t.Helper()
	port := freePort(t)
	stateFile := filepath.Join(t.TempDir(), "state.json")
	// No TURN server unless a test asks for one (--turn-servers 1): the
	// crash and drain bounds of BENCHMARKS.md were measured without.
	args := []string{"dev", "--port", fmt.Sprint(port), "--state-file", stateFile, "--secret", "E2E_SECRET", "--turn-servers", "0",
		"--cluster-id", "e2e", "--assets-dir", filepath.Join(repoRoot, "web")}
	level := "info"
	if l := os.Getenv("CHORUS_TEST_LOG_LEVEL"); l != "" {
		level = l
	}
	// The cluster's own temporary directory: what it leaves there is its
	// leftover, whatever else runs on the machine (other clusters share
	// the system's).
	tmp := t.TempDir()
	env := append(os.Environ(), "CHORUS_LOG_LEVEL="+level, "TMPDIR="+tmp)
	redisCluster := os.Getenv(redisEnv) == "cluster"
	for _, o := range opts {
		args = append(args, o.Args...)
		env = append(env, o.Env...)
		if o.SingleRedis && redisCluster {
			t.Skipf("%s=cluster: this test needs the single redis-server of chorus dev", redisEnv)
		}
	}
	if redisCluster {
		args = append(args, "--redis-cluster")
	}
	tempBefore := chorusTempEntries(tmp)
	procsBefore := map[int]bool{}
	for _, pid := range allProcesses() {
		procsBefore[pid] = true
	}
	cmd := exec.Command(chorusBin, args...)
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dc := &devCluster{cmd: cmd, logs: logs}
	// exited is closed when the process has exited, with exitErr set: both
	// the start-up wait and the cleanup may wait for it.
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Error("chorus dev did not stop within 30s of SIGTERM")
		}
		// Nothing the cluster started may outlive it (media nodes launched
		// by its masters included): they all name its Redis.
		if dc.Redis != "" {
			for _, pid := range processesNaming(dc.Redis) {
				if procsBefore[pid] {
					continue // the test's own (a Redis it started, say)
				}
				t.Errorf("process %d of the cluster outlived chorus dev: killed", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		// Nor may any file or directory it made in the temporary directory.
		for name := range chorusTempEntries(tmp) {
			if !tempBefore[name] {
				t.Errorf("chorus dev left %s behind: removed", name)
				_ = os.RemoveAll(filepath.Join(tmp, name))
			}
		}
		// CHORUS_TEST_LOGS=/path keeps the whole output in a file (each
		// cluster of the run appends); any other value logs its tail.
		if dest := os.Getenv("CHORUS_TEST_LOGS"); strings.HasPrefix(dest, "/") {
			if f, err := os.OpenFile(dest, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
				_, _ = fmt.Fprintf(f, "=== %s\n%s", t.Name(), logs.String())
				_ = f.Close()
			}
		} else if t.Failed() || dest != "" {
			t.Logf("chorus dev output:\n%s", tail(logs.String(), 300))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, err := os.ReadFile(stateFile)
		if err == nil && json.Unmarshal(raw, &dc.State) == nil {
			return dc
		}
		select {
		case <-exited:
			t.Fatalf("chorus dev exited: %v\n%s", exitErr, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("chorus dev not up after 60s:\n%s", logs.String())
		}
	}
}

// pid returns the process id of a node of the cluster.
func (dc *devCluster) pid(t *testing.T, id string) int {
	t.Helper()
	for _, n := range dc.Nodes {
		if n.ID == id {
			return n.PID
		}
	}
	t.Fatalf("no node %s", id)
	return 0
}

// node runs one of the e2e/js scripts against the cluster and reports each
// of its failed checks.
func (dc *devCluster) node(t *testing.T, script string, env ...string) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(repoRoot, "e2e", "js", script))
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(repoRoot, "web", "node_modules"),
		"CHORUS_URL="+dc.URL, "CHORUS_SECRET="+dc.Secret)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var out struct {
		Results []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"results"`
	}
	line := lastLine(stdout.String())
	if err := json.Unmarshal([]byte(line), &out); err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", script, runErr, stdout.String(), tail(stderr.String(), 50))
	}
	for _, r := range out.Results {
		if !r.OK {
			t.Errorf("%s: %s: %s", script, r.Name, r.Detail)
		} else {
			t.Logf("%s: ok: %s", script, r.Name)
		}
	}
	if runErr != nil && !t.Failed() {
		t.Errorf("%s exited with %v: %s", script, runErr, tail(stderr.String(), 50))
	}
	return json.RawMessage(line)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// fixedPorts returns the first of n consecutive ports free on 127.0.0.1 for
// both TCP and UDP, below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), for services that must listen on the same
// number they announce (media nodes' ICE ports): a number in the ephemeral
// range can be taken at any time by some process's outgoing connection or
// Chrome's UDP sockets, which once made compose's fixed 40000 fail to bind.
func fixedPorts(t *testing.T, n int) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	const floor = 20000
	if low-floor < 1000 {
		t.Fatalf("ephemeral ports start at %d: no room below them for fixed ports", low)
	}
	free := func(port int) bool {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		defer l.Close()
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		defer u.Close()
		return true
	}
	for try := 0; try < 200; try++ {
		first := floor + rand.IntN(low-floor-n)
		ok := true
		for p := first; p < first+n && ok; p++ {
			ok = free(p)
		}
		if ok {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports between %d and %d", n, floor, low)
	return 0
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// chorusTempEntries lists the entries of a temporary directory that Chorus
// processes make (chorus-*, media_*.log).
func chorusTempEntries(dir string) map[string]bool {
	entries, _ := os.ReadDir(dir)
	out := map[string]bool{}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "chorus-") && !strings.HasPrefix(n, "chorus-e2e-") ||
			strings.HasPrefix(n, "media_") && strings.HasSuffix(n, ".log") {
			out[n] = true
		}
	}
	return out
}

// allProcesses lists the process ids of the machine but this one.
func allProcesses() []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		if pid, err := strconv.Atoi(d.Name()); err == nil && pid != os.Getpid() {
			out = append(out, pid)
		}
	}
	return out
}

// processesNaming returns the processes whose command line or environment
// contains s (launched media nodes get Redis in their environment).
func processesNaming(s string) []int {
	var out []int
	for _, pid := range allProcesses() {
		for _, f := range []string{"cmdline", "environ"} {
			raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), f))
			if err == nil && strings.Contains(string(raw), s) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
