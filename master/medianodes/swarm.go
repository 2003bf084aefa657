package medianodes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// ProviderSwarm launches media nodes as Docker Swarm services.
const ProviderSwarm = "swarm"

// Labels of the services the swarm provider launches, besides LabelCluster,
// LabelMediaNode, LabelUDPPort and LabelTCPPort.
const (
	// LabelSwarmNode holds the id of the Swarm node the service is pinned
	// to: its UDP port is taken on that node only.
	LabelSwarmNode = "io.chorus.swarm-node"
	// labelStackNamespace is docker stack's own label: with it, `docker
	// stack rm` removes the launched services with the stack.
	labelStackNamespace = "com.docker.stack.namespace"
	// labelSwarmServiceID is the label Swarm puts on a task's container.
	labelSwarmServiceID = "com.docker.swarm.service.id"
	// secretsDir is where Swarm mounts a service's secrets by default.
	secretsDir = "/run/secrets"
)

// SwarmConfig configures the swarm provider. Image, Networks and Stack
// default to those of the service this master runs in (found through the
// Engine API from its own container), so the stack of docker/swarm.sh
// needs no setting.
type SwarmConfig struct {
	// Host is the Engine API address of a Swarm manager ("" = DOCKER_HOST,
	// else the local socket unix:///var/run/docker.sock).
	Host string
	// Image is the image media node services run (the chorus image).
	Image string
	// Networks are the overlay networks they join (names or ids).
	Networks []string
	// Stack is the docker stack namespace they are labelled with ("" =
	// none), so that docker stack rm removes them.
	Stack string
	// ClusterID labels the services (LabelCluster).
	ClusterID string
	// NodeLabel ("key=value") restricts launches to the Swarm nodes that
	// carry that label; empty: every ready, active node.
	NodeLabel string
	// PublicIPFile is a file every eligible node holds with the address
	// clients reach it at; it is bind-mounted into the node's container and
	// announced in ICE candidates (CHORUS_MEDIA_PUBLIC_IPS_FILE).
	PublicIPFile string
	// UDPPortMin and UDPPortMax bound the UDP ports launched nodes get,
	// published in host mode on the same number on their node (a port is
	// taken per node, so the range serves every node).
	UDPPortMin, UDPPortMax int
	// ICETCP makes each node listen for ICE-TCP on its UDP port's number,
	// published over TCP the same way.
	ICETCP bool
	// Env is the environment every node gets (Redis, cluster id...). Secrets
	// go in it as *_FILE variables naming SecretFiles, never as values.
	Env []string
	// SecretFiles are the paths of the secrets the nodes read (the *_FILE
	// variables of Env): each must be a Swarm secret mounted in the master's
	// own service at that path, which the nodes' services then get too.
	SecretFiles []string
	// StopTimeout is how long a node has to exit after SIGTERM (the
	// service's stop grace period).
	StopTimeout time.Duration
	// CPUs, MemoryMB and PidsLimit bound each node's container (0: no
	// bound), as the docker provider's.
	CPUs      float64
	MemoryMB  int
	PidsLimit int
}

// swarmEngine is the part of the Engine API the swarm provider uses
// (*client.Client implements it).
type swarmEngine interface {
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ServiceInspectWithRaw(ctx context.Context, id string, opts swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceCreate(ctx context.Context, spec swarm.ServiceSpec, opts swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceRemove(ctx context.Context, id string) error
	ServiceList(ctx context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error)
	TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error)
	NodeList(ctx context.Context, opts swarm.NodeListOptions) ([]swarm.Node, error)
}

// Swarm launches media nodes as Docker Swarm services of one task each,
// through a manager's Engine API: the cluster's image on the cluster's
// overlay networks, pinned to the eligible node running the fewest media
// nodes (the stack's global ones included), its UDP port (and ICE-TCP port
// of the same number) published in host mode on that node, announcing the
// node's address from PublicIPFile, with the master's Swarm secrets the
// nodes need. The service id is the node's environment id. Tasks are not
// restarted (restart condition none): a node that dies is declared crashed
// and its service removed, as the docker provider's containers.
type Swarm struct {
	cfg     SwarmConfig
	engine  swarmEngine
	secrets []*swarm.SecretReference
	poll    time.Duration // how often Stop checks the tasks are gone
}

// NewSwarm connects to the Docker Engine and completes cfg from the service
// this process runs in. It fails when the engine is unreachable, the image
// or networks stay unknown, or a secret file is not one of the master's
// Swarm secrets.
func NewSwarm(ctx context.Context, cfg SwarmConfig) (*Swarm, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("swarm provider: %w", err)
	}
	return newSwarm(ctx, cfg, cli)
}

