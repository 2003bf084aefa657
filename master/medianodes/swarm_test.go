package medianodes

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

func protocolNodeID(i int) protocol.NodeID { return protocol.NodeID(fmt.Sprintf("media_%d", i)) }

// fakeSwarm is a small Swarm as a manager's Engine API shows it: nodes,
// services and their tasks. A created service gets one task on the node its
// constraint names; a removed service's task lingers for linger listings
// (its container shutting down) unless its node is down.
type fakeSwarm struct {
	nodes    []swarm.Node
	services map[string]swarm.Service
	tasks    []swarm.Task
	removed  map[string]int // service id -> listings left before its task goes
	linger   int
	own      *swarm.Service // the master's own service (nil: not a task)
	ownLabel string         // its container's service label
	created  int            // services created so far: their creation times
	// beforeCreate, when set, runs at the start of ServiceCreate (another
	// master's launch slipping in); it is cleared first, so it runs once.
	beforeCreate func()
}

func newFakeSwarm(nodes ...swarm.Node) *fakeSwarm {
	return &fakeSwarm{nodes: nodes, services: map[string]swarm.Service{}, removed: map[string]int{}}
}

func swarmNode(id, hostname string, state swarm.NodeState, avail swarm.NodeAvailability, labels map[string]string) swarm.Node {
	n := swarm.Node{ID: id, Status: swarm.NodeStatus{State: state}, Description: swarm.NodeDescription{Hostname: hostname}}
	n.Spec.Availability, n.Spec.Labels = avail, labels
	return n
}

// mediaTask is a task of some media service (the stack's global one) on a node.
func mediaTask(nodeID string) swarm.Task {
	return swarm.Task{NodeID: nodeID, Spec: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Args: []string{"media"}}}}
}

func (f *fakeSwarm) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	if f.ownLabel == "" {
		return container.InspectResponse{}, cerrdefs.ErrNotFound
	}
	r := container.InspectResponse{Config: &container.Config{Labels: map[string]string{labelSwarmServiceID: f.ownLabel}}}
	return r, nil
}

func (f *fakeSwarm) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	if f.own != nil && id == f.own.ID {
		return *f.own, nil, nil
	}
	if s, ok := f.services[id]; ok {
		return s, nil, nil
	}
	return swarm.Service{}, nil, cerrdefs.ErrNotFound
}

func (f *fakeSwarm) ServiceCreate(_ context.Context, spec swarm.ServiceSpec, _ swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error) {
	if hook := f.beforeCreate; hook != nil {
		f.beforeCreate = nil
		hook()
	}
	id := "svc_" + spec.Name
	if _, taken := f.services[id]; taken {
		return swarm.ServiceCreateResponse{}, fmt.Errorf("name conflicts with an existing object: %s", spec.Name)
	}
	f.created++
	svc := swarm.Service{ID: id, Spec: spec}
	svc.CreatedAt = time.Unix(1_800_000_000, 0).Add(time.Duration(f.created) * time.Millisecond)
	f.services[id] = svc
	nodeID := strings.TrimPrefix(spec.TaskTemplate.Placement.Constraints[0], "node.id==")
	f.tasks = append(f.tasks, swarm.Task{ServiceID: id, NodeID: nodeID, Spec: spec.TaskTemplate})
	return swarm.ServiceCreateResponse{ID: id}, nil
}

func (f *fakeSwarm) ServiceRemove(_ context.Context, id string) error {
	if _, ok := f.services[id]; !ok {
		return cerrdefs.ErrNotFound
	}
	delete(f.services, id)
	f.removed[id] = f.linger
	return nil
}

