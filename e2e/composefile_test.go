//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFileValidForBothComposes: docker-compose.yml loads, with its
// schema checked, in compose-go (what docker compose v2 parses it with; the
// v2 plugin itself cannot be installed on this machine) and in
// docker-compose 1.29 (what CI runs), with the services the README lists
// the media nodes' UDP and ICE-TCP ports published, and two TURN replicas
// publishing TURN over UDP, TCP and TLS, all of which the masters hand out.
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
	for _, name := range []string{"redis", "proxy", "master1", "master2", "master3", "media1", "media2", "turn1", "turn2"} {
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
		// TURN servers have no HTTP endpoint to check.
		if s.Restart != want || (s.HealthCheck == nil) != strings.HasPrefix(name, "turn") {
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
	// Each TURN replica publishes its TURN port over UDP and TCP and its
	// TLS port over TCP, on the numbers it listens on, and every master
	// hands out all three URLs of each replica.
	urls := ""
	if v := p.Services["master1"].Environment["CHORUS_TURN_URLS"]; v != nil {
		urls = *v
	}
	for _, name := range []string{"master2", "master3"} {
		if v := p.Services[name].Environment["CHORUS_TURN_URLS"]; v == nil || *v != urls {
			t.Errorf("%s hands other TURN servers than master1 (%q)", name, urls)
		}
	}
	for _, name := range []string{"turn1", "turn2"} {
		s := p.Services[name]
		if len(s.Command) != 1 || s.Command[0] != "turn" {
			t.Errorf("service %s runs %v, want the turn role", name, s.Command)
		}
		published := map[string]bool{}
		for _, port := range s.Ports {
			if port.Published == strconv.Itoa(int(port.Target)) {
				published[port.Published+"/"+port.Protocol] = true
			}
		}
		env := func(k string) string {
			if v := s.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		port, tlsPort := env("CHORUS_TURN_PORT"), env("CHORUS_TURN_TLS_PORT")
		for _, want := range []string{port + "/udp", port + "/tcp", tlsPort + "/tcp"} {
			if !published[want] {
				t.Errorf("service %s (CHORUS_TURN_PORT=%q, CHORUS_TURN_TLS_PORT=%q) does not publish %s on the same number (published: %v)", name, port, tlsPort, want, published)
			}
		}
		if env("CHORUS_TURN_TLS_MODE") == "off" || env("CHORUS_TURN_TLS_MODE") == "" {
			t.Errorf("service %s serves no TURN over TLS", name)
		}
		for _, want := range []string{"turn:127.0.0.1:" + port + "?transport=udp", "turn:127.0.0.1:" + port + "?transport=tcp", "turns:127.0.0.1:" + tlsPort + "?transport=tcp"} {
			if !slices.Contains(strings.Split(urls, ","), want) {
				t.Errorf("the masters do not hand out %s (CHORUS_TURN_URLS=%q)", want, urls)
			}
		}
	}
	if len(p.Services) != 9 {
		t.Errorf("%d services, want 9 (prometheus only in the monitoring profile)", len(p.Services))
	}
	// The monitoring profile adds Prometheus, with the repository's
	// configuration and alerting rules, on loopback by default.
	mopts, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(repoRoot), cli.WithDotEnv, cli.WithName("chorus"),
		cli.WithProfiles([]string{"monitoring"}))
	if err != nil {
		t.Fatal(err)
	}
	mp, err := mopts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose v2 (compose-go) rejects docker-compose.yml with the monitoring profile: %v", err)
	}
	prom, ok := mp.Services["prometheus"]
	if !ok || len(mp.Services) != 10 {
		t.Fatalf("monitoring profile: %d services, prometheus present: %v", len(mp.Services), ok)
	}
	mounted := false
	for _, v := range prom.Volumes {
		if v.Source == filepath.Join(repoRoot, "configs", "prometheus") && v.ReadOnly {
			mounted = true
		}
	}
	if !mounted || len(prom.Ports) != 1 || prom.Ports[0].HostIP != "127.0.0.1" || prom.Ports[0].Target != 9090 {
		t.Errorf("prometheus: configs/prometheus mounted read-only %v, ports %+v (want 9090 on 127.0.0.1)", mounted, prom.Ports)
	}
	// The recording profile adds the recorder, from the recorder target,
	// sharing the recordings volume with every master; masters and recorder
	// read the same recording settings, and the media nodes announce their
	// address on the compose network for it.
	ropts, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(repoRoot), cli.WithDotEnv, cli.WithName("chorus"),
		cli.WithProfiles([]string{"recording"}))
	if err != nil {
		t.Fatal(err)
	}
	rp, err := ropts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose v2 (compose-go) rejects docker-compose.yml with the recording profile: %v", err)
	}
	rec, ok := rp.Services["recorder"]
	if !ok || len(rp.Services) != 10 || rec.Build == nil || rec.Build.Target != "recorder" || len(rec.Command) != 1 || rec.Command[0] != "recorder" {
		t.Fatalf("recording profile: %d services, recorder %v (build %+v, command %v)", len(rp.Services), ok, rec.Build, rec.Command)
	}
	mountsRecordings := func(s types.ServiceConfig) bool {
		for _, v := range s.Volumes {
			if v.Source == "recordings" && v.Target == "/opt/openvidu/recordings" && !v.ReadOnly {
				return true
			}
		}
		return false
	}
	for _, name := range []string{"recorder", "master1", "master2", "master3"} {
		s := rp.Services[name]
		if !mountsRecordings(s) {
			t.Errorf("service %s does not mount the recordings volume at /opt/openvidu/recordings", name)
		}
		for _, k := range []string{"OPENVIDU_RECORDING", "OPENVIDU_RECORDING_PATH", "OPENVIDU_PRO_RECORDING_STORAGE", "OPENVIDU_PRO_AWS_S3_BUCKET"} {
			if v, r := s.Environment[k], rec.Environment[k]; v == nil || r == nil || *v != *r {
				t.Errorf("service %s: %s differs from the recorder's", name, k)
			}
		}
	}
	for _, name := range []string{"media1", "media2"} {
		if v := rp.Services[name].Environment["CHORUS_MEDIA_ANNOUNCE_PRIVATE_IPS"]; v == nil || *v != "true" {
			t.Errorf("service %s does not announce its compose network address", name)
		}
	}
	if out, err := exec.Command("docker-compose", "-f", file, "config", "-q").CombinedOutput(); err != nil {
		t.Errorf("docker-compose 1.29 rejects docker-compose.yml: %v\n%s", err, out)
	}
}