func newSwarm(ctx context.Context, cfg SwarmConfig, engine swarmEngine) (*Swarm, error) {
	var own *swarm.ServiceSpec
	if cfg.Image == "" || len(cfg.Networks) == 0 || len(cfg.SecretFiles) > 0 {
		spec, err := ownService(ctx, engine)
		if err != nil {
			return nil, fmt.Errorf("swarm provider: set media_nodes.docker.image and .network, or run the master as a Swarm service: %w", err)
		}
		own = spec
	}
	if own != nil {
		if cfg.Image == "" && own.TaskTemplate.ContainerSpec != nil {
			cfg.Image = own.TaskTemplate.ContainerSpec.Image
		}
		if len(cfg.Networks) == 0 {
			for _, n := range own.TaskTemplate.Networks {
				cfg.Networks = append(cfg.Networks, n.Target)
			}
		}
		if cfg.Stack == "" {
			cfg.Stack = own.Labels[labelStackNamespace]
		}
	}
	if cfg.Image == "" || len(cfg.Networks) == 0 {
		return nil, errors.New("swarm provider: no image or network for the media node services")
	}
	if cfg.UDPPortMin <= 0 || cfg.UDPPortMax < cfg.UDPPortMin {
		return nil, fmt.Errorf("swarm provider: bad UDP port range %d-%d", cfg.UDPPortMin, cfg.UDPPortMax)
	}
	if cfg.PublicIPFile == "" || !path.IsAbs(cfg.PublicIPFile) {
		return nil, fmt.Errorf("swarm provider: the public IP file %q must be an absolute path on every node", cfg.PublicIPFile)
	}
	if cfg.NodeLabel != "" && !strings.Contains(cfg.NodeLabel, "=") {
		return nil, fmt.Errorf("swarm provider: node label %q is not key=value", cfg.NodeLabel)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	s := &Swarm{cfg: cfg, engine: engine, poll: 200 * time.Millisecond}
	for _, file := range cfg.SecretFiles {
		ref := secretAt(own, file)
		if ref == nil {
			return nil, fmt.Errorf("swarm provider: %s is not a Swarm secret of this master's service: media nodes get secrets as Swarm secrets only", file)
		}
		s.secrets = append(s.secrets, ref)
	}
	return s, nil
}

// ownService returns the spec of the Swarm service whose task this process
// runs in (Docker sets a container's hostname to its short id).
func ownService(ctx context.Context, engine swarmEngine) (*swarm.ServiceSpec, error) {
	self, err := ownContainer(ctx, engine)
	if err != nil {
		return nil, err
	}
	id := self.Config.Labels[labelSwarmServiceID]
	if id == "" {
		return nil, errors.New("this container is not a Swarm task")
	}
	svc, _, err := engine.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect own service %s: %w", id, err)
	}
	return &svc.Spec, nil
}

// secretAt returns a copy of the reference of the secret own mounts at file,
// or nil.
func secretAt(own *swarm.ServiceSpec, file string) *swarm.SecretReference {
	if own == nil || own.TaskTemplate.ContainerSpec == nil {
		return nil
	}
	for _, ref := range own.TaskTemplate.ContainerSpec.Secrets {
		if ref == nil || ref.File == nil {
			continue
		}
		target := ref.File.Name
		if !path.IsAbs(target) {
			target = path.Join(secretsDir, target)
		}
		if target == file {
			c := *ref
			f := *ref.File
			c.File = &f
			return &c
		}
	}
	return nil
}