func (f *fakeSwarm) ServiceList(_ context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error) {
	var out []swarm.Service
	for _, s := range f.services {
		match := true
		for _, l := range opts.Filters.Get("label") {
			k, v, _ := strings.Cut(l, "=")
			match = match && s.Spec.Labels[k] == v
		}
		if match {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeSwarm) TaskList(_ context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error) {
	want := opts.Filters.Get("service")
	var out []swarm.Task
	var kept []swarm.Task
	for _, t := range f.tasks {
		left, removed := f.removed[t.ServiceID]
		if removed && left <= 0 {
			continue // deleted once shut down
		}
		kept = append(kept, t)
		if len(want) == 0 || slices.Contains(want, t.ServiceID) {
			out = append(out, t)
		}
	}
	f.tasks = kept
	for id := range f.removed {
		f.removed[id]--
	}
	return out, nil
}

func (f *fakeSwarm) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	return f.nodes, nil
}

func swarmConfig() SwarmConfig {
	return SwarmConfig{Image: "chorus:test", Networks: []string{"net1"}, ClusterID: "c", PublicIPFile: "/etc/chorus/public-ip",
		UDPPortMin: 40100, UDPPortMax: 40109, ICETCP: true, StopTimeout: time.Second}
}

// TestSwarmLaunchesOnTheLeastLoadedNode: among ready, active nodes (with the
// label, when one is set), the one running the fewest media nodes gets the
// next, the stack's global ones counted; the lowest hostname among equals.
func TestSwarmLaunchesOnTheLeastLoadedNode(t *testing.T) {
	ctx := context.Background()
	nodes := []swarm.Node{
		swarmNode("n1", "host-a", swarm.NodeStateReady, swarm.NodeAvailabilityActive, map[string]string{"chorus-media": "yes"}),
		swarmNode("n2", "host-b", swarm.NodeStateReady, swarm.NodeAvailabilityDrain, nil),
		swarmNode("n3", "host-c", swarm.NodeStateReady, swarm.NodeAvailabilityActive, nil),
		swarmNode("n4", "host-d", swarm.NodeStateDown, swarm.NodeAvailabilityActive, nil),
		swarmNode("n5", "host-e", swarm.NodeStateReady, swarm.NodeAvailabilityActive, nil),
	}
	tests := []struct {
		name   string
		label  string
		tasks  []swarm.Task
		want   []string // the nodes of successive launches
		errMsg string
	}{
		{"fewest media tasks", "", []swarm.Task{mediaTask("n1"), mediaTask("n1"), mediaTask("n3"), mediaTask("n5"), mediaTask("n5"),
			{NodeID: "n3", Spec: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Args: []string{"master"}}}}},
			[]string{"n3", "n1", "n3", "n5"}, ""},
		{"drained and down nodes never", "", nil, []string{"n1", "n3", "n5", "n1"}, ""},
		{"only labelled nodes", "chorus-media=yes", []swarm.Task{mediaTask("n1")}, []string{"n1", "n1"}, ""},
		{"a label no node carries", "chorus-media=no", nil, nil, "carries the label chorus-media=no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSwarm(nodes...)
			f.tasks = append(f.tasks, tt.tasks...)
			cfg := swarmConfig()
			cfg.NodeLabel = tt.label
			s, err := newSwarm(ctx, cfg, f)
			if err != nil {
				t.Fatal(err)
			}
			if tt.errMsg != "" {
				if _, err := s.Launch(ctx, "media_x"); err == nil || !strings.Contains(err.Error(), tt.errMsg) {
					t.Fatalf("launch: %v, want an error naming %q", err, tt.errMsg)
				}
				return
			}
			var got []string
			for i := range tt.want {
				id, err := s.Launch(ctx, protocolNodeID(i))
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, strings.TrimPrefix(f.services[id].Spec.TaskTemplate.Placement.Constraints[0], "node.id=="))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("launched on %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSwarmPortsArePerNode: two nodes launched on one Swarm node get two
// ports; a port held on another node is free here; a full range is an error.
func TestSwarmPortsArePerNode(t *testing.T) {
	ctx := context.Background()
	f := newFakeSwarm(swarmNode("n1", "a", swarm.NodeStateReady, swarm.NodeAvailabilityActive, nil))
	cfg := swarmConfig()
	cfg.UDPPortMax = cfg.UDPPortMin + 1 // two ports
	s, err := newSwarm(ctx, cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	// A node of another Swarm node holds 40100: it does not count here.
	f.services["other"] = swarm.Service{ID: "other", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{
		Labels: map[string]string{LabelCluster: "c", LabelSwarmNode: "n9", LabelUDPPort: "40100"}}}}
	ports := map[string]bool{}
	for i := 0; i < 2; i++ {
		id, err := s.Launch(ctx, protocolNodeID(i))
		if err != nil {
			t.Fatal(err)
		}
		ports[f.services[id].Spec.Labels[LabelUDPPort]] = true
	}
	if !ports["40100"] || !ports["40101"] {
		t.Errorf("ports %v, want 40100 and 40101 on the one node", ports)
	}
	if _, err := s.Launch(ctx, "media_full"); err == nil || !strings.Contains(err.Error(), "in use on that node") {
		t.Errorf("a third launch: %v, want the range full", err)
	}
}

// TestSwarmConcurrentLaunchesTakeTwoPorts: two masters launch at once and
// both find the same port free on the same node (one creates its service
// between the other's choice and its creation). Both services are created;
// the later one sees the earlier on its port, removes itself and takes
// another, so no task is left pending on a port in use. With one port in
// the range, the later launch fails instead of leaving a service behind.
func TestSwarmConcurrentLaunchesTakeTwoPorts(t *testing.T) {
	ctx := context.Background()
	// Two node ids whose first choice in a two-port range is the same.
	first, second := protocolNodeID(0), protocol.NodeID("")
	for i := 1; second == ""; i++ {
		if portOffset(protocolNodeID(i), 2) == portOffset(first, 2) {
			second = protocolNodeID(i)
		}
	}
	for _, tt := range []struct {
		name  string
		ports int
		fails bool
	}{{"two ports", 2, false}, {"one port", 1, true}} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSwarm(swarmNode("n1", "a", swarm.NodeStateReady, swarm.NodeAvailabilityActive, nil))
			cfg := swarmConfig()
			cfg.UDPPortMax = cfg.UDPPortMin + tt.ports - 1
			a, err := newSwarm(ctx, cfg, f)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := newSwarm(ctx, cfg, f)
			var bID string
			var bErr error
			// b's whole launch runs after a has chosen its port, before a creates.
			f.beforeCreate = func() { bID, bErr = b.Launch(ctx, second) }
			aID, aErr := a.Launch(ctx, first)
			if bErr != nil {
				t.Fatalf("the launch that created first: %v", bErr)
			}
			if tt.fails {
				if aErr == nil || !strings.Contains(aErr.Error(), "in use on that node") {
					t.Errorf("the later launch with no port left: %v, want the range full", aErr)
				}
				if len(f.services) != 1 {
					t.Errorf("services %v, want only the first launch's", slices.Collect(maps.Keys(f.services)))
				}
				return
			}
			if aErr != nil {
				t.Fatal(aErr)
			}
			pa, pb := f.services[aID].Spec.Labels[LabelUDPPort], f.services[bID].Spec.Labels[LabelUDPPort]
			if pa == pb || len(f.services) != 2 {
				t.Errorf("ports %s and %s, %d services; want two services on two ports", pa, pb, len(f.services))
			}
		})
	}
}

