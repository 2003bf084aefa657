// Package devcluster runs a whole Chorus cluster on one machine (`chorus
// dev`): Redis, masters, media nodes and the proxy, each as its own OS
// process of the chorus binary, on free loopback ports. It is what a
// newcomer runs first and what the end-to-end tests start.
package devcluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/nodeprocess"
	"github.com/chorus-rtc/chorus/shared/rediscluster"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Config configures a dev cluster.
type Config struct {
	// Binary is the chorus executable the processes run.
	Binary string
	// Port is the proxy's port: the cluster's URL is http://PublicHost:Port.
	Port int
	// ListenHost is the proxy's bind address (127.0.0.1 keeps it local).
	ListenHost string
	// PublicHost is the host of the cluster's URL and of the tokens'
	// WebSocket URL, where browsers reach the proxy ("" = localhost).
	PublicHost string
	// Secret is the OpenVidu secret (REST API, demo). With a ListenHost
	// other than loopback it must pass config.SecretProblem's rules.
	Secret string
	// ClusterSecret is the masters' and media nodes' internal secret;
	// empty: a random one, new at every start.
	ClusterSecret string
	// RedisAddr is an existing Redis (host:port, or a Redis Cluster's
	// nodes separated by commas); empty starts redis-server from PATH.
	RedisAddr string
	// RedisCluster, without RedisAddr, starts a Redis Cluster instead of
	// one redis-server: 3 primaries and 3 replicas (6 processes, formed
	// with redis-cli --cluster create), a replica promoted 1 s after its
	// primary stops answering.
	RedisCluster bool
	// RedisSentinelMaster, with RedisAddr, makes RedisAddr a Sentinel
	// watching the primary of this name.
	RedisSentinelMaster string
	Masters             int
	MediaNodes          int
	// TurnServers is how many TURN servers (chorus turn) run; masters hand
	// every participant all of them (UDP and TCP URLs), with credentials
	// minted with TurnSecret. 0: none.
	TurnServers int
	// TurnSecret is the TURN credentials' secret; empty: a random one.
	TurnSecret string
	// MediaIP is the IP media nodes announce (and bind); 127.0.0.1 serves
	// browsers on this machine only.
	MediaIP string
	// ICETCP gives every media node (the cluster's and those its masters
	// launch) a free TCP port of MediaIP for ICE-TCP; off, they have none.
	ICETCP bool
	// ClusterID namespaces the cluster's Redis keys.
	ClusterID string
	// StateFile, if set, receives the cluster's description once it is up.
	StateFile string
	// Demo serves the demo page (it hands out tokens: a dev-only feature).
	Demo bool
	// AssetsDir holds the demo page and openvidu-browser (web/).
	AssetsDir string
	// Recorders is how many recorders (chorus recorder) run; at least one
	// turns recording on in the masters (OPENVIDU_RECORDING). 0: recording
	// answers 501.
	Recorders int
	// RecordingPath is the recording path of masters and recorders (one
	// host: they share it); empty: a temporary directory removed at exit.
	RecordingPath string
	// Env is the environment of every process (CHORUS_*, OPENVIDU_*, ...).
	Env []string
	// Output receives the processes' logs, each line prefixed by its node.
	Output io.Writer
	Logger *slog.Logger
}

// Node describes one process of the cluster in the state file.
type Node struct {
	Role string `json:"role"` // master, media, turn, proxy or redis
	ID   string `json:"id"`
	PID  int    `json:"pid"`
	Addr string `json:"addr"`
}

// State is the state file's content.
type State struct {
	URL           string `json:"url"`
	Secret        string `json:"secret"`
	ClusterSecret string `json:"clusterSecret"`
	Redis         string `json:"redis"`
	// TurnURLs are the TURN servers' URLs masters hand out.
	TurnURLs []string `json:"turnUrls,omitempty"`
	// RecordingPath is where recordings are written, with recorders.
	RecordingPath string `json:"recordingPath,omitempty"`
	Nodes         []Node `json:"nodes"`
}

type process struct {
	node Node
	cmd  *exec.Cmd
	done chan struct{}
}

