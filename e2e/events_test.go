//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/redistest"
)

// hook is a webhook receiver: it records every accepted event, and can be
// told to fail, to be slow, or to refuse some sessions.
type hook struct {
	URL string

	mu        sync.Mutex
	events    []map[string]any
	raw       [][]byte
	calls     int
	failFirst int
	delay     time.Duration
	refuse    map[string]bool // session ids answered 500
	// holds: the first delivery of a session's event named here is held
	// until the test releases it, then answered 503 (see holdFirst).
	holds map[string]*heldDelivery // by "<sessionId> <event>"
}

// heldDelivery is a webhook request the receiver keeps waiting.
type heldDelivery struct {
	arrived chan string   // receives the event's eventId
	release chan struct{} // closed by the test
}

// holdFirst makes the hook hold the first delivery of a session's event.
func (h *hook) holdFirst(sid, event string) *heldDelivery {
	hd := &heldDelivery{arrived: make(chan string, 1), release: make(chan struct{})}
	h.mu.Lock()
	h.holds[sid+" "+event] = hd
	h.mu.Unlock()
	return hd
}

func startHook(t *testing.T) *hook {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveHook(t, ln)
}

func serveHook(t *testing.T, ln net.Listener) *hook {
	h := &hook{refuse: map[string]bool{}, holds: map[string]*heldDelivery{}}
	h.URL = "http://" + ln.Addr().String() + "/hook"
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return h
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var e map[string]any
	if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &e) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.calls++
	fail := h.calls <= h.failFirst || h.refuse[fmt.Sprint(e["sessionId"])]
	delay := h.delay
	held := h.holds[fmt.Sprint(e["sessionId"])+" "+fmt.Sprint(e["event"])]
	delete(h.holds, fmt.Sprint(e["sessionId"])+" "+fmt.Sprint(e["event"]))
	h.mu.Unlock()
	if held != nil {
		held.arrived <- fmt.Sprint(e["eventId"])
		<-held.release
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	time.Sleep(delay)
	if fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	h.mu.Lock()
	h.events = append(h.events, e)
	h.raw = append(h.raw, raw)
	h.mu.Unlock()
}

func (h *hook) snapshot() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.events...)
}

// distinct returns the events of a session, first delivery of each eventId
// only, in arrival order.
func (h *hook) distinct(sid string) []map[string]any {
	seen := map[string]bool{}
	var out []map[string]any
	for _, e := range h.snapshot() {
		id := fmt.Sprint(e["eventId"])
		if seen[id] || (sid != "" && e["sessionId"] != sid) {
			continue
		}
		seen[id] = true
		out = append(out, e)
	}
	return out
}

