package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/redistest"
)

// TestRedisOutage: Redis stops answering for 6 s (SIGSTOP). Masters answer
// 503, promptly; media keeps flowing; when Redis is back the cluster recovers
// by itself, and nobody was declared crashed or evicted meanwhile.
func TestRedisOutage(t *testing.T) {
	h := startHook(t)
	dc := startDev(t, devOptions{Env: eventEnv(h, "CHORUS_MASTER_REQUEST_TIMEOUT=4s")})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ps, subs := pionMesh(t, ctx, dc, "outage", 2)
	time.Sleep(2 * time.Second)

	redisPID := dc.pid(t, "redis")
	if err := syscall.Kill(redisPID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	start := time.Now()
	_, err := restOnce(ctx, dc, "POST", "/openvidu/api/sessions", `{}`)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), ": 503") || took > 6*time.Second {
		t.Errorf("REST during the outage: %v after %s, want a 503 within the request timeout", err, took)
	}
	time.Sleep(6*time.Second - time.Since(stopped))
	if err := syscall.Kill(redisPID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	ov, err := openvidu.New(openvidu.Config{URL: dc.URL, Secret: dc.Secret})
	if err != nil {
		t.Fatal(err)
	}
	recovered := time.Now()
	if _, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: "after_outage"}); err != nil {
		t.Fatalf("the cluster did not recover: %v", err)
	}
	t.Logf("REST back %s after Redis returned", time.Since(recovered))
	time.Sleep(15 * time.Second) // past the recovery grace: a wrong eviction or crash would show now

	for _, s := range subs {
		if st := s.Stats(); st.MaxGap > time.Second || time.Since(st.LastPacket) > time.Second {
			t.Errorf("media to %s stalled: max gap %s, last packet %s ago", s.StreamID, st.MaxGap, time.Since(st.LastPacket))
		}
	}
	for _, p := range ps {
		for _, e := range p.Events() {
			if e.Method == protocol.NotifyParticipantLeft || e.Method == protocol.NotifyParticipantEvicted {
				t.Errorf("%s saw %s", p.ConnectionID(), e.Method)
			}
		}
	}
	s, err := ov.Session(ctx, "outage")
	if err != nil || s.Connections.NumberOfElements != 2 {
		t.Errorf("after the outage the session has %+v (%v)", s.Connections.NumberOfElements, err)
	}
	if n := countCrashed(h); n != 0 {
		t.Errorf("%d masters declared crashed by a Redis outage", n)
	}
	for _, p := range ps {
		_ = p.Leave(ctx)
	}
	_ = ov.CloseSession(ctx, "after_outage")
	assertNoSessionKeys(t, dc)
}

// TestRedisRestartLosingKeys: Redis restarts empty. Masters and media nodes
// register again without anyone declared crashed; the participants of the
// lost sessions learn it (their resumption fails) and the media nodes release
// the lost sessions' peer connections; new sessions work.
func TestRedisRestartLosingKeys(t *testing.T) {
	h := startHook(t)
	dc := startDev(t, devOptions{Env: eventEnv(h, "CHORUS_MEDIA_RECONCILE_INTERVAL=1s", "CHORUS_MEDIA_RECONCILE_GRACE=3s")})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old, _ := pionMesh(t, ctx, dc, "forgotten", 2)
	if n := endpointsOnMediaNodes(t, dc); n != 4 {
		t.Fatalf("%d endpoints before the restart, want 4", n)
	}

	// Redis dies and comes back empty on the same port.
	_ = syscall.Kill(dc.pid(t, "redis"), syscall.SIGKILL)
	time.Sleep(500 * time.Millisecond)
	_, port, _ := net.SplitHostPort(dc.Redis)
	fresh := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := fresh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fresh.Process.Kill(); _ = fresh.Wait() })

	// Everyone registers again; nobody is declared crashed.
	ov, _ := openvidu.New(openvidu.Config{URL: dc.URL, Secret: dc.Secret})
	deadline := time.Now().Add(30 * time.Second)
	for {
		hl, err := ov.Health(ctx)
		if err == nil && hl.Status == "UP" && len(hl.Nodes) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not register again: %+v %v", hl, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The lost session's participants are told: their resumption fails.
	for _, p := range old {
		err := p.WaitFor(ctx, func(p *participant.Participant) bool {
			r := p.Resumptions()
			return len(r) > 0 && r[len(r)-1].Err != nil
		})
		if err != nil {
			t.Errorf("%s was not told its session is gone: %+v", p.ConnectionID(), p.Resumptions())
		}
	}
	// The media nodes release the lost session's peer connections.
	deadline = time.Now().Add(30 * time.Second)
	for endpointsOnMediaNodes(t, dc) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d endpoints of the lost session remain", endpointsOnMediaNodes(t, dc))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The cluster works again.
	ps, subs := pionMesh(t, ctx, dc, "reborn", 2)
	time.Sleep(3 * time.Second)
	for _, s := range subs {
		if st := s.Stats(); st.VideoPackets < 50 {
			t.Errorf("new session: %+v", st)
		}
	}
	time.Sleep(3 * time.Second)
	if n := countCrashed(h); n != 0 {
		t.Errorf("%d masters declared crashed by a Redis restart", n)
	}
	for _, p := range ps {
		_ = p.Leave(ctx)
	}
	assertNoSessionKeys(t, dc)
}