// Run starts the cluster, writes the state file and waits until ctx ends;
// then it stops every process it started (SIGTERM, then SIGKILL after 15 s).
// A process that dies meanwhile is reported and not restarted: the cluster
// is meant to survive it.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	exposed := !config.IsLoopback(cfg.ListenHost)
	if p := config.SecretProblem("the secret (--secret)", cfg.Secret, exposed); p != "" {
		if exposed {
			p += fmt.Sprintf(" [--listen-host %s makes the proxy reachable from other machines]", cfg.ListenHost)
		}
		return errors.New(p)
	}
	if cfg.ClusterSecret == "" {
		var err error
		if cfg.ClusterSecret, err = randomSecret(); err != nil {
			return err
		}
	}
	if cfg.TurnSecret == "" {
		var err error
		if cfg.TurnSecret, err = randomSecret(); err != nil {
			return err
		}
	}
	r := &runner{cfg: cfg, log: cfg.Logger, promised: map[int]bool{cfg.Port: true}}
	defer r.stopAll()
	state, err := r.start(ctx)
	if err != nil {
		return err
	}
	if cfg.StateFile != "" {
		raw, _ := json.MarshalIndent(state, "", "  ")
		tmp := cfg.StateFile + ".tmp"
		if err := os.WriteFile(tmp, raw, 0o600); err != nil {
			return fmt.Errorf("write state file: %w", err)
		}
		if err := os.Rename(tmp, cfg.StateFile); err != nil {
			return fmt.Errorf("write state file: %w", err)
		}
	}
	fmt.Fprintf(cfg.Output, "\nChorus is up: %s  (secret %s)\n", state.URL, state.Secret)
	if cfg.Demo {
		fmt.Fprintf(cfg.Output, "Demo page: %s/  (open it in two tabs)\n", state.URL)
	}
	fmt.Fprintln(cfg.Output, "Press Ctrl+C to stop the cluster.")
	<-ctx.Done()
	return nil
}

type runner struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	procs []*process
	wg    sync.WaitGroup

	// promised holds the ports handed to a process that may not have bound
	// them yet (the proxy's --port from the start): the kernel would give
	// a just-closed probe port out again, and two processes would race
	// for it.
	promised map[int]bool

	redisAddrs   []string
	launchedLogs string   // logs of the media nodes the masters launched
	tempDirs     []string // removed once every process stopped
}

// tempDir makes a directory in the system's temporary directory that the
// runner removes when the cluster stops.
func (r *runner) tempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.tempDirs = append(r.tempDirs, dir)
	r.mu.Unlock()
	return dir, nil
}

