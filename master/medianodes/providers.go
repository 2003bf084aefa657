package medianodes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/chorus-rtc/chorus/shared/nodeprocess"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Provider names.
const (
	ProviderStatic  = "static"
	ProviderProcess = nodeprocess.Provider
	ProviderDocker  = "docker"
)

// Provider launches and stops media nodes.
type Provider interface {
	// Name is what records say launched a node: static, process, docker.
	Name() string
	// CanLaunch reports whether Launch can start nodes.
	CanLaunch() bool
	// Launch starts a media node that registers itself in the cluster under
	// id. It returns the node's environment id (process id, container id).
	Launch(ctx context.Context, id protocol.NodeID) (environmentID string, err error)
	// Stop shuts a node down (idempotent); nodes it did not launch are left
	// alone.
	Stop(ctx context.Context, n store.MediaNodeInfo) error
}

// ErrCannotLaunch is returned by providers that cannot start nodes.
var ErrCannotLaunch = errors.New("this provider cannot launch media nodes")

// Static is the on-premises provider: nodes are started by the operator and
// register themselves (or are added by URI); the cluster only tracks them,
// and the autoscaler reports how many more the operator must start.
type Static struct{}

// Name implements Provider.
func (Static) Name() string { return ProviderStatic }

// CanLaunch implements Provider.
func (Static) CanLaunch() bool { return false }

// Launch implements Provider: a static cluster cannot start machines.
func (Static) Launch(context.Context, protocol.NodeID) (string, error) { return "", ErrCannotLaunch }

// Stop implements Provider: the operator stops the node once it is terminated.
func (Static) Stop(context.Context, store.MediaNodeInfo) error { return nil }

// ProcessConfig configures the process provider.
type ProcessConfig struct {
	// Binary is the chorus executable.
	Binary string
	// BindIP is the IP the launched nodes bind and announce.
	BindIP string
	// ICETCP gives each launched node a free TCP port of BindIP for
	// ICE-TCP (--media-tcp-port); off, the nodes get -1 (no ICE-TCP).
	ICETCP bool
	// Args are extra flags every launched node gets (Redis, cluster id...).
	Args []string
	// Env is the nodes' environment.
	Env []string
	// LogDir receives each node's output, media_<id>.log.
	LogDir string
}

// Process launches `chorus media` processes on this machine. A launched node
// is its own process session (setsid) writing to a log file, so it outlives
// the master that started it; any master can stop it by its process id (the
// nodes' environment id), since they all run on this machine.
type Process struct{ cfg ProcessConfig }

// NewProcess returns the process provider.
func NewProcess(cfg ProcessConfig) *Process {
	if cfg.LogDir == "" {
		cfg.LogDir = os.TempDir()
	}
	return &Process{cfg: cfg}
}

// Name implements Provider.
func (*Process) Name() string { return ProviderProcess }

// CanLaunch implements Provider.
func (*Process) CanLaunch() bool { return true }

// Launch implements Provider.
func (p *Process) Launch(_ context.Context, id protocol.NodeID) (string, error) {
	apiPort, err := freePort("tcp", "127.0.0.1")
	if err != nil {
		return "", err
	}
	udpPort, err := freePort("udp", p.cfg.BindIP)
	if err != nil {
		return "", err
	}
	tcpPort := -1
	if p.cfg.ICETCP {
		if tcpPort, err = freePort("tcp", p.cfg.BindIP); err != nil {
			return "", err
		}
	}
	args := append([]string{"media", "--media-id", string(id), "--media-listen", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--media-udp-port", strconv.Itoa(udpPort), "--media-tcp-port=" + strconv.Itoa(tcpPort),
		"--media-bind-ip", p.cfg.BindIP}, p.cfg.Args...)
	logPath := filepath.Join(p.cfg.LogDir, string(id)+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("open the node's log %s: %w", logPath, err)
	}
	defer logFile.Close()
	cmd := exec.Command(p.cfg.Binary, args...)
	cmd.Env = p.cfg.Env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", p.cfg.Binary, err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap it if it exits while this master lives
	return strconv.Itoa(pid), nil
}

// Stop implements Provider: SIGTERM, then SIGKILL after
// nodeprocess.StopGrace.
func (p *Process) Stop(ctx context.Context, n store.MediaNodeInfo) error {
	if n.Provider != p.Name() {
		return nil
	}
	pid, err := strconv.Atoi(n.EnvironmentID)
	if err != nil {
		return nil // not a process id: nothing of ours to stop
	}
	return nodeprocess.Stop(ctx, pid, string(n.ID))
}

func freePort(network, ip string) (int, error) {
	if ip == "" || ip == "0.0.0.0" {
		ip = "127.0.0.1"
	}
	if network == "udp" {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			return 0, fmt.Errorf("find a free UDP port: %w", err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		_ = c.Close()
		return port, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