func endpointsOnMediaNodes(t *testing.T, dc *devCluster) int {
	t.Helper()
	n := 0
	for _, node := range dc.Nodes {
		if node.Role != "media" {
			continue
		}
		list, err := mediaapi.NewClient(http.DefaultClient, "http://"+node.Addr, dc.Secret).Endpoints(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += len(list.Endpoints)
	}
	return n
}

// TestSentinelFailover: the cluster runs on a Redis primary watched by
// Sentinel; the primary is SIGKILLed, Sentinel promotes the replica, and the
// cluster carries on: media never stops, participants stay, the API works.
func TestSentinelFailover(t *testing.T) {
	g := redistest.StartSentinelGroup(t)
	cl := clustertest.Start(t, clustertest.Options{Masters: 2, MediaNodes: 1, Proxy: true,
		Redis: &config.Redis{Addrs: []string{g.Sentinel}, SentinelMasterName: g.MasterName, Timeout: time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ov, err := openvidu.New(openvidu.Config{URL: cl.ProxyURL, Secret: clustertest.Secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: "sentinel"}); err != nil {
		t.Fatal(err)
	}
	var ps []*participant.Participant
	var pubs []string
	for i := 0; i < 2; i++ {
		conn, err := ov.CreateConnection(ctx, "sentinel", openvidu.ConnectionProperties{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := participant.Join(ctx, participant.Config{Token: conn.Token, LoopbackOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pub, err := p.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
		if err != nil {
			t.Fatal(err)
		}
		go pub.SendSynthetic(ctx, participant.DefaultVideo)
		ps, pubs = append(ps, p), append(pubs, pub.StreamID)
	}
	sub, err := ps[0].Subscribe(ctx, pubs[1])
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // let the replica catch up

	g.Primary.Kill()
	killed := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for {
		addr, err := g.CurrentPrimary(ctx)
		if err == nil && addr == g.Replica.Addr {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentinel did not fail over: %s %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Sentinel promoted the replica %s after the kill", time.Since(killed))
	// The API works through the new primary (the SDK retries the 503s of the switch).
	if _, err := ov.CreateConnection(ctx, "sentinel", openvidu.ConnectionProperties{}); err != nil {
		t.Fatalf("after the failover: %v", err)
	}
	t.Logf("the API answered %s after the kill", time.Since(killed))
	time.Sleep(3 * time.Second)
	if st := sub.Stats(); st.MaxGap > time.Second || time.Since(st.LastPacket) > time.Second {
		t.Errorf("media stalled: %+v", st)
	}
	s, err := ov.Session(ctx, "sentinel")
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, c := range s.Connections.Content {
		if c.Status == "active" {
			active++
		}
	}
	if active != 2 {
		raw, _ := json.Marshal(s)
		t.Errorf("%d active participants after the failover: %s", active, raw)
	}
	for _, p := range ps {
		for _, e := range p.Events() {
			if e.Method == protocol.NotifyParticipantLeft {
				t.Errorf("%s saw someone leave", p.ConnectionID())
			}
		}
	}
	for _, p := range ps {
		if err := p.Leave(ctx); err != nil {
			t.Errorf("leave: %v", err)
		}
	}
}
