package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/master/medianodes"
	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// forced returns the forciblyReconnectSubscriber notifications among notes.
func forced(t *testing.T, notes []note) []protocol.ForciblyReconnectNotification {
	t.Helper()
	var out []protocol.ForciblyReconnectNotification
	for _, n := range notes {
		if n.Method != protocol.NotifyForciblyReconnect {
			continue
		}
		var f protocol.ForciblyReconnectNotification
		if err := json.Unmarshal([]byte(n.Raw), &f); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// sorted returns ids in order, as endpoints lists them.
func sorted(ids ...string) []string { slices.Sort(ids); return ids }

// endpointID is a subscription's endpoint name on a media node.
func endpointID(cid protocol.ConnectionID, streamID protocol.StreamID) string {
	return store.SubscriberEndpointID(cid, streamID)
}

// TestMigrationMovesEndpoints: a session whose media node crashed (or is
// drained) is re-pinned to another node; live endpoints move with it as
// "migrating", half-made ones (a publishVideo or an unanswered
// prepareReceiveVideoFrom in flight) are dropped; nobody is notified and
// no event is emitted. A drained node releases the session's endpoints
// (and only those). Then the publisher's reconnectStream creates its
// endpoint on the new node under the same stream id, and its subscriber,
// and only it, gets forciblyReconnectSubscriber with the new node's offer,
// whose answer completes the move.
func TestMigrationMovesEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alive bool
	}{{"crash", false}, {"drain", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 2)
			e.adopt("media_1")
			svc := e.service("master_a.1")
			b := newBrowser(t)
			const sid, other = "ses_move", "ses_other"
			e.createSession(svc, sid)
			pub, sub, half, late := e.join(svc, sid), e.join(svc, sid), e.join(svc, sid), e.join(svc, sid)
			stream := e.publish(svc, b, sid, pub.ID)
			e.subscribe(svc, b, sid, sub.ID, stream)
			if _, err := svc.PrepareSubscribe(ctx, sid, half.ID, string(stream)); err != nil { // never answered
				t.Fatal(err)
			}
			lateStream := protocol.NewStreamID("CAM", late.ID)
			e.update(sid, func(tx *store.Tx) { // a publishVideo in flight to the old node
				tx.Conns[late.ID].Publisher = &store.Publisher{StreamID: lateStream, Node: "media_1", State: store.EndpointCreating}
			})
			e.createSession(svc, other)
			otherStream := e.publish(svc, b, other, e.join(svc, other).ID)
			if got := e.endpoints("media_1", sid); !slices.Equal(got, sorted(endpointID(half.ID, stream), endpointID(sub.ID, stream), string(stream))) {
				t.Fatalf("endpoints on media_1 before the move: %v", got)
			}
			before := e.load(sid)
			eventsBefore := eventStrings(e.events(sid))
			outboxes := map[protocol.ConnectionID][]string{}
			for _, c := range []protocol.ConnectionID{pub.ID, sub.ID, half.ID, late.ID} {
				outboxes[c] = methods(e.outbox(sid, c))
			}

			e.adopt("media_2")
			e.moveOff(svc, sid, "media_1", tc.alive)

			after := e.load(sid)
			if after.Session.MediaNodeID != "media_2" {
				t.Errorf("session on %q, want media_2", after.Session.MediaNodeID)
			}
			p := after.Conns[pub.ID].Publisher
			if p == nil || p.StreamID != stream || p.Node != "media_2" || p.State != store.EndpointMigrating || p.CreatedAt != before.Conns[pub.ID].Publisher.CreatedAt {
				t.Errorf("publisher after the move: %+v, want stream %s migrating on media_2, same createdAt", p, stream)
			}
			if s := after.Conns[sub.ID].Subscriptions[stream]; s == nil || s.Node != "media_2" || s.State != store.EndpointMigrating {
				t.Errorf("ready subscription after the move: %+v, want migrating on media_2", s)
			}
			if s := after.Conns[half.ID].Subscriptions[stream]; s != nil {
				t.Errorf("an unanswered subscription survived the move: %+v", s)
			}
			if p := after.Conns[late.ID].Publisher; p != nil {
				t.Errorf("a publishVideo in flight to the old node survived the move: %+v", p)
			}
			if got := e.nodeSessions("media_1"); !slices.Equal(got, []protocol.SessionID{other}) {
				t.Errorf("sessions pinned to media_1: %v, want only %s", got, other)
			}
			if got := e.nodeSessions("media_2"); !slices.Equal(got, []protocol.SessionID{sid}) {
				t.Errorf("sessions pinned to media_2: %v, want [%s]", got, sid)
			}
			if tc.alive {
				if got := e.endpoints("media_1", sid); len(got) != 0 {
					t.Errorf("the drained node kept the moved session's endpoints %v", got)
				}
				if got := e.endpoints("media_1", other); !slices.Equal(got, []string{string(otherStream)}) {
					t.Errorf("the drained node's other session has endpoints %v, want [%s]", got, otherStream)
				}
			}
			if got := e.endpoints("media_2", sid); len(got) != 0 {
				t.Errorf("endpoints on media_2 before anybody reconnected: %v", got)
			}
			for cid, want := range outboxes {
				if got := methods(e.outbox(sid, cid)); !slices.Equal(got, want) {
					t.Errorf("the move notified %s: outbox %v, was %v", cid, got, want)
				}
			}

			// The publisher re-publishes (reconnectStream with a new offer).
			res, err := svc.ReconnectPublisher(ctx, sid, pub.ID, stream, b.offer())
			if err != nil {
				t.Fatal(err)
			}
			if res.StreamID != stream || res.SDPAnswer == "" || res.CreatedAt != before.Conns[pub.ID].Publisher.CreatedAt {
				t.Errorf("reconnectStream answered stream %s, createdAt %d, answer %d bytes", res.StreamID, res.CreatedAt, len(res.SDPAnswer))
			}
			moved := e.load(sid)
			if p := moved.Conns[pub.ID].Publisher; p.State != store.EndpointReady || p.Node != "media_2" {
				t.Errorf("re-published publisher: %+v, want ready on media_2", p)
			}
			s := moved.Conns[sub.ID].Subscriptions[stream]
			if s == nil || s.State != store.EndpointForced || s.Node != "media_2" {
				t.Fatalf("subscription after its publisher came back: %+v, want forced on media_2", s)
			}
			notes := e.outbox(sid, sub.ID)
			if got := methods(notes); !slices.Equal(got, append(outboxes[sub.ID], protocol.NotifyForciblyReconnect)) {
				t.Fatalf("subscriber's outbox %v, want %v + one forciblyReconnectSubscriber", got, outboxes[sub.ID])
			}
			f := forced(t, notes)[0]
			if f.ConnectionID != string(pub.ID) || f.StreamID != string(stream) || f.SDPOffer == "" {
				t.Errorf("forciblyReconnectSubscriber %+v, want connection %s, stream %s and an offer", f, pub.ID, stream)
			}
			for _, cid := range []protocol.ConnectionID{pub.ID, half.ID, late.ID} {
				if got := methods(e.outbox(sid, cid)); !slices.Equal(got, outboxes[cid]) {
					t.Errorf("%s was notified of the publisher's return: outbox %v", cid, got)
				}
			}
			if err := svc.CompleteSubscribe(ctx, sid, sub.ID, string(stream), b.answer(f.SDPOffer), true); err != nil {
				t.Fatal(err)
			}
			if s := e.conn(sid, sub.ID).Subscriptions[stream]; s.State != store.EndpointReady || s.Node != "media_2" {
				t.Errorf("subscription after answering the forced offer: %+v, want ready on media_2", s)
			}
			if got := e.endpoints("media_2", sid); !slices.Equal(got, sorted(endpointID(sub.ID, stream), string(stream))) {
				t.Errorf("endpoints on media_2 after the move: %v", got)
			}
			if got := eventStrings(e.events(sid)); !slices.Equal(got, eventsBefore) {
				t.Errorf("the move emitted events: %v, was %v", got, eventsBefore)
			}
		})
	}
}

