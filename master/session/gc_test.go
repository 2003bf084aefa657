package session_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// TestCollectGarbage: OpenVidu's session garbage collector closes the
// sessions nobody joined that are older than the threshold, without
// sessionDestroyed, and with them their tokens and pin; it keeps young
// ones, and any session someone joined, even if all its participants'
// sockets are gone. Index entries of sessions that no longer exist go once
// older than a minute (a younger one may be a session being created).
func TestCollectGarbage(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.adopt("media_1")
	svc := e.service("master_a.1", func(c *session.Config) { c.ReconnectGrace = time.Hour })
	const threshold = time.Minute
	old := time.Now().Add(-2 * threshold).UnixMilli()
	age := func(sid protocol.SessionID) {
		e.update(sid, func(tx *store.Tx) { tx.Session.CreatedAt = old })
	}
	tests := []struct {
		sid       protocol.SessionID
		arrange   func(sid protocol.SessionID)
		collected bool
	}{
		{"ses_gc_stale", func(sid protocol.SessionID) { e.createSession(svc, sid); e.token(svc, sid); age(sid) }, true},
		{"ses_gc_stale_pinned", func(sid protocol.SessionID) {
			if _, err := svc.CreateSession(ctx, store.SessionProperties{CustomSessionID: string(sid), MediaNodeRequested: "media_1"}, ""); err != nil {
				t.Fatal(err)
			}
			age(sid)
		}, true},
		{"ses_gc_young", func(sid protocol.SessionID) { e.createSession(svc, sid); e.token(svc, sid) }, false},
		{"ses_gc_joined", func(sid protocol.SessionID) { e.createSession(svc, sid); e.join(svc, sid); age(sid) }, false},
		{"ses_gc_joined_detached", func(sid protocol.SessionID) {
			e.createSession(svc, sid)
			c := e.join(svc, sid)
			if err := svc.Detach(ctx, sid, c.ID); err != nil {
				t.Fatal(err)
			}
			age(sid)
		}, false},
	}
	before := map[protocol.SessionID]string{}
	for _, tt := range tests {
		tt.arrange(tt.sid)
		before[tt.sid] = mustJSON(t, e.load(tt.sid))
	}
	ghosts := map[protocol.SessionID]time.Time{"ses_gc_ghost_old": time.Now().Add(-2 * time.Minute), "ses_gc_ghost_new": time.Now()}
	for sid, at := range ghosts {
		if err := e.st.Redis().ZAdd(ctx, e.st.Prefix()+":sessions", redis.Z{Score: float64(at.UnixMilli()), Member: sid}).Err(); err != nil {
			t.Fatal(err)
		}
	}

	svc.CollectGarbage(ctx, threshold)

	for _, tt := range tests {
		t.Run(string(tt.sid), func(t *testing.T) {
			e := e.in(t)
			if !tt.collected {
				if got := mustJSON(t, e.load(tt.sid)); got != before[tt.sid] {
					t.Errorf("changed:\n%s\nwas\n%s", got, before[tt.sid])
				}
				if !e.indexed(tt.sid) {
					t.Error("unlisted")
				}
				return
			}
			if _, err := e.st.Load(ctx, tt.sid); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("not collected (%v)", err)
			}
			if got, want := e.sessionKeys(tt.sid), []string{"{" + string(tt.sid) + "}:ev", "{" + string(tt.sid) + "}:tomb"}; !slices.Equal(got, want) {
				t.Errorf("keys %v, want %v", got, want)
			}
			if got := eventStrings(e.events(tt.sid)); !slices.Equal(got, []string{"sessionCreated"}) {
				t.Errorf("events %v, want only sessionCreated", got)
			}
			if e.indexed(tt.sid) {
				t.Error("still listed")
			}
			if slices.Contains(e.nodeSessions("media_1"), tt.sid) {
				t.Error("still pinned to its media node")
			}
		})
	}
	if e.indexed("ses_gc_ghost_old") {
		t.Error("an index entry without session, older than a minute, is left")
	}
	if !e.indexed("ses_gc_ghost_new") {
		t.Error("a fresh index entry without session (a session being created) was dropped")
	}
}

// TestSweeperCollectsGarbage: the sweeper runs the garbage collector every
// garbage interval with the configured threshold.
func TestSweeperCollectsGarbage(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.adopt("media_1")
	svc := e.service("master_a.1")
	const unused, joined = "ses_gc_unused", "ses_gc_used"
	e.createSession(svc, unused)
	e.createSession(svc, joined)
	e.join(svc, joined)
	runSweepers(t, session.SweepConfig{Interval: time.Hour, GarbageInterval: 20 * time.Millisecond, GarbageThreshold: 100 * time.Millisecond}, svc)
	e.waitFor("the unused session collected", func() bool {
		_, err := e.st.Load(ctx, unused)
		return errors.Is(err, store.ErrNotFound)
	})
	if conns := e.load(joined).Conns; len(conns) != 1 {
		t.Errorf("the joined session has %d connections, want its participant", len(conns))
	}
}
