package eventdelivery

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/redistest"
	"github.com/chorus-rtc/chorus/shared/store"
)

// receiver is a webhook endpoint that records what it accepts.
type receiver struct {
	mu       sync.Mutex
	accepted []map[string]any
	calls    int
	headers  http.Header
	// reject, if set, decides whether to answer 503.
	reject func(call int, body map[string]any) bool
	delay  time.Duration
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	raw, _ := io.ReadAll(req.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	r.mu.Lock()
	r.calls++
	call := r.calls
	r.headers = req.Header.Clone()
	reject := r.reject != nil && r.reject(call, body)
	r.mu.Unlock()
	time.Sleep(r.delay)
	if reject {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.mu.Lock()
	r.accepted = append(r.accepted, body)
	r.mu.Unlock()
}

func (r *receiver) snapshot() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.accepted...)
}

func webhookConfig(url string) config.Webhook {
	return config.Webhook{
		Enabled: true, Endpoint: url, Headers: []string{"Authorization: Bearer hook"},
		Events: events.DefaultWebhookEvents(), AttemptTimeout: 2 * time.Second, Deadline: 20 * time.Second,
		RetryWaitMin: 20 * time.Millisecond, RetryWaitMax: 200 * time.Millisecond,
	}
}

func newStore(t *testing.T, rdb redis.UniversalClient) *store.Store {
	return store.New(store.Config{Redis: rdb, ClusterID: "ev"})
}

