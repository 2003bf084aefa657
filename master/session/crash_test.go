package session

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/redistest"
	"github.com/chorus-rtc/chorus/shared/store"
)

// newTestServices returns n session services, as n masters would run them,
// over one real Redis.
func newTestServices(t *testing.T, n int) ([]*Service, *store.Store) {
	t.Helper()
	r := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	st := store.New(store.Config{Redis: rdb, ClusterID: "test"})
	var out []*Service
	for i := range n {
		out = append(out, New(Config{Store: st, ClusterID: "test", ReconnectGrace: time.Second,
			Incarnation: NewIncarnation(protocol.MasterID("master_" + string(rune('a'+i)) + ".1"))}))
	}
	return out, st
}

// TestMasterCrashDeclaredOnce: every surviving master may decide at the same
// moment that a peer crashed; the cluster hears of it once (one nodeCrashed)
// and its participants are detached once.
func TestMasterCrashDeclaredOnce(t *testing.T) {
	ctx := context.Background()
	svcs, st := newTestServices(t, 3)
	for round := range 20 {
		inc := store.MasterInfo{ID: protocol.MasterID("master_dead." + string(rune('a'+round))), InternalURL: "http://127.0.0.1:1"}
		if err := st.RegisterMaster(ctx, inc, time.Minute); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, s := range svcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				s.DeclareMasterCrashed(ctx, inc, time.Now())
			}()
		}
		close(start)
		wg.Wait()
	}
	events, err := st.Redis().XRange(ctx, "chorus:test:{cluster}:ev", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	crashes := 0
	for _, e := range events {
		if e.Values["n"] == "nodeCrashed" {
			crashes++
		}
	}
	if crashes != 20 {
		t.Errorf("%d nodeCrashed for 20 crashes, each declared by 3 masters at once", crashes)
	}
}

// TestExpiredMasterDeclaredUnlessDeregistered: the sweeper finds a master by
// its expired registration; a master that deregistered gracefully between
// the sweeper's listing and its declaration is not declared crashed, one
// that really expired is, once.
func TestExpiredMasterDeclaredUnlessDeregistered(t *testing.T) {
	ctx := context.Background()
	svcs, st := newTestServices(t, 2)
	for _, id := range []protocol.MasterID{"master_gone.1", "master_left.1"} {
		if err := st.RegisterMaster(ctx, store.MasterInfo{ID: id, InternalURL: "http://127.0.0.1:1"}, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // both registrations expire
	if _, dead, err := st.Masters(ctx); err != nil || len(dead) != 2 {
		t.Fatalf("dead masters %v (%v)", dead, err)
	}
	// master_left deregisters after the listing, before the declaration.
	if err := st.DeregisterMaster(ctx, "master_left.1"); err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		s.declareMasterCrashed(ctx, store.MasterInfo{ID: "master_gone.1"}, time.Now(), true)
		s.declareMasterCrashed(ctx, store.MasterInfo{ID: "master_left.1"}, time.Now(), true)
	}
	events, err := st.Redis().XRange(ctx, "chorus:test:{cluster}:ev", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var crashed []string
	for _, e := range events {
		if e.Values["n"] == "nodeCrashed" {
			crashed = append(crashed, e.Values["b"].(string))
		}
	}
	if len(crashed) != 1 || !strings.Contains(crashed[0], "master_gone.1") {
		t.Errorf("nodeCrashed events %v, want master_gone.1's alone", crashed)
	}
	if c, err := st.MasterCrashed(ctx, "master_left.1"); err != nil || c {
		t.Errorf("a deregistered master is flagged crashed (%v)", err)
	}
}
