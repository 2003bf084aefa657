//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
)

// TestComposeFileValidForBothComposes: docker-compose.yml loads, with its
// schema checked, in compose-go (what docker compose v2 parses it with; the
// v2 plugin itself cannot be installed on this machine) and in
// docker-compose 1.29 (what CI runs), with the services the README lists
// and the media nodes' UDP and ICE-TCP ports published.
func TestComposeFileValidForBothComposes(t *testing.T) {
	file := filepath.Join(repoRoot, "docker-compose.yml")
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(repoRoot), cli.WithDotEnv, cli.WithName("chorus"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose v2 (compose-go) rejects docker-compose.yml: %v", err)
	}
	for _, name := range []string{"redis", "proxy", "master1", "master2", "master3", "media1", "media2"} {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("service %s missing", name)
			continue
		}
		// Media nodes the cluster dropped exit 0 and must stay down.
		want := "unless-stopped"
		if strings.HasPrefix(name, "media") {
			want = "on-failure"
		}
		if s.Restart != want || s.HealthCheck == nil {
			t.Errorf("service %s: restart %q (want %q), health check %v", name, s.Restart, want, s.HealthCheck != nil)
		}
	}
	// Each media node publishes its UDP port and its ICE-TCP port, each on
	// the number it listens on (NAT 1:1 rewrites only the address).
	for _, name := range []string{"media1", "media2"} {
		s := p.Services[name]
		published := map[string]bool{}
		for _, port := range s.Ports {
			if port.Published == strconv.Itoa(int(port.Target)) {
				published[port.Published+"/"+port.Protocol] = true
			}
		}
		for env, proto := range map[string]string{"CHORUS_MEDIA_UDP_PORT": "udp", "CHORUS_MEDIA_TCP_PORT": "tcp"} {
			v := ""
			if p := s.Environment[env]; p != nil {
				v = *p
			}
			if v == "" || !published[v+"/"+proto] {
				t.Errorf("service %s: %s=%q is not published over %s on the same number (published: %v)", name, env, v, proto, published)
			}
		}
	}
	if len(p.Services) != 7 {
		t.Errorf("%d services, want 7", len(p.Services))
	}
	if out, err := exec.Command("docker-compose", "-f", file, "config", "-q").CombinedOutput(); err != nil {
		t.Errorf("docker-compose 1.29 rejects docker-compose.yml: %v\n%s", err, out)
	}
}
