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

	browsers := startPages(t, dc)
	browserIDs := browsers.join("ha_browsers", 2)
	browsers.waitVideo(1, 90*time.Second)

	pion, subs := pionMesh(t, ctx, dc, "ha_pion", 3)
	pionIDs := map[*participant.Participant]string{}
	for _, p := range pion {
		pionIDs[p] = p.ConnectionID()
	}
	backend := startBackendLoop(t, ctx, dc)

	masters := []string{"master_1", "master_2", "master_3"}
	var kills []time.Time
	for _, m := range masters[:len(masters)-1] {
		time.Sleep(3 * time.Second)
		before := browsers.stats()
		kills = append(kills, time.Now())
		if err := syscall.Kill(dc.pid(t, m), sig); err != nil {
			t.Fatalf("kill %s: %v", m, err)
		}
		t.Logf("%s %s", sig, m)
		time.Sleep(6 * time.Second)
		// Browser video kept playing through the kill.
		after := browsers.stats()
		for i := range after {
			if len(after[i].Videos) != 1 || len(before[i].Videos) != 1 || after[i].Videos[0].Frames <= before[i].Videos[0].Frames+30 {
				t.Errorf("page %d: frames %v then %v", i, before[i].Videos, after[i].Videos)
			}
		}
	}
	time.Sleep(3 * time.Second)
	sdk := backend.stop()

	// Browsers: same connection ids, reconnected every time they lost their
	// socket, never disconnected, never saw anyone leave.
	var resumeMS []float64
	final := browsers.stats()
	for i, pg := range final {
		if pg.ConnectionID != browserIDs[i] {
			t.Errorf("page %d is now %s, was %s", i, pg.ConnectionID, browserIDs[i])
		}
		types := eventTypes(pg)
		for _, bad := range []string{"sessionDisconnected", "connectionDestroyed", "streamDestroyed", "exception"} {
			if strings.Contains(types, bad) {
				t.Errorf("page %d saw %s: %s", i, bad, types)
			}
		}
		if strings.Count(types, "reconnecting") != strings.Count(types, "reconnected") {
			t.Errorf("page %d did not always reconnect: %s", i, types)
		}
		for _, e := range pg.Events {
			if e.Type == "reconnected" {
				resumeMS = append(resumeMS, sinceKill(kills, time.UnixMilli(e.At)))
			}
		}
	}
	// Pion participants: resumed every time, same id, no departure seen,
	// media without a gap of a second.
	var longest time.Duration
	for _, p := range pion {
		if p.ConnectionID() != pionIDs[p] {
			t.Errorf("pion participant changed id")
		}
		for _, r := range p.Resumptions() {
			if r.Resumed.IsZero() {
				t.Errorf("%s did not resume: %v", p.ConnectionID(), r.Err)
				continue
			}
			resumeMS = append(resumeMS, sinceKill(kills, r.Resumed))
		}
		for _, e := range p.Events() {
			if e.Method == protocol.NotifyParticipantLeft || e.Method == protocol.NotifyParticipantEvicted {
				t.Errorf("%s saw %s %s", p.ConnectionID(), e.Method, e.Params)
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
	if sdk.failed > 0 {
		t.Errorf("%d backend calls failed (of %d)", sdk.failed, sdk.calls)
	}
	if len(resumeMS) == 0 {
		t.Error("no client lost its master: the test proved nothing")
	}
	// A crash is announced once per master; a graceful shutdown is no crash.
	wantCrashed := 0
	if sig == syscall.SIGKILL {
		wantCrashed = len(kills)
	}
	hook.waitFor(t, "nodeCrashed events", 20*time.Second, func() bool { return countCrashed(hook) >= wantCrashed })
	time.Sleep(2 * time.Second) // a duplicate would come now
	if n := countCrashed(hook); n != wantCrashed {
		t.Errorf("%d nodeCrashed (masternode) events, want %d", n, wantCrashed)
	}
	health := string(restCall(t, dc, "GET", "/openvidu/api/health", ""))
	if strings.Count(health, `"status":"DOWN"`) != wantCrashed || !strings.Contains(health, "master_3.") {
		t.Errorf("health after the chaos: %s", health)
	}

	rep := haReport{Signal: sig.String(), Resumptions: len(resumeMS), LongestPionStallMS: longest.Milliseconds(),
		SDKCalls: sdk.calls, SDKRetried: sdk.retried, SDKFailed: sdk.failed}
	rep.ResumeP50MS, rep.ResumeP99MS, rep.ResumeMaxMS = percentile(resumeMS, 50), percentile(resumeMS, 99), percentile(resumeMS, 100)
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
}

func countCrashed(h *hook) int {
	n := 0
	for _, e := range h.distinct("") {
		if e["event"] == "nodeCrashed" && e["nodeRole"] == "masternode" {
			n++
		}
	}
	return n
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
