package openvidu_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/shared/config"
)

func client(t *testing.T, url string) *openvidu.Client {
	t.Helper()
	c, err := openvidu.New(openvidu.Config{URL: url, Secret: clustertest.Secret, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgainstACluster(t *testing.T) {
	ctx := context.Background()
	cl := clustertest.Start(t, clustertest.Options{Masters: 2, MediaNodes: 1, Proxies: 2})
	ov := client(t, cl.ProxyURL)

	generated, err := ov.CreateSession(ctx, openvidu.SessionProperties{})
	if err != nil || !strings.HasPrefix(generated.ID, "ses_") {
		t.Fatalf("generated session %+v: %v", generated, err)
	}
	custom, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: "sdk", ForcedVideoCodec: "H264", MediaNode: "media_1"})
	if err != nil || custom.ID != "sdk" || custom.ForcedVideoCodec != "H264" {
		t.Fatalf("custom session %+v: %v", custom, err)
	}
	again, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: "sdk"})
	if err != nil || again.ID != "sdk" {
		t.Errorf("an existing custom id must read as success: %+v, %v", again, err)
	}
	rec := false
	conn, err := ov.CreateConnection(ctx, "sdk", openvidu.ConnectionProperties{Role: "MODERATOR", Data: "d", Record: &rec})
	if err != nil || conn.Role != "MODERATOR" || conn.Record || conn.Status != "pending" {
		t.Fatalf("connection %+v: %v", conn, err)
	}
	role := "SUBSCRIBER"
	if up, err := ov.UpdateConnection(ctx, "sdk", conn.ConnectionID, openvidu.ConnectionUpdate{Role: &role}); err != nil || up.Role != role {
		t.Errorf("update: %+v, %v", up, err)
	}
	s, err := ov.Session(ctx, "sdk")
	if err != nil || s.Connections.NumberOfElements != 1 {
		t.Errorf("fetch: %+v, %v", s, err)
	}
	// A second proxy, sharing nothing with the first but Redis and the
	// masters, sees the same cluster.
	other := client(t, cl.ProxyURLs[1])
	if s2, err := other.Session(ctx, "sdk"); err != nil || s2.Connections.NumberOfElements != 1 {
		t.Errorf("through the second proxy: %+v, %v", s2, err)
	}
	if err := ov.Signal(ctx, openvidu.Signal{Session: "sdk", Data: "x"}); openvidu.StatusOf(err) != http.StatusNotAcceptable {
		t.Errorf("signal to a session without participants: %v", err)
	}
	if err := ov.ForceDisconnect(ctx, "sdk", "con_nobody"); openvidu.StatusOf(err) != http.StatusNotFound {
		t.Errorf("force disconnect of nobody: %v", err)
	}
	if err := ov.ForceDisconnect(ctx, "sdk", conn.ConnectionID); err != nil {
		t.Errorf("revoke: %v", err)
	}
	if h, err := ov.Health(ctx); err != nil || h.Status != "UP" {
		t.Errorf("health %+v: %v", h, err)
	}
	list, err := ov.Sessions(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("sessions %d: %v", len(list), err)
	}
	for _, id := range []string{"sdk", generated.ID} {
		if err := ov.CloseSession(ctx, id); err != nil {
			t.Error(err)
		}
	}
	if _, err := ov.Session(ctx, "sdk"); openvidu.StatusOf(err) != http.StatusNotFound {
		t.Errorf("closed session: %v", err)
	}
	if _, retries := ov.Stats(); retries != 0 {
		t.Errorf("%d retries against a healthy cluster", retries)
	}
	cl.AssertNoLeftovers(t)
}

// TestIdempotencyKey: a request repeated with the same Idempotency-Key (a
// retry after its answer was lost) gets what the first one created.
func TestIdempotencyKey(t *testing.T) {
	cl := clustertest.Start(t, clustertest.Options{Masters: 2, MediaNodes: 1})
	post := func(master int, path, key string) string {
		req, _ := http.NewRequest("POST", cl.MasterURLs[master]+path, strings.NewReader(`{}`))
		req.SetBasicAuth("OPENVIDUAPP", clustertest.Secret)
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ ID string }
		if err := jsonDecode(resp, &out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %v", path, resp.StatusCode, err)
		}
		return out.ID
	}
	s1 := post(0, "/openvidu/api/sessions", "k-session")
	s2 := post(1, "/openvidu/api/sessions", "k-session") // retried on the other master
	if s1 != s2 {
		t.Errorf("the retry created session %s besides %s", s2, s1)
	}
	c1 := post(0, "/openvidu/api/sessions/"+s1+"/connection", "k-conn")
	c2 := post(1, "/openvidu/api/sessions/"+s1+"/connection", "k-conn")
	c3 := post(1, "/openvidu/api/sessions/"+s1+"/connection", "k-other")
	if c1 != c2 || c1 == c3 {
		t.Errorf("connections %s, %s (same key), %s (another key)", c1, c2, c3)
	}
	ov := client(t, cl.MasterURLs[0])
	s, err := ov.Session(context.Background(), s1)
	if err != nil || s.Connections.NumberOfElements != 2 {
		t.Errorf("%d pending connections, want 2: %v", s.Connections.NumberOfElements, err)
	}
}