func (r *runner) start(ctx context.Context) (*State, error) {
	cfg := r.cfg
	publicHost := cfg.PublicHost
	if publicHost == "" {
		publicHost = "localhost"
	}
	publicAddr := net.JoinHostPort(publicHost, strconv.Itoa(cfg.Port))
	state := &State{URL: "http://" + publicAddr, Secret: cfg.Secret, ClusterSecret: cfg.ClusterSecret}
	redisAddrs := strings.Split(cfg.RedisAddr, ",")
	switch {
	case cfg.RedisAddr != "":
	case cfg.RedisCluster:
		var err error
		if redisAddrs, err = r.startRedisCluster(ctx); err != nil {
			return nil, err
		}
	default:
		addr, err := r.startRedis(ctx, "redis", nil)
		if err != nil {
			return nil, err
		}
		redisAddrs = []string{addr}
	}
	state.Redis = strings.Join(redisAddrs, ",")
	// Every secret reaches the processes through their environment
	// (spawn), out of process listings; the OpenVidu secret goes to the
	// masters and the proxy only.
	common := []string{"--redis-addrs", state.Redis, "--cluster-id", cfg.ClusterID}
	if cfg.RedisSentinelMaster != "" {
		common = append(common, "--redis-sentinel-master-name", cfg.RedisSentinelMaster)
	}
	r.redisAddrs = redisAddrs
	logDir, err := r.tempDir("chorus-media-")
	if err != nil {
		return nil, err
	}
	r.launchedLogs = logDir

	turnURLs, err := r.startTurn(ctx, common)
	if err != nil {
		return nil, err
	}
	state.TurnURLs = turnURLs
	masterTurn := []string{}
	if len(turnURLs) > 0 {
		masterTurn = []string{"--turn-urls", strings.Join(turnURLs, ",")}
	}
	recording := []string{}
	if cfg.Recorders > 0 {
		path := cfg.RecordingPath
		if path == "" {
			if path, err = r.tempDir("chorus-recordings-"); err != nil {
				return nil, err
			}
		}
		state.RecordingPath = path
		recording = []string{"--recording-enabled", "--recording-path", path}
	}
	for i := 1; i <= cfg.Masters; i++ {
		port, err := r.freeTCPPort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		id := fmt.Sprintf("master_%d", i)
		args := append([]string{"master", "--master-id", id, "--master-listen", addr,
			"--master-public-url", "ws://" + publicAddr,
			"--media-nodes-provider", "process", "--media-nodes-process-bind-ip", cfg.MediaIP,
			"--media-nodes-ice-tcp=" + strconv.FormatBool(cfg.ICETCP),
			"--media-nodes-process-log-dir", logDir}, append(append(common, masterTurn...), recording...)...)
		p, err := r.spawn(Node{Role: "master", ID: id, Addr: addr}, cfg.Binary, args...)
		if err != nil {
			return nil, err
		}
		if err := waitHealthy(ctx, "http://"+addr+"/chorus/health", 20*time.Second, p); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= cfg.MediaNodes; i++ {
		port, err := r.freeTCPPort()
		if err != nil {
			return nil, err
		}
		udp, err := r.freeUDPPort(cfg.MediaIP)
		if err != nil {
			return nil, err
		}
		tcp := -1
		if cfg.ICETCP {
			if tcp, err = r.freeTCPPortOn(cfg.MediaIP); err != nil {
				return nil, err
			}
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		id := fmt.Sprintf("media_%d", i)
		args := append([]string{"media", "--media-id", id, "--media-listen", addr,
			"--media-udp-port", strconv.Itoa(udp), "--media-tcp-port=" + strconv.Itoa(tcp),
			"--media-bind-ip", cfg.MediaIP}, common...)
		p, err := r.spawn(Node{Role: "media", ID: id, Addr: addr}, cfg.Binary, args...)
		if err != nil {
			return nil, err
		}
		if err := waitHealthy(ctx, "http://"+addr+"/chorus/health", 20*time.Second, p); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= cfg.Recorders; i++ {
		id := fmt.Sprintf("recorder_%d", i)
		args := append([]string{"recorder", "--recorder-id", id, "--recording-path", state.RecordingPath,
			"--recorder-loopback-only=" + strconv.FormatBool(net.ParseIP(cfg.MediaIP).IsLoopback())}, common...)
		if _, err := r.spawn(Node{Role: "recorder", ID: id}, cfg.Binary, args...); err != nil {
			return nil, err
		}
	}
	proxyAddr := net.JoinHostPort(cfg.ListenHost, strconv.Itoa(cfg.Port))
	args := append([]string{"proxy", "--proxy-listen", proxyAddr,
		"--proxy-demo-enabled=" + strconv.FormatBool(cfg.Demo), "--proxy-demo-assets-dir", cfg.AssetsDir}, common...)
	p, err := r.spawn(Node{Role: "proxy", ID: "proxy", Addr: proxyAddr}, cfg.Binary, args...)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, "http://"+dialable(proxyAddr)+"/chorus/health", 20*time.Second, p); err != nil {
		return nil, err
	}
	// Up means usable: the controller has adopted every media node started
	// here (it does so on its next round after the node's first heartbeat),
	// so a session created now finds them all. Unless the masters adopt
	// nothing by themselves (media_nodes.auto_adopt false in the
	// environment every process gets).
	if autoAdopt, err := strconv.ParseBool(os.Getenv("CHORUS_MEDIA_NODES_AUTO_ADOPT")); err != nil || autoAdopt {
		if err := waitAdopted(ctx, "http://"+dialable(proxyAddr), cfg.Secret, cfg.MediaNodes, 20*time.Second, p); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	for _, p := range r.procs {
		state.Nodes = append(state.Nodes, p.node)
	}
	r.mu.Unlock()
	return state, nil
}

// startTurn starts cfg.TurnServers TURN servers on MediaIP (UDP and TCP on
// one port each, TLS on another with a self-signed certificate for MediaIP,
// localhost and 127.0.0.1, relaying from MediaIP to the media nodes) and
// returns the URLs participants reach them at: turn: over UDP and TCP,
// turns: over TCP, for each server.
func (r *runner) startTurn(ctx context.Context, common []string) ([]string, error) {
	var urls []string
	for i := 1; i <= r.cfg.TurnServers; i++ {
		port, err := r.freeUDPAndTCPPort(r.cfg.MediaIP)
		if err != nil {
			return nil, err
		}
		tlsPort, err := r.freeTCPPortOn(r.cfg.MediaIP)
		if err != nil {
			return nil, err
		}
		certDir, err := r.tempDir("chorus-turn-tls-")
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort(r.cfg.MediaIP, strconv.Itoa(port))
		tlsAddr := net.JoinHostPort(r.cfg.MediaIP, strconv.Itoa(tlsPort))
		id := fmt.Sprintf("turn_%d", i)
		args := append([]string{"turn", "--turn-listen-ip", r.cfg.MediaIP, "--turn-port", strconv.Itoa(port),
			"--turn-relay-ip", r.cfg.MediaIP, "--turn-relay-port-min", "0", "--turn-relay-port-max", "0",
			"--turn-tls-mode", "self-signed", "--turn-tls-port", strconv.Itoa(tlsPort),
			"--turn-tls-self-signed-dir", certDir, "--turn-tls-hosts", r.cfg.MediaIP + ",localhost,127.0.0.1"}, common...)
		p, err := r.spawn(Node{Role: "turn", ID: id, Addr: addr}, r.cfg.Binary, args...)
		if err != nil {
			return nil, err
		}
		if err := waitTCP(ctx, addr, 10*time.Second, p); err != nil {
			return nil, err
		}
		if err := waitTCP(ctx, tlsAddr, 10*time.Second, p); err != nil {
			return nil, err
		}
		urls = append(urls, "turn:"+addr+"?transport=udp", "turn:"+addr+"?transport=tcp", "turns:"+tlsAddr+"?transport=tcp")
	}
	return urls, nil
}

// freeUDPAndTCPPort finds a port free for both UDP and TCP on ip (TURN
// listens on both).
func (r *runner) freeUDPAndTCPPort(ip string) (int, error) {
	for range 20 {
		port, err := r.freeUDPPort(ip)
		if err != nil {
			return 0, err
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	return 0, errors.New("find a port free for both UDP and TCP: none after 20 tries")
}

// environment is the environment of a process of role: cfg.Env, whose
// OpenVidu secret variables are dropped, plus the secrets the role needs
// (never on its command line, which any local user can read in ps): the
// cluster and TURN secrets, and for masters and the proxy the OpenVidu
// secret.
func (r *runner) environment(role string) []string {
	env := make([]string, 0, len(r.cfg.Env)+3)
	for _, kv := range r.cfg.Env {
		name, _, _ := strings.Cut(kv, "=")
		if name != "OPENVIDU_SECRET" && name != "CHORUS_SECRET" {
			env = append(env, kv)
		}
	}
	env = append(env, "CHORUS_CLUSTER_SECRET="+r.cfg.ClusterSecret, "CHORUS_TURN_SECRET="+r.cfg.TurnSecret)
	if role == "master" || role == "proxy" {
		env = append(env, "CHORUS_SECRET="+r.cfg.Secret)
	}
	return env
}

// spawn starts one process; its output goes to cfg.Output line by line,
// prefixed with its id. The process is killed if this one dies (Pdeathsig).
func (r *runner) spawn(node Node, bin string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = r.environment(node.Role)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", node.ID, err)
	}
	node.PID = cmd.Process.Pid
	p := &process{node: node, cmd: cmd, done: make(chan struct{})}
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(r.cfg.Output, "%-9s %s\n", node.ID, sc.Text())
		}
		err := cmd.Wait()
		close(p.done)
		r.log.Info("process exited", "node", node.ID, "pid", node.PID, "err", err)
	}()
	return p, nil
}

// stopAll stops the proxy and the masters first, so that no master launches
// or migrates anything while the cluster goes down (an autoscaler keeping
// its minimum would replace the nodes being stopped); then the media nodes
// the masters launched (they outlive masters by design); then the cluster's
// own media nodes and Redis.
func (r *runner) stopAll() {
	r.mu.Lock()
	procs := append([]*process(nil), r.procs...)
	r.mu.Unlock()
	var rest []*process
	for i := len(procs) - 1; i >= 0; i-- {
		if role := procs[i].node.Role; role == "proxy" || role == "master" {
			r.stop(procs[i])
		} else {
			rest = append(rest, procs[i])
		}
	}
	r.stopLaunched()
	for _, p := range rest {
		r.stop(p)
	}
	r.wg.Wait()
	r.copyLaunchedLogs()
	r.mu.Lock()
	dirs := r.tempDirs
	r.mu.Unlock()
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			r.log.Warn("remove temporary directory", "dir", dir, "err", err)
		}
	}
}

