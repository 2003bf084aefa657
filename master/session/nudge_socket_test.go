package session_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/master/signaling"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// socketMaster is a master's signaling side on the env: the session service
// of incarnation id and its WebSocket server (master/signaling) on a
// loopback port, serving until the test ends. Held requests wait up to
// hold.
func (e *env) socketMaster(id protocol.MasterID, n session.Nudges, hold time.Duration) *session.Service {
	e.t.Helper()
	svc, _ := e.socketMasterWith(id, n, hold, session.Limits{}, signaling.Limits{})
	return svc
}

// socketMasterWith is socketMaster with limits; it also returns the
// master's WebSocket URL.
func (e *env) socketMasterWith(id protocol.MasterID, n session.Nudges, hold time.Duration, sl session.Limits, wl signaling.Limits) (*session.Service, string) {
	t := e.t
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inc := session.NewIncarnation(id)
	svc := e.service(id, func(c *session.Config) {
		c.PublicURL, c.Incarnation, c.Nudges, c.Limits = "ws://"+ln.Addr().String(), inc, n, sl
	})
	srv := signaling.New(signaling.Config{Sessions: svc, Store: e.st, Incarnation: inc, Secret: clustertest.Secret,
		MaxMessageBytes: 2 << 20, RequestTimeout: 5 * time.Second, HoldTimeout: hold, PollInterval: 100 * time.Millisecond, Limits: wl, Logger: testLogger()})
	mux := http.NewServeMux()
	mux.Handle("GET /openvidu", srv)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	g := goGroup(t)
	g.Go(func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	g.Go(func() { _ = srv.Run(ctx) })
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		_ = hs.Shutdown(sctx)
		cancel()
	})
	return svc, "ws://" + ln.Addr().String()
}