// TestSecondMigrationWhileUnderway: a session still moving (its publisher
// has not re-published on the first new node) moves again when that node
// crashes too: its endpoints follow to the third node, still migrating,
// and end up pinned there alone. A repeated migration off the first node (a
// controller round that listed it earlier) changes nothing. The publisher
// then re-publishes on the third node and its subscriber follows.
func TestSecondMigrationWhileUnderway(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 3)
	e.adopt("media_1")
	svc := e.service("master_a.1")
	b := newBrowser(t)
	const sid = "ses_twice"
	e.createSession(svc, sid)
	pub, sub := e.join(svc, sid), e.join(svc, sid)
	stream := e.publish(svc, b, sid, pub.ID)
	e.subscribe(svc, b, sid, sub.ID, stream)

	e.adopt("media_2")
	e.moveOff(svc, sid, "media_1", false)
	e.adopt("media_3")
	e.moveOff(svc, sid, "media_2", false)
	check := func(when string) {
		t.Helper()
		snap := e.load(sid)
		if snap.Session.MediaNodeID != "media_3" {
			t.Errorf("%s: session on %s, want media_3", when, snap.Session.MediaNodeID)
		}
		if p := snap.Conns[pub.ID].Publisher; p.Node != "media_3" || p.State != store.EndpointMigrating {
			t.Errorf("%s: publisher %+v, want migrating on media_3", when, p)
		}
		if s := snap.Conns[sub.ID].Subscriptions[stream]; s.Node != "media_3" || s.State != store.EndpointMigrating {
			t.Errorf("%s: subscription %+v, want migrating on media_3", when, s)
		}
		for node, want := range map[protocol.NodeID][]protocol.SessionID{"media_1": nil, "media_2": nil, "media_3": {sid}} {
			if got := e.nodeSessions(node); !slices.Equal(got, want) {
				t.Errorf("%s: sessions pinned to %s: %v, want %v", when, node, got, want)
			}
		}
	}
	check("after the second move")
	if err := svc.MigrateSession(ctx, sid, "media_1", false); err != nil {
		t.Fatal(err)
	}
	check("after a repeated move off media_1")

	if _, err := svc.ReconnectPublisher(ctx, sid, pub.ID, stream, b.offer()); err != nil {
		t.Fatal(err)
	}
	fs := forced(t, e.outbox(sid, sub.ID))
	if len(fs) != 1 {
		t.Fatalf("%d forciblyReconnectSubscriber, want 1", len(fs))
	}
	if err := svc.CompleteSubscribe(ctx, sid, sub.ID, string(stream), b.answer(fs[0].SDPOffer), true); err != nil {
		t.Fatal(err)
	}
	if got := e.endpoints("media_3", sid); !slices.Equal(got, sorted(endpointID(sub.ID, stream), string(stream))) {
		t.Errorf("endpoints on media_3: %v", got)
	}
}