// TestSwarmServiceSpec: the service a launch creates, field by field.
func TestSwarmServiceSpec(t *testing.T) {
	ctx := context.Background()
	f := newFakeSwarm(swarmNode("n1", "a", swarm.NodeStateReady, swarm.NodeAvailabilityActive, nil))
	cfg := swarmConfig()
	cfg.Stack, cfg.CPUs, cfg.MemoryMB, cfg.PidsLimit = "chorus", 1.5, 512, 256
	cfg.Env = []string{"CHORUS_CLUSTER_SECRET_FILE=/run/secrets/cluster_secret"}
	s, err := newSwarm(ctx, cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	s.secrets = []*swarm.SecretReference{{SecretID: "s1", SecretName: "chorus_cluster_secret", File: &swarm.SecretReferenceFileTarget{Name: "cluster_secret"}}}
	id, err := s.Launch(ctx, "media_abc")
	if err != nil {
		t.Fatal(err)
	}
	spec := f.services[id].Spec
	cs := spec.TaskTemplate.ContainerSpec
	port := spec.Labels[LabelUDPPort]
	checks := []struct {
		what string
		ok   bool
	}{
		{"name " + spec.Name, spec.Name == "chorus_media_abc"},
		{"labels", spec.Labels[LabelCluster] == "c" && spec.Labels[LabelMediaNode] == "media_abc" && spec.Labels[LabelSwarmNode] == "n1" &&
			spec.Labels[labelStackNamespace] == "chorus" && spec.Labels[LabelTCPPort] == port},
		{"image and role", cs.Image == "chorus:test" && slices.Equal(cs.Args, []string{"media"})},
		{"pinned to its node", slices.Equal(spec.TaskTemplate.Placement.Constraints, []string{"node.id==n1"})},
		{"never restarted", spec.TaskTemplate.RestartPolicy.Condition == swarm.RestartPolicyConditionNone},
		{"one task", *spec.Mode.Replicated.Replicas == 1},
		{"dnsrr, UDP and TCP in host mode on the same number", spec.EndpointSpec.Mode == swarm.ResolutionModeDNSRR && len(spec.EndpointSpec.Ports) == 2 &&
			spec.EndpointSpec.Ports[0].Protocol == swarm.PortConfigProtocolUDP && spec.EndpointSpec.Ports[1].Protocol == swarm.PortConfigProtocolTCP &&
			spec.EndpointSpec.Ports[0].PublishMode == swarm.PortConfigPublishModeHost && spec.EndpointSpec.Ports[1].PublishMode == swarm.PortConfigPublishModeHost &&
			spec.EndpointSpec.Ports[0].PublishedPort == spec.EndpointSpec.Ports[0].TargetPort},
		{"environment", slices.Contains(cs.Env, "CHORUS_CLUSTER_SECRET_FILE=/run/secrets/cluster_secret") && slices.Contains(cs.Env, "CHORUS_MEDIA_ID=media_abc") &&
			slices.Contains(cs.Env, "CHORUS_MEDIA_INTERNAL_URL=http://{{.Task.Name}}:8888") && slices.Contains(cs.Env, "CHORUS_MEDIA_UDP_PORT="+port) &&
			slices.Contains(cs.Env, "CHORUS_MEDIA_TCP_PORT="+port) && slices.Contains(cs.Env, "CHORUS_MEDIA_PUBLIC_IPS_FILE=/etc/chorus/public-ip")},
		{"the public IP file mounted read-only", len(cs.Mounts) == 1 && cs.Mounts[0].Type == mount.TypeBind && cs.Mounts[0].Source == "/etc/chorus/public-ip" && cs.Mounts[0].ReadOnly},
		{"the secret", len(cs.Secrets) == 1 && cs.Secrets[0].SecretID == "s1" && cs.Secrets[0].File.Name == "cluster_secret"},
		{"networks", len(spec.TaskTemplate.Networks) == 1 && spec.TaskTemplate.Networks[0].Target == "net1"},
		{"limits", spec.TaskTemplate.Resources.Limits.NanoCPUs == 1_500_000_000 && spec.TaskTemplate.Resources.Limits.MemoryBytes == 512<<20 &&
			spec.TaskTemplate.Resources.Limits.Pids == 256},
		{"stop grace", *cs.StopGracePeriod == time.Second},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: %+v", c.what, spec)
		}
	}
}