// Name implements Provider.
func (*Swarm) Name() string { return ProviderSwarm }

// CanLaunch implements Provider.
func (*Swarm) CanLaunch() bool { return true }

// Config returns the resolved configuration (image, networks, stack).
func (s *Swarm) Config() SwarmConfig { return s.cfg }

// Launch implements Provider: it picks the eligible node running the fewest
// media nodes and a UDP port of the range free on that node, and creates
// the node's service pinned there. Swarm starts its task; the cluster waits
// for the node to register as with any launch.
//
// Two launches at once (two masters answering POST /media-nodes) may pick
// the same node and port; Swarm would leave the second task pending for
// good (its host port in use). So once created, a service looks for one of
// the cluster's on the same node and port created before it (by creation
// time, then id: both launches agree on which came first) and, finding
// one, removes itself and takes another port, up to maxPortTries times.
func (s *Swarm) Launch(ctx context.Context, id protocol.NodeID) (string, error) {
	node, err := s.pickNode(ctx)
	if err != nil {
		return "", fmt.Errorf("swarm provider: launch %s: %w", id, err)
	}
	yielded := map[int]bool{}
	for try := 1; ; try++ {
		port, err := s.freePort(ctx, node, id, yielded)
		if err != nil {
			return "", fmt.Errorf("swarm provider: launch %s on %s: %w", id, node.Description.Hostname, err)
		}
		spec := s.serviceSpec(id, node.ID, port)
		created, err := s.engine.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
		if err != nil {
			return "", fmt.Errorf("swarm provider: create service %s: %w", spec.Name, err)
		}
		rival, err := s.earlierOnPort(ctx, node, port, created.ID)
		if err == nil && rival == "" {
			return created.ID, nil
		}
		if rerr := s.engine.ServiceRemove(ctx, created.ID); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			return "", fmt.Errorf("swarm provider: remove service %s (port %d taken by %s): %w", spec.Name, port, rival, rerr)
		}
		if err != nil {
			return "", fmt.Errorf("swarm provider: launch %s: %w", id, err)
		}
		if try == maxPortTries {
			return "", fmt.Errorf("swarm provider: launch %s on %s: port taken by a concurrent launch %d times", id, node.Description.Hostname, try)
		}
		yielded[port] = true
	}
}

// maxPortTries bounds how many times a launch gives up its port to a
// concurrent one before it fails.
const maxPortTries = 5

// earlierOnPort returns the id of a service of the cluster on node that
// publishes port and was created before service mine (ties broken by id),
// or "" if there is none.
func (s *Swarm) earlierOnPort(ctx context.Context, node swarm.Node, port int, mine string) (string, error) {
	services, err := s.engine.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelCluster+"="+s.cfg.ClusterID), filters.Arg("label", LabelSwarmNode+"="+node.ID),
		filters.Arg("label", LabelUDPPort+"="+strconv.Itoa(port)))})
	if err != nil {
		return "", fmt.Errorf("list the services on port %d: %w", port, err)
	}
	i := slices.IndexFunc(services, func(svc swarm.Service) bool { return svc.ID == mine })
	if i < 0 {
		return "", fmt.Errorf("service %s is not listed on port %d after its creation", mine, port)
	}
	me := services[i]
	for _, svc := range services {
		if svc.ID != mine && (svc.CreatedAt.Before(me.CreatedAt) || svc.CreatedAt.Equal(me.CreatedAt) && svc.ID < mine) {
			return svc.ID, nil
		}
	}
	return "", nil
}