// TestMigrationWithoutNode: a session on a crashed node that no node can
// take stays as it is, pinned to its node, and the error says there is no
// media node (the controller then closes it or retries).
func TestMigrationWithoutNode(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.adopt("media_1")
	svc := e.service("master_a.1")
	const sid = "ses_stuck"
	e.createSession(svc, sid)
	stream := e.publish(svc, newBrowser(t), sid, e.join(svc, sid).ID)
	before := e.load(sid)
	e.crash("media_1")
	err := svc.MigrateSession(ctx, sid, "media_1", false)
	if !errors.Is(err, medianodes.ErrNoMediaNode) {
		t.Fatalf("MigrateSession without a node: %v, want ErrNoMediaNode", err)
	}
	after := e.load(sid)
	if after.Session.MediaNodeID != "media_1" {
		t.Errorf("session moved to %q", after.Session.MediaNodeID)
	}
	for cid, c := range after.Conns {
		if p := c.Publisher; p != nil && (p.State != store.EndpointReady || p.Node != "media_1" || p.StreamID != stream) {
			t.Errorf("publisher of %s changed: %+v, was %+v", cid, p, before.Conns[cid].Publisher)
		}
	}
	if got := e.nodeSessions("media_1"); !slices.Equal(got, []protocol.SessionID{sid}) {
		t.Errorf("sessions pinned to media_1: %v", got)
	}
}

