package medianodes

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"

	"github.com/chorus-rtc/chorus/shared/config"
)

// fakeEngine records the containers the provider creates; a container
// publishing a port listed in taken (40100/tcp) fails to start as one whose
// host port is taken does.
type fakeEngine struct {
	created []container.Config
	hosts   []container.HostConfig
	taken   map[nat.Port]bool
}

func (f *fakeEngine) ContainerCreate(_ context.Context, cfg *container.Config, host *container.HostConfig,
	_ *network.NetworkingConfig, name string) (container.CreateResponse, error) {
	f.created = append(f.created, *cfg)
	f.hosts = append(f.hosts, *host)
	return container.CreateResponse{ID: name}, nil
}

func (f *fakeEngine) ContainerStart(context.Context, string, container.StartOptions) error {
	host := f.hosts[len(f.hosts)-1]
	for port := range host.PortBindings {
		if f.taken[port] {
			return errors.New("Bind for 127.0.0.1 failed: port is already allocated")
		}
	}
	return nil
}

func (f *fakeEngine) ContainerStop(context.Context, string, container.StopOptions) error { return nil }
func (f *fakeEngine) ContainerRemove(context.Context, string, container.RemoveOptions) error {
	return nil
}
func (f *fakeEngine) ContainerInspect(context.Context, string) (container.InspectResponse, error) {
	return container.InspectResponse{}, errors.New("not in a container")
}
func (f *fakeEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return nil, nil
}

// TestDockerPublishesICETCP: with ICE-TCP a launched container listens for
// ICE-TCP on its UDP port's number and publishes both, on the same number
// inside and out; a port taken over TCP moves the node to the next number;
// without ICE-TCP only UDP is published and the node gets -1.
func TestDockerPublishesICETCP(t *testing.T) {
	ctx := context.Background()
	for _, iceTCP := range []bool{true, false} {
		engine := &fakeEngine{taken: map[nat.Port]bool{}}
		d, err := newDocker(ctx, DockerConfig{Image: "chorus:test", Network: "net", ClusterID: "c", PublishIP: "127.0.0.1",
			PublicIPs: []string{"203.0.113.7"}, UDPPortMin: 40100, UDPPortMax: 40100, ICETCP: iceTCP}, engine)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Launch(ctx, "media_a"); err != nil {
			t.Fatal(err)
		}
		cfg, host := engine.created[0], engine.hosts[0]
		udp, tcp := nat.Port("40100/udp"), nat.Port("40100/tcp")
		if _, ok := cfg.ExposedPorts[udp]; !ok || host.PortBindings[udp][0].HostPort != "40100" || host.PortBindings[udp][0].HostIP != "127.0.0.1" {
			t.Errorf("ice_tcp %v: UDP not published as 40100: %v %v", iceTCP, cfg.ExposedPorts, host.PortBindings)
		}
		_, exposed := cfg.ExposedPorts[tcp]
		bound := len(host.PortBindings[tcp]) == 1 && host.PortBindings[tcp][0].HostPort == "40100" && host.PortBindings[tcp][0].HostIP == "127.0.0.1"
		wantEnv, wantLabel := "CHORUS_MEDIA_TCP_PORT=40100", "40100"
		if !iceTCP {
			wantEnv, wantLabel = "CHORUS_MEDIA_TCP_PORT=-1", ""
		}
		if exposed != iceTCP || bound != iceTCP || !slices.Contains(cfg.Env, wantEnv) || cfg.Labels[LabelTCPPort] != wantLabel {
			t.Errorf("ice_tcp %v: TCP exposed %v, bound %v, env %v, labels %v", iceTCP, exposed, bound, cfg.Env, cfg.Labels)
		}
	}

	// The UDP port is free but its TCP twin is not: the next number.
	engine := &fakeEngine{taken: map[nat.Port]bool{}}
	d, err := newDocker(ctx, DockerConfig{Image: "chorus:test", Network: "net", ClusterID: "c", PublishIP: "127.0.0.1",
		UDPPortMin: 40100, UDPPortMax: 40101, ICETCP: true}, engine)
	if err != nil {
		t.Fatal(err)
	}
	engine.taken["40100/tcp"] = true
	if _, err := d.Launch(ctx, "media_a"); err != nil {
		t.Fatal(err)
	}
	last := engine.created[len(engine.created)-1]
	if last.Labels[LabelUDPPort] != "40101" || last.Labels[LabelTCPPort] != "40101" {
		t.Errorf("after a taken port the node got labels %v, want 40101", last.Labels)
	}
}

// TestDockerBoundsContainers: every launched container gets the CPU, memory
// (no swap beyond it) and PID limits of the configuration, and the
// configuration's defaults are bounds, not "unlimited".
func TestDockerBoundsContainers(t *testing.T) {
	ctx := context.Background()
	engine := &fakeEngine{taken: map[nat.Port]bool{}}
	d, err := newDocker(ctx, DockerConfig{Image: "chorus:test", Network: "net", ClusterID: "c", PublishIP: "127.0.0.1",
		UDPPortMin: 40100, UDPPortMax: 40100, CPUs: 1.5, MemoryMB: 512, PidsLimit: 256}, engine)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Launch(ctx, "media_a"); err != nil {
		t.Fatal(err)
	}
	r := engine.hosts[0].Resources
	if r.NanoCPUs != 1_500_000_000 || r.Memory != 512<<20 || r.MemorySwap != 512<<20 || r.PidsLimit == nil || *r.PidsLimit != 256 {
		t.Errorf("container resources: cpus %d nano, memory %d, swap %d, pids %v; want 1.5 CPUs, 512 MiB, no swap, 256",
			r.NanoCPUs, r.Memory, r.MemorySwap, r.PidsLimit)
	}

	c, err := config.Load(nil, config.RoleMaster, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dc := c.MediaNodes.Docker; dc.CPUs <= 0 || dc.MemoryMB <= 0 || dc.PidsLimit <= 0 {
		t.Errorf("default docker limits cpus %g, memory_mb %d, pids_limit %d: want every one bounded", dc.CPUs, dc.MemoryMB, dc.PidsLimit)
	}
}
