package signaling_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// closedWithin reads sock until the server closes it or max passes; it
// returns the close status and how long it took (-1 and max when still open).
func closedWithin(t *testing.T, ctx context.Context, sock *rawSocket, max time.Duration) (websocket.StatusCode, time.Duration) {
	t.Helper()
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	for {
		_, _, err := sock.ws.Read(rctx)
		if err == nil {
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) || rctx.Err() != nil {
			return -1, max
		}
		return websocket.CloseStatus(err), time.Since(start)
	}
}

// TestUnjoinedSocketClosedAfterDeadline: a socket that neither joins nor
// resumes a participant is closed master.join_timeout after it opened,
// however often it pings and whatever else it sends; a joined one stays.
func TestUnjoinedSocketClosedAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const deadline = time.Second
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1, Configure: func(cfg *config.Config) {
		cfg.Master.JoinTimeout = deadline
	}})
	newSession(t, c, "deadline")

	idle := dialRaw(t, ctx, c, "deadline")
	pinging := dialRaw(t, ctx, c, "deadline")
	failed := dialRaw(t, ctx, c, "deadline") // its joinRoom is refused
	if resp := failed.call(ctx, "joinRoom", map[string]any{"token": "tok_forged", "session": "deadline", "platform": "x", "metadata": ""}); resp.Error == nil {
		t.Fatalf("joinRoom with a forged token: %+v", resp)
	}
	joined := dialRaw(t, ctx, c, "deadline")
	token := newToken(t, c, "deadline", protocol.RolePublisher)
	if resp := joined.call(ctx, "joinRoom", map[string]any{"token": token, "session": "deadline", "platform": "x", "metadata": ""}); resp.Error != nil {
		t.Fatalf("join: %+v", resp.Error)
	}

	stopPings := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for i := 0; ; i++ {
			raw, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": i, "method": "ping", "params": map[string]any{"interval": 5000}})
			if pinging.ws.Write(ctx, websocket.MessageText, raw) != nil {
				return
			}
			select {
			case <-stopPings:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	for name, sock := range map[string]*rawSocket{"idle": idle, "pinging": pinging, "failed join": failed} {
		status, took := closedWithin(t, ctx, sock, 5*time.Second)
		if status != websocket.StatusPolicyViolation || took > deadline+time.Second {
			t.Errorf("%s socket: close status %d after %s, want %d within %s", name, status, took, websocket.StatusPolicyViolation, deadline+time.Second)
		}
	}
	close(stopPings)
	<-pinged
	// The participant's socket outlived the deadline.
	if resp := joined.call(ctx, "ping", map[string]any{"interval": 5000}); string(resp.Result) != `{"value":"pong"}` {
		t.Errorf("joined socket after the deadline: %+v", resp)
	}
	if resp := joined.call(ctx, "leaveRoom", map[string]any{}); resp.Error != nil {
		t.Errorf("leaveRoom: %+v", resp.Error)
	}
	c.AssertNoLeftovers(t)
}

// TestPingIntervalClamped: a participant announcing a giant heartbeat
// interval is still closed (and detached) once silent for three times
// master.max_ping_interval.
func TestPingIntervalClamped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const maxInterval = time.Second
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1, Configure: func(cfg *config.Config) {
		cfg.Master.MaxPingInterval = maxInterval
	}})
	newSession(t, c, "clamp")
	sock := dialRaw(t, ctx, c, "clamp")
	token := newToken(t, c, "clamp", protocol.RolePublisher)
	if resp := sock.call(ctx, "joinRoom", map[string]any{"token": token, "session": "clamp", "platform": "x", "metadata": ""}); resp.Error != nil {
		t.Fatalf("join: %+v", resp.Error)
	}
	if resp := sock.call(ctx, "ping", map[string]any{"interval": 1e12}); string(resp.Result) != `{"value":"pong"}` {
		t.Fatalf("ping: %+v", resp)
	}
	status, took := closedWithin(t, ctx, sock, 3*maxInterval+3*time.Second)
	if status != websocket.StatusNormalClosure {
		t.Fatalf("silent socket with interval 1e12: close status %d after %s, want %d within %s", status, took, websocket.StatusNormalClosure, 3*maxInterval+time.Second)
	}
	if took < 3*maxInterval-200*time.Millisecond {
		t.Errorf("closed after %s, before three intervals (%s)", took, 3*maxInterval)
	}
}