// TestComposeDefaultsAreLoopbackOnly: out of the box (.env all commented
// out) the compose cluster publishes its ports on 127.0.0.1 and tells every
// process so (CHORUS_PUBLISHED_IP, which lets them accept the development
// secrets), serves no demo, gives media nodes the cluster secret and never
// the OpenVidu secret, and runs Redis with a password every process has.
func TestComposeDefaultsAreLoopbackOnly(t *testing.T) {
	file := filepath.Join(repoRoot, "docker-compose.yml")
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(repoRoot), cli.WithDotEnv, cli.WithName("chorus"),
		cli.WithEnv([]string{}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	env := func(service, name string) (string, bool) {
		s, ok := p.Services[service]
		if !ok {
			t.Fatalf("service %s missing", service)
		}
		v, ok := s.Environment[name]
		if !ok || v == nil {
			return "", false
		}
		return *v, true
	}
	if v, _ := env("proxy", "CHORUS_PROXY_DEMO_ENABLED"); v != "false" {
		t.Errorf("the proxy's demo: CHORUS_PROXY_DEMO_ENABLED=%q, want false", v)
	}
	for _, svc := range []string{"proxy", "master1", "master2", "master3", "media1", "media2", "turn1", "turn2"} {
		if v, _ := env(svc, "CHORUS_PUBLISHED_IP"); v != "127.0.0.1" {
			t.Errorf("%s: CHORUS_PUBLISHED_IP=%q, want 127.0.0.1", svc, v)
		}
		for _, port := range p.Services[svc].Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %d on %q", svc, port.Target, port.HostIP)
			}
		}
	}
	for _, svc := range []string{"media1", "media2"} {
		if v, ok := env(svc, "OPENVIDU_SECRET"); ok {
			t.Errorf("%s gets the OpenVidu secret %q", svc, v)
		}
		if v, _ := env(svc, "CHORUS_CLUSTER_SECRET"); v == "" {
			t.Errorf("%s has no cluster secret", svc)
		}
	}
	master, _ := env("master1", "CHORUS_CLUSTER_SECRET")
	if media, _ := env("media1", "CHORUS_CLUSTER_SECRET"); master != media || master == "" {
		t.Errorf("cluster secrets: master %q, media %q", master, media)
	}
	if rest, _ := env("master1", "OPENVIDU_SECRET"); rest == master {
		t.Errorf("the cluster secret is the OpenVidu secret %q", rest)
	}
	// TURN servers hold the TURN secret only; masters mint with the same.
	turnSecret, _ := env("master1", "CHORUS_TURN_SECRET")
	cluster, _ := env("master1", "CHORUS_CLUSTER_SECRET")
	rest, _ := env("master1", "OPENVIDU_SECRET")
	if turnSecret == "" || turnSecret == cluster || turnSecret == rest {
		t.Errorf("the masters' TURN secret %q is empty or another secret", turnSecret)
	}
	for _, svc := range []string{"turn1", "turn2"} {
		if v, _ := env(svc, "CHORUS_TURN_SECRET"); v != turnSecret {
			t.Errorf("%s: CHORUS_TURN_SECRET=%q, the masters mint with %q", svc, v, turnSecret)
		}
		for _, other := range []string{"OPENVIDU_SECRET", "CHORUS_CLUSTER_SECRET"} {
			if v, ok := env(svc, other); ok {
				t.Errorf("%s gets %s %q", svc, other, v)
			}
		}
	}
	password, _ := env("redis", "REDIS_PASSWORD")
	if password == "" || !strings.Contains(strings.Join(p.Services["redis"].Command, " "), "requirepass") ||
		!strings.Contains(strings.Join(p.Services["redis"].Command, " "), "--protected-mode yes") {
		t.Errorf("redis runs without a password or protected mode: %q, %v", password, p.Services["redis"].Command)
	}
	for _, svc := range []string{"proxy", "master1", "master2", "master3", "media1", "media2", "turn1", "turn2"} {
		if v, _ := env(svc, "CHORUS_REDIS_PASSWORD"); v != password {
			t.Errorf("%s: CHORUS_REDIS_PASSWORD=%q, redis has %q", svc, v, password)
		}
	}
	if v, _ := env("redis", "REDISCLI_AUTH"); v != password {
		t.Errorf("redis's health check authenticates with %q", v)
	}
}
