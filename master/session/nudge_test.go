package session_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// migrated is a session just moved off a crashed media node, with its
// participants: pub (publisher, socket open: to be nudged), away (publisher
// whose socket broke), sub (subscriber only), plain (neither), and an
// unused token.
type migrated struct {
	e                     *env
	svc                   *session.Service
	b                     *browser
	sid                   protocol.SessionID
	pub, away, sub, plain *store.Connection
	token                 *store.Connection
	pubStream             protocol.StreamID
	outboxesBeforeNudging map[protocol.ConnectionID]int
	eventsBeforeNudging   int
}

// newMigrated builds a migrated session on a fresh env whose master nudges
// with n.
func newMigrated(t *testing.T, n session.Nudges) *migrated {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t, 2)
	e.adopt("media_1")
	m := &migrated{e: e, svc: e.service("master_a.1", func(c *session.Config) { c.Nudges = n }), b: newBrowser(t), sid: "ses_nudge"}
	e.createSession(m.svc, m.sid)
	m.pub, m.away, m.sub, m.plain = e.join(m.svc, m.sid), e.join(m.svc, m.sid), e.join(m.svc, m.sid), e.join(m.svc, m.sid)
	m.token = e.token(m.svc, m.sid)
	m.pubStream = e.publish(m.svc, m.b, m.sid, m.pub.ID)
	e.publish(m.svc, m.b, m.sid, m.away.ID)
	e.subscribe(m.svc, m.b, m.sid, m.sub.ID, m.pubStream)
	if err := m.svc.Detach(ctx, m.sid, m.away.ID); err != nil {
		t.Fatal(err)
	}
	e.adopt("media_2")
	e.crash("media_1")
	if err := m.svc.MigrateSession(ctx, m.sid, "media_1", false); err != nil {
		t.Fatal(err)
	}
	m.outboxesBeforeNudging = map[protocol.ConnectionID]int{}
	for _, cid := range []protocol.ConnectionID{m.pub.ID, m.away.ID, m.sub.ID, m.plain.ID, m.token.ID} {
		m.outboxesBeforeNudging[cid] = len(e.outbox(m.sid, cid))
	}
	m.eventsBeforeNudging = len(e.events(m.sid))
	return m
}

// nudges returns the nudges (internal reconnectSocket entries) queued for a
// connection since the migration.
func (m *migrated) nudges(cid protocol.ConnectionID) []note {
	m.e.t.Helper()
	var out []note
	for _, n := range m.e.outbox(m.sid, cid)[m.outboxesBeforeNudging[cid]:] {
		if n.Method == protocol.InternalReconnectSocket {
			out = append(out, n)
		}
	}
	return out
}

// entryTime is when an outbox entry was queued.
func entryTime(t *testing.T, n note) time.Time {
	t.Helper()
	ms, _, _ := strings.Cut(n.ID, "-")
	v, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		t.Fatalf("outbox entry id %q: %v", n.ID, err)
	}
	return time.UnixMilli(v)
}

// checkNudges checks that only the attached publisher got nudges, want of
// them, each conditional on its stream still moving, and that no event was
// emitted.
func (m *migrated) checkNudges(t *testing.T, want int) []note {
	t.Helper()
	got := m.nudges(m.pub.ID)
	if len(got) != want {
		t.Errorf("%d nudges to the publisher, want %d", len(got), want)
	}
	for _, n := range got {
		if n.Raw != `{"ifMigrating":true}` {
			t.Errorf("nudge %s, want {\"ifMigrating\":true}", n.Raw)
		}
	}
	for _, cid := range []protocol.ConnectionID{m.away.ID, m.sub.ID, m.plain.ID, m.token.ID} {
		if got := m.nudges(cid); len(got) != 0 {
			t.Errorf("%s was nudged: %v", cid, got)
		}
	}
	if got := len(m.e.events(m.sid)); got != m.eventsBeforeNudging {
		t.Errorf("nudging emitted %d events", got-m.eventsBeforeNudging)
	}
	return got
}

// nudgeInBackground runs NudgePublishers; the returned channel is closed
// when it returns.
func (m *migrated) nudgeInBackground(t *testing.T, ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	goGroup(t).Go(func() {
		defer close(done)
		m.svc.NudgePublishers(ctx, m.sid, time.Time{})
	})
	return done
}

func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not return", what)
	}
}