// stop ends one process: SIGTERM, then SIGKILL of its group after 15 s.
func (r *runner) stop(p *process) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.node.PID, syscall.SIGKILL)
		<-p.done
	}
}

// randomSecret is a fresh cluster secret: 24 random bytes, hex-encoded.
func randomSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a cluster secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// dialable turns a listen address into one this machine can dial (an
// unspecified host becomes 127.0.0.1).
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func (r *runner) freeTCPPort() (int, error) {
	return r.freeTCPPortOn("127.0.0.1")
}

// freeTCPPortOn and freeUDPPort return a port the kernel reports free on
// ip and that no process of the cluster was promised yet; the port is
// promised from then on.
func (r *runner) freeTCPPortOn(ip string) (int, error) {
	return r.promise(func() (int, error) {
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			return 0, fmt.Errorf("find a free TCP port on %s: %w", ip, err)
		}
		defer func() { _ = l.Close() }()
		return l.Addr().(*net.TCPAddr).Port, nil
	})
}

func (r *runner) freeUDPPort(ip string) (int, error) {
	return r.promise(func() (int, error) {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			return 0, fmt.Errorf("find a free UDP port on %s: %w", ip, err)
		}
		defer func() { _ = c.Close() }()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	})
}

func (r *runner) promise(probe func() (int, error)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range 20 {
		port, err := probe()
		if err != nil {
			return 0, err
		}
		if !r.promised[port] {
			if r.promised == nil {
				r.promised = map[int]bool{}
			}
			r.promised[port] = true
			return port, nil
		}
	}
	return 0, errors.New("find a free port: the kernel kept offering ports already promised")
}

