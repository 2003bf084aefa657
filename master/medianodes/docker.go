package medianodes

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Labels of the containers the docker provider launches.
const (
	// LabelCluster holds the cluster id: `docker ps --filter
	// label=io.chorus.cluster=<id>` lists a cluster's launched nodes.
	LabelCluster = "io.chorus.cluster"
	// LabelMediaNode holds the media node id (media_...).
	LabelMediaNode = "io.chorus.media-node"
	// LabelUDPPort holds the published media UDP port.
	LabelUDPPort = "io.chorus.udp-port"
	// LabelTCPPort holds the published ICE-TCP port (the UDP port's
	// number; absent without ICE-TCP).
	LabelTCPPort = "io.chorus.tcp-port"

	// Compose's labels: with them, `docker compose down --remove-orphans`
	// (and docker-compose 1.29's) removes launched nodes with the project.
	labelComposeProject = "com.docker.compose.project"
	labelComposeService = "com.docker.compose.service"
	labelComposeOneOff  = "com.docker.compose.oneoff"
	labelComposeNumber  = "com.docker.compose.container-number"
	// composeService is the service name launched nodes carry: one the
	// compose file does not define, so compose counts them as orphans.
	composeService = "media-launched"
)

// DockerConfig configures the docker provider. Image, Network and Project
// default to those of the container this master runs in (found through the
// Engine API by its hostname), so a compose cluster needs no setting.
type DockerConfig struct {
	// Host is the Engine API address ("" = DOCKER_HOST, else the local
	// socket unix:///var/run/docker.sock).
	Host string
	// Image is the image media node containers run (the chorus image).
	Image string
	// Network is the Docker network they join (the masters' and Redis').
	Network string
	// Project is the compose project they are labelled with ("" = none).
	Project string
	// ClusterID labels the containers (LabelCluster).
	ClusterID string
	// PublishIP is the host IP their UDP port is published on.
	PublishIP string
	// PublicIPs are announced in their ICE candidates (NAT 1:1).
	PublicIPs []string
	// UDPPortMin and UDPPortMax bound the UDP ports they get, each published
	// on the same number inside and out.
	UDPPortMin, UDPPortMax int
	// ICETCP makes each node listen for ICE-TCP on its UDP port's number,
	// published over TCP the same way (so the range's TCP ports are used
	// too).
	ICETCP bool
	// Env is the environment every node gets (Redis, cluster id, secret...).
	Env []string
	// StopTimeout is how long a node has to exit after SIGTERM.
	StopTimeout time.Duration
	// CPUs (docker run --cpus), MemoryMB (--memory, swap included) and
	// PidsLimit (--pids-limit) bound each container, so that a node under
	// load or attack cannot starve its host; 0: no bound.
	CPUs      float64
	MemoryMB  int
	PidsLimit int
}

// resources are the container limits of cfg, as the Engine API takes them.
func (cfg DockerConfig) resources() container.Resources {
	var r container.Resources
	if cfg.CPUs > 0 {
		r.NanoCPUs = int64(cfg.CPUs * 1e9)
	}
	if cfg.MemoryMB > 0 {
		r.Memory = int64(cfg.MemoryMB) << 20
		r.MemorySwap = r.Memory // no swap beyond the memory limit
	}
	if cfg.PidsLimit > 0 {
		n := int64(cfg.PidsLimit)
		r.PidsLimit = &n
	}
	return r
}

// dockerEngine is the part of the Engine API the provider uses
// (*client.Client implements it).
type dockerEngine interface {
	ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig,
		net *network.NetworkingConfig, name string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, id string, opts container.StartOptions) error
	ContainerStop(ctx context.Context, id string, opts container.StopOptions) error
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
}

// engineAdapter adapts *client.Client to dockerEngine (no platform).
type engineAdapter struct{ *client.Client }

func (a engineAdapter) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig,
	net *network.NetworkingConfig, name string) (container.CreateResponse, error) {
	return a.Client.ContainerCreate(ctx, cfg, host, net, nil, name)
}