// startDispatcher runs a dispatcher until the returned stop is called.
func startDispatcher(t *testing.T, st *store.Store, holder protocol.MasterID, wh *Webhook, cdr *CDRFile) (stop func()) {
	t.Helper()
	d := New(Config{Store: st.EventBus, Holder: holder, Webhook: wh, CDR: cdr, LeaseTTL: time.Second, Poll: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// emitSignals creates a session and emits n signalSent events carrying their
// sequence number as data.
func emitSignals(t *testing.T, st *store.Store, sid protocol.SessionID, n int) {
	t.Helper()
	ctx := context.Background()
	sess := &store.Session{ID: sid, CreatedAt: store.NowMillis(), Life: 1}
	if err := st.CreateSession(ctx, sess, events.NewSessionCreated(sess).Stored()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		data := fmt.Sprint(i)
		err := st.Update(ctx, sid, func(tx *store.Tx) error {
			tx.Emit(events.NewSignalSent(tx.Session, store.NowMillis(), "", []protocol.ConnectionID{}, nil, &data).Stored())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOrder verifies that, after dropping duplicate eventIds, each session's
// signals arrived in emission order after its sessionCreated, and returns the
// distinct events per session.
func checkOrder(t *testing.T, got []map[string]any) map[string]int {
	t.Helper()
	seen := map[string]bool{}
	next := map[string]int{}
	created := map[string]bool{}
	for _, e := range got {
		id, _ := e["eventId"].(string)
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		sid, _ := e["sessionId"].(string)
		switch e["event"] {
		case events.SessionCreated:
			created[sid] = true
			next[sid] += 0
		case events.SignalSent:
			if !created[sid] {
				t.Errorf("%s: signal before sessionCreated", sid)
			}
			if data := e["data"].(string); data != fmt.Sprint(next[sid]) {
				t.Errorf("%s: got signal %s, want %d", sid, data, next[sid])
			}
			next[sid]++
		}
	}
	return next
}

func TestDeliversEverySessionInOrderDespiteFailures(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	st := newStore(t, rdb)
	rcv := &receiver{reject: func(call int, _ map[string]any) bool { return call <= 5 || call%7 == 0 }}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	cdrDir := t.TempDir()
	for _, holder := range []protocol.MasterID{"m1", "m2"} {
		cdr, err := OpenCDR(cdrDir, string(holder))
		if err != nil {
			t.Fatal(err)
		}
		defer cdr.Close()
		startDispatcher(t, st, holder, NewWebhook(webhookConfig(srv.URL), nil), cdr)
	}

	const sessions, perSession = 4, 15
	for s := 0; s < sessions; s++ {
		emitSignals(t, st, protocol.SessionID(fmt.Sprintf("s%d", s)), perSession)
	}
	waitFor(t, "every signal", func() bool {
		counts := map[string]bool{}
		for _, e := range rcv.snapshot() {
			counts[e["eventId"].(string)] = true
		}
		return len(counts) == sessions*(perSession+1)
	})
	for sid, n := range checkOrder(t, rcv.snapshot()) {
		if n != perSession {
			t.Errorf("%s: %d signals", sid, n)
		}
	}
	if h := rcv.headers; h.Get("Authorization") != "Bearer hook" || h.Get("Content-Type") != "application/json" || h.Get("X-Chorus-Event-Id") == "" {
		t.Errorf("headers %v", h)
	}

	// Every event is in the CDR file of the master that delivered it, as the
	// webhook body without "event".
	files, _ := filepath.Glob(filepath.Join(cdrDir, "CDR.*.log"))
	if len(files) == 0 || len(files) > 2 {
		t.Fatalf("CDR files %v", files)
	}
	inCDR := map[string]bool{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var line map[string]map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil || len(line) != 1 {
				t.Fatalf("CDR line %q: %v", sc.Text(), err)
			}
			for name, fields := range line {
				if !events.Known(name) || fields["event"] != nil || fields["timestamp"] == nil {
					t.Errorf("CDR line %s", sc.Text())
				}
				id, _ := fields["eventId"].(string)
				inCDR[id] = true
			}
		}
		f.Close()
	}
	for _, e := range rcv.snapshot() {
		if !inCDR[e["eventId"].(string)] {
			t.Errorf("event %v missing from the CDR files", e)
		}
	}
	// Once drained, nothing is left but the registry of nothing.
	waitFor(t, "drained streams", func() bool {
		n, _ := rdb.Exists(context.Background(), "chorus:ev:{s0}:ev").Result()
		return n == 1 // the sessions still exist: their (empty) streams stay
	})
}

func TestDeadLetterAndReplay(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	st := newStore(t, rdb)
	var accept sync.Mutex
	doomed := true
	rcv := &receiver{reject: func(_ int, body map[string]any) bool {
		accept.Lock()
		defer accept.Unlock()
		return doomed && body["sessionId"] == "doomed"
	}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	cfg := webhookConfig(srv.URL)
	cfg.Deadline = 300 * time.Millisecond
	startDispatcher(t, st, "m1", NewWebhook(cfg, nil), nil)

	emitSignals(t, st, "doomed", 2)
	emitSignals(t, st, "fine", 2)
	ctx := context.Background()
	var dead []store.DeadLetter
	waitFor(t, "three dead letters", func() bool {
		dead, _ = st.DeadLetters(ctx, 100)
		return len(dead) == 3
	})
	waitFor(t, "the fine session", func() bool { return len(rcv.snapshot()) == 3 })
	for _, d := range dead {
		if d.Session != "doomed" || d.Error == "" || d.FailedAt == 0 {
			t.Errorf("dead letter %+v", d)
		}
	}
	accept.Lock()
	doomed = false
	accept.Unlock()
	for _, d := range dead {
		if err := st.ReplayDeadLetter(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the replayed events", func() bool { return len(rcv.snapshot()) == 6 })
	replayed := map[string]bool{}
	for _, e := range rcv.snapshot()[3:] {
		replayed[e["eventId"].(string)] = true
	}
	for _, d := range dead {
		if !replayed[d.ID] {
			t.Errorf("dead letter %s not replayed with its eventId", d.ID)
		}
	}
	if left, _ := st.DeadLetters(ctx, 100); len(left) != 0 {
		t.Errorf("%d dead letters left after replay", len(left))
	}
}

// TestTakeoverAfterAHolderDies: a master that dies holding a session's lease
// (it cannot release it) delays that session's events by at most the lease's
// lifetime; the next master re-delivers what the dead one had read.
func TestTakeoverAfterAHolderDies(t *testing.T) {
	redisServer := redistest.Start(t)
	st := newStore(t, redisServer.Client(t))
	block := make(chan struct{})
	rcv := &receiver{}
	var first sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held := false
		first.Do(func() { held = true })
		if held {
			<-block // the first delivery hangs: its master dies while posting
		}
		rcv.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(block)

	// m1 has its own Redis connection, which "dies" with it.
	dyingClient := redis.NewClient(&redis.Options{Addr: redisServer.Addr})
	dying := newStore(t, dyingClient)
	stopDying := startDispatcher(t, dying, "m1", NewWebhook(webhookConfig(srv.URL), nil), nil)
	emitSignals(t, st, "s", 5)
	waitFor(t, "m1 to hold the lease", func() bool {
		v, _ := redisServer.Client(t).Get(context.Background(), "chorus:ev:{s}:evlease").Result()
		return v == "m1"
	})
	_ = dyingClient.Close() // the master dies: no renewal, no release
	go stopDying()
	startDispatcher(t, st, "m2", NewWebhook(webhookConfig(srv.URL), nil), nil)
	waitFor(t, "m2 to deliver everything", func() bool { return len(rcv.snapshot()) >= 6 })
	if n := checkOrder(t, rcv.snapshot())["s"]; n != 5 {
		t.Errorf("%d signals delivered in order, want 5", n)
	}
}

func TestCDRLine(t *testing.T) {
	sess := &store.Session{ID: "ses_A", CreatedAt: 1700000000000}
	e := events.NewSessionDestroyed(sess, 1700000065000, "lastParticipantLeft").Stored()
	line, err := events.CDRLine(e.Name, e.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"sessionDestroyed":{"sessionId":"ses_A","uniqueSessionId":"ses_A_1700000000000","timestamp":1700000065000,"startTime":1700000000000,"duration":65,"reason":"lastParticipantLeft","eventId":"` + e.ID + `"}}`
	if string(line) != want {
		t.Errorf("CDR line\n%s\nwant\n%s", line, want)
	}
	if !strings.HasSuffix(string(e.Body), `,"event":"sessionDestroyed"}`) {
		t.Errorf("webhook body %s", e.Body)
	}
}

// TestWebhookEventsFilter: OPENVIDU_WEBHOOK_EVENTS selects what the webhook
// gets; the CDR gets everything.
func TestWebhookEventsFilter(t *testing.T) {
	st := newStore(t, redistest.Start(t).Client(t))
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	cfg := webhookConfig(srv.URL)
	cfg.Events = []string{events.SessionCreated}
	dir := t.TempDir()
	cdr, err := OpenCDR(dir, "m1")
	if err != nil {
		t.Fatal(err)
	}
	defer cdr.Close()
	startDispatcher(t, st, "m1", NewWebhook(cfg, nil), cdr)
	emitSignals(t, st, "f", 3)
	files, _ := filepath.Glob(filepath.Join(dir, "CDR.*.log"))
	waitFor(t, "four CDR lines", func() bool {
		raw, _ := os.ReadFile(files[0])
		return strings.Count(string(raw), "\n") == 4
	})
	got := rcv.snapshot()
	if len(got) != 1 || got[0]["event"] != events.SessionCreated {
		t.Errorf("the webhook got %v, want only sessionCreated", got)
	}
}
