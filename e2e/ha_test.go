//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// TestMasterCrashesAreInvisible: with openvidu-browser pages and pion
// participants in sessions, masters are SIGKILLed one after another until
// one is left. Every client resumes with its connection id, nobody sees a
// participant leave, media never stalls, and nothing is left in Redis.
func TestMasterCrashesAreInvisible(t *testing.T) { runMasterChaos(t, syscall.SIGKILL) }

// TestMasterShutdownsAreInvisible is the same with SIGTERM (graceful drains).
func TestMasterShutdownsAreInvisible(t *testing.T) { runMasterChaos(t, syscall.SIGTERM) }

// haReport is what the chaos test measured (written to $CHORUS_HA_REPORT).
type haReport struct {
	Signal             string  `json:"signal"`
	Resumptions        int     `json:"resumptions"`
	ResumeP50MS        float64 `json:"resume_p50_ms"`
	ResumeP99MS        float64 `json:"resume_p99_ms"`
	ResumeMaxMS        float64 `json:"resume_max_ms"`
	LongestPionStallMS int64   `json:"longest_pion_media_stall_ms"`
	SDKCalls           int     `json:"sdk_calls"`
	SDKRetried         int     `json:"sdk_retries"`
	SDKFailed          int     `json:"sdk_calls_failed"`
}

