//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// api calls the REST API through the proxy and returns the status, the
// Content-Type and the body.
func api(t *testing.T, dc *devCluster, method, path, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, dc.URL+path, strings.NewReader(body))
	req.SetBasicAuth("OPENVIDUAPP", dc.Secret)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	// The compose cluster's proxy has a self-signed certificate.
	resp, err := (&http.Client{Timeout: 2 * time.Minute, Transport: insecureClient.Transport}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(raw)
}

// mediaNode is the Media Node object as clients read it.
type mediaNode struct {
	ID             string             `json:"id"`
	Object         string             `json:"object"`
	EnvironmentID  *string            `json:"environmentId"`
	IP             *string            `json:"ip"`
	URI            *string            `json:"uri"`
	Status         string             `json:"status"`
	Load           float64            `json:"load"`
	LaunchingTime  int64              `json:"launchingTime"`
	Connected      bool               `json:"connected"`
	ConnectionTime *int64             `json:"connectionTime"`
	Sessions       []protocol.Session `json:"sessions"`
	RecordingIDs   []string           `json:"recordingIds"`
}

func decodeNode(t *testing.T, body string) mediaNode {
	t.Helper()
	var n mediaNode
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatalf("not a media node: %v: %s", err, body)
	}
	return n
}

// expect checks a call's status and that its body contains want (an error of
// the media-node API must be OpenVidu's text/plain message).
func expect(t *testing.T, dc *devCluster, method, path, body string, status int, want string) string {
	t.Helper()
	code, ctype, got := api(t, dc, method, path, body)
	if code != status {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, got, status)
	}
	if status >= 400 && strings.Contains(path, "/media-nodes") && !strings.HasPrefix(ctype, "text/plain") {
		t.Errorf("%s %s: error Content-Type %q, want text/plain", method, path, ctype)
	}
	if want != "" && !strings.Contains(got, want) {
		t.Errorf("%s %s: body %q does not contain %q", method, path, got, want)
	}
	return got
}