func TestRetriesGatewayErrorsWithinTheContext(t *testing.T) {
	var calls atomic.Int32
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openvidu/api/sessions/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		if r.Header.Get("Idempotency-Key") == "" {
			t.Error("CreateConnection sent no Idempotency-Key")
		}
		w.Write([]byte(`{"id":"con_x","connectionId":"con_x","status":"pending"}`))
	}))
	defer stub.Close()
	ov := client(t, stub.URL)
	conn, err := ov.CreateConnection(context.Background(), "s", openvidu.ConnectionProperties{})
	if err != nil || conn.ConnectionID != "con_x" {
		t.Fatalf("%+v, %v", conn, err)
	}
	if _, retries := ov.Stats(); retries != 2 {
		t.Errorf("%d retries, want 2", retries)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := ov.Session(ctx, "down"); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("a call that keeps failing: %v after %s", err, time.Since(start))
	}
}

// TestMediaNodes drives the media-node methods against a cluster whose nodes
// wait to be added (adoption off), as on premises.
func TestMediaNodes(t *testing.T) {
	ctx := context.Background()
	cl := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 2, Proxy: true,
		Configure: func(c *config.Config) { c.MediaNodes.AutoAdopt = false }})
	ov := client(t, cl.ProxyURL)
	// Both nodes report, unadopted (the cluster has seen them)...
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen, err := cl.Store.UnadoptedMediaNodes(ctx, 3*time.Second)
		if err == nil && len(seen) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d nodes reported (%v)", len(seen), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ...and none is listed before it is added.

	if nodes, err := ov.MediaNodes(ctx, false); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes before adoption: %+v, %v", nodes, err)
	}
	if _, err := ov.LaunchMediaNode(ctx, openvidu.LaunchOptions{Wait: true}); openvidu.StatusOf(err) != http.StatusNotImplemented ||
		!strings.Contains(err.Error(), `"uri"`) {
		t.Errorf("launch with the static provider: %v", err)
	}
	uri := cl.MediaNodeURLs[0]
	added, err := ov.LaunchMediaNode(ctx, openvidu.LaunchOptions{URI: uri, EnvironmentID: "rack-1"})
	if err != nil || added.Status != openvidu.NodeRunning || added.EnvironmentID == nil || *added.EnvironmentID != "rack-1" {
		t.Fatalf("added by URI: %+v, %v", added, err)
	}
	if _, err := ov.LaunchMediaNode(ctx, openvidu.LaunchOptions{URI: uri}); openvidu.StatusOf(err) != http.StatusConflict {
		t.Errorf("added twice: %v", err)
	}
	found, err := ov.DiscoverMediaNodes(ctx)
	if err != nil || len(found) != 1 || found[0].ID == added.ID {
		t.Fatalf("discovered %+v, %v", found, err)
	}
	if _, err := ov.MediaNode(ctx, "media_nope", false); openvidu.StatusOf(err) != http.StatusNotFound ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("unknown node: %v", err)
	}
	if n, err := ov.SetMediaNodeStatus(ctx, added.ID, openvidu.NodeRunning); err != nil || n != nil {
		t.Errorf("status unchanged: %+v, %v", n, err)
	}
	if _, err := ov.SetMediaNodeStatus(ctx, added.ID, "bogus"); openvidu.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("bogus status: %v", err)
	}
	// An idle node asked to wait for its sessions to end goes on to
	// terminating at once, as in OpenVidu.
	n, err := ov.SetMediaNodeStatus(ctx, found[0].ID, openvidu.NodeWaitingIdle)
	if err != nil || n.Status != openvidu.NodeTerminating {
		t.Errorf("quarantine of an idle node: %+v, %v", n, err)
	}
	if n, err := ov.DropMediaNode(ctx, added.ID, openvidu.DropOptions{Strategy: openvidu.DropNow, Wait: true}); err != nil || n != nil {
		t.Errorf("drop and wait: %+v, %v", n, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		nodes, err := ov.MediaNodes(ctx, true)
		if err == nil && len(nodes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes left: %+v, %v", nodes, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
