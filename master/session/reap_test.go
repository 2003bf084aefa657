package session_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// crashEvents returns the nodeCrashed events of the cluster stream for
// master incarnation id.
func (e *env) crashEvents(id protocol.MasterID) []event {
	e.t.Helper()
	var out []event
	for _, ev := range e.events(store.ClusterStream) {
		if ev.Name == "nodeCrashed" && ev.Body["id"] == string(id) {
			out = append(out, ev)
		}
	}
	return out
}

// registered reports whether a master is listed among the registered
// masters, alive or expired.
func (e *env) registered(id protocol.MasterID) bool {
	e.t.Helper()
	alive, dead, err := e.st.Masters(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range alive {
		if m.ID == id {
			return true
		}
	}
	return slices.Contains(dead, id)
}

// TestMasterCrashReapedOnce: several masters declare the same dead master
// crashed at once. The cluster hears nodeCrashed once, naming the sessions
// whose sockets it held; its registration and connection index go; each
// participant whose socket it held is detached once, its eviction due a
// grace period after; a participant that already resumed on another master
// (its entry in the dead master's index not yet removed) stays attached
// there; nobody is notified.
func TestMasterCrashReapedOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.adopt("media_1")
	reapers := []*session.Service{e.service("master_a.1"), e.service("master_b.1"), e.service("master_c.1")}
	for round := range 5 {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			e := e.in(t)
			deadID := protocol.MasterID(fmt.Sprintf("master_dead.%d", round+1))
			dead := e.service(deadID)
			if err := e.st.RegisterMaster(ctx, store.MasterInfo{ID: deadID, InternalURL: "http://127.0.0.1:9"}, time.Minute); err != nil {
				t.Fatal(err)
			}
			roundSID := func(i int) protocol.SessionID { return protocol.SessionID(fmt.Sprintf("ses_r%d_%d", round, i)) }
			s1, s2, s3 := roundSID(1), roundSID(2), roundSID(3)
			for _, sid := range []protocol.SessionID{s1, s2, s3} {
				e.createSession(dead, sid)
			}
			held := []*store.Connection{e.join(dead, s1), e.join(dead, s1), e.join(dead, s2)}
			resumed := e.join(dead, s1)
			alive := e.join(reapers[1], s2)
			bystander := e.join(reapers[2], s3)
			if _, err := reapers[0].Reattach(ctx, s1, resumed.RPCSessionID); err != nil {
				t.Fatal(err)
			}
			// The resumption's master moved the entry to its own index; a
			// reaper may have read the dead master's index just before.
			if err := e.st.AddMasterConnection(ctx, deadID, s1, resumed.ID); err != nil {
				t.Fatal(err)
			}
			before := map[protocol.SessionID]*store.Snapshot{}
			outboxes := map[protocol.ConnectionID][]note{}
			events := map[protocol.SessionID]int{}
			for _, sid := range []protocol.SessionID{s1, s2, s3} {
				before[sid] = e.load(sid)
				for cid := range before[sid].Conns {
					outboxes[cid] = e.outbox(sid, cid)
				}
				events[sid] = len(e.events(sid))
			}

			var wg sync.WaitGroup
			start := make(chan struct{})
			for _, r := range reapers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r.DeclareMasterCrashed(ctx, store.MasterInfo{ID: deadID, InternalURL: "http://127.0.0.1:9"}, time.Now())
				}()
			}
			close(start)
			wg.Wait()

			crashes := e.crashEvents(deadID)
			if len(crashes) != 1 {
				t.Fatalf("%d nodeCrashed for %s, want 1", len(crashes), deadID)
			}
			body := crashes[0].Body
			if body["nodeRole"] != "masternode" || fmt.Sprint(body["sessionIds"]) != fmt.Sprint([]any{s1, s2}) {
				t.Errorf("nodeCrashed %v, want nodeRole masternode and sessionIds [%s %s]", body, s1, s2)
			}
			if e.registered(deadID) {
				t.Error("the dead master is still registered")
			}
			if crashed, err := e.st.MasterCrashed(ctx, deadID); err != nil || !crashed {
				t.Errorf("the dead master is not flagged crashed (%v)", err)
			}
			if got := e.masterConns(deadID); len(got) != 0 {
				t.Errorf("the dead master's connection index is left: %v", got)
			}
			evictions := e.evictions()
			for _, c := range held {
				got := e.conn(c.SessionID, c.ID)
				if got.Master != "" || got.DisconnectedAt == 0 {
					t.Errorf("%s not detached: master %q, disconnectedAt %d", c.ID, got.Master, got.DisconnectedAt)
				}
				if due, want := evictions[member(c.SessionID, c.ID)], got.DisconnectedAt+grace.Milliseconds(); due != want {
					t.Errorf("eviction of %s due at %d, want %d", c.ID, due, want)
				}
			}
			for _, c := range []*store.Connection{resumed, alive, bystander} {
				want := before[c.SessionID].Conns[c.ID]
				if got := e.conn(c.SessionID, c.ID); mustJSON(t, got) != mustJSON(t, want) {
					t.Errorf("participant of a live master changed:\n%s\nwas\n%s", mustJSON(t, got), mustJSON(t, want))
				}
				if _, ok := evictions[member(c.SessionID, c.ID)]; ok {
					t.Errorf("eviction scheduled for %s, whose master is alive", c.ID)
				}
			}
			if got := e.masterConns("master_a.1"); !slices.Contains(got, member(s1, resumed.ID)) {
				t.Errorf("master_a.1 no longer holds the resumed participant: %v", got)
			}
			for _, sid := range []protocol.SessionID{s1, s2, s3} {
				for cid := range before[sid].Conns {
					if got := e.outbox(sid, cid); !sameNotes(got, outboxes[cid]) {
						t.Errorf("%s notified by the reaping: %v", cid, got)
					}
				}
				if got := len(e.events(sid)); got != events[sid] {
					t.Errorf("%s: %d events emitted by the reaping", sid, got-events[sid])
				}
			}
		})
	}
}