// waitNode polls a node until cond holds (a nil node: it is gone).
func waitNode(t *testing.T, dc *devCluster, id, what string, timeout time.Duration, cond func(*mediaNode) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, _, body := api(t, dc, "GET", "/openvidu/api/media-nodes/"+id, "")
		var n *mediaNode
		if code == http.StatusOK {
			nn := decodeNode(t, body)
			n = &nn
		}
		if cond(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("media node %s not %s after %s: %d %s", id, what, timeout, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func gone(n *mediaNode) bool { return n == nil }

// processGone waits until the process of a launched node has exited.
func processGone(t *testing.T, pid string) {
	t.Helper()
	n, err := strconv.Atoi(pid)
	if err != nil {
		t.Fatalf("environmentId %q is not a pid", pid)
	}
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(n, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process %d of a terminated media node still runs", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// slowBinary is a chorus that takes a while to start, as a cloud instance
// does: launched nodes stay in launching long enough to be seen there.
func slowBinary(t *testing.T, delay string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "slow-chorus")
	script := fmt.Sprintf("#!/bin/sh\nsleep %s\nexec %s \"$@\"\n", delay, chorusBin)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// joinOn creates a session pinned to a media node and joins one pion
// participant publishing into it.
func joinOn(t *testing.T, ctx context.Context, dc *devCluster, sid, node string) *participant.Participant {
	t.Helper()
	ps, _ := pionMeshOn(t, ctx, dc, sid, node, 1)
	return ps[0]
}

// statusChanges returns the mediaNodeStatusChanged transitions of a node
// the webhook received, "old>new", in order.
func statusChanges(h *hook, id string) []string {
	var out []string
	for _, e := range h.distinct("") {
		if e["event"] == "mediaNodeStatusChanged" && e["id"] == id {
			out = append(out, fmt.Sprintf("%v>%v", e["oldStatus"], e["newStatus"]))
		}
	}
	return out
}

func waitChanges(t *testing.T, h *hook, id string, want ...string) {
	t.Helper()
	h.waitFor(t, "the status changes of "+id, 20*time.Second, func() bool { return len(statusChanges(h, id)) >= len(want) })
	if got := statusChanges(h, id); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("status changes of %s: %v, want %v", id, got, want)
	}
}

// TestMediaNodesREST drives every /media-nodes endpoint and error of OpenVidu
// Pro's REST API on a cluster whose masters launch media nodes as processes
// (slow to start, as machines are), and checks the lifecycle events.
func TestMediaNodesREST(t *testing.T) {
	h := startHook(t)
	dc := startDev(t, devOptions{Env: eventEnv(h, "CHORUS_MEDIA_NODES_PROCESS_BINARY="+slowBinary(t, "1.5"))})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const base = "/openvidu/api/media-nodes"

	// The dev cluster's own nodes registered themselves and were adopted.
	var list struct {
		NumberOfElements int         `json:"numberOfElements"`
		Content          []mediaNode `json:"content"`
	}
	_ = json.Unmarshal([]byte(expect(t, dc, "GET", base, "", 200, "")), &list)
	if list.NumberOfElements != 2 || len(list.Content) != 2 {
		t.Fatalf("nodes: %+v", list)
	}
	for _, n := range list.Content {
		if n.Object != "mediaNode" || n.Status != "running" || !n.Connected || n.URI == nil || n.IP == nil ||
			n.LaunchingTime == 0 || n.ConnectionTime == nil || n.Sessions != nil || n.EnvironmentID != nil {
			t.Errorf("dev node %+v", n)
		}
		waitChanges(t, h, n.ID, "<nil>>launching", "launching>running")
	}
	one := decodeNode(t, expect(t, dc, "GET", base+"/media_1?sessions=true&recordings=true&extra-info=false", "", 200, ""))
	if one.Sessions == nil || len(one.Sessions) != 0 || one.RecordingIDs == nil {
		t.Errorf("media_1 with sessions and recordings: %+v", one)
	}
	expect(t, dc, "GET", base+"/media_nope", "", 404, `Media Node "media_nope" does not exist`)
	expect(t, dc, "GET", base+"?sessions=maybe", "", 400, "")
	expect(t, dc, "PUT", base, "", 200, `{"numberOfElements":0,"content":[]}`)

	// Registration by URI: taken, unreachable, malformed.
	uri := *one.URI
	expect(t, dc, "POST", base, fmt.Sprintf(`{"uri":%q}`, uri), 409, "is already registered")
	expect(t, dc, "POST", base, `{"uri":"http://127.0.0.1:1"}`, 404, "could not be reached")
	expect(t, dc, "POST", base, `{"uri":"ftp://x"}`, 400, `Invalid parameter "uri"`)
	expect(t, dc, "POST", base, `{"uri":5}`, 400, `Invalid parameter "uri"`)
	expect(t, dc, "POST", base, `{"uri":`, 400, "")

	// Launch and wait: the node is running when the answer comes.
	a := decodeNode(t, expect(t, dc, "POST", base+"?wait=true", "", 200, ""))
	if a.Status != "running" || !a.Connected || a.EnvironmentID == nil || !strings.HasPrefix(a.ID, "media_") {
		t.Fatalf("launched with wait: %+v", a)
	}
	waitChanges(t, h, a.ID, "<nil>>launching", "launching>running")

	// A retried launch (same Idempotency-Key) gets the node the first made.
	launchOnce := func() mediaNode {
		req, _ := http.NewRequest("POST", dc.URL+base+"?wait=true", nil)
		req.SetBasicAuth("OPENVIDUAPP", dc.Secret)
		req.Header.Set("Idempotency-Key", "launch-once")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("idempotent launch: %d %s", resp.StatusCode, raw)
		}
		return decodeNode(t, string(raw))
	}
	if first, again := launchOnce(), launchOnce(); first.ID != again.ID || again.Status != "running" {
		t.Errorf("a retried launch made %s after %s", again.ID, first.ID)
	} else {
		expect(t, dc, "DELETE", base+"/"+first.ID+"?wait=true", "", 204, "")
	}

	// Launch without waiting, cancel, and the node goes away once started.
	b := decodeNode(t, expect(t, dc, "POST", base, "", 200, ""))
	if b.Status != "launching" || b.Connected {
		t.Fatalf("launched without wait: %+v", b)
	}
	expect(t, dc, "DELETE", base+"/"+b.ID, "", 400, "Cannot remove Media Node")
	expect(t, dc, "PATCH", base+"/"+b.ID, `{"status":"terminating"}`, 400, `Cannot be "terminating"`)
	expect(t, dc, "PATCH", base+"/"+b.ID, `{"status":"running"}`, 400, `Cannot be "running"`)
	if n := decodeNode(t, expect(t, dc, "PATCH", base+"/"+b.ID, `{"status":"canceled"}`, 200, "")); n.Status != "canceled" {
		t.Fatalf("canceled: %+v", n)
	}
	expect(t, dc, "PATCH", base+"/"+b.ID, `{"status":"canceled"}`, 204, "")
	waitNode(t, dc, b.ID, "gone", 20*time.Second, gone)
	waitChanges(t, h, b.ID, "<nil>>launching", "launching>canceled", "canceled>terminating", "terminating>terminated")
	processGone(t, *b.EnvironmentID)

	// Cancel, then launch again: it becomes running.
	c := decodeNode(t, expect(t, dc, "POST", base, "", 200, ""))
	expect(t, dc, "PATCH", base+"/"+c.ID, `{"status":"canceled"}`, 200, "")
	expect(t, dc, "PATCH", base+"/"+c.ID, `{"status":"launching"}`, 200, `"status":"launching"`)
	waitNode(t, dc, c.ID, "running", 20*time.Second, func(n *mediaNode) bool { return n != nil && n.Status == "running" })
	waitChanges(t, h, c.ID, "<nil>>launching", "launching>canceled", "canceled>launching", "launching>running")

	// PATCH errors.
	expect(t, dc, "PATCH", base+"/"+c.ID, `{}`, 204, "")
	expect(t, dc, "PATCH", base+"/"+c.ID, `{"status":"running"}`, 204, "")
	expect(t, dc, "PATCH", base+"/"+c.ID, `{"status":"bogus"}`, 400, `Invalid parameter "status"`)
	expect(t, dc, "PATCH", base+"/"+c.ID, `{"status":7}`, 400, `Invalid parameter "status"`)
	expect(t, dc, "PATCH", base+"/"+c.ID, `{"status":"failed"}`, 400, `Cannot be "failed"`)
	expect(t, dc, "PATCH", base+"/"+c.ID, `{"status":"canceled"}`, 400, `Cannot be "canceled"`)
	expect(t, dc, "PATCH", base+"/media_nope", `{"status":"running"}`, 404, "does not exist")

	// DELETE errors.
	expect(t, dc, "DELETE", base+"/media_nope", "", 404, `Media Node "media_nope" does not exist`)
	expect(t, dc, "DELETE", base+"/"+c.ID+"?deletion-strategy=bogus", "", 400, "deletion-strategy")
	expect(t, dc, "DELETE", base+"/"+c.ID+"?wait=perhaps", "", 400, "")

	// A node with a session: if-no-sessions refuses, when-no-sessions
	// quarantines it until the session ends.
	joinOn(t, ctx, dc, "ses_on_a", a.ID)
	withSession := decodeNode(t, expect(t, dc, "GET", base+"/"+a.ID+"?sessions=true", "", 200, ""))
	if len(withSession.Sessions) != 1 || withSession.Sessions[0].ID != "ses_on_a" {
		t.Errorf("node with a session: %+v", withSession.Sessions)
	}
	expect(t, dc, "DELETE", base+"/"+a.ID, "", 409, "has ongoing sessions")
	expect(t, dc, "DELETE", base+"/"+a.ID+"?deletion-strategy=if-no-sessions", "", 409, "has ongoing sessions")
	expect(t, dc, "DELETE", base+"/"+a.ID+"?deletion-strategy=when-no-sessions", "", 202, `"status":"waiting-idle-to-terminate"`)
	code, _, _ := api(t, dc, "POST", "/openvidu/api/sessions", fmt.Sprintf(`{"mediaNode":{"id":%q}}`, a.ID))
	if code != http.StatusBadRequest {
		t.Errorf("a session placed on a quarantined node: %d", code)
	}
	expect(t, dc, "PATCH", base+"/"+a.ID, `{"status":"running"}`, 200, `"status":"running"`)
	expect(t, dc, "PATCH", base+"/"+a.ID, `{"status":"waiting-idle-to-terminate"}`, 200, `"status":"waiting-idle-to-terminate"`)
	restCall(t, dc, "DELETE", "/openvidu/api/sessions/ses_on_a", "")
	waitNode(t, dc, a.ID, "gone", 20*time.Second, gone)
	waitChanges(t, h, a.ID, "<nil>>launching", "launching>running", "running>waiting-idle-to-terminate",
		"waiting-idle-to-terminate>running", "running>waiting-idle-to-terminate", "waiting-idle-to-terminate>terminating",
		"terminating>terminated")
	processGone(t, *a.EnvironmentID)

	// DELETE now closes the node's sessions (mediaServerDisconnect).
	p := joinOn(t, ctx, dc, "ses_on_c", c.ID)
	n := decodeNode(t, expect(t, dc, "DELETE", base+"/"+c.ID+"?deletion-strategy=now", "", 200, ""))
	if n.Status != "terminating" {
		t.Errorf("DELETE now: %+v", n)
	}
	waitNode(t, dc, c.ID, "gone", 20*time.Second, gone)
	expect(t, dc, "GET", "/openvidu/api/sessions/ses_on_c", "", 404, "")
	if err := p.WaitFor(ctx, func(p *participant.Participant) bool {
		for _, e := range p.Events() {
			if e.Method == protocol.NotifyParticipantEvicted && strings.Contains(string(e.Params), "mediaServerDisconnect") {
				return true
			}
		}
		return false
	}); err != nil {
		t.Errorf("participant of a node dropped now not evicted with mediaServerDisconnect: %v", p.Events())
	}
	waitChanges(t, h, c.ID, "<nil>>launching", "launching>canceled", "canceled>launching", "launching>running",
		"running>terminating", "terminating>terminated")

	// DELETE with wait answers once the node is terminated; PATCH
	// waiting-idle-to-terminate drops an idle node.
	d := decodeNode(t, expect(t, dc, "POST", base+"?wait=true", "", 200, ""))
	expect(t, dc, "DELETE", base+"/"+d.ID+"?wait=true&deletion-strategy=when-no-sessions", "", 204, "")
	expect(t, dc, "GET", base+"/"+d.ID, "", 404, "")
	waitChanges(t, h, d.ID, "<nil>>launching", "launching>running", "running>waiting-idle-to-terminate",
		"waiting-idle-to-terminate>terminating", "terminating>terminated")
	processGone(t, *d.EnvironmentID)
	e := decodeNode(t, expect(t, dc, "POST", base+"?wait=true", "", 200, ""))
	expect(t, dc, "PATCH", base+"/"+e.ID, `{"status":"waiting-idle-to-terminate"}`, 200, "")
	waitNode(t, dc, e.ID, "gone", 20*time.Second, gone)
	processGone(t, *e.EnvironmentID)

	// The cluster reports itself as OpenVidu Pro does.
	cfg := expect(t, dc, "GET", "/openvidu/api/config", "", 200, "")
	for _, want := range []string{`"OPENVIDU_PRO_CLUSTER_ID":"e2e"`, `"OPENVIDU_PRO_CLUSTER_ENVIRONMENT":"process"`,
		`"OPENVIDU_PRO_CLUSTER_AUTOSCALING":false`, `"OPENVIDU_PRO_CLUSTER_RECONNECTION_TIMEOUT":3`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %s: %s", want, cfg)
		}
	}
	expect(t, dc, "GET", "/openvidu/api/health", "", 200, `"status":"UP"`)
	assertNoSessionKeys(t, dc)
}

// TestMediaNodeRegistrationAndLaunchFailure: with adoption off, nodes that
// register themselves wait for POST {"uri"} or PUT (OpenVidu on premises); a
// launch that never reports ends in failed, not stuck in launching.
func TestMediaNodeRegistrationAndLaunchFailure(t *testing.T) {
	h := startHook(t)
	failing := filepath.Join(t.TempDir(), "failing-chorus")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dc := startDev(t, devOptions{Args: []string{"--masters", "1"}, Env: eventEnv(h,
		"CHORUS_MEDIA_NODES_AUTO_ADOPT=false", "CHORUS_MEDIA_NODES_PROCESS_BINARY="+failing, "CHORUS_MEDIA_NODES_LAUNCH_TIMEOUT=2s")})
	const base = "/openvidu/api/media-nodes"
	// Both nodes heartbeat (the cluster has seen them), and none is listed
	// before it is added.
	waitSeenNodes(t, dc, 2)
	expect(t, dc, "GET", base, "", 200, `{"numberOfElements":0,"content":[]}`)
	expect(t, dc, "GET", "/openvidu/api/health", "", 503, `"status":"DOWN"`)

	var first string
	for _, n := range dc.Nodes {
		if n.Role == "media" {
			first = n.Addr
			break
		}
	}
	reg := decodeNode(t, expect(t, dc, "POST", base, fmt.Sprintf(`{"uri":"http://%s","environmentId":"rack-7"}`, first), 200, ""))
	if reg.Status != "running" || reg.EnvironmentID == nil || *reg.EnvironmentID != "rack-7" || !reg.Connected {
		t.Errorf("registered node: %+v", reg)
	}
	expect(t, dc, "POST", base, fmt.Sprintf(`{"uri":"http://%s"}`, first), 409, "already registered")
	var found struct {
		NumberOfElements int         `json:"numberOfElements"`
		Content          []mediaNode `json:"content"`
	}
	_ = json.Unmarshal([]byte(expect(t, dc, "PUT", base, "", 200, "")), &found)
	if found.NumberOfElements != 1 || found.Content[0].Status != "running" || found.Content[0].ID == reg.ID {
		t.Errorf("autodiscovery: %+v", found)
	}
	expect(t, dc, "PUT", base, "", 200, `{"numberOfElements":0,"content":[]}`)

	start := time.Now()
	expect(t, dc, "POST", base+"?wait=true", "", 502, "Error launching new instance")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a failed launch took %s to answer", took)
	}
	h.waitFor(t, "launching>failed", 10*time.Second, func() bool {
		for _, e := range h.distinct("") {
			if e["event"] == "mediaNodeStatusChanged" && e["oldStatus"] == "launching" && e["newStatus"] == "failed" {
				return true
			}
		}
		return false
	})
	var after struct {
		NumberOfElements int `json:"numberOfElements"`
	}
	_ = json.Unmarshal([]byte(expect(t, dc, "GET", base, "", 200, "")), &after)
	if after.NumberOfElements != 2 {
		t.Errorf("a failed node stayed listed: %d nodes", after.NumberOfElements)
	}
}

// waitSeenNodes waits until n media nodes have heartbeated, adopted or not.
func waitSeenNodes(t *testing.T, dc *devCluster, n int) {
	t.Helper()
	st := store.New(store.Config{Redis: dc.redisClient(t), ClusterID: "e2e"})
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen, err := st.UnadoptedMediaNodes(context.Background(), 3*time.Second)
		if err == nil && len(seen) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d media nodes heartbeated, want %d (%v)", len(seen), n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
