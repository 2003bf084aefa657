package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

func TestMediaNodeHeartbeatAdoptionAndRemoval(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	hb := MediaNodeHeartbeat{ID: "media_a", URI: "http://127.0.0.1:1", IP: "127.0.0.1", Load: 12.5, StartedAt: 1000, ICEUDPPort: 40000, ICETCPPort: 40001}

	st, err := s.HeartbeatMediaNode(ctx, hb)
	if err != nil || st != (NodeStanding{}) {
		t.Fatalf("first heartbeat: %+v %v", st, err)
	}
	if nodes, err := s.MediaNodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("a heartbeat alone made a record: %+v (%v)", nodes, err)
	}
	un, err := s.UnadoptedMediaNodes(ctx, 3*time.Second)
	if err != nil || len(un) != 1 || un[0].ID != "media_a" || un[0].URI != hb.URI || un[0].Load != 12.5 || un[0].ICEUDPPort != 40000 || un[0].ICETCPPort != 40001 {
		t.Fatalf("unadopted %+v %v", un, err)
	}

	// Adoption: the record appears with its event, atomically.
	err = s.UpdateMediaNodes(ctx, "", func(tx *NodesTx) error {
		tx.Create(MediaNodeInfo{ID: "media_a", Status: "running", URI: hb.URI, Instance: 1000})
		tx.Emit(StoredEvent{Name: "mediaNodeStatusChanged", Body: []byte(`{}`)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if un, err := s.UnadoptedMediaNodes(ctx, 3*time.Second); err != nil || len(un) != 0 {
		t.Fatalf("adopted node still unadopted: %+v (%v)", un, err)
	}
	n, err := s.MediaNode(ctx, "media_a")
	if err != nil || n.Status != "running" || n.Load != 12.5 || n.HeartbeatAt == 0 || !n.Fresh(time.Now(), time.Second) {
		t.Fatalf("record %+v %v", n, err)
	}
	if st, _ := s.HeartbeatMediaNode(ctx, hb); st.Status != "running" || st.Crashed {
		t.Fatalf("standing %+v", st)
	}

	// A heartbeat never overwrites what the cluster owns.
	must(t, s.UpdateMediaNodes(ctx, "", func(tx *NodesTx) error {
		tx.Nodes["media_a"].CrashedAt = 5
		return nil
	}))
	hb.Load = 40
	if st, _ := s.HeartbeatMediaNode(ctx, hb); !st.Crashed || st.Status != "running" {
		t.Fatalf("standing after crash mark %+v", st)
	}
	if n, err := s.MediaNode(ctx, "media_a"); err != nil || n.CrashedAt != 5 || n.Load != 40 {
		t.Fatalf("record %+v (%v)", n, err)
	}

	// Removal forgets the node and marks its instance gone: that instance is
	// told to stop; another instance with the same id registers afresh.
	must(t, s.PinSession(ctx, "media_a", "ses_1"))
	if err := s.UpdateMediaNodes(ctx, "", func(tx *NodesTx) error { tx.Remove("media_a"); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MediaNode(ctx, "media_a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed node still there: %v", err)
	}
	if c, err := s.NodeSessionCounts(ctx, []protocol.NodeID{"media_a"}); err != nil || c["media_a"] != 0 {
		t.Fatalf("session set outlived the node: %v (%v)", c, err)
	}
	if st, err := s.HeartbeatMediaNode(ctx, hb); err != nil || !st.Gone {
		t.Fatalf("terminated instance not told it is gone: %+v (%v)", st, err)
	}
	hb.StartedAt = 2000
	if st, err := s.HeartbeatMediaNode(ctx, hb); err != nil || st.Gone || st.Status != "" {
		t.Fatalf("new instance refused: %+v (%v)", st, err)
	}
}

func TestUpdateMediaNodesLeaseAndContention(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	err := s.UpdateMediaNodes(ctx, "m1", func(*NodesTx) error { return nil })
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("change without the lease: %v", err)
	}
	if ok, _ := s.AcquireControllerLease(ctx, "m1", time.Second); !ok {
		t.Fatal("lease not acquired")
	}
	if ok, err := s.AcquireControllerLease(ctx, "m2", time.Second); err != nil || ok {
		t.Fatalf("lease acquired twice (%v)", err)
	}
	if h, _ := s.ControllerHolder(ctx); h != "m1" {
		t.Fatalf("holder %q", h)
	}
	if err := s.UpdateMediaNodes(ctx, "m1", func(tx *NodesTx) error {
		tx.Create(MediaNodeInfo{ID: "n", Status: "running"})
		tx.Autoscaling.Decisions++
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Concurrent read-modify-writes never lose an update.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.UpdateMediaNodes(ctx, "", func(tx *NodesTx) error {
				tx.Autoscaling.Decisions++
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	must(t, s.UpdateMediaNodes(ctx, "", func(tx *NodesTx) error {
		if tx.Autoscaling.Decisions != 21 {
			t.Errorf("decisions %d, want 21", tx.Autoscaling.Decisions)
		}
		return nil
	}))

	must(t, s.ReleaseControllerLease(ctx, "m1"))
	if ok, _ := s.AcquireControllerLease(ctx, "m2", time.Second); !ok {
		t.Fatal("released lease not acquired by another")
	}
}

func TestNodesTxSessions(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	must(t, s.UpdateMediaNodes(ctx, "", func(tx *NodesTx) error {
		tx.Create(MediaNodeInfo{ID: "a", Status: "running"})
		tx.Create(MediaNodeInfo{ID: "b", Status: "running"})
		return nil
	}))
	must(t, s.PinSession(ctx, "a", "s1"))
	must(t, s.PinSession(ctx, "a", "s2"))
	checked := false
	must(t, s.UpdateMediaNodes(ctx, "", func(tx *NodesTx) error {
		if tx.Sessions["a"] != 2 || tx.Sessions["b"] != 0 {
			t.Errorf("sessions %v", tx.Sessions)
		}
		checked = true
		return nil
	}))
	if !checked {
		t.Error("the transaction never ran")
	}
}

// must fails the test on an error of a step whose outcome later assertions
// do not show.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
