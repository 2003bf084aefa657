//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/rediscluster"
)

// restProbe is one REST call of the failover test's load: what it asked,
// when, and how it ended.
type restProbe struct {
	sid       string
	at, took  time.Duration // since the kill (negative: before)
	created   bool          // POST /sessions answered 200
	ackedAt   time.Duration // when it answered, since the kill
	err       error         // the first call that failed
	killedOne bool          // the session lives in the slot of the killed primary
}

// TestRedisClusterFailover: chorus dev on a Redis Cluster of 3 primaries and
// 3 replicas. Under a running session (pion participants publishing) and a
// REST load creating sessions over every slot, the primary serving the
// session's slot is SIGKILLed. The replica is promoted; REST calls that
// need the slot fail (503) only until the promotion and succeed after it,
// the other slots keep answering; no participant leaves, media does not
// stop for more than a second, no session the API acknowledged is lost,
// nobody is declared crashed and the webhook receives every event
// (sessionCreated of each, the participants' and the session's ends after
// the kill). CHORUS_FAILOVER_KEY kills another key's primary (see below):
// that of a cluster-wide index (the sessions' listing, the event streams'
// registry), which every session creation writes, or of the masters' or
// media nodes' registry; then every call of the load counts as one that
// needs the dead primary.
func TestRedisClusterFailover(t *testing.T) {
	h := startHook(t)
	dc := startDev(t, devOptions{Args: []string{"--redis-cluster"}, Env: eventEnv(h)})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addrs := strings.Split(dc.Redis, ",")
	if len(addrs) != 6 {
		t.Fatalf("chorus dev --redis-cluster: redis %q, want 6 nodes", dc.Redis)
	}
	const sid = "cluster_failover"
	ps, subs := pionMesh(t, ctx, dc, sid, 3)
	waitPionMedia(t, subs, time.Now(), 15*time.Second)

	// The primary killed is the session's; CHORUS_FAILOVER_KEY names
	// another key whose primary to kill instead (the masters' registry,
	// "chorus:e2e:{masters}:ids"; the sessions' index, "chorus:e2e:sessions").
	victimKey := "chorus:e2e:{" + sid + "}"
	if k := os.Getenv("CHORUS_FAILOVER_KEY"); k != "" {
		victimKey = k
	}
	primary, err := rediscluster.PrimaryOf(ctx, addrs, victimKey)
	if err != nil {
		t.Fatal(err)
	}
	// Which of the load's sessions live in the slots the killed primary
	// serves, known before the kill (the slot map changes with it).
	const loadSessions = 2000
	inKilled, err := sessionsServedBy(ctx, primary, loadSessions)
	if err != nil {
		t.Fatal(err)
	}
	if victimKey != "chorus:e2e:{"+sid+"}" {
		for i := range loadSessions {
			inKilled[fmt.Sprintf("load_%d", i)] = true
		}
	}
	pid := 0
	for _, n := range dc.Nodes {
		if n.Role == "redis" && n.Addr == primary {
			pid = n.PID
		}
	}
	if pid == 0 {
		t.Fatalf("no process for the primary %s in %+v", primary, dc.Nodes)
	}

	// The load: sessions with a connection each, one after another, over
	// every slot, each call made once (no retry), from before the kill
	// until well after it.
	var killedAt time.Time
	var killedMu sync.Mutex
	since := func(at time.Time) time.Duration {
		killedMu.Lock()
		defer killedMu.Unlock()
		if killedAt.IsZero() {
			return -time.Hour
		}
		return at.Sub(killedAt)
	}
	var probes []restProbe
	var tried []string // every session the load asked for, answered or not
	var probesMu sync.Mutex
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; loadCtx.Err() == nil && i < loadSessions; i++ {
			s := fmt.Sprintf("load_%d", i)
			start := time.Now()
			_, err := restOnce(loadCtx, dc, "POST", "/openvidu/api/sessions", fmt.Sprintf(`{"customSessionId":%q}`, s))
			created, acked := err == nil, since(time.Now())
			if created {
				_, err = restOnce(loadCtx, dc, "POST", "/openvidu/api/sessions/"+s+"/connection", `{}`)
			}
			probesMu.Lock()
			tried = append(tried, s)
			if loadCtx.Err() != nil {
				probesMu.Unlock()
				return
			}
			probes = append(probes, restProbe{sid: s, at: since(start), took: time.Since(start), created: created, ackedAt: acked, err: err, killedOne: inKilled[s]})
			probesMu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second)

	killedMu.Lock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		killedMu.Unlock()
		t.Fatal(err)
	}
	killedAt = time.Now()
	killedMu.Unlock()
	if err := rediscluster.WaitHealthy(ctx, addrs, 30*time.Second); err != nil {
		t.Fatalf("the cluster did not recover: %v", err)
	}
	promoted := time.Since(killedAt)
	newPrimary, err := rediscluster.PrimaryOf(ctx, addrs, "chorus:e2e:{"+sid+"}")
	if err != nil || newPrimary == primary {
		t.Fatalf("slot of %s still on %s after the failover (%v)", sid, newPrimary, err)
	}
	// The session's own slot answers through the API again.
	var firstOK time.Duration
	for firstOK == 0 {
		if _, err := restOnce(ctx, dc, "GET", "/openvidu/api/sessions/"+sid, ""); err == nil {
			firstOK = time.Since(killedAt)
		} else if ctx.Err() != nil {
			t.Fatalf("REST on the session never came back: %v", err)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(3 * time.Second)
	stopLoad()
	<-loadDone

	// REST: errors only for the killed slot, only until the promotion
	// (plus the client's refresh of its slot map), all 503.
	var failedKilled, failedOther, okAfter, calls int
	var lastFailure time.Duration
	probesMu.Lock()
	defer probesMu.Unlock()
	created := []string{}
	ackedAt := map[string]time.Duration{}
	for _, p := range probes {
		calls++
		if p.created {
			created = append(created, p.sid)
			ackedAt[p.sid] = p.ackedAt
		}
		if p.err == nil {
			if p.at > 0 {
				okAfter++
			}
			continue
		}
		switch {
		case !p.killedOne && p.at < 0 && strings.Contains(p.err.Error(), ": 503"):
			// In flight at the kill: its command to the dead primary
			// (the sessions' index, say) was sent and never answered, so
			// it cannot be retried safely.
			failedOther++
		case !p.killedOne:
			t.Errorf("REST on %s (another slot) failed %s after the kill: %v", p.sid, p.at, p.err)
		case !strings.Contains(p.err.Error(), ": 503"):
			t.Errorf("REST on %s failed %s after the kill with %v, want 503", p.sid, p.at, p.err)
		default:
			failedKilled++
			lastFailure = max(lastFailure, p.at+p.took)
		}
	}
	t.Logf("redis cluster failover: replica promoted %s after the kill, the session's slot answered %s after it; REST load: %d calls, %d failed (503, killed slot, last answered %s after the kill), %d in flight at the kill on other slots failed (503), %d succeeded after the kill",
		promoted.Round(time.Millisecond), firstOK.Round(time.Millisecond), calls, failedKilled, lastFailure.Round(time.Millisecond), failedOther, okAfter)
	if failedOther > 1 {
		t.Errorf("%d calls in flight at the kill failed, want at most one (the load makes one at a time)", failedOther)
	}
	if bound := promoted + 3*time.Second; lastFailure > bound {
		t.Errorf("REST failed until %s after the kill, want only during the promotion (%s, plus 3 s)", lastFailure, promoted)
	}
	if okAfter == 0 {
		t.Error("no REST call succeeded after the kill")
	}

	// No session the API acknowledged is lost.
	raw, err := retryREST(ctx, dc, "GET", "/openvidu/api/sessions", "")
	if err != nil {
		t.Fatal(err)
	}
	var list protocol.SessionList
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, s := range list.Content {
		listed[s.ID] = true
	}
	// Redis replicates asynchronously: a write its primary acknowledged
	// just before dying may not have reached the replica (Redis Cluster's
	// documented write-loss window). On loopback that window is well under
	// replicationWindow; a session acknowledged earlier must survive.
	const replicationWindow = 100 * time.Millisecond
	lost := map[string]bool{}
	for _, s := range created {
		switch {
		case listed[s]:
		case ackedAt[s] > -replicationWindow && ackedAt[s] < 0:
			t.Logf("session %s, acknowledged %s before the kill, was lost with the primary (asynchronous replication)", s, -ackedAt[s])
			lost[s] = true
		default:
			t.Errorf("session %s, acknowledged %s after the kill, is gone", s, ackedAt[s])
		}
	}
	created = slices.DeleteFunc(created, func(s string) bool { return lost[s] })

	// Media and participants: nobody left, media back, no gap over 1 s.
	waitPionMedia(t, subs, time.Now(), 5*time.Second)
	for _, s := range subs {
		if st := s.Stats(); st.MaxGap > time.Second {
			t.Errorf("media to %s stalled %s", s.StreamID, st.MaxGap)
		}
	}
	for _, p := range ps {
		for _, e := range p.Events() {
			if e.Method == protocol.NotifyParticipantLeft || e.Method == protocol.NotifyParticipantEvicted {
				t.Errorf("%s saw %s", p.ConnectionID(), e.Method)
			}
		}
	}
	ov, err := openvidu.New(openvidu.Config{URL: dc.URL, Secret: dc.Secret})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ov.Session(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if active := activeConnections(s); active != len(ps) {
		t.Errorf("%d active participants after the failover, want %d", active, len(ps))
	}

	// Events: the session ends after the failover; the webhook gets its
	// end, every participant's, and every created session's start.
	leave(t, ctx, ps) // the last one out closes the session
	h.waitFor(t, "the events of the failover", 60*time.Second, func() bool {
		return hasEvent(h.distinct(sid), "sessionDestroyed") && countEvents(h.distinct(sid), "participantLeft") == len(ps) &&
			missingCreated(h, created) == nil
	})
	if m := missingCreated(h, created); m != nil {
		t.Errorf("sessionCreated never delivered for %v", m)
	}
	// Nobody was declared crashed for the failover (heartbeats and
	// registrations in the dead primary's slots waited for the promotion).
	for _, e := range h.distinct("") {
		if e["event"] == "nodeCrashed" {
			t.Errorf("a Redis failover declared a node crashed: %v", e)
		}
	}
	for _, s := range tried { // a call that failed may still have created its session
		if _, err := retryREST(ctx, dc, "DELETE", "/openvidu/api/sessions/"+s, ""); err != nil && !strings.Contains(err.Error(), ": 404") {
			t.Errorf("close %s: %v", s, err)
		}
	}
	assertNoSessionKeys(t, dc)
	if countKilled(probes) == 0 {
		t.Error("no REST call of the load went to the killed primary's slots")
	}
}

// sessionsServedBy tells, for load_0 to load_<n-1>, whether the primary at
// addr serves the session's slot now.
func sessionsServedBy(ctx context.Context, addr string, n int) (map[string]bool, error) {
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("chorus:e2e:{load_%d}", i)
	}
	served, err := rediscluster.ServedBy(ctx, addr, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, n)
	for i, ok := range served {
		if ok {
			out[fmt.Sprintf("load_%d", i)] = true
		}
	}
	return out, nil
}

func activeConnections(s *protocol.Session) int {
	n := 0
	for _, c := range s.Connections.Content {
		if c.Status == "active" {
			n++
		}
	}
	return n
}

func leave(t *testing.T, ctx context.Context, ps []*participant.Participant) {
	t.Helper()
	for _, p := range ps {
		if err := p.Leave(ctx); err != nil {
			t.Errorf("leave %s: %v", p.ConnectionID(), err)
		}
	}
}

func countEvents(events []map[string]any, name string) int {
	n := 0
	for _, e := range events {
		if e["event"] == name {
			n++
		}
	}
	return n
}

// missingCreated lists the sessions whose sessionCreated the webhook has not
// received.
func missingCreated(h *hook, sids []string) []string {
	got := map[string]bool{}
	for _, e := range h.distinct("") {
		if e["event"] == "sessionCreated" {
			got[fmt.Sprint(e["sessionId"])] = true
		}
	}
	var out []string
	for _, s := range sids {
		if !got[s] {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func countKilled(probes []restProbe) int {
	n := 0
	for _, p := range probes {
		if p.killedOne {
			n++
		}
	}
	return n
}