// Docker launches media nodes as containers through the Docker Engine API:
// the cluster's image on the cluster's network, each with its own UDP port
// (and, with ICE-TCP, the TCP port of the same number) published on the
// same number (NAT 1:1 rewrites only the address), and
// labelled with the cluster (LabelCluster) and, under compose, the project.
// The container id is the node's environment id. Containers are not
// restarted by Docker: a node that dies is declared crashed and removed.
type Docker struct {
	cfg    DockerConfig
	engine dockerEngine
}

// NewDocker connects to the Docker Engine and completes cfg from the
// container this process runs in. It fails when the engine is unreachable
// or the image or network stay unknown.
func NewDocker(ctx context.Context, cfg DockerConfig) (*Docker, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	return newDocker(ctx, cfg, engineAdapter{cli})
}

func newDocker(ctx context.Context, cfg DockerConfig, engine dockerEngine) (*Docker, error) {
	if cfg.Image == "" || cfg.Network == "" {
		self, err := ownContainer(ctx, engine)
		if err != nil {
			return nil, fmt.Errorf("docker provider: set media_nodes.docker.image and .network, or run the master in a container: %w", err)
		}
		if cfg.Image == "" {
			cfg.Image = self.Config.Image
		}
		if cfg.Network == "" && self.NetworkSettings != nil {
			for name := range self.NetworkSettings.Networks {
				cfg.Network = name
				break
			}
		}
		if cfg.Project == "" {
			cfg.Project = self.Config.Labels[labelComposeProject]
		}
	}
	if cfg.Image == "" || cfg.Network == "" {
		return nil, errors.New("docker provider: no image or network for the media node containers")
	}
	if cfg.UDPPortMin <= 0 || cfg.UDPPortMax < cfg.UDPPortMin {
		return nil, fmt.Errorf("docker provider: bad UDP port range %d-%d", cfg.UDPPortMin, cfg.UDPPortMax)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	return &Docker{cfg: cfg, engine: engine}, nil
}

// containerInspector is what ownContainer needs of the Engine API.
type containerInspector interface {
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
}

// ownContainer inspects the container this process runs in (Docker sets
// the hostname to its short id).
func ownContainer(ctx context.Context, engine containerInspector) (container.InspectResponse, error) {
	host, err := os.Hostname()
	if err != nil {
		return container.InspectResponse{}, err
	}
	self, err := engine.ContainerInspect(ctx, host)
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect own container %s: %w", host, err)
	}
	if self.Config == nil {
		return container.InspectResponse{}, fmt.Errorf("container %s has no configuration", host)
	}
	return self, nil
}

// Name implements Provider.
func (*Docker) Name() string { return ProviderDocker }

// CanLaunch implements Provider.
func (*Docker) CanLaunch() bool { return true }

// Config returns the resolved configuration (image, network, project).
func (d *Docker) Config() DockerConfig { return d.cfg }

// Launch implements Provider: it creates and starts the node's container on
// a free UDP port of the range; a port taken meanwhile (by a launch on
// another master) makes it try the next one.
func (d *Docker) Launch(ctx context.Context, id protocol.NodeID) (string, error) {
	used, err := d.usedPorts(ctx)
	if err != nil {
		return "", err
	}
	span := d.cfg.UDPPortMax - d.cfg.UDPPortMin + 1
	start := portOffset(id, span)
	var lastErr error
	for i := 0; i < span; i++ {
		port := d.cfg.UDPPortMin + (start+i)%span
		if used[port] {
			continue
		}
		cid, err := d.start(ctx, id, port)
		if err == nil {
			return cid, nil
		}
		lastErr = err
		if !portTaken(err) {
			return "", err
		}
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("all %d UDP ports of %d-%d are in use", span, d.cfg.UDPPortMin, d.cfg.UDPPortMax)
	}
	return "", fmt.Errorf("docker provider: launch %s: %w", id, lastErr)
}

// portOffset is where node id starts looking in a port range of span
// ports: a place that depends on the id, so that two masters launching at
// once rarely try the same port first.
func portOffset(id protocol.NodeID, span int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(span))
}

// portTaken reports whether a start failed on a host port already bound.
func portTaken(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")
}

func (d *Docker) containerName(id protocol.NodeID) string {
	prefix := d.cfg.Project
	if prefix == "" {
		prefix = "chorus"
	}
	return prefix + "-" + strings.ReplaceAll(string(id), "_", "-")
}