// connect joins a session with the Go participant (openvidu-browser's
// behaviour: it resumes after a WebSocket close it did not start), closed
// when the test ends.
func (e *env) connect(svc *session.Service, sid protocol.SessionID) *participant.Participant {
	e.t.Helper()
	p, err := participant.Join(context.Background(), participant.Config{Token: e.token(svc, sid).Token, LoopbackOnly: true,
		NoMediaRecovery: true, Logger: testLogger()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Close)
	return p
}

// moving records a participant's stream as moving to another media node
// (what MigrateSession leaves for the nudges to act on).
func (e *env) moving(sid protocol.SessionID, cid protocol.ConnectionID) protocol.StreamID {
	e.t.Helper()
	stream := protocol.NewStreamID("CAM", cid)
	e.update(sid, func(tx *store.Tx) {
		tx.Conns[cid].Publisher = &store.Publisher{StreamID: stream, Node: "media_1", State: store.EndpointMigrating,
			MediaOptions: store.MediaOptions{HasVideo: true, VideoActive: true}}
	})
	return stream
}

// TestNudgeClosesOnlySettledSockets: the master holding a nudged publisher's
// WebSocket closes it (its client reconnects and resumes) unless closing
// could lose a request: the socket is younger than 800 ms (its client is
// re-establishing its streams), carried a request in the last 400 ms, or
// has a held request pending, or a forciblyReconnectSubscriber offer
// written on it in the last 3 s is unanswered; and not if the publisher
// re-published since the nudge was queued. A skipped nudge waits for the next. Each case's
// last nudge finds the socket settled: exactly one close, at that nudge,
// shows that the earlier ones were skipped (a wrong close would have come
// earlier, and been followed by another).
func TestNudgeClosesOnlySettledSockets(t *testing.T) {
	// nudgeAll is what the controller does after a migration.
	nudgeAll := func(_ *testing.T, _ *env, svc *session.Service, sid protocol.SessionID, _ *participant.Participant, _ time.Time) {
		svc.NudgePublishers(context.Background(), sid, time.Time{})
	}
	tests := []struct {
		name    string
		nudges  session.Nudges
		closeAt time.Duration // when the closing nudge is due, from the join
		closeBy time.Duration // if set, the close must come before it
		// meanwhile runs beside the nudges (it returns by itself or when
		// ctx ends); other is a stream that is moving too.
		meanwhile func(ctx context.Context, t *testing.T, p *participant.Participant, start time.Time, other protocol.StreamID)
		nudge     func(t *testing.T, e *env, svc *session.Service, sid protocol.SessionID, p *participant.Participant, start time.Time)
		hold      time.Duration // how long held requests wait (default 1 s)
	}{
		{name: "settled socket", nudges: session.Nudges{Delay: time.Second, Interval: time.Second, Count: 1}, closeAt: time.Second},
		// The first nudge comes when the join request is over 400 ms old
		// (not busy) and the socket under 800 ms (young).
		{name: "young socket", nudges: session.Nudges{Delay: 450 * time.Millisecond, Interval: 1200 * time.Millisecond, Count: 2}, closeAt: 1650 * time.Millisecond},
		{name: "busy socket", nudges: session.Nudges{Delay: time.Second, Interval: 800 * time.Millisecond, Count: 3}, closeAt: 2600 * time.Millisecond,
			meanwhile: func(ctx context.Context, _ *testing.T, p *participant.Participant, start time.Time, _ protocol.StreamID) {
				// A request every 50 ms until 200 ms after the second nudge.
				for time.Since(start) < 2000*time.Millisecond && ctx.Err() == nil {
					_ = p.Call(ctx, "echo", map[string]any{}, nil)
					time.Sleep(50 * time.Millisecond)
				}
			}},
		{name: "held request", nudges: session.Nudges{Delay: time.Second, Interval: 800 * time.Millisecond, Count: 3}, closeAt: 2600 * time.Millisecond,
			hold: 2200 * time.Millisecond,
			meanwhile: func(ctx context.Context, t *testing.T, p *participant.Participant, _ time.Time, other protocol.StreamID) {
				// A subscription to another moving stream, held for 2.2 s
				// (then refused): pending during the first two nudges.
				begin := time.Now()
				err := p.Call(ctx, "prepareReceiveVideoFrom", map[string]any{"sender": other, "reconnect": false}, nil)
				if took := time.Since(begin); err == nil || took < 2*time.Second {
					t.Errorf("the subscription to a moving stream returned after %s (%v), want held 2.2 s, then refused", took, err)
				}
			}},
		{name: "re-published meanwhile", nudges: session.Nudges{Delay: 0, Interval: 0, Count: 1}, closeAt: 1500 * time.Millisecond,
			nudge: func(t *testing.T, e *env, svc *session.Service, sid protocol.SessionID, p *participant.Participant, start time.Time) {
				cid := protocol.ConnectionID(p.ConnectionID())
				waitFor(t, "a settled socket", func() bool { return time.Since(start) > time.Second })
				// A nudge queued while the stream moved, read after it was
				// re-published.
				e.update(sid, func(tx *store.Tx) {
					tx.Conns[cid].Publisher.State = store.EndpointReady
					if err := tx.Notify(cid, protocol.InternalReconnectSocket, protocol.ReconnectSocket{IfMigrating: true}); err != nil {
						t.Error(err)
					}
				})
				waitFor(t, "the nudge read", func() bool { return len(e.outbox(sid, cid)) == 0 })
				waitFor(t, "the control nudge's time", func() bool { return time.Since(start) > 1500*time.Millisecond })
				e.update(sid, func(tx *store.Tx) { tx.Conns[cid].Publisher.State = store.EndpointMigrating })
				svc.NudgePublishers(context.Background(), sid, time.Time{})
			}},
		// A server offer written at 0.9 s and never answered keeps the
		// nudges at 1, 2 and 3 s off; the one at 4 s closes.
		{name: "forced offer unanswered", nudges: session.Nudges{Delay: 100 * time.Millisecond, Interval: time.Second, Count: 4}, closeAt: 3900 * time.Millisecond,
			nudge: func(t *testing.T, e *env, svc *session.Service, sid protocol.SessionID, p *participant.Participant, start time.Time) {
				forcedOffer(t, e, sid, p, start)
				svc.NudgePublishers(context.Background(), sid, time.Time{})
			}},
		// Answered at 1.3 s: the nudge at 1 s waits, the one at 2 s closes.
		{name: "forced offer answered", nudges: session.Nudges{Delay: 100 * time.Millisecond, Interval: time.Second, Count: 2}, closeAt: 1900 * time.Millisecond, closeBy: 2500 * time.Millisecond,
			nudge: func(t *testing.T, e *env, svc *session.Service, sid protocol.SessionID, p *participant.Participant, start time.Time) {
				forcedOffer(t, e, sid, p, start)
				g := goGroup(t)
				g.Go(func() {
					time.Sleep(time.Until(start.Add(1300 * time.Millisecond)))
					// The answer's subscription is unknown (an error), but it
					// is the answer the socket waited for.
					_ = p.Call(context.Background(), "reconnectStream",
						map[string]any{"stream": "str_CAM_AAAA_con_other", "sdpString": "v=0", "forciblyReconnect": true}, nil)
				})
				svc.NudgePublishers(context.Background(), sid, time.Time{})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 1)
			e.adopt("media_1")
			hold := tt.hold
			if hold == 0 {
				hold = time.Second
			}
			svc := e.socketMaster("master_a.1", tt.nudges, hold)
			const sid = "ses_sockets"
			e.createSession(svc, sid)
			other := e.join(svc, sid) // without socket: never nudged
			if err := svc.Detach(context.Background(), sid, other.ID); err != nil {
				t.Fatal(err)
			}
			otherStream := e.moving(sid, other.ID)
			start := time.Now()
			p := e.connect(svc, sid)
			e.moving(sid, protocol.ConnectionID(p.ConnectionID()))
			ctx, cancel := context.WithCancel(context.Background())
			g := goGroup(t)
			t.Cleanup(cancel)
			if tt.meanwhile != nil {
				g.Go(func() { tt.meanwhile(ctx, t, p, start, otherStream) })
			}
			nudge := tt.nudge
			if nudge == nil {
				nudge = nudgeAll
			}
			nudge(t, e, svc, sid, p, start)
			waitFor(t, "the nudged socket to be resumed", func() bool { return len(p.Resumptions()) > 0 })
			rs := p.Resumptions()
			if len(rs) != 1 {
				t.Fatalf("%d socket closes, want 1: %+v", len(rs), rs)
			}
			if rs[0].Err != nil || rs[0].Resumed.IsZero() {
				t.Errorf("resumption: %+v", rs[0])
			}
			// Outbox entry times have millisecond resolution.
			if at := rs[0].Lost.Sub(start); at < tt.closeAt-5*time.Millisecond {
				t.Errorf("socket closed %s after the join, before the nudge due at %s", at, tt.closeAt)
			} else if tt.closeBy > 0 && at > tt.closeBy {
				t.Errorf("socket closed %s after the join, want before %s", at, tt.closeBy)
			}
			if c := e.conn(sid, protocol.ConnectionID(p.ConnectionID())); c.Master != "master_a.1" || c.DisconnectedAt != 0 {
				t.Errorf("resumed participant: master %q, disconnectedAt %d", c.Master, c.DisconnectedAt)
			}
		})
	}
}

// forcedOffer writes a forciblyReconnectSubscriber offer to p 0.9 s after
// start (p, without media recovery, never answers it by itself).
func forcedOffer(t *testing.T, e *env, sid protocol.SessionID, p *participant.Participant, start time.Time) {
	t.Helper()
	cid := protocol.ConnectionID(p.ConnectionID())
	time.Sleep(time.Until(start.Add(900 * time.Millisecond)))
	e.update(sid, func(tx *store.Tx) {
		n := protocol.ForciblyReconnectNotification{ConnectionID: "con_other", StreamID: "str_CAM_AAAA_con_other", SDPOffer: "v=0"}
		if err := tx.Notify(cid, protocol.NotifyForciblyReconnect, n); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the offer written", func() bool { return len(e.outbox(sid, cid)) == 0 })
}