// TestMigrationOfSessionNotThere: a node's session list may name a session
// that closed, or that already moved (a master died between the move and
// the unpinning): migrating it off the node only unpins it, whether or not
// another node could take sessions, and never touches the session.
func TestMigrationOfSessionNotThere(t *testing.T) {
	for _, tc := range []struct {
		name      string
		closed    bool // else it moved to media_2
		otherNode bool // a node accepts sessions besides the crashed one
	}{
		{"closed, a node available", true, true},
		{"closed, no node available", true, false},
		{"moved, a node available", false, true},
		{"moved, no node available", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 3)
			e.adopt("media_1")
			svc := e.service("master_a.1")
			const sid = "ses_elsewhere"
			e.createSession(svc, sid)
			e.publish(svc, newBrowser(t), sid, e.join(svc, sid).ID)
			e.adopt("media_2")
			e.crash("media_1")
			if tc.closed {
				if err := svc.CloseSession(ctx, sid, protocol.ReasonSessionClosedByServer); err != nil {
					t.Fatal(err)
				}
			} else if err := svc.MigrateSession(ctx, sid, "media_1", false); err != nil {
				t.Fatal(err)
			}
			// The stale entry a master that died half-way leaves.
			if err := e.st.PinSession(ctx, "media_1", sid); err != nil {
				t.Fatal(err)
			}
			if tc.otherNode {
				e.adopt("media_3")
			} else {
				e.drain("media_2") // still serving its sessions, taking no new one
			}
			var before *store.Snapshot
			if !tc.closed {
				before = e.load(sid)
			}
			if err := svc.MigrateSession(ctx, sid, "media_1", false); err != nil {
				t.Errorf("MigrateSession: %v, want nil", err)
			}
			if got := e.nodeSessions("media_1"); len(got) != 0 {
				t.Errorf("sessions still pinned to media_1: %v", got)
			}
			if tc.closed {
				if _, err := e.st.Load(ctx, sid); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("closed session: %v", err)
				}
				for _, node := range []protocol.NodeID{"media_2", "media_3"} {
					if got := e.nodeSessions(node); len(got) != 0 {
						t.Errorf("a closed session got pinned to %s", node)
					}
				}
				return
			}
			after := e.load(sid)
			if a, b := mustJSON(t, after), mustJSON(t, before); a != b {
				t.Errorf("the session changed:\n%s\nwas\n%s", a, b)
			}
			if got := e.nodeSessions("media_2"); !slices.Equal(got, []protocol.SessionID{sid}) {
				t.Errorf("sessions pinned to media_2: %v", got)
			}
			if got := e.nodeSessions("media_3"); len(got) != 0 {
				t.Errorf("sessions pinned to media_3: %v", got)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestConcurrentMigrationsMoveOnce: masters moving the same sessions at
// once (a controller round repeated by a new lease holder) move each
// session exactly once: its endpoints follow it to one node, and it is
// pinned to that node alone.
func TestConcurrentMigrationsMoveOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 3)
	e.adopt("media_1")
	svcs := []*session.Service{e.service("master_a.1"), e.service("master_b.1"), e.service("master_c.1")}
	const n = 8
	var sids []protocol.SessionID
	for i := range n {
		sid := protocol.SessionID("ses_race_" + string(rune('a'+i)))
		sids = append(sids, sid)
		e.createSession(svcs[0], sid)
		c := e.join(svcs[0], sid)
		e.update(sid, func(tx *store.Tx) {
			tx.Conns[c.ID].Publisher = &store.Publisher{StreamID: protocol.NewStreamID("CAM", c.ID), Node: "media_1", State: store.EndpointReady}
		})
	}
	e.adopt("media_2", "media_3")
	e.crash("media_1")
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, len(svcs)*n)
	for _, svc := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for _, sid := range sids {
				if err := svc.MigrateSession(ctx, sid, "media_1", false); err != nil {
					errs <- err
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	pinned := map[protocol.SessionID][]protocol.NodeID{}
	for _, node := range []protocol.NodeID{"media_1", "media_2", "media_3"} {
		for _, sid := range e.nodeSessions(node) {
			pinned[sid] = append(pinned[sid], node)
		}
	}
	for _, sid := range sids {
		snap := e.load(sid)
		node := snap.Session.MediaNodeID
		if node != "media_2" && node != "media_3" {
			t.Errorf("%s on %q", sid, node)
		}
		if !slices.Equal(pinned[sid], []protocol.NodeID{node}) {
			t.Errorf("%s lives on %s, pinned to %v", sid, node, pinned[sid])
		}
		for _, c := range snap.Conns {
			if p := c.Publisher; p.Node != node || p.State != store.EndpointMigrating {
				t.Errorf("%s: publisher %+v, want migrating on %s", sid, p, node)
			}
		}
	}
}

// TestSubscribersOfMovingStream: what a subscriber's requests meet while its
// publisher's stream moves. Its own reconnection is refused at once (the
// server offers it again when the publisher is back), a new subscription
// is held until the publisher is back and then made on the new node (not
// forced), the server's pending offer refuses the client's own
// reconnection and an answer to another offer, and its answer completes it.
func TestSubscribersOfMovingStream(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	e.adopt("media_1")
	svc := e.service("master_a.1")
	b := newBrowser(t)
	const sid = "ses_subs"
	e.createSession(svc, sid)
	pub, sub, newcomer := e.join(svc, sid), e.join(svc, sid), e.join(svc, sid)
	stream := e.publish(svc, b, sid, pub.ID)
	e.subscribe(svc, b, sid, sub.ID, stream)
	e.adopt("media_2")
	e.moveOff(svc, sid, "media_1", false)

	// The subscriber's own reconnection while the stream moves.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := svc.PrepareSubscribe(rctx, sid, sub.ID, string(stream))
	cancel()
	if se := sessionError(t, err); se.Kind != session.StreamMoving {
		t.Errorf("own reconnection to a moving stream: %v %q, want %v", se.Kind, se.Message, session.StreamMoving)
	}
	if s := e.conn(sid, sub.ID).Subscriptions[stream]; s == nil || s.State != store.EndpointMigrating || s.Node != "media_2" {
		t.Errorf("subscription after its refused reconnection: %+v, want migrating on media_2", s)
	}

	// A new subscription waits for the publisher.
	type prepared struct {
		offer string
		err   error
	}
	held := make(chan prepared, 1)
	g := goGroup(t)
	g.Go(func() {
		hctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		offer, err := svc.PrepareSubscribe(hctx, sid, newcomer.ID, string(stream))
		held <- prepared{offer, err}
	})
	e.waitFor("the new subscription recorded", func() bool { return e.conn(sid, newcomer.ID).Subscriptions[stream] != nil })
	select {
	case r := <-held:
		t.Fatalf("a new subscription to a moving stream was not held: %v", r.err)
	default:
	}
	if _, err := svc.ReconnectPublisher(ctx, sid, pub.ID, stream, b.offer()); err != nil {
		t.Fatal(err)
	}
	var r prepared
	select {
	case r = <-held:
	case <-time.After(waitTimeout):
		t.Fatal("the held subscription did not complete once the publisher was back")
	}
	if r.err != nil || r.offer == "" {
		t.Fatalf("held subscription: %v", r.err)
	}
	if err := svc.CompleteSubscribe(ctx, sid, newcomer.ID, string(stream), b.answer(r.offer), false); err != nil {
		t.Fatal(err)
	}
	if s := e.conn(sid, newcomer.ID).Subscriptions[stream]; s.State != store.EndpointReady || s.Node != "media_2" {
		t.Errorf("new subscription: %+v, want ready on media_2", s)
	}
	if fs := forced(t, e.outbox(sid, newcomer.ID)); len(fs) != 0 {
		t.Errorf("a new subscription was forced: %+v", fs)
	}
	created := 0
	for _, ev := range e.events(sid) {
		if ev.Name == "webrtcConnectionCreated" && ev.ConnectionID == newcomer.ID && ev.Direction == "INBOUND" {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d webrtcConnectionCreated for the new subscription, want 1", created)
	}

	// The moved subscriber has the server's offer pending.
	fs := forced(t, e.outbox(sid, sub.ID))
	if len(fs) != 1 {
		t.Fatalf("%d forciblyReconnectSubscriber to the moved subscriber, want 1", len(fs))
	}
	pending := e.conn(sid, sub.ID).Subscriptions[stream]
	_, err = svc.PrepareSubscribe(ctx, sid, sub.ID, string(stream))
	if se := sessionError(t, err); se.Kind != session.Superseded {
		t.Errorf("own reconnection while the server's offer is pending: %v %q, want %v", se.Kind, se.Message, session.Superseded)
	}
	err = svc.CompleteSubscribe(ctx, sid, sub.ID, string(stream), b.answer(fs[0].SDPOffer), false)
	if se := sessionError(t, err); se.Kind != session.Superseded {
		t.Errorf("an answer to another offer than the server's: %v %q, want %v", se.Kind, se.Message, session.Superseded)
	}
	if s := e.conn(sid, sub.ID).Subscriptions[stream]; *s != *pending {
		t.Errorf("refused requests changed the subscription: %+v, was %+v", s, pending)
	}
	if err := svc.CompleteSubscribe(ctx, sid, sub.ID, string(stream), b.answer(fs[0].SDPOffer), true); err != nil {
		t.Fatal(err)
	}
	if s := e.conn(sid, sub.ID).Subscriptions[stream]; s.State != store.EndpointReady {
		t.Errorf("moved subscription after its answer: %+v", s)
	}
	if got := e.endpoints("media_2", sid); !slices.Equal(got, sorted(endpointID(newcomer.ID, stream), endpointID(sub.ID, stream), string(stream))) {
		t.Errorf("endpoints on media_2: %v", got)
	}
}

// deadNode stands for a media node process that died while its
// registration still looks alive: its API port accepts connections and
// drops them at once. It counts the attempts.
type deadNode struct {
	URL      string
	attempts atomic.Int64
}

// newDeadNode listens until the test ends.
func newDeadNode(t *testing.T) *deadNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &deadNode{URL: "http://" + ln.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.attempts.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return d
}

// heartbeat reports for node id every 200 ms, as a node does, until the
// returned stop is called (or the test ends).
func (e *env) heartbeat(id protocol.NodeID, uri string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	startedAt := store.NowMillis()
	beat := func() {
		_, _ = e.st.HeartbeatMediaNode(ctx, store.MediaNodeHeartbeat{ID: id, URI: uri, IP: "127.0.0.1", StartedAt: startedAt})
	}
	beat()
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				beat()
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

// TestRepublishHeldWhileNewNodeDies: the node a session moved to dies before
// the publisher re-published (still registered and heartbeating: not yet
// declared crashed). The publisher's reconnectStream is held, not failed:
// until its deadline, when it fails as unavailable and leaves the stream
// to move; and when the session moves again, it completes on the next node.
func TestRepublishHeldWhileNewNodeDies(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	e.adopt("media_1")
	svc := e.service("master_a.1")
	b := newBrowser(t)
	const sid = "ses_dies"
	e.createSession(svc, sid)
	pub, sub := e.join(svc, sid), e.join(svc, sid)
	stream := e.publish(svc, b, sid, pub.ID)
	e.subscribe(svc, b, sid, sub.ID, stream)

	dead := newDeadNode(t)
	e.nodes["media_x"] = dead.URL
	stopBeats := e.heartbeat("media_x", dead.URL)
	e.adopt("media_x")
	e.moveOff(svc, sid, "media_1", false)
	if node := e.load(sid).Session.MediaNodeID; node != "media_x" {
		t.Fatalf("session moved to %s, want media_x", node)
	}

	// Until its deadline: unavailable, the stream still waiting to move.
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := svc.ReconnectPublisher(dctx, sid, pub.ID, stream, b.offer())
	cancel()
	if took := time.Since(start); took < time.Second {
		t.Errorf("reconnectStream failed after %s, before its deadline", took)
	}
	if se := sessionError(t, err); se.Kind != session.NotMovedInTime {
		t.Errorf("reconnectStream past its deadline: %v %q, want %v", se.Kind, se.Message, session.NotMovedInTime)
	}
	if p := e.conn(sid, pub.ID).Publisher; p.State != store.EndpointMigrating || p.Node != "media_x" {
		t.Errorf("publisher after a reconnectStream that timed out: %+v, want migrating on media_x", p)
	}
	if dead.attempts.Load() < 2 {
		t.Errorf("reconnectStream tried the dead node %d times, want it retried", dead.attempts.Load())
	}

	// Held until the session moves again.
	type published struct {
		res *session.Published
		err error
	}
	held := make(chan published, 1)
	g := goGroup(t)
	attempts := dead.attempts.Load()
	g.Go(func() {
		hctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		res, err := svc.ReconnectPublisher(hctx, sid, pub.ID, stream, b.offer())
		held <- published{res, err}
	})
	e.waitFor("reconnectStream retrying the dead node", func() bool { return dead.attempts.Load() >= attempts+2 })
	select {
	case r := <-held:
		t.Fatalf("reconnectStream was not held: %v", r.err)
	default:
	}
	stopBeats()
	e.crash("media_x")
	e.adopt("media_2")
	if err := svc.MigrateSession(ctx, sid, "media_x", false); err != nil {
		t.Fatal(err)
	}
	var r published
	select {
	case r = <-held:
	case <-time.After(waitTimeout):
		t.Fatal("the held reconnectStream did not complete after the second move")
	}
	if r.err != nil || r.res.SDPAnswer == "" || r.res.StreamID != stream {
		t.Fatalf("held reconnectStream: %+v, %v", r.res, r.err)
	}
	if p := e.conn(sid, pub.ID).Publisher; p.State != store.EndpointReady || p.Node != "media_2" {
		t.Errorf("publisher: %+v, want ready on media_2", p)
	}
	if fs := forced(t, e.outbox(sid, sub.ID)); len(fs) != 1 || fs[0].StreamID != string(stream) {
		t.Errorf("forciblyReconnectSubscriber to the subscriber: %+v, want one", fs)
	}
	if got := e.endpoints("media_2", sid); !slices.Equal(got, sorted(endpointID(sub.ID, stream), string(stream))) {
		t.Errorf("endpoints on media_2: %v", got)
	}
	if got := e.nodeSessions("media_x"); len(got) != 0 {
		t.Errorf("sessions pinned to the dead node: %v", got)
	}
}

// TestCrashMigrationTellsPublishersThatCanReconnect: after a crash, a
// publisher whose client announced the reconnectPublisher feature (the Go
// SDK) is told at once to re-publish its stream; one that did not
// (openvidu-browser) is not sent anything it would not understand; a drain
// tells nobody (the old node refuses its clients itself).
func TestCrashMigrationTellsPublishersThatCanReconnect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alive bool
	}{{"crash", false}, {"drain", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 2)
			e.adopt("media_1")
			svc := e.service("master_a.1")
			b := newBrowser(t)
			const sid = "ses_tell"
			e.createSession(svc, sid)
			res, err := svc.Join(ctx, session.JoinRequest{SessionID: sid, Token: e.token(svc, sid).Token,
				Features: []string{protocol.FeatureReconnectPublisher}})
			if err != nil {
				t.Fatal(err)
			}
			sdk, browser := res.Conn, e.join(svc, sid)
			sdkStream := e.publish(svc, b, sid, sdk.ID)
			e.publish(svc, b, sid, browser.ID)
			before := map[protocol.ConnectionID][]string{sdk.ID: methods(e.outbox(sid, sdk.ID)), browser.ID: methods(e.outbox(sid, browser.ID))}

			e.adopt("media_2")
			e.moveOff(svc, sid, "media_1", tc.alive)
			if got := methods(e.outbox(sid, browser.ID)); !slices.Equal(got, before[browser.ID]) {
				t.Errorf("the browser's outbox: %v, was %v", got, before[browser.ID])
			}
			notes := e.outbox(sid, sdk.ID)
			want := before[sdk.ID]
			if !tc.alive {
				want = append(slices.Clone(want), protocol.NotifyReconnectPublisher)
			}
			if got := methods(notes); !slices.Equal(got, want) {
				t.Fatalf("the SDK's outbox: %v, want %v", got, want)
			}
			if tc.alive {
				return
			}
			var n protocol.ReconnectPublisher
			if err := json.Unmarshal([]byte(notes[len(notes)-1].Raw), &n); err != nil || n.StreamID != string(sdkStream) || n.Reason != "nodeCrashed" {
				t.Errorf("reconnectPublisher %+v (%v), want stream %s, reason nodeCrashed", n, err, sdkStream)
			}
			// Told to, it re-publishes on the new node.
			if _, err := svc.ReconnectPublisher(ctx, sid, sdk.ID, sdkStream, b.offer()); err != nil {
				t.Fatal(err)
			}
			if p := e.conn(sid, sdk.ID).Publisher; p.State != store.EndpointReady || p.Node != "media_2" {
				t.Errorf("re-published publisher: %+v, want ready on media_2", p)
			}
		})
	}
}
