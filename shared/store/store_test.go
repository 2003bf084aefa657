package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/redistest"
)

// testCluster, with CHORUS_TEST_REDIS=cluster (redistest.BackendEnv), is the
// Redis Cluster every test of the package runs on, each in its own key
// prefix; otherwise each test has its own redis-server.
var testCluster *redistest.Cluster

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if os.Getenv(redistest.BackendEnv) == "cluster" {
		dir, err := os.MkdirTemp("", "chorus-store-cluster-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		c, err := redistest.StartClusterProcesses(dir, redistest.ClusterOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.Stop()
		testCluster = c
	}
	return m.Run()
}

func newStore(t *testing.T) *Store {
	t.Helper()
	if testCluster != nil {
		return New(Config{Redis: testCluster.Client(t), ClusterID: strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())})
	}
	return New(Config{Redis: redistest.Start(t).Client(t), ClusterID: "t"})
}

func addConn(t *testing.T, s *Store, sid protocol.SessionID, cid protocol.ConnectionID, active bool) {
	t.Helper()
	err := s.Update(context.Background(), sid, func(tx *Tx) error {
		c := &Connection{ID: cid, SessionID: sid, CreatedAt: NowMillis(), Status: StatusPending}
		if active {
			c.Status = StatusActive
		}
		tx.Conns[cid] = c
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSessionLifecycleAndOutbox(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.CreateSession(ctx, &Session{ID: "s1", CreatedAt: NowMillis(), Life: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, &Session{ID: "s1"}); !errors.Is(err, ErrSessionExists) {
		t.Fatalf("second create: %v", err)
	}
	addConn(t, s, "s1", "a", true)
	addConn(t, s, "s1", "b", true)
	addConn(t, s, "s1", "p", false)
	for i := 0; i < 3; i++ {
		err := s.Update(ctx, "s1", func(tx *Tx) error {
			return tx.NotifyParticipants("a", "n", map[string]int{"i": i})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Only active participants other than a got them, in order.
	for cid, want := range map[protocol.ConnectionID]int{"a": 0, "b": 3, "p": 0} {
		got, err := s.ReadOutbox(ctx, "s1", cid, 10)
		if err != nil || len(got) != want {
			t.Fatalf("outbox of %s: %d entries (%v), want %d", cid, len(got), err, want)
		}
	}
	got, _ := s.ReadOutbox(ctx, "s1", "b", 10)
	for i, e := range got {
		if string(e.Params) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Errorf("entry %d = %s", i, e.Params)
		}
	}
	// The outbox's bytes count every queued entry; acknowledging drops what
	// was delivered, and only that, and its bytes.
	queued := func() int64 { n, _ := s.Redis().Get(ctx, s.Sessions.outboxBytesKey("s1", "b")).Int64(); return n }
	if want := got[0].Size() + got[1].Size() + got[2].Size(); queued() != want || want == 0 {
		t.Errorf("outbox bytes %d, want %d", queued(), want)
	}
	if err := s.AckOutbox(ctx, "s1", "b", got[:2]); err != nil {
		t.Fatal(err)
	}
	rest, _ := s.ReadOutbox(ctx, "s1", "b", 10)
	if len(rest) != 1 || rest[0].ID != got[2].ID {
		t.Fatalf("after ack: %+v", rest)
	}
	if queued() != got[2].Size() {
		t.Errorf("outbox bytes after ack %d, want %d", queued(), got[2].Size())
	}
	if err := s.AckOutbox(ctx, "s1", "b", rest); err != nil {
		t.Fatal(err)
	}
	if n := s.Redis().Exists(ctx, s.Sessions.outboxBytesKey("s1", "b")).Val(); n != 0 {
		t.Error("an emptied outbox still counts bytes")
	}
	// Deleting a notified connection keeps its outbox for a while; deleting an
	// unnotified one removes it with the connection.
	err := s.Update(ctx, "s1", func(tx *Tx) error {
		delete(tx.Conns, "a")
		delete(tx.Conns, "b")
		return tx.Notify("a", "bye", map[string]string{})
	})
	if err != nil {
		t.Fatal(err)
	}
	rdb := s.Redis()
	if ttl := rdb.PTTL(ctx, s.Sessions.outboxKey("s1", "a")).Val(); ttl <= 0 || ttl > removedOutboxTTL {
		t.Errorf("notified removed outbox TTL %s", ttl)
	}
	if n := rdb.Exists(ctx, s.Sessions.outboxKey("s1", "b")).Val(); n != 0 {
		t.Error("the outbox of a silently removed connection survived")
	}
	// Closing leaves only a tombstone with the session's life.
	err = s.Update(ctx, "s1", func(tx *Tx) error { tx.DeleteSession(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after delete: %v", err)
	}
	if life, found, err := s.SessionLife(ctx, "s1"); err != nil || !found || life != 1 {
		t.Errorf("tombstone life %d found %v err %v", life, found, err)
	}
	if _, found, err := s.SessionLife(ctx, "never"); err != nil || found {
		t.Errorf("a session that never existed has a life (%v)", err)
	}
}

func TestUpdateIsAtomicUnderContention(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.CreateSession(ctx, &Session{ID: "c", CreatedAt: NowMillis()}); err != nil {
		t.Fatal(err)
	}
	addConn(t, s, "c", "watcher", true)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := s.Update(ctx, "c", func(tx *Tx) error {
					tx.Session.Life++ // a counter only correct if updates serialize
					return tx.Notify("watcher", "inc", tx.Session.Life)
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	snap, err := s.Load(ctx, "c")
	if err != nil || snap.Session.Life != writers*each {
		t.Fatalf("counter = %d (%v), want %d", snap.Session.Life, err, writers*each)
	}
	got, _ := s.ReadOutbox(ctx, "c", "watcher", 1000)
	if len(got) != writers*each {
		t.Fatalf("%d notifications, want %d", len(got), writers*each)
	}
	for i, e := range got { // the outbox order is the commit order
		var v int
		_ = json.Unmarshal(e.Params, &v)
		if v != i+1 {
			t.Fatalf("notification %d carries %d", i, v)
		}
	}
}

func TestRegistryAndEvictions(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.RegisterMaster(ctx, MasterInfo{ID: "m1", InternalURL: "http://a"}, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	must(t, s.AddMasterConnection(ctx, "m1", "s", "c1"))
	alive, dead, err := s.Masters(ctx)
	if err != nil || len(alive) != 1 || len(dead) != 0 {
		t.Fatalf("alive %v dead %v err %v", alive, dead, err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, dead, err = s.Masters(ctx); err != nil || len(dead) != 1 || dead[0] != "m1" {
		t.Fatalf("expired master not dead: %v (%v)", dead, err)
	}
	conns, err := s.TakeMasterConnections(ctx, "m1")
	if err != nil || len(conns) != 1 || conns[0] != (Wake{"s", "c1"}) {
		t.Fatalf("took %v (%v)", conns, err)
	}
	if again, err := s.TakeMasterConnections(ctx, "m1"); err != nil || len(again) != 0 {
		t.Errorf("a dead master's connections were handed out twice: %v (%v)", again, err)
	}

	now := time.Now()
	must(t, s.ScheduleEviction(ctx, "s", "late", now.Add(time.Hour)))
	must(t, s.ScheduleEviction(ctx, "s", "due", now.Add(-time.Second)))
	due, err := s.DueEvictions(ctx, now, 10)
	if err != nil || len(due) != 1 || due[0].ConnectionID != "due" {
		t.Fatalf("due %v (%v)", due, err)
	}

}

func TestIsUnavailable(t *testing.T) {
	s := New(Config{Redis: NewClientForTest("127.0.0.1:1"), ClusterID: "t"})
	_, err := s.Load(context.Background(), "x")
	if !IsUnavailable(err) {
		t.Errorf("%v is not reported as Redis being unavailable", err)
	}
	if IsUnavailable(ErrNotFound) || IsUnavailable(nil) {
		t.Error("logical errors reported as unavailability")
	}
}

// TestEventBacklog: the backlog counts every stream's undelivered events
// and dates the oldest by its entry id; acknowledged events leave it; dead
// letters are counted apart.
func TestEventBacklog(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	n, oldest, err := s.Backlog(ctx)
	if err != nil || n != 0 || !oldest.IsZero() {
		t.Fatalf("empty bus: %d events, oldest %v, %v", n, oldest, err)
	}
	before := time.Now().Add(-time.Millisecond)
	if err := s.EmitCluster(ctx, StoredEvent{ID: "e1", Name: "nodeCrashed", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterEventStream(ctx, "ses_a"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.EventBus.rdb.XAdd(ctx, s.eventArgs("ses_a", StoredEvent{ID: "e2", Name: "sessionCreated", Body: []byte(`{}`)})).Err(); err != nil {
		t.Fatal(err)
	}
	n, oldest, err = s.Backlog(ctx)
	if err != nil || n != 2 || oldest.Before(before.Truncate(time.Millisecond)) || oldest.After(time.Now()) {
		t.Fatalf("two events: %d, oldest %v (emitted after %v), %v", n, oldest, before, err)
	}
	pending, err := s.PendingEvents(ctx, ClusterStream, "master_1", 10)
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending cluster events: %v, %v", pending, err)
	}
	if err := s.AckEvent(ctx, ClusterStream, pending[0].StreamID); err != nil {
		t.Fatal(err)
	}
	n, oldest2, err := s.Backlog(ctx)
	if err != nil || n != 1 || !oldest2.After(oldest) {
		t.Fatalf("after the cluster event's delivery: %d, oldest %v (was %v), %v", n, oldest2, oldest, err)
	}
	if c, err := s.DeadLetterCount(ctx); err != nil || c != 0 {
		t.Fatalf("dead letters: %d, %v", c, err)
	}
	if err := s.AddDeadLetter(ctx, DeadLetter{StoredEvent: pending[0], Session: ClusterStream, Error: "500", FailedAt: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.DeadLetterCount(ctx); err != nil || c != 1 {
		t.Fatalf("dead letters: %d, %v", c, err)
	}
}