func (h *hook) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("webhook: timed out waiting for %s; got %d events", what, len(h.snapshot()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func hasEvent(events []map[string]any, name string) bool {
	for _, e := range events {
		if e["event"] == name {
			return true
		}
	}
	return false
}

func eventEnv(h *hook, extra ...string) []string {
	return append([]string{"OPENVIDU_WEBHOOK=true", "OPENVIDU_WEBHOOK_ENDPOINT=" + h.URL,
		`OPENVIDU_WEBHOOK_HEADERS=["X-Test: e2e"]`}, extra...)
}

// TestWebhookEventsOfABrowserSession: every event the core cluster produces,
// with OpenVidu's fields and order, during an openvidu-browser session (join,
// publish, subscribe, signal, leave, close); the CDR files hold the same.
func TestWebhookEventsOfABrowserSession(t *testing.T) {
	h := startHook(t)
	cdrDir := t.TempDir()
	dc := startDev(t, devOptions{Env: eventEnv(h, "OPENVIDU_CDR=true", "OPENVIDU_CDR_PATH="+cdrDir)})
	// An operator follows the events live.
	tail := exec.Command(chorusBin, "events", "tail", "--redis-addrs", dc.Redis, "--cluster-id", "e2e")
	var tailOut syncBuffer
	tail.Stdout = &tailOut
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tail.Process.Kill(); _ = tail.Wait() }()
	waitSubscribers(t, dc, "chorus:e2e:evtail", 1)
	var out struct {
		SessionID   string   `json:"sessionId"`
		Connections []string `json:"connections"`
	}
	if err := json.Unmarshal(dc.node(t, "events.cjs"), &out); err != nil || len(out.Connections) != 2 {
		t.Fatalf("events.cjs output: %v", err)
	}
	sid, p0, p1 := out.SessionID, out.Connections[0], out.Connections[1]
	h.waitFor(t, "sessionDestroyed", 30*time.Second, func() bool { return hasEvent(h.distinct(sid), "sessionDestroyed") })
	got := h.distinct(sid)

	type want struct {
		name, connection, direction, from, reason string
	}
	expected := []want{
		{name: "sessionCreated"},
		{name: "participantJoined", connection: p0},
		{name: "webrtcConnectionCreated", connection: p0, direction: "OUTBOUND"},
		{name: "participantJoined", connection: p1},
		{name: "webrtcConnectionCreated", connection: p1, direction: "OUTBOUND"},
		{name: "webrtcConnectionCreated", connection: p1, direction: "INBOUND", from: p0},
		{name: "webrtcConnectionCreated", connection: p0, direction: "INBOUND", from: p1},
		{name: "signalSent"},
		{name: "webrtcConnectionDestroyed", connection: p0, direction: "INBOUND", from: p1, reason: "disconnect"},
		{name: "webrtcConnectionDestroyed", connection: p1, direction: "INBOUND", from: p0, reason: "disconnect"},
		{name: "webrtcConnectionDestroyed", connection: p1, direction: "OUTBOUND", reason: "disconnect"},
		{name: "participantLeft", connection: p1, reason: "disconnect"},
		{name: "webrtcConnectionDestroyed", connection: p0, direction: "OUTBOUND", reason: "sessionClosedByServer"},
		{name: "participantLeft", connection: p0, reason: "sessionClosedByServer"},
		{name: "sessionDestroyed", reason: "sessionClosedByServer"},
	}
	// Subscriptions are created in whichever order the browsers answer:
	// compare the set of events, then the orders that OpenVidu guarantees.
	matches := func(e map[string]any, w want) bool {
		return e["event"] == w.name && (w.connection == "" || e["connectionId"] == w.connection) &&
			(w.direction == "" || e["connection"] == w.direction) && (w.from == "" || e["receivingFrom"] == w.from) &&
			(w.reason == "" || e["reason"] == w.reason)
	}
	position := map[int]int{}
	for i, w := range expected {
		found := -1
		for j, e := range got {
			if matches(e, w) {
				found = j
				break
			}
		}
		if found < 0 {
			t.Errorf("missing %+v", w)
		}
		position[i] = found
	}
	if len(got) != len(expected) {
		for _, e := range got {
			t.Logf("got %v %v %v %v", e["event"], e["connectionId"], e["connection"], e["reason"])
		}
		t.Errorf("%d events, want %d", len(got), len(expected))
	}
	before := func(a, b int) {
		if position[a] >= 0 && position[b] >= 0 && position[a] > position[b] {
			t.Errorf("%+v came after %+v", expected[a], expected[b])
		}
	}
	before(0, 1)   // sessionCreated first
	before(0, 3)   //
	before(1, 2)   // join before publish
	before(3, 4)   //
	before(2, 5)   // a stream's OUTBOUND before the INBOUND that receives it
	before(4, 6)   //
	before(5, 7)   // the page signals once it decodes the other's video,
	before(6, 7)   // and before anybody leaves
	before(7, 8)   //
	before(7, 9)   //
	before(8, 11)  // a participant's connections close before it leaves
	before(9, 11)  //
	before(10, 11) //
	before(11, 13) //
	before(12, 13) //
	before(13, 14) // sessionDestroyed last

	// Fields, as OpenVidu writes them.
	for _, e := range got {
		if e["uniqueSessionId"] == nil || !strings.HasPrefix(fmt.Sprint(e["uniqueSessionId"]), sid+"_") || e["timestamp"] == nil || e["eventId"] == nil {
			t.Errorf("base fields of %v", e)
		}
		switch e["event"] {
		case "participantJoined", "participantLeft":
			if e["participantId"] != e["connectionId"] || e["location"] != "unknown" || e["ip"] != "127.0.0.1" ||
				!strings.Contains(fmt.Sprint(e["platform"]), "Chrome") || !strings.Contains(fmt.Sprint(e["clientData"]), "page") ||
				!strings.HasPrefix(fmt.Sprint(e["serverData"]), "server-") {
				t.Errorf("participant fields %v", e)
			}
		case "webrtcConnectionCreated", "webrtcConnectionDestroyed":
			if !strings.HasPrefix(fmt.Sprint(e["streamId"]), "str_CAM_") || e["videoSource"] != "CAMERA" ||
				e["videoFramerate"] != float64(30) || !strings.Contains(fmt.Sprint(e["videoDimensions"]), `"width":640`) ||
				e["audioEnabled"] != true || e["videoEnabled"] != true {
				t.Errorf("webrtc fields %v", e)
			}
		case "signalSent":
			to, _ := e["to"].([]any)
			if e["from"] != p0 || e["type"] != "chat" || e["data"] != "hello" || len(to) != 2 {
				t.Errorf("signalSent %v", e)
			}
		}
		if strings.HasSuffix(fmt.Sprint(e["event"]), "Destroyed") || e["event"] == "participantLeft" {
			if e["startTime"] == nil || e["duration"] == nil || e["reason"] == nil {
				t.Errorf("end fields of %v", e)
			}
		}
	}

	// The tail saw them too.
	for _, e := range got {
		if !strings.Contains(tailOut.String(), fmt.Sprint(e["eventId"])) {
			t.Errorf("chorus events tail did not print %v %v", e["event"], e["eventId"])
		}
	}

	// The CDR files hold every delivered event, as the webhook body without "event".
	cdr := map[string]map[string]any{}
	files, _ := filepath.Glob(filepath.Join(cdrDir, "CDR.*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Errorf("CDR line %s: %v", sc.Text(), err)
			}
			for name, fields := range line {
				fields["event"] = name
				cdr[fmt.Sprint(fields["eventId"])] = fields
			}
		}
		fh.Close()
	}
	for _, e := range got {
		c, ok := cdr[fmt.Sprint(e["eventId"])]
		if !ok {
			t.Errorf("event %v is not in the CDR files", e["event"])
			continue
		}
		a, _ := json.Marshal(c)
		b, _ := json.Marshal(e)
		if !bytes.Equal(a, b) {
			t.Errorf("CDR %s\nwebhook %s", a, b)
		}
	}
}