var errExited = errors.New("process exited during start-up")

func waitTCP(ctx context.Context, addr string, timeout time.Duration, p *process) error {
	return waitFor(ctx, timeout, p, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func waitHealthy(ctx context.Context, url string, timeout time.Duration, p *process) error {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	return waitFor(ctx, timeout, p, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitAdopted waits until the REST API at base lists media_1..media_n as
// running.
func waitAdopted(ctx context.Context, base, secret string, n int, timeout time.Duration, p *process) error {
	client := &http.Client{Timeout: time.Second}
	return waitFor(ctx, timeout, p, func() bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/openvidu/api/media-nodes", nil)
		if err != nil {
			return false
		}
		req.SetBasicAuth("OPENVIDUAPP", secret)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var list struct {
			Content []struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"content"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&list) != nil {
			return false
		}
		running := map[string]bool{}
		for _, node := range list.Content {
			running[node.ID] = node.Status == "running"
		}
		for i := 1; i <= n; i++ {
			if !running[fmt.Sprintf("media_%d", i)] {
				return false
			}
		}
		return true
	})
}

func waitFor(ctx context.Context, timeout time.Duration, p *process, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return fmt.Errorf("%s: %w", p.node.ID, errExited)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", p.node.ID, timeout)
		}
	}
	return nil
}

// DefaultAssetsDir finds web/ next to the binary's source tree: the working
// directory's web/, or the one beside the executable's parent (bin/..).
func DefaultAssetsDir(binary string) string {
	if st, err := os.Stat("web"); err == nil && st.IsDir() {
		abs, _ := filepath.Abs("web")
		return abs
	}
	return filepath.Join(filepath.Dir(filepath.Dir(binary)), "web")
}

// launchedLogLines is how much of each launched node's log goes to the
// output when the cluster stops (its log directory is removed then).
const launchedLogLines = 200

// copyLaunchedLogs writes the end of each launched media node's log to the
// output, prefixed with its id, as the other processes' output is.
func (r *runner) copyLaunchedLogs() {
	if r.launchedLogs == "" {
		return
	}
	files, _ := filepath.Glob(filepath.Join(r.launchedLogs, "*.log"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		if len(lines) > launchedLogLines {
			lines = lines[len(lines)-launchedLogLines:]
		}
		id := strings.TrimSuffix(filepath.Base(f), ".log")
		for _, l := range lines {
			fmt.Fprintf(r.cfg.Output, "%-9s %s\n", id, l)
		}
	}
}

// startRedis starts a redis-server without persistence on a free loopback
// port, with extra arguments, and returns its address once it accepts
// connections.
func (r *runner) startRedis(ctx context.Context, id string, extra func(dir string) ([]string, error)) (string, error) {
	port, err := r.freeTCPPort()
	if err != nil {
		return "", err
	}
	dir, err := r.tempDir("chorus-redis-")
	if err != nil {
		return "", err
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}
	if extra != nil {
		more, err := extra(dir)
		if err != nil {
			return "", err
		}
		args = append(args, more...)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := r.spawn(Node{Role: "redis", ID: id, Addr: addr}, "redis-server", args...)
	if err != nil {
		return "", fmt.Errorf("start redis-server (install it, or pass --redis-addr): %w", err)
	}
	if err := waitTCP(ctx, addr, 10*time.Second, p); err != nil {
		return "", err
	}
	return addr, nil
}

// redisClusterNodes is the size of the Redis Cluster of --redis-cluster:
// 3 primaries, each with a replica.
const redisClusterNodes = 6

// startRedisCluster starts the redis-server processes of a Redis Cluster
// (redis-1 to redis-6; a node's bus port is a free one too), forms the
// cluster and returns the nodes' addresses once it serves every slot.
func (r *runner) startRedisCluster(ctx context.Context) ([]string, error) {
	addrs := make([]string, 0, redisClusterNodes)
	for i := range redisClusterNodes {
		addr, err := r.startRedis(ctx, fmt.Sprintf("redis-%d", i+1), func(dir string) ([]string, error) {
			bus, err := r.freeTCPPort()
			if err != nil {
				return nil, err
			}
			return rediscluster.NodeArgs(dir, bus, time.Second), nil
		})
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, addr)
	}
	if err := rediscluster.Create(ctx, addrs, 1); err != nil {
		return nil, fmt.Errorf("form the redis cluster: %w", err)
	}
	return addrs, nil
}

// stopLaunched stops the media nodes the masters' process provider started:
// their own process sessions keep them alive past the masters, so the dev
// cluster finds them in Redis and stops them as the provider would.
func (r *runner) stopLaunched() {
	if len(r.redisAddrs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The processes' Redis settings: credentials and TLS from the
	// environment (CHORUS_REDIS_*), the address this cluster uses.
	rc, err := config.Load(nil, config.RoleTool, r.cfg.Env)
	if err != nil {
		r.log.Warn("list launched media nodes", "err", err)
		return
	}
	rc.Redis.Addrs, rc.Redis.SentinelMasterName, rc.Redis.Timeout = r.redisAddrs, r.cfg.RedisSentinelMaster, time.Second
	rdb, err := store.NewClient(rc.Redis)
	if err != nil {
		r.log.Warn("list launched media nodes", "err", err)
		return
	}
	defer rdb.Close()
	nodes, err := store.NewNodeRegistry(store.Config{Redis: rdb, ClusterID: r.cfg.ClusterID}).MediaNodes(ctx)
	if err != nil {
		r.log.Warn("list launched media nodes", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		pid, err := strconv.Atoi(n.EnvironmentID)
		if n.Provider != nodeprocess.Provider || err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.log.Info("stopping launched media node", "node", n.ID, "pid", n.EnvironmentID,
				"log", filepath.Join(r.launchedLogs, string(n.ID)+".log"))
			if err := nodeprocess.Stop(ctx, pid, string(n.ID)); err != nil {
				r.log.Warn("stop launched media node", "node", n.ID, "err", err)
			}
		}()
	}
	wg.Wait()
}