// TestSwarmFromOwnService: image, networks and stack come from the master's
// own service; the secret files must be its Swarm secrets.
func TestSwarmFromOwnService(t *testing.T) {
	ctx := context.Background()
	own := &swarm.Service{ID: "own", Spec: swarm.ServiceSpec{
		Annotations: swarm.Annotations{Labels: map[string]string{labelStackNamespace: "prod"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: "chorus:1.2", Secrets: []*swarm.SecretReference{
				{SecretID: "a", SecretName: "prod_cluster", File: &swarm.SecretReferenceFileTarget{Name: "cluster_secret"}},
				{SecretID: "b", SecretName: "prod_openvidu", File: &swarm.SecretReferenceFileTarget{Name: "openvidu_secret"}},
				{SecretID: "c", SecretName: "prod_redis", File: &swarm.SecretReferenceFileTarget{Name: "/etc/redis-pw"}},
			}},
			Networks: []swarm.NetworkAttachmentConfig{{Target: "overlay1"}, {Target: "overlay2"}},
		},
	}}
	f := newFakeSwarm()
	f.own, f.ownLabel = own, "own"
	cfg := swarmConfig()
	cfg.Image, cfg.Networks = "", nil
	cfg.SecretFiles = []string{"/run/secrets/cluster_secret", "/etc/redis-pw"}
	s, err := newSwarm(ctx, cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Config()
	if r.Image != "chorus:1.2" || !slices.Equal(r.Networks, []string{"overlay1", "overlay2"}) || r.Stack != "prod" {
		t.Errorf("resolved %+v", r)
	}
	var names []string
	for _, ref := range s.secrets {
		names = append(names, ref.SecretName)
	}
	if !slices.Equal(names, []string{"prod_cluster", "prod_redis"}) {
		t.Errorf("secrets %v: want the cluster secret and the Redis password, never the OpenVidu secret", names)
	}
	cfg.SecretFiles = []string{"/run/secrets/turn_secret"}
	if _, err := newSwarm(ctx, cfg, f); err == nil || !strings.Contains(err.Error(), "/run/secrets/turn_secret is not a Swarm secret") {
		t.Errorf("a secret file the master's service does not mount: %v", err)
	}
	f.ownLabel = ""
	cfg.SecretFiles = nil
	if _, err := newSwarm(ctx, cfg, f); err == nil || !strings.Contains(err.Error(), "media_nodes.docker.image") {
		t.Errorf("outside a Swarm service with no image: %v", err)
	}
}

// TestSwarmStopIsVerified: Stop removes the node's service and returns once
// its task is gone (or its node down); another cluster's or another node's
// service is left alone; stopping twice is fine.
func TestSwarmStopIsVerified(t *testing.T) {
	ctx := context.Background()
	f := newFakeSwarm(swarmNode("n1", "a", swarm.NodeStateReady, swarm.NodeAvailabilityActive, nil))
	f.linger = 3
	s, err := newSwarm(ctx, swarmConfig(), f)
	if err != nil {
		t.Fatal(err)
	}
	s.poll = time.Millisecond
	id, err := s.Launch(ctx, "media_a")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := s.Launch(ctx, "media_b")
	// Not this node's service: kept.
	if err := s.Stop(ctx, store.MediaNodeInfo{ID: "media_a", Provider: ProviderSwarm, EnvironmentID: other}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.services[other]; !ok {
		t.Fatal("Stop removed another node's service")
	}
	if err := s.Stop(ctx, store.MediaNodeInfo{ID: "media_a", Provider: ProviderSwarm, EnvironmentID: id}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.services[id]; ok {
		t.Error("the service is still there")
	}
	for _, task := range f.tasks {
		if task.ServiceID == id {
			t.Error("Stop returned before the task was gone")
		}
	}
	if err := s.Stop(ctx, store.MediaNodeInfo{ID: "media_a", Provider: ProviderSwarm, EnvironmentID: id}); err != nil {
		t.Errorf("a second stop: %v", err)
	}
	// A task on a node that is down never goes while the node is away:
	// Stop does not wait for it.
	f.linger = 1 << 30
	f.nodes[0].Status.State = swarm.NodeStateDown
	done := make(chan error, 1)
	go func() {
		done <- s.Stop(ctx, store.MediaNodeInfo{ID: "media_b", Provider: ProviderSwarm, EnvironmentID: other})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waited for a task on a node that is down")
	}
}