// TestSweepersReapExpiredMaster: the sweepers of every master find a master
// whose registration expired: it is declared crashed once, its
// participants are detached and, not back within the grace period,
// evicted with networkDisconnect; a session whose participants were all
// its own closes (lastParticipantLeft). A master that deregistered
// gracefully is not declared crashed.
func TestSweepersReapExpiredMaster(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.adopt("media_1")
	sweepers := []*session.Service{e.service("master_a.1"), e.service("master_b.1"), e.service("master_c.1")}
	dead := e.service("master_dead.1")
	for _, id := range []protocol.MasterID{"master_dead.1", "master_left.1"} {
		if err := e.st.RegisterMaster(ctx, store.MasterInfo{ID: id, InternalURL: "http://127.0.0.1:9"}, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	const s1, s2 = "ses_orphaned", "ses_mixed"
	e.createSession(dead, s1)
	e.createSession(dead, s2)
	orphans := []*store.Connection{e.join(dead, s1), e.join(dead, s1)}
	lost := e.join(dead, s2)
	survivor := e.join(sweepers[0], s2)
	if err := e.st.DeregisterMaster(ctx, "master_left.1"); err != nil {
		t.Fatal(err)
	}
	runSweepers(t, fastSweep, sweepers...)

	e.waitFor("the dead master's participants evicted", func() bool {
		_, err := e.st.Load(ctx, s1)
		return err != nil && e.conn(s2, lost.ID) == nil
	})
	if got := e.crashEvents("master_dead.1"); len(got) != 1 {
		t.Errorf("%d nodeCrashed for the dead master, want 1", len(got))
	}
	if got := e.crashEvents("master_left.1"); len(got) != 0 {
		t.Errorf("the master that deregistered was declared crashed: %v", got)
	}
	if crashed, _ := e.st.MasterCrashed(ctx, "master_left.1"); crashed {
		t.Error("the master that deregistered is flagged crashed")
	}
	var want []string
	for _, c := range orphans {
		want = append(want, "participantLeft "+string(c.ID)+" networkDisconnect")
	}
	var got []string
	evs := e.events(s1)
	for _, ev := range evs {
		if ev.Name == "participantLeft" {
			got = append(got, ev.String())
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("participantLeft in %s: %v, want %v", s1, got, want)
	}
	if last := evs[len(evs)-1]; last.Name != "sessionDestroyed" || last.Reason != protocol.ReasonLastParticipantLeft {
		t.Errorf("last event of %s: %v, want sessionDestroyed lastParticipantLeft", s1, last)
	}
	if got := e.sessionKeys(s1); !slices.Equal(got, []string{"{" + s1 + "}:ev", "{" + s1 + "}:tomb"}) {
		t.Errorf("keys left by %s: %v", s1, got)
	}
	if got := e.outbox(s2, survivor.ID); !sameNotes(got, departure(lost.ID, protocol.ReasonNetworkDisconnect)) {
		t.Errorf("survivor's outbox %v", got)
	}
	if c := e.conn(s2, survivor.ID); c.Master != "master_a.1" {
		t.Errorf("survivor's master %q", c.Master)
	}
	e.eventually(func() string { // the reapers' and evicting sweepers' last steps
		for _, id := range []protocol.MasterID{"master_dead.1", "master_left.1"} {
			if e.registered(id) {
				return string(id) + " still registered"
			}
			if got := e.masterConns(id); len(got) != 0 {
				return fmt.Sprintf("%s's connection index left: %v", id, got)
			}
		}
		if got := e.evictions(); len(got) != 0 {
			return fmt.Sprintf("evictions left: %v", got)
		}
		if e.indexed(s1) {
			return "the closed session is still listed"
		}
		return ""
	})
}
