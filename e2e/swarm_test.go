//go:build e2e

package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/devcluster"
	"github.com/chorus-rtc/chorus/sdk/openvidu"
)

// swarmBed is a Docker Swarm of Docker-in-Docker hosts on this machine,
// made and removed by docker/swarm.sh (the same script as make swarm-up).
type swarmBed struct {
	t      *testing.T
	prefix string
	env    []string
	hosts  []string          // container names, in order
	ips    map[string]string // host name -> its address on the bed's bridge
	url    string            // REST and pages, through hosts[1]'s proxy
	secret string
}

// startSwarm brings a 3-host Swarm up with the Chorus stack deployed, and
// removes it all (hosts, their volumes, the bridge) when the test ends.
func startSwarm(t *testing.T, env ...string) *swarmBed {
	t.Helper()
	// CHORUS_IMAGE (docker/swarm.sh's) tests another build of the image.
	for _, img := range []string{cmp.Or(os.Getenv("CHORUS_IMAGE"), "chorus:latest"), "redis:7.0-bookworm", "chorus-swarm-host:latest"} {
		if err := exec.Command("docker", "image", "inspect", img).Run(); err != nil {
			t.Fatalf("image %s is missing: run make compose-images", img)
		}
	}
	b := &swarmBed{t: t, prefix: fmt.Sprintf("chorus-swarmtest%d", time.Now().UnixNano()%1e5), ips: map[string]string{}}
	for i := 1; i <= 3; i++ {
		b.hosts = append(b.hosts, fmt.Sprintf("%s-%d", b.prefix, i))
	}
	b.env = append([]string{"CHORUS_SWARM_PREFIX=" + b.prefix, "CHORUS_SWARM_HOSTS=3"}, env...)
	t.Cleanup(func() {
		if t.Failed() {
			b.logs()
		}
		if out, err := b.script(context.Background(), "down"); err != nil {
			t.Errorf("docker/swarm.sh down: %v\n%s", err, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The hosts first, so that the pages' URL (the second host) can be
	// the public URL the stack is deployed with.
	if out, err := b.script(ctx, "hosts"); err != nil {
		t.Fatalf("docker/swarm.sh hosts: %v\n%s", err, out)
	}
	for _, h := range b.hosts {
		b.ips[h] = strings.TrimSpace(docker(t, "inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", b.prefix), h))
	}
	entry := b.ips[b.hosts[1]]
	b.env = append(b.env, "CHORUS_PUBLIC_URL=ws://"+entry+":4443")
	if out, err := b.script(ctx, "up"); err != nil {
		t.Fatalf("docker/swarm.sh up: %v\n%s", err, out)
	}
	out, err := b.script(ctx, "env")
	if err != nil {
		t.Fatalf("docker/swarm.sh env: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "CHORUS_SWARM_SECRET="); ok {
			b.secret = v
		}
	}
	b.url = "http://" + entry + ":4443"
	return b
}

func (b *swarmBed) script(ctx context.Context, args ...string) (string, error) {
	return b.scriptEnv(ctx, nil, args...)
}

// scriptEnv runs docker/swarm.sh with extra variables on top of the bed's.
func (b *swarmBed) scriptEnv(ctx context.Context, extra []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "docker", "swarm.sh"), args...)
	cmd.Env = append(append(os.Environ(), b.env...), extra...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// on runs the docker CLI of a host against its own engine.
func (b *swarmBed) on(host string, args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"exec", host, "docker"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// manager is a host whose engine answers, to ask the Swarm from.
func (b *swarmBed) manager(except ...string) string {
	for _, h := range b.hosts {
		if !slices.Contains(except, h) {
			if _, err := b.on(h, "info"); err == nil {
				return h
			}
		}
	}
	b.t.Fatal("no Swarm host answers")
	return ""
}

// tasks lists a service's tasks that should be running, as "node state".
func (b *swarmBed) tasks(from, service string) []string {
	out, err := b.on(from, "service", "ps", "chorus_"+service, "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}")
	if err != nil {
		return nil
	}
	return strings.Split(out, "\n")
}

// redisPrimary asks the Sentinel running on host from which Redis is the
// primary: its name (redis1, redis2 or redis3), or "".
func (b *swarmBed) redisPrimary(from string) string {
	out, err := b.sentinel(from, "sentinel", "get-master-addr-by-name", "chorus")
	if name, _, ok := strings.Cut(out, "\n"); err == nil && ok {
		return name
	}
	return ""
}

// sentinel runs redis-cli against the Sentinel running on host (each
// host runs one, chorus_sentinel<i> on host i) and returns its answer.
func (b *swarmBed) sentinel(host string, args ...string) (string, error) {
	out, err := exec.Command("docker", "exec", host, "sh", "-c",
		"docker exec $(docker ps -q -f name=chorus_sentinel -f status=running) redis-cli -p 26379 "+strings.Join(args, " ")).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// restPoller reads a session through the SDK every 200 ms until stopped:
// each call must succeed, the SDK's retries (502/503/504, refused
// connections) allowed.
type restPoller struct {
	sdk              *openvidu.Client
	cancel           context.CancelFunc
	done             chan struct{}
	calls0, retries0 int64 // the SDK's counts when polling began
	slowest          time.Duration
	errs             []string
}

func pollREST(ctx context.Context, sdk *openvidu.Client, sessionID string) *restPoller {
	ctx, cancel := context.WithCancel(ctx)
	r := &restPoller{sdk: sdk, cancel: cancel, done: make(chan struct{})}
	r.calls0, r.retries0 = sdk.Stats()
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			began := time.Now()
			_, err := sdk.Session(callCtx, sessionID)
			cancel()
			if err != nil && ctx.Err() == nil {
				r.errs = append(r.errs, err.Error())
			}
			r.slowest = max(r.slowest, time.Since(began))
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return r
}

// stop ends the polling, fails the test for every failed call, and returns
// the calls and retries since the start and the slowest call.
func (r *restPoller) stop(t *testing.T) (calls, retries int64, slowest time.Duration) {
	t.Helper()
	r.cancel()
	<-r.done
	if len(r.errs) > 0 {
		t.Errorf("%d REST calls failed after the SDK's retries: %v", len(r.errs), r.errs)
	}
	calls, retries = r.sdk.Stats()
	return calls - r.calls0, retries - r.retries0, r.slowest
}

func (b *swarmBed) logs() {
	from := b.manager()
	for _, svc := range []string{"master", "media", "proxy", "sentinel1", "sentinel2", "sentinel3", "redis1", "redis2", "redis3"} {
		out, _ := b.on(from, "service", "logs", "--no-task-ids", "--tail", "40", "chorus_"+svc)
		b.t.Logf("chorus_%s logs:\n%s", svc, out)
	}
}

// TestSwarmCluster deploys the Swarm stack on three Docker-in-Docker hosts
// and checks, through a proxy's host-mode port only: openvidu-node-client,
// two openvidu-browser pages with video on a session pinned to the third
// host's media node, then that whole host killed (its engine's container):
// the session moves to another host's node and both pages get video back
// within the media-node-crash bound, REST keeps answering under the SDK's
// retries, Swarm starts the masters that were on it elsewhere; the host
// comes back and rejoins with its media node; docker stack rm leaves no
// service, container or network behind.
func TestSwarmCluster(t *testing.T) {
	if os.Getenv("CHORUS_SKIP_DOCKER") != "" {
		t.Skip("CHORUS_SKIP_DOCKER is set")
	}
	start := time.Now()
	b := startSwarm(t, "CHORUS_DEMO=true")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dc := &devCluster{State: devcluster.State{URL: b.url, Secret: b.secret}}
	nodeOf := map[string]string{} // media node id -> host
	waitFor(t, "three running media nodes, one per host, through the proxy", 120*time.Second, func() bool {
		code, body, err := composeAPI(ctx, b.url, b.secret, "GET", "/openvidu/api/media-nodes", "")
		if err != nil || code != 200 {
			return false
		}
		var list struct{ Content []mediaNode }
		_ = json.Unmarshal(body, &list)
		clear(nodeOf)
		for _, n := range list.Content {
			for h, ip := range b.ips {
				if n.Status == "running" && n.IP != nil && *n.IP == ip {
					nodeOf[n.ID] = h
				}
			}
		}
		return len(nodeOf) == 3
	}, func() string { return fmt.Sprint(nodeOf) })
	t.Logf("Swarm of 3 hosts formed and the stack answering in %s", time.Since(start).Round(100*time.Millisecond))
	sdk, err := openvidu.New(openvidu.Config{URL: b.url, Secret: b.secret})
	if err != nil {
		t.Fatal(err)
	}

	// Masters reported DOWN after the stack started (a master registers
	// before the other hosts resolve its task's name; its peers no longer
	// take that for a crash: TestPeerDeclaredOnlyOnceReached).
	if h, err := sdk.Health(ctx); err == nil {
		for id, n := range h.Nodes {
			if n.Status == "DOWN" {
				t.Logf("master %s DOWN after the stack started", id)
			}
		}
	}

	// REST with the official client.
	dc.node(t, "rest.cjs")

	// The swarm provider: a node launched through REST is a service of its
	// own, pinned to the node running the fewest media nodes (each runs
	// one: the lowest hostname, the first host), announcing that host's
	// address; dropped with wait=true, its task is gone when 204 comes.
	swarmNodeID, _ := b.on(b.hosts[0], "info", "-f", "{{.Swarm.NodeID}}")
	launchStart := time.Now()
	code, body, err := composeAPI(ctx, b.url, b.secret, "POST", "/openvidu/api/media-nodes?wait=true", "{}")
	if err != nil || code != 200 || !strings.Contains(string(body), `"status":"running"`) {
		t.Fatalf("launch a media node: %d %s %v", code, body, err)
	}
	launchTook := time.Since(launchStart)
	var launched mediaNode
	_ = json.Unmarshal(body, &launched)
	if launched.EnvironmentID == nil || launched.IP == nil || *launched.IP != b.ips[b.hosts[0]] {
		t.Errorf("launched node %s: environment %v, ip %v; want a service on %s (%s)", launched.ID, launched.EnvironmentID, launched.IP, b.hosts[0], b.ips[b.hosts[0]])
	} else {
		labels, err := b.on(b.hosts[0], "service", "inspect", "-f", `{{index .Spec.Labels "io.chorus.media-node"}} {{index .Spec.Labels "io.chorus.swarm-node"}} {{index .Spec.Labels "com.docker.stack.namespace"}}`, *launched.EnvironmentID)
		if want := launched.ID + " " + swarmNodeID + " chorus"; err != nil || labels != want {
			t.Errorf("the launched node's service labels %q (%v), want %q", labels, err, want)
		}
	}
	dropStart := time.Now()
	if code, body, err := composeAPI(ctx, b.url, b.secret, "DELETE", "/openvidu/api/media-nodes/"+launched.ID+"?wait=true", ""); err != nil || code != 204 {
		t.Fatalf("drop the launched node: %d %s %v", code, body, err)
	}
	dropTook := time.Since(dropStart)
	// Its task is gone when 204 comes (the process has stopped); the
	// engine removes the exited container shortly after.
	waitFor(t, "the dropped node's container removed", 30*time.Second, func() bool {
		ps, err := b.on(b.hosts[0], "ps", "-aq", "--filter", "label=io.chorus.media-node="+launched.ID)
		return err == nil && ps == ""
	})
	if svcs, _ := b.on(b.hosts[0], "service", "ls", "-q", "--filter", "label=io.chorus.media-node="+launched.ID); svcs != "" {
		t.Errorf("the dropped node's service is still there: %s", svcs)
	}
	t.Logf("swarm provider: POST /media-nodes?wait=true running after %s, DELETE ?wait=true done after %s",
		launchTook.Round(10*time.Millisecond), dropTook.Round(10*time.Millisecond))

	// Two browsers on a session pinned to the third host's media node,
	// through the second host's proxy (plain HTTP: Chromium is told to
	// treat that origin as secure, as it would an https one).
	victim := b.hosts[2]
	var victimNode string
	for id, h := range nodeOf {
		if h == victim {
			victimNode = id
		}
	}
	pg := startPagesWith(t, dc, pagesOptions{ChromiumArgs: []string{"--unsafely-treat-insecure-origin-as-secure=" + b.url}})
	pg.joinOn("ses_swarm", 2, victimNode)
	pg.waitVideo(1, 60*time.Second)
	pageIDs := map[string]bool{}
	for _, p := range pg.stats() {
		pageIDs[p.ConnectionID] = true
	}
	from := b.manager(victim)
	mastersOnVictim := 0
	for _, task := range b.tasks(from, "master") {
		if strings.HasPrefix(task, victim+" ") {
			mastersOnVictim++
		}
	}

	rest := pollREST(ctx, sdk, "ses_swarm")

	// The whole third host stops: its engine, every task on it.
	kill := time.Now()
	docker(t, "kill", victim)
	waitFor(t, "browser video back after the host's loss", 60*time.Second, func() bool {
		back, total := 0, 0
		for _, vs := range pg.gaps(kill.Add(-500 * time.Millisecond)) {
			for _, v := range vs {
				total++
				if v.LastFrameAt > kill.Add(time.Second).UnixMilli() && time.Since(time.UnixMilli(v.LastFrameAt)) < time.Second {
					back++
				}
			}
		}
		return total == 2 && back == total
	})
	videoBack := time.Since(kill)
	t.Logf("host %s killed: browser video back after %s; the pages' events since the kill:\n%s",
		victim, videoBack.Round(100*time.Millisecond), eventsSince(pg.stats(), kill))
	// As TestComposeCluster's: where the nudges end.
	if videoBack > 16500*time.Millisecond {
		t.Errorf("browser video back %s after the host's loss, want within 16.5 s (the nudges' reach)", videoBack)
	}
	_, body, _ = composeAPI(ctx, b.url, b.secret, "GET", "/openvidu/api/sessions/ses_swarm", "")
	var moved struct {
		MediaNodeID string `json:"mediaNodeId"`
		Connections struct {
			NumberOfElements int `json:"numberOfElements"`
		} `json:"connections"`
	}
	_ = json.Unmarshal(body, &moved)
	if nodeOf[moved.MediaNodeID] == "" || nodeOf[moved.MediaNodeID] == victim || moved.Connections.NumberOfElements != 2 {
		t.Errorf("after the host's loss the session is on %q (host %q) with %d connections, want another host's node and 2",
			moved.MediaNodeID, nodeOf[moved.MediaNodeID], moved.Connections.NumberOfElements)
	}
	for _, p := range pg.stats() {
		if !pageIDs[p.ConnectionID] || strings.Contains(eventTypes(p), "sessionDisconnected") {
			t.Errorf("page %s after the host's loss: %s", p.ConnectionID, eventTypes(p))
		}
	}

	// Swarm notices the host down and starts its masters elsewhere.
	waitFor(t, "three masters running on the two hosts left", 120*time.Second, func() bool {
		running := 0
		for _, task := range b.tasks(from, "master") {
			if strings.Contains(task, " Running") && !strings.HasPrefix(task, victim+" ") {
				running++
			}
		}
		return running == 3
	}, func() string { return strings.Join(b.tasks(from, "master"), "; ") })
	rescheduled := time.Since(kill)
	waitFor(t, "three masters UP in /openvidu/api/health", 60*time.Second, func() bool {
		h, err := sdk.Health(ctx)
		if err != nil {
			return false
		}
		up := 0
		for _, n := range h.Nodes {
			if n.Status == "UP" {
				up++
			}
		}
		return up == 3
	})
	mastersUp := time.Since(kill)
	calls, retries, slowest := rest.stop(t)
	t.Logf("host %s (%d masters) lost: masters rescheduled after %s, all three UP after %s; REST %d calls, %d retries, none failed, slowest %s",
		victim, mastersOnVictim, rescheduled.Round(100*time.Millisecond), mastersUp.Round(100*time.Millisecond), calls, retries, slowest.Round(10*time.Millisecond))

	// The host comes back: it rejoins the Swarm and runs a media node
	// again (a new one: a crashed node never comes back under its id).
	back := time.Now()
	docker(t, "start", victim)
	waitFor(t, "the host's new media node running", 180*time.Second, func() bool {
		code, body, err := composeAPI(ctx, b.url, b.secret, "GET", "/openvidu/api/media-nodes", "")
		if err != nil || code != 200 {
			return false
		}
		var list struct{ Content []mediaNode }
		_ = json.Unmarshal(body, &list)
		for _, n := range list.Content {
			if n.Status == "running" && n.IP != nil && *n.IP == b.ips[victim] && n.ID != victimNode {
				return true
			}
		}
		return false
	})
	t.Logf("host %s started again: its new media node running after %s", victim, time.Since(back).Round(100*time.Millisecond))

	// The host of Redis's primary stops: the Sentinels on the two others
	// promote a replica; REST answers through it (the SDK retrying the
	// 503s of the promotion), nobody leaves the session.
	primary := b.redisPrimary(from)
	var primaryHost string
	if n, ok := strings.CutPrefix(primary, "redis"); ok && len(n) == 1 && n[0] >= '1' && n[0] <= '3' {
		primaryHost = b.hosts[n[0]-'1']
	}
	if primaryHost == "" || primaryHost == b.hosts[1] {
		t.Fatalf("Redis's primary is %q: want redis1 or redis3, off the pages' entry host", primary)
	}
	from = b.manager(primaryHost)
	// The Sentinels that will be left must be able to fail over: the
	// host started again above runs its Sentinel and Redis anew (on a busy
	// machine that takes a while after its media node), and until both
	// Sentinels off the primary's host see a quorum, a failover cannot
	// be authorised.
	var quorum []string
	quorumStart := time.Now()
	waitFor(t, "the Sentinels off the primary's host reaching a quorum", 180*time.Second, func() bool {
		quorum = quorum[:0]
		ok := 0
		for _, h := range b.hosts {
			if h == primaryHost {
				continue
			}
			out, err := b.sentinel(h, "sentinel", "ckquorum", "chorus")
			quorum = append(quorum, fmt.Sprintf("%s: %q %v", h, out, err))
			if err == nil && strings.HasPrefix(out, "OK") {
				ok++
			}
		}
		return ok == 2
	}, func() string { return strings.Join(quorum, "; ") })
	t.Logf("the Sentinels off %s see a quorum %s later: %s", primaryHost, time.Since(quorumStart).Round(100*time.Millisecond), strings.Join(quorum, "; "))
	sessionHost := nodeOf[moved.MediaNodeID] // where the first loss moved it
	rest = pollREST(ctx, sdk, "ses_swarm")
	kill = time.Now()
	docker(t, "kill", primaryHost)
	waitFor(t, "the Sentinels promoting a replica", 90*time.Second, func() bool {
		p := b.redisPrimary(from)
		return p != "" && p != primary
	})
	promoted := time.Since(kill)
	waitFor(t, "browser video flowing after the primary's loss", 60*time.Second, func() bool {
		back, total := 0, 0
		for _, vs := range pg.gaps(kill) {
			for _, v := range vs {
				total++
				if time.Since(time.UnixMilli(v.LastFrameAt)) < time.Second {
					back++
				}
			}
		}
		return total == 2 && back == total
	})
	flowing := time.Since(kill)
	calls, retries, slowest = rest.stop(t)
	_, body, _ = composeAPI(ctx, b.url, b.secret, "GET", "/openvidu/api/sessions/ses_swarm", "")
	_ = json.Unmarshal(body, &moved)
	if moved.Connections.NumberOfElements != 2 {
		t.Errorf("after the Redis primary's host was lost the session has %d connections, want 2", moved.Connections.NumberOfElements)
	}
	for _, p := range pg.stats() {
		if strings.Contains(eventTypes(p), "sessionDisconnected") {
			t.Errorf("page %s after the Redis primary's host was lost: %s", p.ConnectionID, eventTypes(p))
		}
	}
	t.Logf("host %s (Redis primary %s) lost: %s promoted after %s; both pages' video flowing after %s (the session's media node was there: %v); REST %d calls, %d retries, none failed, slowest %s; the pages' events since:\n%s",
		primaryHost, primary, b.redisPrimary(from), promoted.Round(100*time.Millisecond), flowing.Round(100*time.Millisecond),
		sessionHost == primaryHost, calls, retries, slowest.Round(10*time.Millisecond), eventsSince(pg.stats(), kill))
	pg.leave()
	// That host comes back too, its Redis as a replica of the new primary.
	docker(t, "start", primaryHost)
	waitFor(t, "the restarted host's Redis replicating the new primary", 180*time.Second, func() bool {
		out, err := exec.Command("docker", "exec", primaryHost, "sh", "-c",
			"docker exec $(docker ps -q -f name=chorus_"+primary+" -f status=running) sh -c 'REDISCLI_AUTH=$(cat /run/secrets/redis_password) redis-cli info replication'").Output()
		return err == nil && strings.Contains(string(out), "role:slave") && strings.Contains(string(out), "master_link_status:up")
	})

	// Autoscaling through the swarm provider: redeployed with at least
	// four media nodes, the controller launches the fourth as a service.
	autoscale := []string{"OPENVIDU_PRO_CLUSTER_AUTOSCALING=true", "OPENVIDU_PRO_CLUSTER_AUTOSCALING_MIN_NODES=4",
		"OPENVIDU_PRO_CLUSTER_AUTOSCALING_MAX_NODES=4"}
	redeploy := time.Now()
	if out, err := b.scriptEnv(ctx, autoscale, "deploy"); err != nil {
		t.Fatalf("docker/swarm.sh deploy with autoscaling: %v\n%s", err, out)
	}
	waitFor(t, "the autoscaler's fourth media node running as a Swarm service", 180*time.Second, func() bool {
		code, body, err := composeAPI(ctx, b.url, b.secret, "GET", "/openvidu/api/media-nodes", "")
		if err != nil || code != 200 {
			return false
		}
		var list struct{ Content []mediaNode }
		_ = json.Unmarshal(body, &list)
		running, services := 0, 0
		for _, n := range list.Content {
			if n.Status != "running" {
				continue
			}
			running++
			if n.EnvironmentID != nil {
				if labels, err := b.on(from, "service", "inspect", "-f", `{{index .Spec.Labels "io.chorus.media-node"}}`, *n.EnvironmentID); err == nil && labels == n.ID {
					services++
				}
			}
		}
		return running == 4 && services == 1
	})
	t.Logf("redeployed with autoscaling (min 4 nodes): the fourth node, launched by the controller as a Swarm service, running after %s",
		time.Since(redeploy).Round(100*time.Millisecond))

	// docker stack rm leaves no service (the launched node's included),
	// container or network behind on any host (the volumes stay, as with docker compose down without -v:
	// they hold Redis's data).
	removed := time.Now()
	if out, err := b.on(from, "stack", "rm", "chorus"); err != nil {
		t.Fatalf("docker stack rm: %v\n%s", err, out)
	}
	// Each engine removes its tasks' containers and the stack's networks
	// once it hears of the removal; on a host that was killed and started
	// again that includes the containers of the tasks it ran before.
	var left []string
	waitFor(t, "nothing of the stack left on any host", 180*time.Second, func() bool {
		left = left[:0]
		for _, h := range b.hosts {
			ps, err := b.on(h, "ps", "-a", "--format", "{{.Names}} {{.Status}}")
			if err != nil || ps != "" {
				left = append(left, fmt.Sprintf("%s containers: %q %v", h, ps, err))
			}
			nets, err := b.on(h, "network", "ls", "--filter", "name=chorus_", "--format", "{{.Name}}")
			if err != nil || nets != "" {
				left = append(left, fmt.Sprintf("%s networks: %q %v", h, nets, err))
			}
		}
		svcs, err := b.on(from, "service", "ls", "--format", "{{.Name}}")
		if err != nil || svcs != "" {
			left = append(left, fmt.Sprintf("services: %q %v", svcs, err))
		}
		return len(left) == 0
	}, func() string { return strings.Join(left, "; ") })
	t.Logf("docker stack rm: nothing left on any host after %s", time.Since(removed).Round(100*time.Millisecond))
}