// TestSessionStatusOnlyForItsParticipants: sessionStatus answers a socket
// about its own session only: the one it joined, or the one a failed
// connect proved it was a participant of (openvidu-browser's reconnection
// asks it there). Before that, every method but ping, joinRoom and connect
// gets openvidu-server's "must be the first operation" error.
func TestSessionStatusOnlyForItsParticipants(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	newSession(t, c, "status")
	newSession(t, c, "other")

	stranger := dialRaw(t, ctx, c, "status")
	for _, sid := range []string{"status", "other", "never-created"} {
		if resp := stranger.call(ctx, "sessionStatus", map[string]any{"sessionId": sid}); resp.Error == nil || resp.Error.Code != protocol.CodeTransport {
			t.Errorf("sessionStatus %s before joining: %+v, want error %d", sid, resp, protocol.CodeTransport)
		}
	}
	for _, method := range []string{"applyFilter", "subscribeToSpeechToText", "hack", "echo"} {
		if resp := stranger.call(ctx, method, map[string]any{}); resp.Error == nil || resp.Error.Code != protocol.CodeTransport {
			t.Errorf("%s before joining: %+v, want error %d", method, resp, protocol.CodeTransport)
		}
	}
	// A forged JSON-RPC session id of the right shape proves nothing.
	if resp := stranger.call(ctx, "connect", map[string]any{"sessionId": "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "reconnect": true}); resp.Error == nil {
		t.Fatalf("connect with a forged id: %+v", resp)
	}
	if resp := stranger.call(ctx, "sessionStatus", map[string]any{"sessionId": "status"}); resp.Error == nil || resp.Error.Code != protocol.CodeTransport {
		t.Errorf("sessionStatus after a forged connect: %+v, want error %d", resp, protocol.CodeTransport)
	}

	// A participant may ask about its own session, not another.
	member := dialRaw(t, ctx, c, "status")
	token := newToken(t, c, "status", protocol.RolePublisher)
	join := member.call(ctx, "joinRoom", map[string]any{"token": token, "session": "status", "platform": "x", "metadata": ""})
	if join.Error != nil {
		t.Fatalf("join: %+v", join.Error)
	}
	var jr protocol.JoinRoomResult
	if err := json.Unmarshal(join.Result, &jr); err != nil {
		t.Fatal(err)
	}
	if resp := member.call(ctx, "sessionStatus", map[string]any{"sessionId": "status"}); resp.Error != nil || string(resp.Result) == "" {
		t.Errorf("sessionStatus of its own session: %+v", resp)
	}
	if resp := member.call(ctx, "sessionStatus", map[string]any{"sessionId": "other"}); resp.Error == nil || resp.Error.Code != protocol.CodeUserUnauthorized {
		t.Errorf("sessionStatus of another session: %+v, want error %d", resp, protocol.CodeUserUnauthorized)
	}
	if resp := member.call(ctx, "hack", map[string]any{}); resp.Error == nil || resp.Error.Code != protocol.CodeMethodNotFound {
		t.Errorf("unknown method once joined: %+v, want error %d", resp, protocol.CodeMethodNotFound)
	}

	// Once it left (the session closed with it), its reconnection fails,
	// and the JSON-RPC session id it holds lets it learn why, as
	// openvidu-browser does: the session's life.
	if resp := member.call(ctx, "leaveRoom", map[string]any{}); resp.Error != nil {
		t.Fatalf("leaveRoom: %+v", resp.Error)
	}
	back := dialRaw(t, ctx, c, "status")
	if resp := back.call(ctx, "connect", map[string]any{"sessionId": jr.SessionID, "reconnect": true}); resp.Error == nil || resp.Error.Code != protocol.CodeReconnectionError {
		t.Fatalf("connect after leaving: %+v, want error %d", resp, protocol.CodeReconnectionError)
	}
	resp := back.call(ctx, "sessionStatus", map[string]any{"sessionId": "status"})
	var status struct {
		Life *int `json:"life"`
	}
	if resp.Error != nil || json.Unmarshal(resp.Result, &status) != nil || status.Life == nil || *status.Life != jr.Life {
		t.Errorf("sessionStatus after a failed connect: %+v, want life %d", resp, jr.Life)
	}
	if resp := back.call(ctx, "sessionStatus", map[string]any{"sessionId": "other"}); resp.Error == nil {
		t.Errorf("sessionStatus of another session after a failed connect: %+v", resp)
	}
	// The id proves membership of its own session only.
	elsewhere := dialRaw(t, ctx, c, "other")
	if resp := elsewhere.call(ctx, "connect", map[string]any{"sessionId": jr.SessionID, "reconnect": true}); resp.Error == nil {
		t.Fatalf("connect to another session: %+v", resp)
	}
	if resp := elsewhere.call(ctx, "sessionStatus", map[string]any{"sessionId": "other"}); resp.Error == nil || resp.Error.Code != protocol.CodeTransport {
		t.Errorf("sessionStatus of another session with this id: %+v, want error %d", resp, protocol.CodeTransport)
	}
}
