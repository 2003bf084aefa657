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
)

// runSweepers runs each service's sweeper, as every master does, until the
// test ends.
func runSweepers(t *testing.T, cfg session.SweepConfig, svcs ...*session.Service) {
	t.Helper()
	g := goGroup(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before the group is waited for
	for _, svc := range svcs {
		g.Go(func() {
			if err := svc.RunSweeper(ctx, cfg); err != nil {
				t.Errorf("sweeper: %v", err)
			}
		})
	}
}

// fastSweep sweeps every 20 ms, without recovery grace or garbage collection.
var fastSweep = session.SweepConfig{Interval: 20 * time.Millisecond}

// member is a session's connection as the eviction and connection indexes
// name it.
func member(sid protocol.SessionID, cid protocol.ConnectionID) string {
	return string(sid) + " " + string(cid)
}

// departure is what the other participants get when cid is evicted.
func departure(cid protocol.ConnectionID, reason string) []note {
	return []note{
		{Method: protocol.NotifyParticipantLeft, ConnectionID: cid, Reason: reason},
		{Method: protocol.NotifyParticipantEvicted, ConnectionID: cid, Reason: reason},
	}
}

// sameNotes compares notes without their raw params.
func sameNotes(got, want []note) bool {
	return slices.EqualFunc(got, want, func(a, b note) bool {
		return a.Method == b.Method && a.ConnectionID == b.ConnectionID && a.Reason == b.Reason
	})
}

// TestEvictionAfterGrace: a participant whose WebSocket broke is detached
// (no master, an eviction due after the grace period) and, not back in
// time, evicted by the sweepers with networkDisconnect: the others hear
// participantLeft then participantEvicted, once; its endpoints and the
// subscriptions to its stream go; it is not told (it has no socket) and its
// outbox goes. One that reconnected before the deadline stays. When the last
// participants are evicted the session closes as OpenVidu's does
// (lastParticipantLeft), unused tokens and all, leaving no key but its
// tombstone and its undelivered events.
func TestEvictionAfterGrace(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.adopt("media_1")
	svc, peer := e.service("master_a.1"), e.service("master_b.1")
	b := newBrowser(t)
	const sid = "ses_evict"
	e.createSession(svc, sid)
	gone, back, stays := e.join(svc, sid), e.join(svc, sid), e.join(svc, sid)
	e.token(svc, sid) // never used
	stream := e.publish(svc, b, sid, gone.ID)
	e.subscribe(svc, b, sid, back.ID, stream)
	runSweepers(t, fastSweep, svc, peer)
	outboxes := map[protocol.ConnectionID][]note{back.ID: e.outbox(sid, back.ID), stays.ID: e.outbox(sid, stays.ID)}
	events := len(e.events(sid))

	// back's socket breaks first, so gone's deadline is the later one.
	if err := svc.Detach(ctx, sid, back.ID); err != nil {
		t.Fatal(err)
	}
	if err := svc.Detach(ctx, sid, gone.ID); err != nil {
		t.Fatal(err)
	}
	c := e.conn(sid, gone.ID)
	if c.Master != "" || c.DisconnectedAt == 0 {
		t.Fatalf("detached participant: master %q, disconnectedAt %d", c.Master, c.DisconnectedAt)
	}
	if got, want := e.evictions()[member(sid, gone.ID)], c.DisconnectedAt+grace.Milliseconds(); got != want {
		t.Errorf("eviction due at %d, want disconnection + grace = %d", got, want)
	}
	if got := e.masterConns("master_a.1"); !slices.Equal(got, sorted(member(sid, stays.ID))) {
		t.Errorf("master_a.1 holds %v, want only %s", got, stays.ID)
	}
	if _, err := peer.Reattach(ctx, sid, back.RPCSessionID); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.evictions()[member(sid, back.ID)]; ok {
		t.Error("the eviction of a participant that reconnected is still scheduled")
	}

	e.waitFor("the eviction", func() bool { return e.conn(sid, gone.ID) == nil })
	snap := e.load(sid)
	if c := snap.Conns[back.ID]; c.Master != "master_b.1" || c.DisconnectedAt != 0 || len(c.Subscriptions) != 0 {
		t.Errorf("participant that came back: master %q, disconnectedAt %d, subscriptions %v; want master_b.1, 0, none",
			c.Master, c.DisconnectedAt, c.Subscriptions)
	}
	if c := snap.Conns[stays.ID]; c.Master != "master_a.1" || c.DisconnectedAt != 0 {
		t.Errorf("participant that stayed: master %q, disconnectedAt %d", c.Master, c.DisconnectedAt)
	}
	for cid, before := range outboxes {
		if got, want := e.outbox(sid, cid), append(before, departure(gone.ID, protocol.ReasonNetworkDisconnect)...); !sameNotes(got, want) {
			t.Errorf("outbox of %s: %v, want %v", cid, got, want)
		}
	}
	if keys := e.sessionKeys(sid); slices.Contains(keys, "{"+sid+"}:ob:"+string(gone.ID)) {
		t.Error("the evicted participant's outbox is left")
	}
	wantEvents := []string{
		"webrtcConnectionDestroyed INBOUND " + string(back.ID) + " networkDisconnect",
		"webrtcConnectionDestroyed OUTBOUND " + string(gone.ID) + " networkDisconnect",
		"participantLeft " + string(gone.ID) + " networkDisconnect",
	}
	if got := eventStrings(e.events(sid)[events:]); !slices.Equal(got, wantEvents) {
		t.Errorf("events of the eviction: %v, want %v", got, wantEvents)
	}
	e.eventually(func() string { // released by the evicting sweeper after its commit
		if got := e.endpoints("media_1", sid); len(got) != 0 {
			return fmt.Sprintf("endpoints left on the media node: %v", got)
		}
		if got := e.evictions(); len(got) != 0 {
			return fmt.Sprintf("evictions left: %v", got)
		}
		return ""
	})
	if got := e.masterConns("master_b.1"); !slices.Equal(got, []string{member(sid, back.ID)}) {
		t.Errorf("master_b.1 holds %v", got)
	}

	// The last two go.
	if err := peer.Detach(ctx, sid, back.ID); err != nil {
		t.Fatal(err)
	}
	if err := svc.Detach(ctx, sid, stays.ID); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the session to close", func() bool {
		_, err := e.st.Load(ctx, sid)
		return err != nil
	})
	evs := e.events(sid)
	last := evs[len(evs)-1]
	if last.Name != "sessionDestroyed" || last.Reason != protocol.ReasonLastParticipantLeft {
		t.Errorf("last event %v, want sessionDestroyed lastParticipantLeft", last)
	}
	left := 0
	for _, ev := range evs {
		if ev.Name == "participantLeft" {
			left++
			if ev.Reason != protocol.ReasonNetworkDisconnect {
				t.Errorf("%v, want reason networkDisconnect", ev)
			}
		}
	}
	if left != 3 {
		t.Errorf("%d participantLeft, want 3", left)
	}
	if got, want := e.sessionKeys(sid), []string{"{" + sid + "}:ev", "{" + sid + "}:tomb"}; !slices.Equal(got, want) {
		t.Errorf("keys of the closed session: %v, want %v", got, want)
	}
	if life, err := svc.SessionStatus(ctx, sid); err != nil || life != 1 {
		t.Errorf("sessionStatus of the closed session: %d, %v; want its life 1", life, err)
	}
	e.eventually(func() string { // cleaned up by the evicting sweeper after its commit
		if e.indexed(sid) {
			return "the closed session is still listed"
		}
		if got := e.nodeSessions("media_1"); len(got) != 0 {
			return fmt.Sprintf("sessions pinned to media_1: %v", got)
		}
		for _, m := range []protocol.MasterID{"master_a.1", "master_b.1"} {
			if got := e.masterConns(m); len(got) != 0 {
				return fmt.Sprintf("%s still holds %v", m, got)
			}
		}
		if got := e.evictions(); len(got) != 0 {
			return fmt.Sprintf("evictions left: %v", got)
		}
		if got := e.endpoints("media_1", sid); len(got) != 0 {
			return fmt.Sprintf("endpoints left on the media node: %v", got)
		}
		return ""
	})
}

