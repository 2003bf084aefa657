package session_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// TestSetNetworkQuality: a publisher's level reaches every participant,
// itself included, only when it changes; the first has no oldValue;
// non-publishers, unknown connections and levels outside 0..5 are skipped.
func TestSetNetworkQuality(t *testing.T) {
	e := newEnv(t, 1)
	e.adopt(nodeID(1))
	svc := e.service("master_nq")
	const sid = "netquality"
	e.createSession(svc, sid)
	alice, bob := e.join(svc, sid), e.join(svc, sid)
	e.update(sid, func(tx *store.Tx) {
		tx.Conns[alice.ID].Publisher = &store.Publisher{StreamID: protocol.StreamID("str_CAM_AAAA_" + string(alice.ID)), Node: nodeID(1)}
	})
	ctx := context.Background()

	type change struct {
		ConnectionID protocol.ConnectionID `json:"connectionId"`
		NewValue     int                   `json:"newValue"`
		OldValue     *int                  `json:"oldValue"`
	}
	changes := func(cid protocol.ConnectionID) []change {
		var out []change
		for _, n := range e.outbox(sid, cid) {
			if n.Method != protocol.NotifyNetworkQualityLevelChanged {
				continue
			}
			var c change
			if err := json.Unmarshal([]byte(n.Raw), &c); err != nil {
				t.Fatalf("%s: %v", n.Raw, err)
			}
			out = append(out, c)
		}
		return out
	}
	five, two := 5, 2
	steps := []struct {
		name   string
		levels map[protocol.ConnectionID]int
		want   []change // everything each participant was told so far
	}{
		{"first level", map[protocol.ConnectionID]int{alice.ID: 5, bob.ID: 3, "con_unknown": 2},
			[]change{{alice.ID, 5, nil}}},
		{"unchanged", map[protocol.ConnectionID]int{alice.ID: 5},
			[]change{{alice.ID, 5, nil}}},
		{"out of range", map[protocol.ConnectionID]int{alice.ID: 9},
			[]change{{alice.ID, 5, nil}}},
		{"drop", map[protocol.ConnectionID]int{alice.ID: 2},
			[]change{{alice.ID, 5, nil}, {alice.ID, 2, &five}}},
		{"recover", map[protocol.ConnectionID]int{alice.ID: 5},
			[]change{{alice.ID, 5, nil}, {alice.ID, 2, &five}, {alice.ID, 5, &two}}},
	}
	for _, step := range steps {
		if err := svc.SetNetworkQuality(ctx, sid, step.levels); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for _, cid := range []protocol.ConnectionID{alice.ID, bob.ID} {
			got := changes(cid)
			raw, _ := json.Marshal(got)
			want, _ := json.Marshal(step.want)
			if string(raw) != string(want) {
				t.Errorf("%s: %s was told %s, want %s", step.name, cid, raw, want)
			}
		}
	}
	if c := e.conn(sid, alice.ID); c.NetworkQuality == nil || *c.NetworkQuality != 5 {
		t.Errorf("alice's stored level: %v, want 5", c.NetworkQuality)
	}
	if c := e.conn(sid, bob.ID); c.NetworkQuality != nil {
		t.Errorf("bob, who does not publish, has a level: %d", *c.NetworkQuality)
	}
	if err := svc.SetNetworkQuality(ctx, "no_such_session", map[protocol.ConnectionID]int{alice.ID: 1}); err != nil {
		t.Errorf("a session that is gone: %v, want nothing done", err)
	}
	if keys := e.sessionKeys("no_such_session"); len(keys) != 0 {
		t.Errorf("a session that is gone got keys: %v", keys)
	}
}