// TestEventsAtLeastOnceAcrossMasterCrashes: the webhook fails its first
// deliveries and is slow afterwards while masters are SIGKILLed; each kill
// hits the master that is delivering a given event at that moment (the
// receiver holds that request), so a delivery is cut off by a crash for
// certain. Every event still arrives, the cut-off ones redelivered by another
// master with the same eventId; per-session order holds once duplicates are
// dropped; and the events of a session the receiver refuses go to the
// dead-letter stream, from where they are replayed.
func TestEventsAtLeastOnceAcrossMasterCrashes(t *testing.T) {
	h := startHook(t)
	h.failFirst, h.delay = 15, 250*time.Millisecond
	h.refuse["doomed"] = true
	// The kills: the masters delivering these two events when they arrive.
	targets := []struct {
		sid  string
		held *heldDelivery
	}{{sid: "crash1"}, {sid: "crash4"}}
	for i := range targets {
		targets[i].held = h.holdFirst(targets[i].sid, "participantJoined")
	}
	dc := startDev(t, devOptions{Env: eventEnv(h,
		"CHORUS_WEBHOOK_DEADLINE=4s", "CHORUS_WEBHOOK_RETRY_WAIT_MAX=500ms",
		"CHORUS_MASTER_RECONNECT_GRACE=2s", "CHORUS_EVENTS_LEASE_TTL=2s")})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pids := map[string]int{}
	for _, n := range dc.Nodes {
		pids[n.ID] = n.PID
	}
	rdb := dc.redisClient(t)

	// outcome is what the test knows of each session: its connections, and
	// whether each one's join and the signal were answered.
	type outcome struct {
		sid      string
		joined   map[string]bool // connection id -> joinRoom answered
		signaled bool
	}
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	work := func(sid string) {
		defer wg.Done()
		o := outcome{sid: sid, joined: map[string]bool{}}
		defer func() {
			mu.Lock()
			outcomes = append(outcomes, o)
			mu.Unlock()
		}()
		if _, err := retryREST(ctx, dc, "POST", "/openvidu/api/sessions", fmt.Sprintf(`{"customSessionId":%q}`, sid)); err != nil {
			t.Errorf("%s: create: %v", sid, err)
			return
		}
		var ps []*participant.Participant
		for i := 0; i < 2; i++ {
			raw, err := retryREST(ctx, dc, "POST", "/openvidu/api/sessions/"+sid+"/connection", `{}`)
			if err != nil {
				t.Errorf("%s: connection: %v", sid, err)
				continue
			}
			var c protocol.Connection
			_ = json.Unmarshal(raw, &c)
			p, err := participant.Join(ctx, participant.Config{Token: c.Token, LoopbackOnly: true})
			o.joined[c.ID] = err == nil // if its master died during the join, the token may or may not be used
			if err == nil {
				ps = append(ps, p)
			}
		}
		if _, err := restOnce(ctx, dc, "POST", "/openvidu/api/signal", fmt.Sprintf(`{"session":%q,"data":"x"}`, sid)); err == nil {
			o.signaled = true
		}
		time.Sleep(500 * time.Millisecond)
		for _, p := range ps {
			if err := p.Leave(ctx); err != nil {
				p.Close() // its master died: it is evicted after the grace period
			}
		}
	}
	killed := make(chan string, len(targets))
	go func() {
		defer close(killed)
		for _, tg := range targets {
			var eventID string
			select {
			case eventID = <-tg.held.arrived:
			case <-ctx.Done():
				return
			}
			// The master holding the session's delivery lease is the one
			// whose request the receiver now holds.
			holder, err := rdb.Get(ctx, "chorus:e2e:{"+tg.sid+"}:evlease").Result()
			id, _, _ := strings.Cut(holder, ".")
			if pid := pids[id]; err != nil || pid == 0 || syscall.Kill(pid, syscall.SIGKILL) != nil {
				killed <- fmt.Sprintf("could not kill the holder %q of %s's lease (%v)", holder, tg.sid, err)
			} else {
				killed <- eventID + " " + holder
			}
			close(tg.held.release)
		}
	}()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go work(fmt.Sprintf("crash%d", i))
		time.Sleep(700 * time.Millisecond)
	}
	// The refused session: its two events must end in the dead-letter stream.
	if _, err := retryREST(ctx, dc, "POST", "/openvidu/api/sessions", `{"customSessionId":"doomed"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := retryREST(ctx, dc, "DELETE", "/openvidu/api/sessions/doomed", ``); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	// Two deliveries were cut off by the death of the master making them.
	var cutOff []string
	for k := range killed {
		eventID, holder, ok := strings.Cut(k, " ")
		if !ok || !strings.HasPrefix(holder, "master_") {
			t.Fatal(k)
		}
		t.Logf("killed %s while it delivered %s", holder, eventID)
		cutOff = append(cutOff, eventID)
	}
	if len(cutOff) != len(targets) {
		t.Fatalf("%d deliveries cut off by a kill, want %d", len(cutOff), len(targets))
	}

	// Every session's events arrive, each at least once, in order.
	for _, o := range outcomes {
		h.waitFor(t, o.sid+"'s sessionDestroyed", 90*time.Second, func() bool { return hasEvent(h.distinct(o.sid), "sessionDestroyed") })
		got := h.distinct(o.sid)
		count := map[string]int{}
		perConn := map[string]map[string]int{}
		joined := map[string]bool{}
		for i, e := range got {
			name, cid := fmt.Sprint(e["event"]), fmt.Sprint(e["connectionId"])
			count[name]++
			if perConn[cid] == nil {
				perConn[cid] = map[string]int{}
			}
			perConn[cid][name]++
			switch {
			case i == 0 && name != "sessionCreated":
				t.Errorf("%s: first event %s", o.sid, name)
			case name == "sessionDestroyed" && i != len(got)-1:
				t.Errorf("%s: sessionDestroyed is not last", o.sid)
			case name == "participantJoined":
				joined[cid] = true
			case name == "participantLeft" && !joined[cid]:
				t.Errorf("%s: participantLeft before participantJoined for %v", o.sid, cid)
			}
		}
		if count["sessionCreated"] != 1 || count["sessionDestroyed"] != 1 {
			t.Errorf("%s: %v", o.sid, count)
		}
		// Each answered join joined once and left once; an unanswered one
		// (its master died) joined at most once, and then left.
		for cid, answered := range o.joined {
			j, l := perConn[cid]["participantJoined"], perConn[cid]["participantLeft"]
			if (answered && (j != 1 || l != 1)) || (!answered && (j > 1 || l != j)) {
				t.Errorf("%s: connection %s (join answered: %v) joined %d and left %d times", o.sid, cid, answered, j, l)
			}
		}
		if n := count["signalSent"]; (o.signaled && n != 1) || n > 1 {
			t.Errorf("%s: %d signalSent (the signal call succeeded: %v)", o.sid, n, o.signaled)
		}
	}
	// The cut-off deliveries came again, from another master.
	for _, id := range cutOff {
		n := 0
		for _, e := range h.snapshot() {
			if e["eventId"] == id {
				n++
			}
		}
		if n == 0 {
			t.Errorf("event %s, cut off by a crash, was never delivered", id)
		}
	}
	total := len(h.snapshot())
	t.Logf("%d deliveries of %d distinct events", total, len(h.distinct("")))

	// The dead-letter path, through the operator's command.
	var letters []map[string]any
	h.waitFor(t, "the refused session's dead letters", 60*time.Second, func() bool {
		letters = deadLetters(t, dc)
		return len(letters) >= 2
	})
	for _, l := range letters {
		if l["session"] != "doomed" || l["error"] == "" {
			t.Errorf("dead letter %v", l)
		}
	}
	h.mu.Lock()
	delete(h.refuse, "doomed")
	h.mu.Unlock()
	if out := chorusTool(t, dc, "events", "dead-letter", "replay", "--all"); !strings.Contains(out, "replayed 2 event(s)") {
		t.Errorf("replay: %s", out)
	}
	h.waitFor(t, "the replayed events", 30*time.Second, func() bool {
		d := h.distinct("doomed")
		return hasEvent(d, "sessionCreated") && hasEvent(d, "sessionDestroyed")
	})
	if left := deadLetters(t, dc); len(left) != 0 {
		t.Errorf("%d dead letters left", len(left))
	}
}

func deadLetters(t *testing.T, dc *devCluster) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(chorusTool(t, dc, "events", "dead-letter", "list")), "\n") {
		if line == "" {
			continue
		}
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("dead-letter list line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// chorusTool runs an operator subcommand against the cluster's Redis.
func chorusTool(t *testing.T, dc *devCluster, args ...string) string {
	t.Helper()
	args = append(args, "--redis-addrs", dc.Redis, "--cluster-id", "e2e")
	out, err := exec.Command(chorusBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("chorus %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// restOnce makes one REST call; a 2xx is success.
func restOnce(ctx context.Context, dc *devCluster, method, path, body string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, method, dc.URL+path, strings.NewReader(body))
	req.SetBasicAuth("OPENVIDUAPP", dc.Secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return raw, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return raw, nil
}

// retryREST retries a REST call on 502/503/504 and connection errors, as
// OpenVidu's HA documentation tells applications to; a 409 on creating a
// custom session means an earlier attempt succeeded.
func retryREST(ctx context.Context, dc *devCluster, method, path, body string) ([]byte, error) {
	for {
		raw, err := restOnce(ctx, dc, method, path, body)
		if err == nil || (method == "POST" && path == "/openvidu/api/sessions" && strings.Contains(fmt.Sprint(err), ": 409")) {
			return raw, nil
		}
		retryable := strings.Contains(err.Error(), ": 50") || !strings.Contains(err.Error(), ": ")
		if !retryable || ctx.Err() != nil {
			return raw, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBadEventConfiguration: bad webhook or CDR settings stop a master at
// start-up with a clear message; an unreachable endpoint is retried and
// dead-lettered without harming the master.
func TestBadEventConfiguration(t *testing.T) {
	redis := redistest.Start(t)
	run := func(env ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, chorusBin, "master", "--secret", "S", "--cluster-secret", "C", "--redis-addrs", redis.Addr,
			"--master-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"enabled without endpoint", []string{"OPENVIDU_WEBHOOK=true"}, "With OPENVIDU_WEBHOOK=true, this property cannot be empty"},
		{"endpoint without scheme", []string{"OPENVIDU_WEBHOOK_ENDPOINT=localhost/hook"}, "Missing URL scheme"},
		{"malformed header", []string{`OPENVIDU_WEBHOOK_HEADERS=["Authorization:Basic x"]`}, "syntax is not correct"},
		{"headers not a JSON array", []string{`OPENVIDU_WEBHOOK_HEADERS=["unterminated`}, "Is not a valid strings array in JSON format"},
		{"unknown event", []string{`OPENVIDU_WEBHOOK_EVENTS=["sessionCreated","sessionExploded"]`}, "Event 'sessionExploded' does not exist"},
		{"CDR path not writable", []string{"OPENVIDU_CDR=true", "OPENVIDU_CDR_PATH=/proc/chorus-cdr"}, "Is not a valid writable file system path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.env...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("exit %v, output:\n%s\nwant a start-up error mentioning %q", err, out, tc.want)
			}
		})
	}

	t.Run("unreachable endpoint", func(t *testing.T) {
		port := freePort(t)
		cmd := exec.Command(chorusBin, "master", "--secret", "S", "--cluster-secret", "C", "--redis-addrs", redis.Addr, "--cluster-id", "bad",
			"--master-listen", fmt.Sprintf("127.0.0.1:%d", port))
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		cmd.Env = append(os.Environ(), "OPENVIDU_WEBHOOK=true", "OPENVIDU_WEBHOOK_ENDPOINT=http://127.0.0.1:1/hook",
			"CHORUS_WEBHOOK_DEADLINE=1s")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() { _ = cmd.Process.Kill(); <-exited }()
		url := fmt.Sprintf("http://127.0.0.1:%d/openvidu/api/sessions", port)
		deadline := time.Now().Add(10 * time.Second)
		for {
			req, _ := http.NewRequest("POST", url, strings.NewReader(`{}`))
			req.SetBasicAuth("OPENVIDUAPP", "S")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("master not serving: %v\n%s", err, logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		deadline = time.Now().Add(15 * time.Second)
		for !strings.Contains(logs.String(), "moved to the dead-letter stream") {
			select {
			case err := <-exited:
				t.Fatalf("the master exited: %v\n%s", err, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no dead-letter after the deadline:\n%s", logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// waitSubscribers waits until n clients subscribe to a Redis pub/sub channel.
func waitSubscribers(t *testing.T, dc *devCluster, channel string, n int64) {
	t.Helper()
	rdb := dc.redisClient(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := pubSubNumSub(context.Background(), rdb, channel)
		if err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers on %s, want %d (%v)", got, channel, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pubSubNumSub counts the clients subscribed to a pub/sub channel; on a
// Redis Cluster, a subscriber is counted by the node it subscribed on, so
// every node is asked.
func pubSubNumSub(ctx context.Context, rdb redis.UniversalClient, channel string) (int64, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		counts, err := rdb.PubSubNumSub(ctx, channel).Result()
		return counts[channel], err
	}
	var total atomic.Int64
	err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		counts, err := c.PubSubNumSub(ctx, channel).Result()
		total.Add(counts[channel])
		return err
	})
	return total.Load(), err
}