// TestEvictDisconnected: which participants an eviction removes. Only one
// detached for longer than the grace period goes, once however many masters
// evict it at the same moment; one whose socket is fine, that is within its
// grace, that came back, or that left, stays as it is (and the call
// succeeds).
func TestEvictDisconnected(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.adopt("media_1")
	svcs := []*session.Service{e.service("master_a.1"), e.service("master_b.1"), e.service("master_c.1")}
	svc := svcs[0]
	// pastDeadline waits until the participant's grace period is over.
	pastDeadline := func(e *env, sid protocol.SessionID, cid protocol.ConnectionID) {
		at := time.UnixMilli(e.conn(sid, cid).DisconnectedAt).Add(grace)
		e.waitFor("the end of the grace period", func() bool { return time.Now().After(at) })
	}
	detach := func(e *env, sid protocol.SessionID, cid protocol.ConnectionID) {
		if err := svc.Detach(ctx, sid, cid); err != nil {
			e.t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		arrange func(e *env, sid protocol.SessionID, cid protocol.ConnectionID) // before the evictions
		evicted bool
	}{
		{"detached past its grace", func(e *env, sid protocol.SessionID, cid protocol.ConnectionID) {
			detach(e, sid, cid)
			pastDeadline(e, sid, cid)
		}, true},
		{"detached within its grace", detach, false},
		{"came back", func(e *env, sid protocol.SessionID, cid protocol.ConnectionID) {
			detach(e, sid, cid)
			at := time.UnixMilli(e.conn(sid, cid).DisconnectedAt).Add(grace)
			if _, err := svcs[1].Reattach(ctx, sid, e.conn(sid, cid).RPCSessionID); err != nil {
				e.t.Fatal(err)
			}
			e.waitFor("the end of the grace period", func() bool { return time.Now().After(at) })
		}, false},
		{"socket never broke", func(*env, protocol.SessionID, protocol.ConnectionID) {}, false},
		{"left", func(e *env, sid protocol.SessionID, cid protocol.ConnectionID) {
			detach(e, sid, cid)
			pastDeadline(e, sid, cid)
			if err := svc.Leave(ctx, sid, cid); err != nil {
				e.t.Fatal(err)
			}
		}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.in(t)
			sid := protocol.SessionID("ses_ev_" + string(rune('a'+i)))
			e.createSession(svc, sid)
			victim, witness := e.join(svc, sid), e.join(svc, sid)
			tt.arrange(e, sid, victim.ID)
			before := e.load(sid)
			witnessBefore := e.outbox(sid, witness.ID)
			eventsBefore := len(e.events(sid))

			var wg sync.WaitGroup
			start := make(chan struct{})
			for _, s := range svcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if err := s.EvictDisconnected(ctx, sid, victim.ID); err != nil {
						t.Errorf("EvictDisconnected: %v", err)
					}
				}()
			}
			close(start)
			wg.Wait()

			after := e.load(sid)
			newEvents := eventStrings(e.events(sid)[eventsBefore:])
			if !tt.evicted {
				if a, b := mustJSON(t, after), mustJSON(t, before); a != b {
					t.Errorf("the session changed:\n%s\nwas\n%s", a, b)
				}
				if got := e.outbox(sid, witness.ID); !sameNotes(got, witnessBefore) {
					t.Errorf("witness notified: %v", got)
				}
				if len(newEvents) != 0 {
					t.Errorf("events: %v", newEvents)
				}
				return
			}
			if after.Conns[victim.ID] != nil {
				t.Fatal("not evicted")
			}
			if got, want := e.outbox(sid, witness.ID), append(witnessBefore, departure(victim.ID, protocol.ReasonNetworkDisconnect)...); !sameNotes(got, want) {
				t.Errorf("witness's outbox %v, want %v", got, want)
			}
			if want := []string{"participantLeft " + string(victim.ID) + " networkDisconnect"}; !slices.Equal(newEvents, want) {
				t.Errorf("events %v, want %v", newEvents, want)
			}
		})
	}
}

// TestSweeperWaitsForRecoveryGrace: a sweeper evicts nobody until Redis has
// answered it for the recovery grace (after an outage, everybody's
// reconnections lapsed together and get that long to come back).
func TestSweeperWaitsForRecoveryGrace(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.adopt("media_1")
	svc := e.service("master_a.1")
	const sid = "ses_recovery"
	e.createSession(svc, sid)
	victim, witness := e.join(svc, sid), e.join(svc, sid)
	if err := svc.Detach(ctx, sid, victim.ID); err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(e.conn(sid, victim.ID).DisconnectedAt).Add(grace)
	e.waitFor("the end of the grace period", func() bool { return time.Now().After(at) })
	const recovery = 600 * time.Millisecond
	start := time.Now()
	runSweepers(t, session.SweepConfig{Interval: 20 * time.Millisecond, RecoveryGrace: recovery}, svc)
	e.waitFor("the eviction", func() bool { return e.conn(sid, victim.ID) == nil })
	if took := time.Since(start); took < recovery {
		t.Errorf("evicted %s after the sweeper started, within the recovery grace %s", took, recovery)
	}
	if e.conn(sid, witness.ID) == nil {
		t.Error("the witness was evicted")
	}
}