// TestNudgesAfterMigration: after a migration, the WebSocket of each
// publisher still to re-publish whose socket is open, and no other, gets a
// close request (an internal outbox entry), Nudges.Delay after the start,
// then every Nudges.Interval, Nudges.Count times at most.
func TestNudgesAfterMigration(t *testing.T) {
	n := session.Nudges{Delay: 300 * time.Millisecond, Interval: 150 * time.Millisecond, Count: 3}
	m := newMigrated(t, n)
	start := time.Now()
	m.svc.NudgePublishers(context.Background(), m.sid, time.Time{})
	took := time.Since(start)
	got := m.checkNudges(t, n.Count)
	if min := n.Delay + time.Duration(n.Count-1)*n.Interval; took < min {
		t.Errorf("NudgePublishers returned after %s, before its last nudge was due (%s)", took, min)
	}
	if len(got) == 0 {
		return
	}
	// Entry ids have millisecond resolution.
	if first := entryTime(t, got[0]); first.Before(start.Truncate(time.Millisecond).Add(n.Delay)) {
		t.Errorf("first nudge %s after the start, before the delay %s", first.Sub(start), n.Delay)
	}
	for i := 1; i < len(got); i++ {
		if gap := entryTime(t, got[i]).Sub(entryTime(t, got[i-1])); gap < n.Interval-time.Millisecond {
			t.Errorf("nudges %d and %d %s apart, want at least %s", i-1, i, gap, n.Interval)
		}
	}
}

// TestNudgesStopWhenRepublished: nudging stops at the first round that finds
// no publisher to nudge: once the publisher re-published (a detached one
// still moving does not keep it going).
func TestNudgesStopWhenRepublished(t *testing.T) {
	n := session.Nudges{Delay: 100 * time.Millisecond, Interval: time.Second, Count: 5}
	m := newMigrated(t, n)
	start := time.Now()
	done := m.nudgeInBackground(t, context.Background())
	m.e.waitFor("the first nudge", func() bool { return len(m.nudges(m.pub.ID)) > 0 })
	if _, err := m.svc.ReconnectPublisher(context.Background(), m.sid, m.pub.ID, m.pubStream, m.b.offer()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, done, "NudgePublishers")
	if took, all := time.Since(start), n.Delay+time.Duration(n.Count-1)*n.Interval; took >= all {
		t.Errorf("NudgePublishers returned after %s: it did not stop early (all nudges: %s)", took, all)
	}
	m.checkNudges(t, 1)
}

// TestNudgesOff: with a count of 0 there is no nudge at all, and with no
// publisher left to re-publish none either; a cancelled context stops the
// wait for the first.
func TestNudgesOff(t *testing.T) {
	t.Run("count 0", func(t *testing.T) {
		m := newMigrated(t, session.Nudges{Count: 0, Delay: 0, Interval: 0})
		m.svc.NudgePublishers(context.Background(), m.sid, time.Time{})
		m.checkNudges(t, 0)
	})
	t.Run("publisher already back", func(t *testing.T) {
		n := session.Nudges{Delay: 50 * time.Millisecond, Interval: 50 * time.Millisecond, Count: 5}
		m := newMigrated(t, n)
		if _, err := m.svc.ReconnectPublisher(context.Background(), m.sid, m.pub.ID, m.pubStream, m.b.offer()); err != nil {
			t.Fatal(err)
		}
		m.svc.NudgePublishers(context.Background(), m.sid, time.Time{})
		m.checkNudges(t, 0)
	})
	t.Run("cancelled", func(t *testing.T) {
		m := newMigrated(t, session.Nudges{Delay: time.Hour, Interval: time.Hour, Count: 3})
		ctx, cancel := context.WithCancel(context.Background())
		done := m.nudgeInBackground(t, ctx)
		cancel()
		waitDone(t, done, "NudgePublishers with a cancelled context")
		m.checkNudges(t, 0)
	})
}

// TestNudgesAfterCrashStartFromSilence: after a crash the first nudge comes
// Nudges.CrashDelay after the node went silent (not Nudges.Delay after the
// migration), at once when that is past.
func TestNudgesAfterCrashStartFromSilence(t *testing.T) {
	n := session.Nudges{Delay: time.Hour, CrashDelay: 600 * time.Millisecond, Interval: 50 * time.Millisecond, Count: 2}
	for _, tc := range []struct {
		name      string
		silentFor time.Duration // before NudgePublishers starts
	}{{"due later", 300 * time.Millisecond}, {"past", 5 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMigrated(t, n)
			start := time.Now()
			silentSince := start.Add(-tc.silentFor)
			m.svc.NudgePublishers(context.Background(), m.sid, silentSince)
			got := m.checkNudges(t, n.Count)
			if len(got) == 0 {
				t.Fatal("no nudge")
			}
			due := silentSince.Add(n.CrashDelay)
			first := entryTime(t, got[0])
			if first.Before(due.Truncate(time.Millisecond)) {
				t.Errorf("first nudge %s before it was due", due.Sub(first))
			}
			if due.Before(start) {
				due = start
			}
			if late := first.Sub(due); late > 500*time.Millisecond {
				t.Errorf("first nudge %s after it was due", late)
			}
		})
	}
}