// pickNode returns the eligible node (ready, active, carrying NodeLabel)
// with the fewest media node tasks meant to run, the lowest hostname first
// among equals.
func (s *Swarm) pickNode(ctx context.Context) (swarm.Node, error) {
	nodes, err := s.engine.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return swarm.Node{}, fmt.Errorf("list the Swarm's nodes: %w", err)
	}
	key, value, _ := strings.Cut(s.cfg.NodeLabel, "=")
	var eligible []swarm.Node
	for _, n := range nodes {
		if n.Status.State != swarm.NodeStateReady || n.Spec.Availability != swarm.NodeAvailabilityActive {
			continue
		}
		if key != "" && n.Spec.Labels[key] != value {
			continue
		}
		eligible = append(eligible, n)
	}
	if len(eligible) == 0 {
		if key != "" {
			return swarm.Node{}, fmt.Errorf("no ready, active Swarm node carries the label %s", s.cfg.NodeLabel)
		}
		return swarm.Node{}, errors.New("no ready, active Swarm node")
	}
	tasks, err := s.engine.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return swarm.Node{}, fmt.Errorf("list the Swarm's tasks: %w", err)
	}
	media := map[string]int{}
	for _, t := range tasks {
		if cs := t.Spec.ContainerSpec; cs != nil && slices.Equal(cs.Args, []string{"media"}) {
			media[t.NodeID]++
		}
	}
	return slices.MinFunc(eligible, func(a, b swarm.Node) int {
		return cmp.Or(cmp.Compare(media[a.ID], media[b.ID]), strings.Compare(a.Description.Hostname, b.Description.Hostname))
	}), nil
}

// freePort returns a UDP port of the range that no launched service of the
// cluster holds on node, nor one this launch yielded, starting from a place
// that depends on id so that two masters launching at once rarely try the
// same one.
func (s *Swarm) freePort(ctx context.Context, node swarm.Node, id protocol.NodeID, yielded map[int]bool) (int, error) {
	services, err := s.engine.ServiceList(ctx, swarm.ServiceListOptions{
		Filters: filters.NewArgs(filters.Arg("label", LabelCluster+"="+s.cfg.ClusterID), filters.Arg("label", LabelSwarmNode+"="+node.ID))})
	if err != nil {
		return 0, fmt.Errorf("list the cluster's services: %w", err)
	}
	used := map[int]bool{}
	maps.Copy(used, yielded)
	for _, svc := range services {
		if p, err := strconv.Atoi(svc.Spec.Labels[LabelUDPPort]); err == nil {
			used[p] = true
		}
	}
	span := s.cfg.UDPPortMax - s.cfg.UDPPortMin + 1
	start := portOffset(id, span)
	for i := 0; i < span; i++ {
		if port := s.cfg.UDPPortMin + (start+i)%span; !used[port] {
			return port, nil
		}
	}
	return 0, fmt.Errorf("all %d UDP ports of %d-%d are in use on that node", span, s.cfg.UDPPortMin, s.cfg.UDPPortMax)
}

// serviceName is the node's service name: <stack>_<node id> under a stack
// (as docker stack names its own services), chorus-<node id> otherwise.
func (s *Swarm) serviceName(id protocol.NodeID) string {
	if s.cfg.Stack != "" {
		return s.cfg.Stack + "_" + string(id)
	}
	return "chorus-" + string(id)
}