// start creates and starts the container of node id on port; a container
// that cannot start is removed.
func (d *Docker) start(ctx context.Context, id protocol.NodeID, port int) (string, error) {
	name := d.containerName(id)
	udp := nat.Port(strconv.Itoa(port) + "/udp")
	binding := []nat.PortBinding{{HostIP: d.cfg.PublishIP, HostPort: strconv.Itoa(port)}}
	exposed, bindings := nat.PortSet{udp: struct{}{}}, nat.PortMap{udp: binding}
	labels := map[string]string{LabelCluster: d.cfg.ClusterID, LabelMediaNode: string(id), LabelUDPPort: strconv.Itoa(port)}
	tcpPort := -1
	if d.cfg.ICETCP {
		tcpPort = port
		tcp := nat.Port(strconv.Itoa(port) + "/tcp")
		exposed[tcp], bindings[tcp] = struct{}{}, binding
		labels[LabelTCPPort] = strconv.Itoa(port)
	}
	if d.cfg.Project != "" {
		labels[labelComposeProject] = d.cfg.Project
		labels[labelComposeService] = composeService
		labels[labelComposeOneOff] = "False"
		labels[labelComposeNumber] = "1"
	}
	env := append(append([]string(nil), d.cfg.Env...),
		"CHORUS_MEDIA_ID="+string(id),
		"CHORUS_MEDIA_LISTEN=0.0.0.0:8888",
		"CHORUS_MEDIA_INTERNAL_URL=http://"+name+":8888",
		"CHORUS_MEDIA_UDP_PORT="+strconv.Itoa(port),
		"CHORUS_MEDIA_TCP_PORT="+strconv.Itoa(tcpPort),
		"CHORUS_MEDIA_BIND_IP=0.0.0.0",
		"CHORUS_MEDIA_PUBLIC_IPS="+strings.Join(d.cfg.PublicIPs, ","),
		// Its address on the docker network too: recorders (and anything
		// else) beside it on that network cannot reach the published one.
		"CHORUS_MEDIA_ANNOUNCE_PRIVATE_IPS=true",
	)
	created, err := d.engine.ContainerCreate(ctx,
		&container.Config{Image: d.cfg.Image, Cmd: []string{"media"}, Env: env, Labels: labels, ExposedPorts: exposed},
		&container.HostConfig{PortBindings: bindings, Init: new(bool), Resources: d.cfg.resources()},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{d.cfg.Network: {}}},
		name)
	if err != nil {
		return "", fmt.Errorf("create container %s from %s: %w", name, d.cfg.Image, err)
	}
	if err := d.engine.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = d.engine.ContainerRemove(rmCtx, created.ID, container.RemoveOptions{Force: true})
		return "", fmt.Errorf("start container %s: %w", name, err)
	}
	return created.ID, nil
}

// usedPorts returns the UDP ports of the cluster's launched containers.
func (d *Docker) usedPorts(ctx context.Context) (map[int]bool, error) {
	list, err := d.engine.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelCluster+"="+d.cfg.ClusterID))})
	if err != nil {
		return nil, fmt.Errorf("docker provider: list the cluster's containers: %w", err)
	}
	used := map[int]bool{}
	for _, c := range list {
		if p, err := strconv.Atoi(c.Labels[LabelUDPPort]); err == nil {
			used[p] = true
		}
	}
	return used, nil
}

// Stop implements Provider: SIGTERM, SIGKILL after StopTimeout, then the
// container is removed. Containers that are not this node's are left alone.
func (d *Docker) Stop(ctx context.Context, n store.MediaNodeInfo) error {
	if n.Provider != ProviderDocker || n.EnvironmentID == "" {
		return nil
	}
	c, err := d.engine.ContainerInspect(ctx, n.EnvironmentID)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("docker provider: inspect %s: %w", n.EnvironmentID, err)
	}
	if c.Config == nil || c.Config.Labels[LabelMediaNode] != string(n.ID) {
		return nil
	}
	secs := int(d.cfg.StopTimeout / time.Second)
	if err := d.engine.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker provider: stop %s: %w", c.Name, err)
	}
	if err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker provider: remove %s: %w", c.Name, err)
	}
	return nil
}