func runMasterChaos(t *testing.T, sig syscall.Signal) {
	hook := startHook(t)
	dc := startDev(t, devOptions{Env: eventEnv(hook)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rdb := dc.redisClient(t)

	browsers := startPages(t, dc)
	browserIDs := browsers.join("ha_browsers", 2)
	browsers.waitVideo(1, 90*time.Second)

	pion, subs := pionMesh(t, ctx, dc, "ha_pion", 3)
	pionIDs := map[string]*participant.Participant{}
	for _, p := range pion {
		pionIDs[p.ConnectionID()] = p
	}
	sessionOf := map[string]string{}
	for _, id := range browserIDs {
		sessionOf[id] = "ha_browsers"
	}
	for id := range pionIDs {
		sessionOf[id] = "ha_pion"
	}
	backend := startBackendLoop(t, ctx, dc)

	// Each client resumes once for each kill of the master holding its
	// socket at that moment (read from the cluster state), never otherwise.
	wantResumes := map[string]int{}
	masters := []string{"master_1", "master_2", "master_3"}
	var kills []time.Time
	var killedIncarnations []string
	for _, m := range masters[:len(masters)-1] {
		time.Sleep(3 * time.Second)
		holders := connectionMasters(t, ctx, rdb, sessionOf)
		var victim string
		for _, n := range registeredMasters(t, ctx, rdb) {
			if strings.HasPrefix(n, m+".") {
				victim = n
			}
		}
		for cid, holder := range holders {
			if holder == victim {
				wantResumes[cid]++
			}
		}
		kills = append(kills, time.Now())
		killedIncarnations = append(killedIncarnations, victim)
		if err := syscall.Kill(dc.pid(t, m), sig); err != nil {
			t.Fatalf("kill %s: %v", m, err)
		}
		t.Logf("%s %s, holding the sockets of %d clients", sig, victim, countHeldBy(holders, victim))
		time.Sleep(6 * time.Second)
	}
	sdk := backend.stop()

	// Browsers: never disconnected, never saw anyone leave, and their video
	// never stalled (BENCHMARKS.md: no gap over a second; 1.5 s allowed for
	// the fake camera on a busy machine).
	var resumeMS []float64
	final := browsers.stats()
	for i, pg := range final {
		types := eventTypes(pg)
		for _, bad := range []string{"sessionDisconnected", "connectionDestroyed", "streamDestroyed", "exception"} {
			if strings.Contains(types, bad) {
				t.Errorf("page %d saw %s: %s", i, bad, types)
			}
		}
		if got := strings.Count(types, "reconnected"); strings.Count(types, "reconnecting") != got || got != wantResumes[pg.ConnectionID] {
			t.Errorf("page %d (%s) resumed %d times, want %d: %s", i, pg.ConnectionID, got, wantResumes[pg.ConnectionID], types)
		}
		for _, e := range pg.Events {
			if e.Type == "reconnected" {
				resumeMS = append(resumeMS, sinceKill(kills, time.UnixMilli(e.At)))
			}
		}
	}
	for cid, vs := range browsers.gaps(kills[0].Add(-time.Second)) {
		for _, v := range vs {
			if v.MaxGapMS > 1500 || v.LastFrameAt < time.Now().Add(-time.Second).UnixMilli() {
				t.Errorf("page %s: video from %s stalled %d ms (last frame %d ms ago)", cid, v.ConnectionID, v.MaxGapMS, time.Now().UnixMilli()-v.LastFrameAt)
			}
		}
	}
	// Pion participants: resumed exactly when their master died, no
	// departure seen, media without a gap of a second.
	var longest time.Duration
	for cid, p := range pionIDs {
		rs := p.Resumptions()
		if len(rs) != wantResumes[cid] {
			t.Errorf("%s resumed %d times, want %d: %+v", cid, len(rs), wantResumes[cid], rs)
		}
		for _, r := range rs {
			if r.Resumed.IsZero() {
				t.Errorf("%s did not resume: %v", cid, r.Err)
				continue
			}
			resumeMS = append(resumeMS, sinceKill(kills, r.Resumed))
		}
		for _, e := range p.Events() {
			if e.Method == protocol.NotifyParticipantLeft || e.Method == protocol.NotifyParticipantEvicted {
				t.Errorf("%s saw %s %s", cid, e.Method, e.Params)
			}
		}
	}
	for _, s := range subs {
		st := s.Stats()
		longest = max(longest, st.MaxGap)
		if st.MaxGap > time.Second {
			t.Errorf("subscription to %s stalled %s", s.StreamID, st.MaxGap)
		}
		if time.Since(st.LastPacket) > time.Second {
			t.Errorf("subscription to %s stopped receiving", s.StreamID)
		}
	}
	// The same connections, all active, and no other, as the REST API says.
	for sid, want := range map[string][]string{"ha_browsers": browserIDs, "ha_pion": keys(pionIDs)} {
		var s protocol.Session
		if err := json.Unmarshal(restCall(t, dc, "GET", "/openvidu/api/sessions/"+sid+"?pendingConnections=true", ""), &s); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range s.Connections.Content {
			if c.Status != "active" {
				t.Errorf("%s: connection %s is %s", sid, c.ConnectionID, c.Status)
			}
			got = append(got, c.ConnectionID)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s lists connections %v after the kills, had %v", sid, got, want)
		}
	}
	// The application server's calls all succeeded; a kill can fail at most
	// the one call in flight on its master, which the SDK retries.
	if sdk.failed > 0 || sdk.calls < 200 || sdk.retried > len(kills) {
		t.Errorf("backend: %d calls, %d retried, %d failed; want >= 200 calls, <= %d retries, none failed", sdk.calls, sdk.retried, sdk.failed, len(kills))
	}
	if len(resumeMS) == 0 {
		t.Error("no client lost its master: the test proved nothing")
	}

	rep := haReport{Signal: sig.String(), Resumptions: len(resumeMS), LongestPionStallMS: longest.Milliseconds(),
		SDKCalls: sdk.calls, SDKRetried: sdk.retried, SDKFailed: sdk.failed}
	rep.ResumeP50MS, rep.ResumeP99MS, rep.ResumeMaxMS = percentile(resumeMS, 50), percentile(resumeMS, 99), percentile(resumeMS, 100)
	// BENCHMARKS.md: resumption within 106 ms of a SIGKILL (the worst of
	// its runs), ~510 ms of a SIGTERM (its 500 ms drain wait, by design).
	if limit := maxResumeMS[sig]; rep.ResumeMaxMS > limit {
		t.Errorf("slowest resumption %.0f ms after its kill, want within %.0f ms", rep.ResumeMaxMS, limit)
	}
	raw, _ := json.Marshal(rep)
	t.Logf("measured: %s", raw)
	if path := os.Getenv("CHORUS_HA_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, string(raw))
			f.Close()
		}
	}

	browsers.leave()
	for _, p := range pion {
		if err := p.Leave(ctx); err != nil {
			t.Errorf("leave: %v", err)
		}
	}
	backend.cleanup(ctx)
	assertNoSessionKeys(t, dc)

	// A crash is announced once per master; a graceful shutdown is no
	// crash. By now (seconds after the kills, past every master's crash
	// window) a duplicate declaration would have come.
	want := 0
	if sig == syscall.SIGKILL {
		want = 1
	}
	var health struct {
		Nodes map[string]struct {
			Status string `json:"status"`
		} `json:"nodes"`
	}
	_ = json.Unmarshal(restCall(t, dc, "GET", "/openvidu/api/health", ""), &health)
	for _, inc := range killedIncarnations {
		n := 0
		for _, id := range crashedNodes(hook) {
			if id == inc {
				n++
			}
		}
		if n != want {
			t.Errorf("%d nodeCrashed for %s, want %d", n, inc, want)
		}
		down := health.Nodes[inc].Status == "DOWN"
		if down != (want == 1) {
			t.Errorf("health after the chaos lists %s DOWN: %v, want %v: %+v", inc, down, want == 1, health)
		}
	}
	if got := crashedNodes(hook); len(got) != want*len(killedIncarnations) {
		t.Errorf("nodeCrashed for %v after killing %v with %s", got, killedIncarnations, sig)
	}
}

// maxResumeMS bounds a client's resumption after its master's death, by
// signal (BENCHMARKS.md, with headroom for a busy 2-core machine).
var maxResumeMS = map[syscall.Signal]float64{syscall.SIGKILL: 500, syscall.SIGTERM: 1500}

// connectionMasters reads, for each connection (id -> session), the master
// incarnation holding its WebSocket now ("" while it has none).
func connectionMasters(t *testing.T, ctx context.Context, rdb redis.UniversalClient, sessionOf map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for cid, sid := range sessionOf {
		raw, err := rdb.HGet(ctx, "chorus:e2e:{"+sid+"}", "c:"+cid).Result()
		if err != nil {
			t.Fatalf("connection %s: %v", cid, err)
		}
		var c struct {
			Master string `json:"master"`
		}
		_ = json.Unmarshal([]byte(raw), &c)
		out[cid] = c.Master
	}
	return out
}

// registeredMasters lists the master incarnations registered now.
func registeredMasters(t *testing.T, ctx context.Context, rdb redis.UniversalClient) []string {
	t.Helper()
	ids, err := rdb.SMembers(ctx, "chorus:e2e:{masters}:ids").Result()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func countHeldBy(holders map[string]string, master string) int {
	n := 0
	for _, h := range holders {
		if h == master {
			n++
		}
	}
	return n
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// sinceKill is how long after the latest kill before at the instant happened, in ms.
func sinceKill(kills []time.Time, at time.Time) float64 {
	var last time.Time
	for _, k := range kills {
		if !k.After(at) {
			last = k
		}
	}
	if last.IsZero() {
		return 0
	}
	return float64(at.Sub(last).Microseconds()) / 1000
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// pionMesh joins n pion participants to a session; each publishes synthetic
// media and subscribes to every other.
func pionMesh(t *testing.T, ctx context.Context, dc *devCluster, sid string, n int) ([]*participant.Participant, []*participant.Subscription) {
	t.Helper()
	return pionMeshOn(t, ctx, dc, sid, "", n)
}

// backendLoop is an application server using the Go SDK in a loop during
// the chaos: create a session, two connections, fetch it, close it.
type backendLoop struct {
	t      *testing.T
	ov     *openvidu.Client
	dc     *devCluster
	cancel context.CancelFunc
	done   chan struct{}
	failed atomic.Int64
}

type backendStats struct{ calls, retried, failed int }

func startBackendLoop(t *testing.T, ctx context.Context, dc *devCluster) *backendLoop {
	ov, err := openvidu.New(openvidu.Config{URL: dc.URL, Secret: dc.Secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &backendLoop{t: t, ov: ov, dc: dc, cancel: cancel, done: make(chan struct{})}
	fail := func(what string, err error) {
		if err != nil && ctx.Err() == nil {
			b.failed.Add(1)
			t.Errorf("backend %s: %v", what, err)
		}
	}
	go func() {
		defer close(b.done)
		for i := 0; ctx.Err() == nil; i++ {
			sid := fmt.Sprintf("backend_%d", i)
			_, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: sid})
			fail("create session", err)
			_, err = ov.CreateConnection(ctx, sid, openvidu.ConnectionProperties{})
			fail("create connection", err)
			_, err = ov.CreateConnection(ctx, sid, openvidu.ConnectionProperties{Role: "SUBSCRIBER"})
			fail("create connection", err)
			s, err := ov.Session(ctx, sid)
			fail("fetch", err)
			if err == nil && s.Connections.NumberOfElements != 2 {
				b.failed.Add(1)
				t.Errorf("backend session %s has %d pending connections, want 2 (a retry duplicated one?)", sid, s.Connections.NumberOfElements)
			}
			fail("close", ov.CloseSession(ctx, sid))
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return b
}

func (b *backendLoop) stop() backendStats {
	b.cancel()
	<-b.done
	calls, retries := b.ov.Stats()
	return backendStats{int(calls), int(retries), int(b.failed.Load())}
}

// cleanup closes the sessions the loop may have left when it was stopped.
func (b *backendLoop) cleanup(ctx context.Context) {
	raw, err := restOnce(ctx, b.dc, "GET", "/openvidu/api/sessions", "")
	if err != nil {
		return
	}
	var list protocol.SessionList
	_ = json.Unmarshal(raw, &list)
	for _, s := range list.Content {
		if strings.HasPrefix(s.ID, "backend_") {
			_, _ = restOnce(ctx, b.dc, "DELETE", "/openvidu/api/sessions/"+s.ID, "")
		}
	}
}