// serviceSpec is the service of node id, pinned to node, on port.
func (s *Swarm) serviceSpec(id protocol.NodeID, node string, port int) swarm.ServiceSpec {
	labels := map[string]string{LabelCluster: s.cfg.ClusterID, LabelMediaNode: string(id),
		LabelUDPPort: strconv.Itoa(port), LabelSwarmNode: node}
	if s.cfg.Stack != "" {
		labels[labelStackNamespace] = s.cfg.Stack
	}
	ports := []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolUDP, TargetPort: uint32(port), PublishedPort: uint32(port), PublishMode: swarm.PortConfigPublishModeHost}}
	tcpPort := -1
	if s.cfg.ICETCP {
		tcpPort = port
		labels[LabelTCPPort] = strconv.Itoa(port)
		ports = append(ports, swarm.PortConfig{Protocol: swarm.PortConfigProtocolTCP, TargetPort: uint32(port), PublishedPort: uint32(port), PublishMode: swarm.PortConfigPublishModeHost})
	}
	env := append(append([]string(nil), s.cfg.Env...),
		"CHORUS_MEDIA_ID="+string(id),
		"CHORUS_MEDIA_LISTEN=0.0.0.0:8888",
		// A Swarm template: the task's name, which the overlay network's
		// DNS resolves to its address.
		"CHORUS_MEDIA_INTERNAL_URL=http://{{.Task.Name}}:8888",
		"CHORUS_MEDIA_UDP_PORT="+strconv.Itoa(port),
		"CHORUS_MEDIA_TCP_PORT="+strconv.Itoa(tcpPort),
		"CHORUS_MEDIA_BIND_IP=0.0.0.0",
		"CHORUS_MEDIA_PUBLIC_IPS_FILE="+s.cfg.PublicIPFile,
		"CHORUS_MEDIA_ANNOUNCE_PRIVATE_IPS=true",
	)
	var secrets []*swarm.SecretReference
	for _, ref := range s.secrets {
		c := *ref
		secrets = append(secrets, &c)
	}
	var networks []swarm.NetworkAttachmentConfig
	for _, n := range s.cfg.Networks {
		networks = append(networks, swarm.NetworkAttachmentConfig{Target: n})
	}
	var limits swarm.Limit
	if s.cfg.CPUs > 0 {
		limits.NanoCPUs = int64(s.cfg.CPUs * 1e9)
	}
	if s.cfg.MemoryMB > 0 {
		limits.MemoryBytes = int64(s.cfg.MemoryMB) << 20
	}
	if s.cfg.PidsLimit > 0 {
		limits.Pids = int64(s.cfg.PidsLimit)
	}
	one := uint64(1)
	grace := s.cfg.StopTimeout
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: s.serviceName(id), Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image: s.cfg.Image, Args: []string{"media"}, Env: env,
				Labels:          map[string]string{LabelCluster: s.cfg.ClusterID, LabelMediaNode: string(id)},
				Secrets:         secrets,
				StopGracePeriod: &grace,
				Mounts:          []mount.Mount{{Type: mount.TypeBind, Source: s.cfg.PublicIPFile, Target: s.cfg.PublicIPFile, ReadOnly: true}},
			},
			Resources:     &swarm.ResourceRequirements{Limits: &limits},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     &swarm.Placement{Constraints: []string{"node.id==" + node}},
			Networks:      networks,
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR, Ports: ports},
	}
}

// Stop implements Provider: the node's service is removed (Swarm sends
// SIGTERM, then SIGKILL after StopTimeout) and Stop returns once its task is
// gone, or once its node is down (that host's engine removes the container
// when it comes back). Services that are not this node's are left alone.
func (s *Swarm) Stop(ctx context.Context, n store.MediaNodeInfo) error {
	if n.Provider != ProviderSwarm || n.EnvironmentID == "" {
		return nil
	}
	svc, _, err := s.engine.ServiceInspectWithRaw(ctx, n.EnvironmentID, swarm.ServiceInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("swarm provider: inspect service %s: %w", n.EnvironmentID, err)
	}
	if svc.Spec.Labels[LabelMediaNode] != string(n.ID) || svc.Spec.Labels[LabelCluster] != s.cfg.ClusterID {
		return nil
	}
	if err := s.engine.ServiceRemove(ctx, svc.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("swarm provider: remove service %s: %w", svc.Spec.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StopTimeout+20*time.Second)
	defer cancel()
	for {
		gone, err := s.tasksGone(ctx, svc.ID)
		if err != nil {
			return fmt.Errorf("swarm provider: after removing %s: %w", svc.Spec.Name, err)
		}
		if gone {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("swarm provider: the task of %s did not end: %w", svc.Spec.Name, ctx.Err())
		case <-time.After(s.poll):
		}
	}
}

// tasksGone reports whether every task of a removed service is deleted or
// sits on a node that is down.
func (s *Swarm) tasksGone(ctx context.Context, serviceID string) (bool, error) {
	tasks, err := s.engine.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("list its tasks: %w", err)
	}
	if len(tasks) == 0 {
		return true, nil
	}
	nodes, err := s.engine.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return false, fmt.Errorf("list the Swarm's nodes: %w", err)
	}
	ready := map[string]bool{}
	for _, n := range nodes {
		ready[n.ID] = n.Status.State == swarm.NodeStateReady
	}
	for _, t := range tasks {
		if ready[t.NodeID] {
			return false, nil
		}
	}
	return true, nil
}
