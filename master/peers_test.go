package master

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/redistest"
	"github.com/chorus-rtc/chorus/shared/store"
)

// peerLog is a peerObserver that counts crash declarations.
type peerLog struct {
	mu      sync.Mutex
	crashed int
}

func (l *peerLog) PeerChecked(string, bool) {}
func (l *peerLog) PeerGone(string)          {}
func (l *peerLog) PeerCrashed()             { l.mu.Lock(); l.crashed++; l.mu.Unlock() }

// TestPeerDeclaredOnlyOnceReached: a peer master that answered its health
// checks and then stops is declared crashed after the window; one that is
// registered but never answered (its address not reachable yet, as a Swarm
// task's name for a moment after it starts) is not, however long it fails:
// its registration's expiry decides. Once it answers it is judged as any.
func TestPeerDeclaredOnlyOnceReached(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	st := store.New(store.Config{Redis: rdb, ClusterID: "test"})
	self := session.NewIncarnation("master_self.1")
	sessions := session.New(session.Config{Store: st, ClusterID: "test", ReconnectGrace: time.Second, Incarnation: self})

	var healthy sync.Map // peer id -> bool: answers 200
	peerServer := func(id protocol.MasterID) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ok, _ := healthy.Load(id); ok == true && r.URL.Path == "/internal/v1/health" {
				return
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		t.Cleanup(s.Close)
		return s
	}
	reached, late := protocol.MasterID("master_reached.1"), protocol.MasterID("master_late.1")
	healthy.Store(reached, true)
	for _, m := range []store.MasterInfo{
		{ID: reached, InternalURL: peerServer(reached).URL},
		{ID: late, InternalURL: peerServer(late).URL},
	} {
		if err := st.RegisterMaster(ctx, m, time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	var logs bytes.Buffer
	var logsMu sync.Mutex
	observer := &peerLog{}
	const interval, window = 50 * time.Millisecond, 300 * time.Millisecond
	pc := newPeerChecker(st, sessions, self, "secret", interval, window, observer,
		slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logsMu}, nil)))
	done := make(chan error, 1)
	go func() { done <- pc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	crashed := func(id protocol.MasterID) bool {
		c, err := st.MasterCrashed(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s", what)
			}
		}
	}

	// Both registered; one answers, the other never has. Well past the
	// window, neither is declared: the first is fine, the second unproven.
	time.Sleep(4 * window)
	if crashed(reached) || crashed(late) {
		t.Fatalf("declared crashed: reached %v, never reached %v", crashed(reached), crashed(late))
	}
	logsMu.Lock()
	warned := strings.Count(logs.String(), "never reachable")
	logsMu.Unlock()
	if warned != 1 {
		t.Errorf("%d warnings about the unreachable peer, want one:\n%s", warned, logs.String())
	}

	// The reached peer stops answering: declared after the window.
	stopped := time.Now()
	healthy.Store(reached, false)
	waitUntil("the reached peer declared crashed", func() bool { return crashed(reached) })
	if took := time.Since(stopped); took < window {
		t.Errorf("declared %v after it stopped answering, before the %v window", took, window)
	}

	// The late peer answers at last, then stops: now it is declared too.
	healthy.Store(late, true)
	time.Sleep(3 * interval)
	if crashed(late) {
		t.Fatal("the late peer declared while answering")
	}
	healthy.Store(late, false)
	waitUntil("the late peer declared crashed once it had answered", func() bool { return crashed(late) })
	observer.mu.Lock()
	defer observer.mu.Unlock()
	if observer.crashed != 2 {
		t.Errorf("%d crash declarations, want 2", observer.crashed)
	}
}

// lockedWriter serializes writes to a buffer read by the test.
type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
